"""The conformance corpus: (policy, call) -> expected decision and rule, as data."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from stockade import Effect, Policy, ToolCall
from stockade.policy.cases import parse_cases, run_cases
from stockade.policy.node import parse_yaml

FILES = sorted((Path(__file__).parent / "cases").glob("*.yaml"))


def _load(path: Path) -> tuple[Policy, list[Any]]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    policy = Policy.from_text(yaml.safe_dump(data["policy"]), source=str(path))
    cases = parse_cases(parse_yaml(yaml.safe_dump({"cases": data["cases"]}), str(path)))
    return policy, cases


def _all_cases() -> list[tuple[Path, int]]:
    out = []
    for path in FILES:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        out.extend((path, i) for i in range(len(data["cases"])))
    return out


CASES = _all_cases()


def test_corpus_size() -> None:
    assert len(CASES) >= 60


@pytest.mark.parametrize(
    ("path", "index"), CASES, ids=lambda v: v.stem if isinstance(v, Path) else str(v)
)
def test_case(path: Path, index: int) -> None:
    policy, cases = _load(path)
    case = cases[index]
    (outcome,) = run_cases(policy, [case])
    assert outcome.passed, f"{path.name}: {case.name}: {outcome.detail}"


def test_shadow_rule_is_recorded() -> None:
    policy, _ = _load(Path(__file__).parent / "cases" / "shadow.yaml")
    d = policy.decide(ToolCall("fs", "read", {"path": "private/x"}, session="s"))
    assert d.effect is Effect.ALLOW
    assert d.shadow is not None
    assert (d.shadow.effect, d.shadow.rule) == (Effect.DENY, "new-deny")
    d = policy.decide(ToolCall("fs", "delete", {"path": "x"}, session="s"))
    assert d.shadow is not None and d.shadow.effect is Effect.ALLOW


def test_shadow_mode_records_what_it_would_do() -> None:
    policy, _ = _load(Path(__file__).parent / "cases" / "shadow-mode.yaml")
    d = policy.decide(ToolCall("fs", "delete", {}, session="s"))
    assert d.allowed and d.shadow is not None
    assert (d.shadow.effect, d.shadow.rule) == (Effect.DENY, "no-delete")
