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

The policy decides each call alone (rules only: no tools run, no limits are
counted, no flow state), so the cases are stable across runs.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stockade.errors import PolicyError, PolicyProblem
from stockade.model import ToolCall
from stockade.policy.node import Invalid, Node, parse_yaml
from stockade.policy.policy import Policy

__all__ = ["Case", "CaseOutcome", "load_cases", "parse_cases", "run_cases"]


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


def run_cases(policy: Policy, cases: list[Case]) -> Iterator[CaseOutcome]:
    """Decide every case and compare."""
    for case in cases:
        call = ToolCall(
            case.tool, case.action, dict(case.args), session="policy-test", principal=case.principal
        )
        d = policy.decide(call)
        ok = d.effect.value == case.expect and (case.rule is None or d.rule == case.rule)
        detail = f"{d.effect.value} by {d.rule}"
        if not ok:
            want = case.expect + (f" by {case.rule}" if case.rule else "")
            detail = f"expected {want}, got {detail}"
        yield CaseOutcome(case, ok, detail)
