"""Effective permissions of a policy, in plain words, worst case first.

``stockade policy explain FILE`` prints these lines. Each allow or ask rule
becomes one sentence ("may delete any file under `notes/`", "may POST to
`api.example.com`"); its risk comes from what the action can do (destroy,
send out, run, change, read) and how wide the rule is (no constraints at all
is wider than a glob).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from stockade.model import Effect
from stockade.policy.policy import Policy
from stockade.policy.rules import RuleSpec

__all__ = ["Explanation", "explain"]

# words that tell what an action can do, strongest first
_DESTROY = ("delete", "drop", "remove", "rm", "truncate", "destroy", "kill", "purge", "wipe")
_SEND = (
    "send",
    "post",
    "put",
    "patch",
    "pay",
    "transfer",
    "upload",
    "publish",
    "forward",
    "share",
    "email",
    "mail",
    "push",
    "tweet",
    "reply",
)
_RUN = ("exec", "run", "execute", "shell", "eval", "spawn", "call")
_CHANGE = (
    "write",
    "edit",
    "append",
    "move",
    "rename",
    "update",
    "insert",
    "create",
    "mkdir",
    "set",
    "modify",
    "commit",
)
_RISK_ORDER = {"critical": 0, "high": 1, "medium": 2, "low": 3, "info": 4}


@dataclass(frozen=True)
class Explanation:
    """One line of ``policy explain``."""

    risk: str
    text: str
    rule: str = ""

    def as_dict(self) -> dict[str, str]:
        """As JSON-able data."""
        return {"risk": self.risk, "text": self.text, "rule": self.rule}


def _kind(tool: str, action: str) -> str:
    words = {tool.lower(), action.lower(), *action.lower().replace("-", "_").split("_")}
    if tool == "http" and action.upper() in ("POST", "PUT", "PATCH", "DELETE"):
        return "destroy" if action.upper() == "DELETE" else "send"
    for kind, vocab in (("destroy", _DESTROY), ("send", _SEND), ("run", _RUN), ("change", _CHANGE)):
        if words & set(vocab):
            return kind
    if action == "*":
        return "any"
    return "read"


def _risk(kind: str, unconstrained: bool, effect: Effect) -> str:
    base = {"any": 0, "destroy": 0, "send": 1, "run": 1, "change": 1, "read": 2}[kind]
    if not unconstrained:
        base += 1
    if effect is Effect.ASK:
        base += 1
    levels = ("critical", "high", "medium", "low", "info")
    return levels[min(base, len(levels) - 1)]


def _describe_constraint(arg: str, ops: Mapping[str, Any]) -> str:
    parts: list[str] = []
    for op, val in ops.items():
        vals = val if isinstance(val, list) else [val]
        shown = ", ".join(f"`{v}`" for v in vals)
        if op == "glob":
            parts.append(f"{arg} matching {shown}")
        elif op == "host":
            parts.append(f"{arg} a host in {shown}")
        elif op == "cidr":
            parts.append(f"{arg} an address in {shown}")
        elif op == "regex":
            parts.append(f"{arg} matching the pattern {shown}")
        elif op == "equals":
            parts.append(f"{arg} = {shown}")
        elif op == "one_of":
            parts.append(f"{arg} one of {shown}")
        elif op == "min":
            parts.append(f"{arg} >= {val}")
        elif op == "max":
            parts.append(f"{arg} <= {val}")
        elif op == "length":
            lo, hi = val.get("min"), val.get("max")
            span = (
                f"{lo}-{hi}"
                if lo is not None and hi is not None
                else f"at most {hi}"
                if hi is not None
                else f"at least {lo}"
            )
            parts.append(f"{arg} of length {span}")
    return " and ".join(parts)


def _object(spec: RuleSpec) -> str:
    """What the rule lets the agent touch, in words."""
    when = spec.when
    if "path" in when and set(when["path"]) == {"glob"}:
        globs = when["path"]["glob"]
        globs = globs if isinstance(globs, list) else [globs]
        return " or ".join(_glob_words(g) for g in globs)
    if "host" in when and "host" in when["host"]:
        hosts = when["host"]["host"]
        hosts = hosts if isinstance(hosts, list) else [hosts]
        return "to " + ", ".join(f"`{h}`" for h in hosts)
    return ""


def _glob_words(glob: str) -> str:
    if glob in ("**", "*"):
        return "any file" if glob == "**" else "any top-level file"
    if glob.endswith("/**"):
        return f"any file under `{glob[:-2]}`"
    return f"files matching `{glob}`"


def _sentence(spec: RuleSpec, tool: str, action: str) -> str:
    what = f"`{tool}`" if action == "*" else f"`{tool}.{action}`"
    verb = "may" if spec.effect is Effect.ALLOW else "may, after approval,"
    obj = _object(spec)
    rest = {k: v for k, v in spec.when.items() if not (obj and k in ("path", "host"))}
    conds = " and ".join(_describe_constraint(a, ops) for a, ops in rest.items())
    if tool == "*":
        what = "any tool" if action == "*" else f"action `{action}` of any tool"
    text = f"{verb} use {what}"
    if tool == "fs" and action != "*" and obj:
        text = f"{verb} {action} {obj}"
    elif tool == "http" and action != "*" and obj:
        text = f"{verb} {action.upper()} {obj}"
    elif obj:
        text += f" on {obj}"
    if conds:
        text += f" when {conds}"
    elif not spec.when:
        text += " with any arguments"
    if spec.principals:
        text += " (for principals " + ", ".join(f"`{p}`" for p in spec.principals) + ")"
    return text


def _matches_everything(spec: RuleSpec) -> bool:
    """A rule whose only constraints are catch-all globs is as wide as none."""
    for ops in spec.when.values():
        globs = ops.get("glob")
        if set(ops) != {"glob"}:
            return False
        if not any(g in ("**", "**/*") for g in (globs if isinstance(globs, list) else [globs])):
            return False
    return True


def _denied(spec: RuleSpec) -> str:
    tools = ", ".join(f"`{t}`" if t != "*" else "any tool" for t in spec.tools)
    actions = "" if spec.actions == ("*",) else " (" + ", ".join(spec.actions) + ")"
    conds = " and ".join(_describe_constraint(a, ops) for a, ops in spec.when.items())
    return f"{tools}{actions}" + (f" when {conds}" if conds else "")


def explain(policy: Policy) -> list[Explanation]:
    """The effective permissions of ``policy``, most dangerous first."""
    out: list[Explanation] = []
    if policy.mode == "shadow":
        out.append(
            Explanation(
                "critical",
                "the policy is in shadow mode: it records what it would deny but blocks nothing",
            )
        )
    # A section that explains itself speaks for the rules it made (ids `name:...`).
    self_explained = tuple(
        f"{name}:"
        for name, section in policy.sections.items()
        if callable(getattr(section, "explain", None))
    )
    for spec in policy.rules:
        if spec.mode == "shadow" or spec.effect is Effect.DENY:
            continue
        if self_explained and spec.id.startswith(self_explained):
            continue
        for tool in spec.tools:
            for action in spec.actions:
                kind = _kind(tool, action)
                unconstrained = not spec.when or _matches_everything(spec)
                out.append(
                    Explanation(
                        _risk(kind, unconstrained, spec.effect),
                        _sentence(spec, tool, action),
                        spec.id,
                    )
                )
    for spec in policy.rules:
        if spec.effect is Effect.DENY and spec.mode == "enforce":
            out.append(Explanation("info", f"never: {_denied(spec)}", spec.id))
        elif spec.mode == "shadow":
            text = f"shadow rule `{spec.id}` ({spec.effect.value}) is recorded, not enforced"
            out.append(Explanation("info", text, spec.id))
    for lim in policy.limits:
        tools = ", ".join(lim.tools)
        out.append(
            Explanation(
                "info",
                f"at most {lim.calls} calls per {lim.window:g}s per {lim.per} for {tools}",
                lim.id,
            )
        )
    if policy.budgets.calls is not None:
        out.append(Explanation("info", f"at most {policy.budgets.calls} calls per session"))
    if policy.budgets.bytes is not None:
        out.append(
            Explanation("info", f"at most {policy.budgets.bytes} bytes of results per session")
        )
    for name, section in sorted(policy.sections.items()):
        # `explain` speaks for the section's rules; `explain_extra` adds lines
        # beside the sentences its rules get (fs: what `unlock` lifts)
        for hook in ("explain", "explain_extra"):
            extra = getattr(section, hook, None)
            if not callable(extra):
                continue
            for item in extra():
                if isinstance(item, Explanation):
                    out.append(item)
                else:
                    out.append(Explanation("info", f"{name}: {item}"))
    out.append(Explanation("info", "everything else is denied"))
    return sorted(out, key=lambda e: _RISK_ORDER[e.risk])  # stable: file order within a risk


def explain_lines(policy: Policy) -> Sequence[str]:
    """The explanation as printable lines."""
    return [f"[{e.risk}] {e.text}" for e in explain(policy)]
