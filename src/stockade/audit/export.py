"""Export: JSON lines, and OpenTelemetry spans following the GenAI conventions.

``jsonl``: one record per line, as stored plus ``seq``.

``otel``: an OTLP/JSON ``ExportTraceServiceRequest`` (what an OpenTelemetry
collector's ``/v1/traces`` endpoint takes), one span per tool call: the
decision and outcome records of a call become one span ``execute_tool
{tool}`` with ``gen_ai.operation.name=execute_tool``, ``gen_ai.tool.name``,
``gen_ai.tool.call.id``, ``gen_ai.conversation.id`` (the session),
``error.type`` (the error, or ``stockade.denied`` for a denied call), plus
``stockade.decision``, ``stockade.rule``, ``stockade.audit.seq`` and
``stockade.audit.origin``. The trace id is derived from the session, the span
id from the call id, so a re-export gives the same ids. No OpenTelemetry SDK
is needed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from typing import Any, TextIO

from stockade import __version__
from stockade.audit.record import StoredRecord

__all__ = ["otel_request", "otel_spans", "write_jsonl", "write_otel"]


def write_jsonl(records: Iterable[StoredRecord], out: TextIO) -> int:
    """Write records as JSON lines; return how many."""
    n = 0
    for r in records:
        out.write(json.dumps(r.as_export(), sort_keys=True, ensure_ascii=False) + "\n")
        n += 1
    return n


def _attr(key: str, value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        v: dict[str, Any] = {"boolValue": value}
    elif isinstance(value, int):
        v = {"intValue": str(value)}
    elif isinstance(value, float):
        v = {"doubleValue": value}
    else:
        v = {"stringValue": str(value)}
    return {"key": key, "value": v}


def _ns(seconds: float) -> str:
    return str(round(seconds * 1_000_000_000))


def otel_spans(records: Iterable[StoredRecord]) -> Iterator[dict[str, Any]]:
    """One OTLP span per call, from its decision and outcome records, in log order."""
    calls: dict[str, list[tuple[int, dict[str, Any]]]] = {}
    order: list[str] = []
    for r in records:
        data = r.parsed()
        call_id = str(data.get("call_id") or f"seq-{r.seq}")
        if call_id not in calls:
            calls[call_id] = []
            order.append(call_id)
        calls[call_id].append((r.seq, data))
    for call_id in order:
        yield _span(call_id, calls[call_id])


def _span(call_id: str, parts: list[tuple[int, dict[str, Any]]]) -> dict[str, Any]:
    first_seq, first = parts[0]
    last_seq, last = parts[-1]
    tool = str(first.get("tool", ""))
    start = float(first.get("time", 0.0)) - float(first.get("duration_ms", 0.0)) / 1000.0
    end = max(float(last.get("time", 0.0)), start)
    decision = str(last.get("decision", ""))
    error = str(last.get("error_type", ""))
    if not error and decision != "allow":
        error = "stockade.denied" if decision == "deny" else f"stockade.{decision or 'unknown'}"
    attributes = [
        _attr("gen_ai.operation.name", "execute_tool"),
        _attr("gen_ai.tool.name", tool),
        _attr("gen_ai.tool.call.id", call_id),
        _attr("gen_ai.conversation.id", str(first.get("session", ""))),
        _attr("stockade.decision", decision),
        _attr("stockade.rule", str(last.get("rule", ""))),
        _attr("stockade.audit.seq", last_seq),
        _attr("stockade.audit.origin", str(first.get("origin", ""))),
        _attr("stockade.tool.action", str(first.get("action", ""))),
        _attr("stockade.mode", str(last.get("mode", ""))),
    ]
    if first_seq != last_seq:
        attributes.append(_attr("stockade.audit.decision_seq", first_seq))
    if error:
        attributes.append(_attr("error.type", error))
    if last.get("result_size"):
        attributes.append(_attr("stockade.result.size", int(last["result_size"])))
    if last.get("result_digest"):
        attributes.append(_attr("stockade.result.sha256", str(last["result_digest"])))
    session = str(first.get("session", ""))
    return {
        "traceId": hashlib.sha256(b"trace:" + session.encode("utf-8")).hexdigest()[:32],
        "spanId": hashlib.sha256(b"span:" + call_id.encode("utf-8")).hexdigest()[:16],
        "name": f"execute_tool {tool}",
        "kind": 1,  # SPAN_KIND_INTERNAL: the tool runs in the agent's process
        "startTimeUnixNano": _ns(start),
        "endTimeUnixNano": _ns(end),
        "attributes": attributes,
        "status": {"code": 2, "message": error} if error else {"code": 1},
    }


def otel_request(records: Iterable[StoredRecord], *, service: str = "stockade") -> dict[str, Any]:
    """An OTLP/JSON trace export request holding one span per call."""
    return {
        "resourceSpans": [
            {
                "resource": {"attributes": [_attr("service.name", service)]},
                "scopeSpans": [
                    {
                        "scope": {"name": "stockade.audit", "version": __version__},
                        "spans": list(otel_spans(records)),
                    }
                ],
            }
        ]
    }


def write_otel(records: Iterable[StoredRecord], out: TextIO, *, service: str = "stockade") -> int:
    """Write the OTLP/JSON request; return the number of spans."""
    request = otel_request(records, service=service)
    out.write(json.dumps(request, indent=1, ensure_ascii=False) + "\n")
    return len(request["resourceSpans"][0]["scopeSpans"][0]["spans"])
