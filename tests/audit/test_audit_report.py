"""The HTML report on its own: empty logs, large logs, hostile strings."""

from __future__ import annotations

import json

from stockade.audit.export import otel_request
from stockade.audit.record import StoredRecord
from stockade.audit.report import render_report, summarise


def _rec(seq: int, **fields: object) -> StoredRecord:
    base = {
        "v": 1,
        "origin": "o",
        "kind": "decision",
        "time": 1700000000.0 + seq,
        "session": "s",
        "call_id": f"c{seq}",
        "tool": "fs",
        "action": "read",
        "decision": "allow",
        "rule": "r",
        "reason": "",
        "duration_ms": float(seq % 50),
        "error_type": "",
    }
    base.update(fields)
    return StoredRecord("o", seq, json.dumps(base).encode())


def test_empty_log() -> None:
    page = render_report([], origin="o", location="x.db", verified="verified: 0", verified_ok=True)
    assert "no calls recorded" in page and "no call was denied" in page


def test_large_log_is_sampled_and_summarised() -> None:
    records = [
        _rec(i, decision="deny" if i % 3 == 0 else "allow", tool=f"t{i % 20}") for i in range(12000)
    ]
    page = render_report(records, origin="o", location="x.db", verified="v", verified_ok=True)
    assert page.count("<circle") <= 4000  # the timeline is sampled
    assert "12000 calls" in page
    assert page.count("<tr>") <= 2 + 15 + 25  # header rows + slowest + latest denials


def test_hostile_strings_are_escaped() -> None:
    evil = "<script>alert(1)</script>\"'><img src=x onerror=alert(2)>"
    records = [_rec(0, session=evil, tool=evil, rule=evil, reason=evil, decision="deny")]
    page = render_report(records, origin=evil, location=evil, verified=evil, verified_ok=False)
    assert "<script" not in page and "<img" not in page and "onerror=alert(2)>" not in page
    assert "&lt;script&gt;" in page
    assert "verify bad" in page


def test_calls_fold_decision_and_outcome() -> None:
    calls = summarise(
        [
            _rec(0, call_id="a"),
            _rec(1, call_id="a", kind="outcome", error_type="FSError"),
            _rec(2, call_id="b", decision="ask"),
        ]
    )
    assert [(c.call_id, c.outcome, c.time) for c in calls] == [
        ("a", "error", 1700000000.0),
        ("b", "ask", 1700000002.0),
    ]
    spans = otel_request(
        [_rec(0, call_id="a"), _rec(1, call_id="a", kind="outcome", error_type="FSError")]
    )["resourceSpans"][0]["scopeSpans"][0]["spans"]
    attrs = {a["key"]: a["value"] for a in spans[0]["attributes"]}
    assert attrs["error.type"] == {"stringValue": "FSError"}
    assert spans[0]["status"] == {"code": 2, "message": "FSError"}
