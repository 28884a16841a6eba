"""Red team regression: pseudonyms stay pseudonyms (sessions, planted tokens, R1 refusal texts)."""

from __future__ import annotations

import json
from pathlib import Path

from stockade import Guard, MemoryAuditSink

EMAIL = "ada.lovelace@example.com"


def _guard(seen: list[str]) -> Guard:
    guard = Guard.from_text(
        "version: 1\nrules:\n  - {id: any, tool: [lookup, echo, page], effect: allow}\n"
        "scan: {model: false}\n",
        audit=MemoryAuditSink(),
    )

    @guard.tool("lookup")
    def lookup() -> str:
        return f"customer: {EMAIL}"

    @guard.tool("echo")
    def echo(text: str) -> str:
        seen.append(text)
        return "ok"

    @guard.tool("page")
    def page() -> str:
        return "reply to <EMAIL_1>"  # written by an attacker, not by the vault

    return guard


def test_pseudonym_from_another_session_stays_literal() -> None:
    seen: list[str] = []
    guard = _guard(seen)
    token = guard.call("lookup", "call", {}, session="alice").value.split(": ", 1)[1]
    assert token.startswith("<EMAIL_")
    guard.call("echo", "call", {"text": token}, session="mallory")
    guard.call("echo", "call", {"text": token}, session="alice")
    assert seen == [token, EMAIL]  # restored only in alice's own session


def test_pseudonym_planted_in_a_result_is_defanged() -> None:
    seen: list[str] = []
    guard = _guard(seen)
    token = guard.call("lookup", "call", {}, session="s").value.split(": ", 1)[1]
    # an attacker's page already holds the session's token, hoping the model sends it on
    assert token == "<EMAIL_1>"
    shown = guard.call("page", "call", {}, session="s").value
    assert token not in shown
    guard.call("echo", "call", {"text": shown}, session="s")
    assert EMAIL not in seen[0]


POLICY = """
version: 1
rules:
  - {id: any, tool: [lookup, echo, rows], effect: allow}
scan: {model: false}
"""


def test_pseudonym_is_not_revealed_by_a_refusal_message(tmp_path: Path) -> None:
    # The argument scanner restores <EMAIL_1> to the real address before the
    # tool's prepare/check; their refusal and failure messages quote the
    # argument, and the integrations pass those messages to the model.
    (tmp_path / "notes").mkdir()
    guard = Guard.from_text(POLICY + f"fs:\n  root: {tmp_path}\n  allow: {{read: ['**']}}\n")

    @guard.tool("lookup")
    def lookup() -> str:
        return f"customer: {EMAIL}"

    session = guard.session("s1")
    shown = guard.call("lookup", "call", {}, session=session).value
    token = shown.split(": ", 1)[1]
    assert token.startswith("<EMAIL_")
    message = {
        "role": "assistant",
        "tool_calls": [
            {
                "id": "1",
                "type": "function",
                "function": {"name": "fs_read", "arguments": json.dumps({"path": "/" + token})},
            },
            {
                "id": "2",
                "type": "function",
                "function": {"name": "fs_read", "arguments": json.dumps({"path": token + "/x"})},
            },
        ],
    }
    answers = guard.handle_tool_calls(message, session=session)
    for answer in answers:
        assert EMAIL not in answer["content"], answer["content"]
