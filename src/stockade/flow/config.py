"""The policy's ``flow:`` section: labels, external sinks, flow rules, bounds.

.. code-block:: yaml

    flow:
      confidential: secret          # this level and above count as confidential
      external: [mail.send, http]   # external sinks, besides tools marked external
      labels:                       # relabel results (in order, later wins)
        - {tool: inbox, integrity: untrusted}
        - {tool: customers, confidentiality: secret}
        - {source: "http:*", integrity: untrusted, confidentiality: public}
      rules:
        - id: payee
          tool: payments
          action: pay
          args: [recipient, iban]
          forbid: untrusted         # untrusted | confidential
          effect: deny              # deny | ask
        - id: mail-host
          tool: mail
          args: [to]
          part: host                # whole (default) | host
          forbid: untrusted
          effect: ask
        - id: secrets-out
          sink: external            # only calls to external sinks
          args: "*"
          forbid: confidential
          effect: deny
      trifecta: {effect: ask}       # or deny; mode: shadow to only record;
                                    # tool: [...] to cover only some external sinks
      index: {session_bytes: 16MB, sessions: 1000, total_bytes: 256MB, idle: 24h}
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from stockade.model import Confidentiality, Effect, Integrity, Label, ToolCall
from stockade.policy.matchers import PatternError, re2_compile
from stockade.policy.node import Node
from stockade.policy.policy import SectionContext

__all__ = ["FlowConfig", "FlowRule", "IndexBounds", "LabelRule", "TrifectaRule", "parse_section"]


def _glob(pattern: str) -> Any:
    """A whole-string glob (``*`` any run, ``?`` one character) compiled to RE2."""
    out = []
    for ch in pattern:
        if ch == "*":
            out.append(".*")
        elif ch == "?":
            out.append(".")
        else:
            out.append("\\x{%x}" % ord(ch))  # noqa: UP031 - RE2 escape syntax
    return re2_compile("(?s)" + "".join(out))


@dataclass(frozen=True)
class LabelRule:
    """Relabels results: where ``tool``/``action``/``source`` match, set the
    integrity and/or confidentiality given."""

    tool: str = "*"
    action: str = "*"
    source: str = "*"
    integrity: Integrity | None = None
    confidentiality: Confidentiality | None = None
    _source_re: Any = field(default=None, compare=False, repr=False)

    def applies(self, call: ToolCall, label: Label) -> bool:
        """Whether this rule relabels ``label`` on a result of ``call``."""
        if self.tool not in ("*", call.tool) or self.action not in ("*", call.action):
            return False
        if self.source == "*":
            return True
        return self._source_re is not None and self._source_re.fullmatch(label.source) is not None

    def apply(self, label: Label) -> Label:
        """The label with this rule's settings."""
        return Label(
            label.source,
            self.integrity or label.integrity,
            self.confidentiality or label.confidentiality,
        )


#: labels every flow policy starts with: web content is untrusted
DEFAULT_LABELS = (
    LabelRule(source="http:*", integrity=Integrity.UNTRUSTED, _source_re=_glob("http:*")),
    LabelRule(source="https:*", integrity=Integrity.UNTRUSTED, _source_re=_glob("https:*")),
    LabelRule(source="web:*", integrity=Integrity.UNTRUSTED, _source_re=_glob("web:*")),
)


@dataclass(frozen=True)
class FlowRule:
    """Arguments that must not carry untrusted (or confidential) data."""

    id: str
    forbid: str  # "untrusted" | "confidential"
    effect: Effect
    tools: tuple[str, ...] = ("*",)
    actions: tuple[str, ...] = ("*",)
    args: tuple[str, ...] = ("*",)
    part: str = "whole"
    sink: str = "any"  # "any" | "external"
    mode: str = "enforce"
    reason: str = ""

    def applies(self, call: ToolCall, external: bool) -> bool:
        """Whether the rule looks at ``call``."""
        if "*" not in self.tools and call.tool not in self.tools:
            return False
        if "*" not in self.actions and call.action not in self.actions:
            return False
        return self.sink == "any" or external

    def arg_names(self, call: ToolCall) -> list[str]:
        """The call's arguments this rule looks at."""
        if "*" in self.args:
            return list(call.args)
        return [a for a in self.args if a in call.args]


@dataclass(frozen=True)
class TrifectaRule:
    """Once a session read untrusted and confidential content, calls to
    external sinks get ``effect``."""

    effect: Effect = Effect.DENY
    mode: str = "enforce"
    reason: str = ""
    tools: tuple[str, ...] = ("*",)

    def applies(self, call: ToolCall) -> bool:
        """Whether the rule covers this (external) call's tool."""
        return "*" in self.tools or call.tool in self.tools


@dataclass(frozen=True)
class IndexBounds:
    """Memory bounds of the in-process provenance store."""

    session_bytes: int = 16 * 1024 * 1024
    sessions: int = 1000
    total_bytes: int = 256 * 1024 * 1024
    idle: float = 24 * 3600.0


@dataclass(frozen=True)
class FlowConfig:
    """The parsed ``flow:`` section."""

    confidential: Confidentiality = Confidentiality.SECRET
    external: tuple[str, ...] = ()
    labels: tuple[LabelRule, ...] = DEFAULT_LABELS
    rules: tuple[FlowRule, ...] = ()
    trifecta: TrifectaRule | None = None
    bounds: IndexBounds = field(default_factory=IndexBounds)

    def is_external(self, call: ToolCall) -> bool:
        """Whether the flow section names ``call``'s tool (or tool.action) an external sink."""
        return call.tool in self.external or f"{call.tool}.{call.action}" in self.external

    def relabel(self, call: ToolCall, labels: Sequence[Label]) -> tuple[Label, ...]:
        """The labels of a result of ``call`` after the label rules."""
        out = []
        for label in labels or (Label(f"tool:{call.tool}"),):
            for rule in self.labels:
                if rule.applies(call, label):
                    label = rule.apply(label)
            out.append(label)
        return tuple(out)


_KEYS = ("confidential", "external", "labels", "rules", "trifecta", "index")
_RULE_KEYS = ("id", "tool", "action", "args", "part", "forbid", "sink", "effect", "mode", "reason")
_LABEL_KEYS = ("tool", "action", "source", "integrity", "confidentiality")


def parse_section(node: Node, ctx: SectionContext) -> FlowConfig:
    """Parse the ``flow:`` section of a policy."""
    m = node.mapping(allowed=_KEYS)
    confidential = (
        Confidentiality(m["confidential"].string(choices=("internal", "secret")))
        if "confidential" in m
        else Confidentiality.SECRET
    )
    external = tuple(m["external"].strings()) if "external" in m else ()
    labels = list(DEFAULT_LABELS)
    if "labels" in m:
        labels.extend(_parse_label(n) for n in m["labels"].seq())
    rules: list[FlowRule] = []
    seen: set[str] = set()
    if "rules" in m:
        for n in m["rules"].seq():
            rule = _parse_rule(n, ctx.mode)
            if rule.id in seen:
                n.mapping()["id"].fail(f"duplicate flow rule id `{rule.id}`")
            seen.add(rule.id)
            rules.append(rule)
    trifecta = _parse_trifecta(m["trifecta"], ctx.mode) if "trifecta" in m else None
    bounds = _parse_bounds(m["index"]) if "index" in m else IndexBounds()
    return FlowConfig(confidential, external, tuple(labels), tuple(rules), trifecta, bounds)


def _parse_label(node: Node) -> LabelRule:
    m = node.mapping(allowed=_LABEL_KEYS)
    if "integrity" not in m and "confidentiality" not in m:
        node.fail("a label rule needs `integrity` and/or `confidentiality`")
    source = m["source"].string() if "source" in m else "*"
    try:
        source_re = _glob(source) if source != "*" else None
    except PatternError as exc:
        m["source"].fail(f"bad source glob: {exc}")
    return LabelRule(
        tool=m["tool"].string() if "tool" in m else "*",
        action=m["action"].string() if "action" in m else "*",
        source=source,
        integrity=Integrity(m["integrity"].string(choices=("trusted", "untrusted")))
        if "integrity" in m
        else None,
        confidentiality=Confidentiality(
            m["confidentiality"].string(choices=("public", "internal", "secret"))
        )
        if "confidentiality" in m
        else None,
        _source_re=source_re,
    )


def _mode(m: dict[str, Node], policy_mode: str) -> str:
    if "mode" in m:
        return m["mode"].string(choices=("enforce", "shadow"))
    return "shadow" if policy_mode == "shadow" else "enforce"


def _parse_rule(node: Node, policy_mode: str) -> FlowRule:
    m = node.mapping(allowed=_RULE_KEYS, required=("id", "forbid", "effect"))
    rule_id = m["id"].string()
    args: tuple[str, ...] = ("*",)
    if "args" in m:
        args = tuple(m["args"].strings())
    return FlowRule(
        id=rule_id,
        forbid=m["forbid"].string(choices=("untrusted", "confidential")),
        effect=Effect(m["effect"].string(choices=("deny", "ask"))),
        tools=tuple(m["tool"].strings()) if "tool" in m else ("*",),
        actions=tuple(m["action"].strings()) if "action" in m else ("*",),
        args=args,
        part=m["part"].string(choices=("whole", "host")) if "part" in m else "whole",
        sink=m["sink"].string(choices=("any", "external")) if "sink" in m else "any",
        mode=_mode(m, policy_mode),
        reason=m["reason"].string() if "reason" in m else "",
    )


def _parse_trifecta(node: Node, policy_mode: str) -> TrifectaRule:
    m = node.mapping(allowed=("effect", "mode", "reason", "tool"), required=("effect",))
    return TrifectaRule(
        effect=Effect(m["effect"].string(choices=("deny", "ask"))),
        mode=_mode(m, policy_mode),
        reason=m["reason"].string() if "reason" in m else "",
        tools=tuple(m["tool"].strings()) if "tool" in m else ("*",),
    )


def _parse_bounds(node: Node) -> IndexBounds:
    m = node.mapping(allowed=("session_bytes", "sessions", "total_bytes", "idle"))
    d = IndexBounds()
    return IndexBounds(
        session_bytes=m["session_bytes"].size() if "session_bytes" in m else d.session_bytes,
        sessions=m["sessions"].integer(minimum=1) if "sessions" in m else d.sessions,
        total_bytes=m["total_bytes"].size() if "total_bytes" in m else d.total_bytes,
        idle=m["idle"].duration() if "idle" in m else d.idle,
    )
