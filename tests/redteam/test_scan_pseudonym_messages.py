"""Red team R1b (fixed): after pseudonyms were restored, refusal and error texts
carry no free text, so a cut restored value cannot leak through them."""

from __future__ import annotations

from pathlib import Path

from stockade import Guard
from stockade.stages import MemoryAuditSink

GH = "ghp_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8"  # GitHub token shape (fake)
EMAIL = "ada.lovelace@example.com"

POLICY = """
version: 1
rules:
  - {id: any, tool: [lookup, echo, rows], effect: allow}
scan: {model: false}
"""


def _guard(extra: str = "", audit: MemoryAuditSink | None = None) -> Guard:
    return Guard.from_text(POLICY + extra, audit=audit or MemoryAuditSink())


def test_truncated_echo_does_not_reveal_most_of_a_pseudonymised_value(tmp_path: Path) -> None:
    # R1 was fixed by masking refusal/error texts with the result scanner
    # (guard._model_text). Messages that cut a long argument at 117 characters
    # (`fs._shown`) can be made to cut a restored value: a fragment is no longer
    # a valid card (Luhn), e-mail (no TLD) or phone number, so the detectors
    # pass it. 15 of 16 card digits come back; the 16th is the Luhn digit.
    import json as _json

    card = "4111 1111 1111 1111"
    (tmp_path / "notes").mkdir()
    guard = Guard.from_text(POLICY + f"fs:\n  root: {tmp_path}\n  allow: {{read: ['**']}}\n")

    @guard.tool("lookup")
    def lookup() -> str:
        return f"card on file: {card}"

    session = guard.session("s1")
    token = guard.call("lookup", "call", {}, session=session).value.split(": ", 1)[1]
    assert token.startswith("<CARD_")
    calls = []
    for keep in range(10, len(card)):
        pad = "y/" * ((116 - keep) // 2) + "y" * ((116 - keep) % 2)
        args = {"path": "/" + pad + token + "/zzzzzzzz"}
        calls.append(
            {
                "id": str(keep),
                "type": "function",
                "function": {"name": "fs_read", "arguments": _json.dumps(args)},
            }
        )
    answers = guard.handle_tool_calls({"role": "assistant", "tool_calls": calls}, session=session)
    shown = " ".join(a["content"] for a in answers)
    assert "4111 1111 1111 111" not in shown, shown
    assert "4111 1111 1111" not in shown
