"""The OpenAI-style arguments corpus: every refused case is refused and runs nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from exfil_scenario import ATTACKS, make_guard

CORPUS: dict[str, Any] = yaml.safe_load(
    (ATTACKS / "openai-arguments.yaml").read_text(encoding="utf-8")
)


def arguments(raw: str) -> str:
    return '{"path": ' * 5000 + '"x"' + "}" * 5000 if raw == "DEEP" else raw


def message(case: dict[str, Any]) -> dict[str, Any]:
    call = {"name": case["function"], "arguments": arguments(case["arguments"])}
    return {"role": "assistant", "tool_calls": [{"id": "c", "type": "function", "function": call}]}


@pytest.mark.parametrize("case", CORPUS["refused"], ids=lambda c: c["name"])
def test_refused(
    case: dict[str, Any], scenario: dict[str, Any], workspace: Path, sink: Any
) -> None:
    guard = make_guard(workspace, scenario["policy"])
    (answer,) = guard.handle_tool_calls(message(case))
    assert "refused by stockade" in answer["content"], answer
    assert "sk-live" not in answer["content"]
    outcomes = [e for e in guard.audit.events if e.kind == "outcome"]  # type: ignore[attr-defined]
    assert outcomes == []
    assert sink.received == []


@pytest.mark.parametrize("case", CORPUS["allowed"], ids=lambda c: c["name"])
def test_allowed(case: dict[str, Any], scenario: dict[str, Any], workspace: Path) -> None:
    guard = make_guard(workspace, scenario["policy"])
    (answer,) = guard.handle_tool_calls(message(case))
    assert "refused" not in answer["content"], answer
