"""A policy: loaded and validated once, compiled, then asked many times.

>>> policy = Policy.from_text('''
... version: 1
... rules:
...   - id: read-notes
...     tool: fs
...     action: read
...     effect: allow
...     when: {path: {glob: "notes/**"}}
... ''')
>>> call = ToolCall("fs", "read", {"path": "notes/todo.md"}, session="s")
>>> policy.decide(call).rule
'read-notes'
>>> policy.decide(call.with_args({"path": ".env"})).effect
<Effect.DENY: 'deny'>
"""

from __future__ import annotations

import hashlib
import importlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stockade.errors import ConfigurationError, PolicyError, PolicyProblem
from stockade.model import Decision, Effect, ShadowDecision, ToolCall
from stockade.policy.node import Invalid, Node, parse_yaml
from stockade.policy.rules import CompiledRule, RuleSpec, parse_rule, subsumes

__all__ = ["SECTION_PARSERS", "BudgetSpec", "LimitSpec", "Policy", "SectionContext", "SessionsSpec"]

#: capability and part sections, and the function that parses each. A parser
#: takes ``(node, ctx)`` and returns the part's typed configuration.
SECTION_PARSERS: dict[str, str] = {
    "fs": "stockade.tools.fs:parse_section",
    "http": "stockade.tools.http:parse_section",
    "sql": "stockade.tools.sql:parse_section",
    "exec": "stockade.tools.exec:parse_section",
    "flow": "stockade.flow:parse_section",
    "scan": "stockade.scan:parse_section",
    "audit": "stockade.audit:parse_section",
    "approvals": "stockade.approvals:parse_section",
    "mcp": "stockade.integrations.mcp_config:parse_section",
}

TOP_KEYS = ("version", "name", "description", "mode", "rules", "limits", "budgets", "sessions")

DEFAULT_DENY = "default-deny"

_VERB = {Effect.DENY: "denies", Effect.ASK: "asks approval for", Effect.ALLOW: "allows"}


@dataclass(frozen=True)
class LimitSpec:
    """A rate limit: at most ``calls`` calls per ``window`` seconds, counted
    ``per`` session, principal or globally, for the tools and actions named."""

    id: str
    calls: int
    window: float
    per: str = "session"
    tools: tuple[str, ...] = ("*",)
    actions: tuple[str, ...] = ("*",)

    def applies(self, call: ToolCall) -> bool:
        """Whether this limit counts the call."""
        return ("*" in self.tools or call.tool in self.tools) and (
            "*" in self.actions or call.action in self.actions
        )


@dataclass(frozen=True)
class BudgetSpec:
    """Per-session totals: allowed calls, and bytes of results returned."""

    calls: int | None = None
    bytes: int | None = None


@dataclass(frozen=True)
class SessionsSpec:
    """Where session counters live: ``memory`` or a ``redis://`` URL."""

    store: str = "memory"
    prefix: str = "stockade:"


@dataclass
class SectionContext:
    """What a section parser gets besides its node.

    ``base_dir`` is the policy file's folder (relative paths in a policy are
    relative to it). A section may add ordinary rules with :meth:`add_rule`,
    so its allow-lists are decided and explained like every other rule.
    """

    base_dir: Path
    mode: str
    rules: list[RuleSpec] = field(default_factory=list)

    def add_rule(self, spec: RuleSpec) -> None:
        """Add a rule made from the section (its id should start with the section name)."""
        self.rules.append(spec)

    def parse_rule(self, node: Node) -> RuleSpec:
        """Parse a rule written in the usual schema inside a section."""
        return parse_rule(node, self.mode)


class _Candidates:
    __slots__ = ("all_rules", "enforce")

    def __init__(self, rules: list[CompiledRule]) -> None:
        # Strongest effect first: the first enforce rule that matches decides.
        order = {Effect.DENY: 0, Effect.ASK: 1, Effect.ALLOW: 2}
        ranked = sorted(enumerate(rules), key=lambda ir: (order[ir[1].effect], ir[0]))
        self.all_rules = tuple(r for _, r in ranked)
        self.enforce = tuple(r for r in self.all_rules if not r.shadow)


class Policy:
    """A validated, compiled policy. Build with :meth:`from_file` or :meth:`from_text`."""

    def __init__(
        self,
        *,
        rules: Iterable[RuleSpec],
        mode: str = "enforce",
        limits: Iterable[LimitSpec] = (),
        budgets: BudgetSpec | None = None,
        sessions: SessionsSpec | None = None,
        sections: Mapping[str, Any] | None = None,
        name: str = "",
        description: str = "",
        source: str = "<policy>",
        digest: str = "",
    ) -> None:
        self.rules = tuple(rules)
        self.mode = mode
        self.limits = tuple(limits)
        self.budgets = budgets or BudgetSpec()
        self.sessions = sessions or SessionsSpec()
        self.sections: dict[str, Any] = dict(sections or {})
        self.name = name
        self.description = description
        self.source = source
        self.digest = digest
        self._compile()

    # -- loading ------------------------------------------------------------

    @classmethod
    def from_file(cls, path: str | Path) -> Policy:
        """Load, validate and compile a policy file; raise :class:`PolicyError`."""
        p = Path(path)
        try:
            text = p.read_text(encoding="utf-8")
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            raise PolicyError(
                [PolicyProblem(str(p), 1, 1, "", f"cannot read: {reason.lower()}")]
            ) from exc
        except UnicodeDecodeError as exc:
            raise PolicyError([PolicyProblem(str(p), 1, 1, "", "not UTF-8 text")]) from exc
        return cls.from_text(text, source=str(p), base_dir=p.resolve().parent)

    @classmethod
    def from_text(
        cls, text: str, *, source: str = "<policy>", base_dir: str | Path | None = None
    ) -> Policy:
        """Load, validate and compile policy YAML text; raise :class:`PolicyError`."""
        root = parse_yaml(text, source)
        digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
        return _load(root, source, Path(base_dir) if base_dir else Path.cwd(), digest)

    # -- compiling ----------------------------------------------------------

    def _compile(self) -> None:
        compiled = [CompiledRule(r) for r in self.rules]
        tools = {t for r in compiled for t in r.spec.tools if t != "*"}
        by_key: dict[tuple[str, str], _Candidates] = {}
        by_tool: dict[str, _Candidates] = {}
        for tool in tools:
            tool_rules = [r for r in compiled if "*" in r.spec.tools or tool in r.spec.tools]
            actions = {a for r in tool_rules for a in r.spec.actions if a != "*"}
            for action in actions:
                by_key[(tool, action)] = _Candidates(
                    [r for r in tool_rules if "*" in r.spec.actions or action in r.spec.actions]
                )
            by_tool[tool] = _Candidates([r for r in tool_rules if "*" in r.spec.actions])
        wild = [r for r in compiled if "*" in r.spec.tools]
        wild_actions = {a for r in wild for a in r.spec.actions if a != "*"}
        self._wild_by_action = {
            a: _Candidates([r for r in wild if "*" in r.spec.actions or a in r.spec.actions])
            for a in wild_actions
        }
        self._by_key = by_key
        self._by_tool = by_tool
        self._wild = _Candidates([r for r in wild if "*" in r.spec.actions])
        self._has_shadow = self.mode == "shadow" or any(r.shadow for r in compiled)

    def _candidates(self, tool: str, action: str) -> _Candidates:
        # Only tool/action names that appear in the policy get their own entry,
        # so attacker-chosen names cannot grow these tables.
        c = self._by_key.get((tool, action))
        if c is not None:
            return c
        c = self._by_tool.get(tool)
        if c is not None:
            return c
        return self._wild_by_action.get(action, self._wild)

    # -- deciding -----------------------------------------------------------

    def decide(self, call: ToolCall) -> Decision:
        """The rules' decision for a call (limits and budgets are the guard's)."""
        cands = self._candidates(call.tool, call.action)
        args, principal = call.args, call.principal
        enforced: CompiledRule | None = None
        for rule in cands.enforce:
            if rule.matches(args, principal):
                enforced = rule
                break
        if not self._has_shadow:
            return _decision(enforced)
        would: CompiledRule | None = None
        for rule in cands.all_rules:
            if rule.matches(args, principal):
                would = rule
                break
        w = _decision(would)
        if self.mode == "shadow":
            if w.effect is Effect.ALLOW:
                return w
            return Decision(
                Effect.ALLOW,
                "mode:shadow",
                "the policy is in shadow mode: recorded, not enforced",
                shadow=ShadowDecision(w.effect, w.rule, w.reason),
            )
        d = _decision(enforced)
        if would is not enforced and (w.effect is not d.effect or w.rule != d.rule):
            return Decision(d.effect, d.rule, d.reason, ShadowDecision(w.effect, w.rule, w.reason))
        return d

    def section(self, name: str) -> Any:
        """The parsed configuration of a section, or ``None`` when absent."""
        return self.sections.get(name)

    def __repr__(self) -> str:
        return f"Policy(source={self.source!r}, rules={len(self.rules)}, mode={self.mode!r})"


_DEFAULT = Decision(Effect.DENY, DEFAULT_DENY, "no rule allows this call")


def _decision(rule: CompiledRule | None) -> Decision:
    return _DEFAULT if rule is None else rule.decision


# -- the loader -----------------------------------------------------------------


def _load(root: Node, source: str, base_dir: Path, digest: str) -> Policy:
    problems: list[PolicyProblem] = []

    def attempt(fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except Invalid as exc:
            problems.append(exc.problem)
            return None

    allowed = (*TOP_KEYS, *SECTION_PARSERS)
    try:
        top = root.mapping(allowed=allowed, required=("version",))
    except Invalid as exc:
        raise PolicyError([exc.problem]) from None
    version = attempt(lambda: top["version"].integer())
    if version is not None and version != 1:
        problems.append(top["version"].problem(f"unsupported version {version}; expected 1"))
    mode = (
        attempt(lambda: top["mode"].string(choices=("enforce", "shadow")))
        if "mode" in top
        else None
    )
    mode = mode or "enforce"
    name = attempt(lambda: top["name"].string()) if "name" in top else ""
    description = attempt(lambda: top["description"].string()) if "description" in top else ""

    rules: list[RuleSpec] = []
    if "rules" in top:
        for rnode in attempt(top["rules"].seq) or []:
            spec = attempt(parse_rule, rnode, mode)
            if spec is not None:
                rules.append(spec)
    limits = [x for x in (attempt(_parse_limit, n) for n in _seq(top, "limits", attempt)) if x]
    budgets = attempt(_parse_budgets, top["budgets"]) if "budgets" in top else None
    sessions = attempt(_parse_sessions, top["sessions"]) if "sessions" in top else None

    ctx = SectionContext(base_dir=base_dir, mode=mode)
    sections: dict[str, Any] = {}
    for key, target in SECTION_PARSERS.items():
        if key not in top:
            continue
        parser = load_part(target)
        try:
            sections[key] = parser(top[key], ctx)
        except Invalid as exc:
            problems.append(exc.problem)
        except PolicyError as exc:
            problems.extend(exc.problems)
    rules.extend(ctx.rules)

    seen: dict[str, RuleSpec] = {}
    for spec in rules:
        if spec.id in seen:
            problems.append(
                _at(spec, f"duplicate rule id `{spec.id}` (first at {seen[spec.id].origin})")
            )
        else:
            seen[spec.id] = spec
    problems.extend(_reachability(rules))
    seen_limits: set[str] = set()
    for lim in limits:
        if lim.id in seen_limits:
            problems.append(PolicyProblem(source, 1, 1, "limits", f"duplicate limit id `{lim.id}`"))
        seen_limits.add(lim.id)
    if problems:
        problems.sort(key=lambda p: (p.line, p.column))
        raise PolicyError(problems)
    return Policy(
        rules=rules,
        mode=mode,
        limits=limits,
        budgets=budgets,
        sessions=sessions,
        sections=sections,
        name=name or "",
        description=description or "",
        source=source,
        digest=digest,
    )


def _seq(top: dict[str, Node], key: str, attempt: Any) -> list[Node]:
    if key not in top:
        return []
    return attempt(top[key].seq) or []


def load_part(target: str) -> Any:
    """The function a part provides, named ``module:function``.

    Import errors propagate: a part that cannot load must never be skipped
    silently (an audit section kept as plain data would leave calls unaudited).
    """
    module_name, _, attr = target.partition(":")
    return getattr(importlib.import_module(module_name), attr)


def _at(spec: RuleSpec, message: str) -> PolicyProblem:
    node = spec.node
    if node is None:
        return PolicyProblem("<policy>", 1, 1, f"rules.{spec.id}", message)
    return PolicyProblem(node.file, node.line, node.column, node.path, message)


def _reachability(rules: list[RuleSpec]) -> list[PolicyProblem]:
    """Rules that can never decide, and rules that contradict each other."""
    problems: list[PolicyProblem] = []
    live = [r for r in rules if r.mode == "enforce"]
    strength = {Effect.ALLOW: 0, Effect.ASK: 1, Effect.DENY: 2}
    keys = {r.id: r.when_key() for r in live}
    for i, a in enumerate(live):
        for b in live[i + 1 :]:
            if a.id == b.id:
                continue
            same = subsumes(a, b, keys) and subsumes(b, a, keys)
            if same and a.effect is not b.effect:
                problems.append(
                    _at(
                        b,
                        (
                            f"rule `{b.id}` conflicts with rule `{a.id}`: they match the same "
                            f"calls with different effects ({a.effect.value} vs {b.effect.value}); "
                            f"remove one or narrow it"
                        ),
                    )
                )
                continue
            if same:
                problems.append(_at(b, f"rule `{b.id}` is unreachable: it repeats rule `{a.id}`"))
                continue
            for general, specific in ((a, b), (b, a)):
                if strength[general.effect] > strength[specific.effect] and subsumes(
                    general, specific, keys
                ):
                    problems.append(
                        _at(
                            specific,
                            (
                                f"rule `{specific.id}` is unreachable: rule `{general.id}` "
                                f"{_VERB[general.effect]} every call it matches"
                            ),
                        )
                    )
    return problems


_LIMIT_KEYS = ("id", "tool", "action", "per", "calls", "window")


def _parse_limit(node: Node) -> LimitSpec:
    m = node.mapping(allowed=_LIMIT_KEYS, required=("id", "calls", "window"))
    window = m["window"].duration()
    if window <= 0:
        m["window"].fail("expected a window longer than 0 seconds")
    return LimitSpec(
        id=m["id"].string(),
        calls=m["calls"].integer(minimum=0),
        window=window,
        per=m["per"].string(choices=("session", "principal", "global"))
        if "per" in m
        else "session",
        tools=tuple(m["tool"].strings()) if "tool" in m else ("*",),
        actions=tuple(m["action"].strings()) if "action" in m else ("*",),
    )


def _parse_budgets(node: Node) -> BudgetSpec:
    m = node.mapping(allowed=("calls", "bytes"))
    return BudgetSpec(
        calls=m["calls"].integer(minimum=0) if "calls" in m else None,
        bytes=m["bytes"].size() if "bytes" in m else None,
    )


def _parse_sessions(node: Node) -> SessionsSpec:
    m = node.mapping(allowed=("store", "prefix"))
    store = m["store"].string() if "store" in m else "memory"
    if store != "memory" and not store.startswith(("redis://", "rediss://", "unix://")):
        m["store"].fail(f"unknown session store `{store}`; expected `memory` or a redis:// URL")
    return SessionsSpec(store=store, prefix=m["prefix"].string() if "prefix" in m else "stockade:")


def check_policy_file(path: str | Path) -> Policy:
    """Load a policy file or raise :class:`PolicyError` (used by ``policy check``)."""
    try:
        return Policy.from_file(path)
    except ConfigurationError as exc:  # a section parser may need something missing
        raise PolicyError([PolicyProblem(str(path), 1, 1, "", str(exc))]) from exc
