"""Sample calls with expected decisions: ``stockade policy test`` and our own conformance corpus.

A cases file is YAML::

    cases:
      - name: notes can be read
        tool: fs
        action: read
        args: {path: notes/todo.md}
        principal: support-bot      # optional
        expect: allow               # allow | deny | ask
        rule: fs-read-notes         # optional: the rule that must decide

Each case is decided the way :meth:`Guard.decide` decides a call, up to the
point where the tool would run: the argument scan, the tool's ``prepare``
(canonical arguments: a URL as the http tool will fetch it, a path relative to
the fs root) and its own ``check`` (the built-in deny lists, ``http:invalid``,
``http:metadata``), the rules, the flow rules and the limits. Nothing runs and
nothing persists: decisions go to an in-memory audit sink (the policy's
``audit:`` store is never opened), the fs journal is left out, every case gets
a fresh session and fresh limit counters, so the cases are stable across runs
and independent of each other.

The sql tool needs its databases to analyse a statement, so ``sql`` cases are
decided by the rules alone (on the arguments as written); :func:`case_guard`
returns a note saying so, which ``stockade policy test`` prints.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stockade.errors import PolicyError, PolicyProblem
from stockade.policy.node import Invalid, Node, parse_yaml
from stockade.policy.policy import Policy

if TYPE_CHECKING:
    from stockade.guard import Guard
    from stockade.tools.base import Capability

__all__ = ["Case", "CaseOutcome", "case_guard", "load_cases", "parse_cases", "run_cases"]

#: tool sections whose tool can check a call without touching anything outside
#: the process (fs opens its root read-only; http and exec resolve nothing yet)
_CHECKED_TOOLS = {
    "fs": "stockade.tools.fs",
    "http": "stockade.tools.http",
    "exec": "stockade.tools.exec",
}
#: tool sections whose tool needs a live service to check a call
_RULES_ONLY = {"sql": "it needs its databases to analyse a statement"}


@dataclass(frozen=True)
class Case:
    """One sample call and what the policy should say of it."""

    name: str
    tool: str
    action: str
    args: Mapping[str, Any] = field(default_factory=dict)
    principal: str = ""
    expect: str = "deny"
    rule: str | None = None


@dataclass(frozen=True)
class CaseOutcome:
    """How one case went."""

    case: Case
    passed: bool
    detail: str


def parse_cases(node: Node) -> list[Case]:
    """Read cases from a parsed YAML node; raise :class:`PolicyError` listing every problem."""
    problems: list[PolicyProblem] = []
    cases: list[Case] = []
    try:
        root = node.mapping(allowed=("cases",), required=("cases",))
        items = root["cases"].seq()
        if not items:
            root["cases"].fail("no cases: an empty list tests nothing")
    except Invalid as exc:
        raise PolicyError([exc.problem]) from None
    for i, item in enumerate(items):
        try:
            m = item.mapping(
                allowed=("name", "tool", "action", "args", "principal", "expect", "rule"),
                required=("tool", "action", "expect"),
            )
            args = m["args"].plain() if "args" in m else {}
            if not isinstance(args, dict):
                m["args"].fail("expected a mapping of argument names to values")
            cases.append(
                Case(
                    name=m["name"].string() if "name" in m else f"case {i + 1}",
                    tool=m["tool"].string(),
                    action=m["action"].string(),
                    args=args,
                    principal=m["principal"].string() if "principal" in m else "",
                    expect=m["expect"].string(choices=("allow", "deny", "ask")),
                    rule=m["rule"].string() if "rule" in m else None,
                )
            )
        except Invalid as exc:
            problems.append(exc.problem)
    if problems:
        raise PolicyError(problems)
    return cases


def load_cases(path: str | Path) -> list[Case]:
    """Read a cases file."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        reason = (exc.strerror or type(exc).__name__).lower()
        raise PolicyError([PolicyProblem(str(p), 1, 1, "", f"cannot read: {reason}")]) from exc
    return parse_cases(parse_yaml(text, str(p)))


def case_guard(policy: Policy) -> tuple[Guard, list[str]]:
    """A guard that decides cases for ``policy`` without side effects, and notes to print.

    Its audit sink and session store are in memory, its approver is never
    asked (``decide`` returns an ``ask``), and it has the tools of
    ``_CHECKED_TOOLS`` (fs without its journal); a note names each tool
    section whose cases are decided by the rules alone.
    """
    from stockade.guard import Guard
    from stockade.session import MemorySessionStore
    from stockade.stages import MemoryAuditSink

    capabilities: list[Capability] = []
    notes: list[str] = []
    for section, module_name in _CHECKED_TOOLS.items():
        config = policy.section(section)
        if config is None:
            continue
        module = importlib.import_module(module_name)
        if section == "fs":
            # the journal is for undoing what ran; nothing runs here
            capabilities.append(module.FSTool(replace(config, journal=None), policy=policy))
        else:
            capabilities.extend(module.capability_from_policy(policy))
    for section, why in _RULES_ONLY.items():
        if policy.section(section) is not None:
            notes.append(
                f"note: `{section}` cases are decided by the rules alone "
                f"(the {section} tool is not built: {why})"
            )
    guard = Guard(
        policy,
        audit=MemoryAuditSink(),
        approver=_never_asked,
        sessions=MemorySessionStore(),
        capabilities=capabilities,
        tools_from_policy=False,
    )
    return guard, notes


def _never_asked(request: Any) -> bool:
    return False  # pragma: no cover - Guard.decide never sends an ask to the approver


def run_cases(
    policy: Policy, cases: list[Case], *, guard: Guard | None = None
) -> Iterator[CaseOutcome]:
    """Decide every case as the guard would (see the module docstring) and compare.

    ``guard`` is one from :func:`case_guard`; without one, a guard is built and
    closed here.
    """
    from stockade.session import MemorySessionStore

    own = guard is None
    if guard is None:
        guard, _ = case_guard(policy)
    try:
        for i, case in enumerate(cases):
            # fresh counters and a fresh session: a case never sees another's limits or flow
            guard.sessions = MemorySessionStore()
            session = guard.session(f"policy-test-{i + 1}", principal=case.principal)
            d = guard.decide(case.tool, case.action, dict(case.args), session=session)
            ok = d.effect.value == case.expect and (case.rule is None or d.rule == case.rule)
            detail = f"{d.effect.value} by {d.rule}"
            if not ok:
                want = case.expect + (f" by {case.rule}" if case.rule else "")
                detail = f"expected {want}, got {detail}"
            yield CaseOutcome(case, ok, detail)
    finally:
        if own:
            guard.close()
