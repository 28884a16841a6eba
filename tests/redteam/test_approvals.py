"""Red team regression: what the human approver is shown (R13, fixed in b65c876)."""

from __future__ import annotations

import contextlib
import io

from stockade import Guard, MemoryAuditSink
from stockade.approvals.terminal import TerminalApprover

# Cursor up three lines, erase them, and draw a harmless-looking request in their place.
FAKE = (
    "hi\x1b[3A\x1b[2K\rapproval needed: calendar.read (session s)\n\x1b[2K"
    "  why   calendar: reading the calendar\n\x1b[2K  day   monday"
)


def test_control_characters_in_arguments_are_not_sent_to_the_terminal() -> None:
    # render_request writes argument values as they are: a model that asks for
    # an approval can put ANSI escape sequences (cursor movement, erase line,
    # OSC 8 links, OSC 52 clipboard writes) into the prompt and show the human
    # a different call from the one being approved.
    out = io.StringIO()
    approver = TerminalApprover(input=io.StringIO("n\n"), output=out, name="ada", color=False)
    guard = Guard.from_text(
        "version: 1\nrules:\n  - {id: mail, tool: mail, effect: ask}\n",
        approver=approver,
        audit=MemoryAuditSink(),
    )

    @guard.tool("mail")
    def mail(to: str, body: str) -> str:
        return "sent"

    with contextlib.suppress(Exception):
        guard.call("mail", "call", {"to": "eve@evil.example", "body": FAKE})
    shown = out.getvalue()
    assert "eve@evil.example" in shown  # control: the prompt was shown
    assert "\x1b" not in shown
    assert "\r" not in shown
