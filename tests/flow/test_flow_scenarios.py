"""Scenario corpus: (task, content read, calls) with the expected decision for every call."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
import yaml
from flow_helpers import ATTACKS, Harness, load_policy

CASES: list[dict[str, Any]] = yaml.safe_load((ATTACKS / "scenarios.yaml").read_text())["cases"]


def test_corpus_is_broad() -> None:
    areas = Counter(case["area"] for case in CASES)
    assert len(CASES) >= 30
    assert set(areas) == {"email", "payments", "files", "shell", "web"}
    assert all(n >= 5 for n in areas.values()), areas
    expects = Counter(call["expect"] for case in CASES for call in case["calls"])
    assert expects["allow"] >= 30 and expects["deny"] >= 15 and expects["ask"] >= 3


def test_every_case_has_a_legitimate_call() -> None:
    # an attack-only case says nothing about false positives: each case also
    # makes a call in the same setting that the flow rules must allow
    missing = [c["name"] for c in CASES if not any(x["expect"] == "allow" for x in c["calls"])]
    assert not missing, missing


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_scenario(case: dict[str, Any]) -> None:
    harness = Harness(load_policy())
    session = harness.guard.session(f"scenario-{id(case)}")
    session.user_said(case["task"])
    for read in case["reads"]:
        ((tool, text),) = read.items()
        harness.read(tool, text, session)
    for call in case["calls"]:
        effect, rule = harness.outcome(call["tool"], call["action"], call["args"], session)
        assert effect == call["expect"], f"{call['args']}: got {effect} by {rule}"
        if "rule" in call:
            assert rule == call["rule"]
        if effect == "allow":
            assert harness.sent[-1] == (call["tool"], call["args"])
