"""Red team R18 (fixed): bytes nested in a result are scanned as text."""

from __future__ import annotations

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


def test_nested_bytes_are_scanned_before_they_reach_the_model() -> None:
    # scan_result decodes a top-level bytes value, but map_strings leaves bytes
    # nested in a dict or list alone; handle_tool_calls then json.dumps the
    # value with default=str, so the model reads "b'ghp_...'" in clear.
    guard = Guard.from_text(
        "version: 1\nrules:\n  - {id: blob, tool: blob, effect: allow}\nscan: {model: false}\n"
    )

    @guard.tool("blob")
    def blob() -> object:
        return {"blob": GH.encode(), "parts": [bytearray(GH.encode())]}

    message = {
        "role": "assistant",
        "tool_calls": [
            {"id": "1", "type": "function", "function": {"name": "blob", "arguments": "{}"}}
        ],
    }
    answer = guard.handle_tool_calls(message)[0]["content"]
    assert GH not in answer, answer
