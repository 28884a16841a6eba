"""Provenance survives the copying an LLM does (tests/attacks/flow/evasions.yaml)."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from flow_helpers import ATTACKS, Harness, load_policy

FAMILIES: list[dict[str, Any]] = yaml.safe_load((ATTACKS / "evasions.yaml").read_text())["families"]
ATTACKS_ = [(f, v) for f in FAMILIES for v in f["attack"]]
LEGIT = [(f, v) for f in FAMILIES for v in f["legit"]]


def _session(family: dict[str, Any]) -> tuple[Harness, Any]:
    harness = Harness(load_policy())
    session = harness.guard.session()
    session.user_said(family["user"])
    harness.read("inbox", family["injected"], session)
    return harness, session


def _args(family: dict[str, Any], variant: Any) -> dict[str, Any]:
    args = dict(family["base"])
    if isinstance(variant, dict) and "args" in variant:
        args.update(variant["args"])
    else:
        args[family["arg"]] = variant["value"] if isinstance(variant, dict) else variant
    return args


@pytest.mark.parametrize(
    ("family", "variant"), ATTACKS_, ids=[f"{f['name']}: {v['kind']}" for f, v in ATTACKS_]
)
def test_evasion_is_caught(family: dict[str, Any], variant: dict[str, Any]) -> None:
    harness, session = _session(family)
    effect, rule = harness.outcome(
        family["tool"], family["action"], _args(family, variant), session
    )
    assert effect == family["expect"], rule
    assert rule.startswith("flow:")


@pytest.mark.parametrize(("family", "value"), LEGIT, ids=[f"{f['name']}: {v}" for f, v in LEGIT])
def test_legitimate_value_is_allowed(family: dict[str, Any], value: str) -> None:
    harness, session = _session(family)
    effect, rule = harness.outcome(family["tool"], family["action"], _args(family, value), session)
    assert effect == "allow", rule


def test_kinds_cover_the_issue() -> None:
    kinds = " ".join(v["kind"] for _, v in ATTACKS_)
    for kind in ("recased", "respaced", "percent-encoded", "split across arguments", "embedded"):
        assert kind in kinds
