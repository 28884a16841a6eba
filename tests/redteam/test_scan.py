"""Red team regression: pseudonyms stay pseudonyms (sessions, planted tokens, R1), keys and
numbers are scanned (R3, R4; fixed in 56c03b1)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stockade import Guard, MemoryAuditSink
from stockade.errors import Denied

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


GH = "ghp_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8"  # GitHub token shape (fake)


def _plain_guard(audit: MemoryAuditSink | None = None) -> Guard:
    return Guard.from_text(POLICY, audit=audit or MemoryAuditSink())


def test_secret_in_result_dict_key_is_masked() -> None:
    # map_strings rebuilds dicts but never passes their keys to the scanners.
    guard = _plain_guard()

    @guard.tool("lookup")
    def lookup() -> object:
        return {GH: "the deploy token", EMAIL: "customer"}

    value = json.dumps(guard.call("lookup", "call", {}).value)
    assert GH not in value
    assert EMAIL not in value


def test_secret_in_argument_dict_key_is_masked_in_audit() -> None:
    audit = MemoryAuditSink()
    guard = _plain_guard(audit)

    @guard.tool("echo")
    def echo(data: object) -> object:
        return "ok"

    guard.call("echo", "call", {"data": {GH: 1}})
    for event in audit.events:
        assert GH not in json.dumps(event.args), event.kind
        assert all(GH not in f.reason for f in event.findings)


def test_secret_in_argument_dict_key_is_blocked() -> None:
    # `block: {arguments: [secrets]}` stops a secret in a value, not in a key:
    # a JSON body like {"<secret>": 1} leaves unchecked.
    guard = Guard.from_text(
        POLICY.replace(
            "scan: {model: false}", "scan: {model: false, block: {arguments: [secrets]}}"
        )
    )

    @guard.tool("echo")
    def echo(data: object) -> object:
        return "sent"

    with pytest.raises(Denied):
        guard.call("echo", "call", {"data": {"x": GH}})  # control: a value is blocked
    with pytest.raises(Denied):
        guard.call("echo", "call", {"data": {GH: "x"}})


def test_card_number_returned_as_integer_is_masked() -> None:
    # A payment card stored in an INTEGER/BIGINT column (or any JSON number)
    # is never looked at: only strings are scanned.
    guard = _plain_guard()

    @guard.tool("rows")
    def rows() -> object:
        return [{"card": 4111111111111111, "card_text": "4111111111111111"}]

    value = guard.call("rows", "call", {}).value
    assert value[0]["card_text"] != "4111111111111111"  # control: the string is masked
    assert value[0]["card"] != 4111111111111111
