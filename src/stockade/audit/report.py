"""``audit report --html``: one self-contained page for a security reviewer.

The page has no scripts and loads nothing (a ``Content-Security-Policy`` of
``default-src 'none'`` says so to the browser); charts are inline SVG. Every
value from the log is HTML-escaped: records hold what an attacker typed.

Sections: the verification result, totals, a timeline of calls and
decisions per tool, denials by rule, calls per tool and per session, the
slowest calls and the latest denials.
"""

from __future__ import annotations

import datetime as _dt
import html
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from stockade.audit.record import StoredRecord

__all__ = ["CallSummary", "render_report"]

_COLORS = {"allow": "#2e7d32", "deny": "#c62828", "ask": "#ef8f00", "error": "#6a1b9a"}
_MAX_POINTS = 4000


@dataclass
class CallSummary:
    """One tool call as the report sees it: its last record decides."""

    call_id: str
    seq: int
    time: float
    session: str
    tool: str
    action: str
    decision: str
    rule: str
    reason: str
    duration_ms: float
    error_type: str

    @property
    def outcome(self) -> str:
        """``allow``, ``deny``, ``ask`` or ``error`` (an allowed call whose tool failed)."""
        if self.error_type and self.decision == "allow":
            return "error"
        return self.decision or "deny"


def summarise(records: Iterable[StoredRecord]) -> list[CallSummary]:
    """Fold decision/approval/outcome records into one summary per call."""
    calls: dict[str, CallSummary] = {}
    for r in records:
        d = r.parsed()
        cid = str(d.get("call_id") or f"seq-{r.seq}")
        s = CallSummary(
            call_id=cid,
            seq=r.seq,
            time=float(d.get("time", 0.0)),
            session=str(d.get("session", "")),
            tool=str(d.get("tool", "")),
            action=str(d.get("action", "")),
            decision=str(d.get("decision", "")),
            rule=str(d.get("rule", "")),
            reason=str(d.get("reason", "")),
            duration_ms=float(d.get("duration_ms", 0.0)),
            error_type=str(d.get("error_type", "")),
        )
        first = calls.get(cid)
        if first is not None:
            s.time = first.time
        calls[cid] = s
    return sorted(calls.values(), key=lambda c: c.seq)


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _when(t: float) -> str:
    return _dt.datetime.fromtimestamp(t, tz=_dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _bars(title: str, counts: list[tuple[str, dict[str, int]]], empty: str) -> str:
    if not counts:
        return f"<h2>{_e(title)}</h2><p class=muted>{_e(empty)}</p>"
    width, row, label_w = 720, 22, 240
    total_max = max(sum(parts.values()) for _, parts in counts) or 1
    height = row * len(counts) + 10
    out = [
        f"<h2>{_e(title)}</h2>",
        f'<svg viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
        f'aria-label="{_e(title)}">',
    ]
    for i, (label, parts) in enumerate(counts):
        y = i * row + 4
        out.append(
            f'<text x="{label_w - 6}" y="{y + 14}" text-anchor="end" class="lbl">'
            f"{_e(label[:40])}</text>"
        )
        x = float(label_w)
        for key in ("allow", "ask", "deny", "error"):
            n = parts.get(key, 0)
            if not n:
                continue
            w = (width - label_w - 60) * n / total_max
            out.append(
                f'<rect x="{x:.1f}" y="{y}" width="{max(w, 1):.1f}" height="16" '
                f'fill="{_COLORS[key]}"><title>{_e(key)}: {n}</title></rect>'
            )
            x += w
        out.append(f'<text x="{x + 4:.1f}" y="{y + 13}" class="num">{sum(parts.values())}</text>')
    out.append("</svg>")
    return "".join(out)


def _timeline(calls: list[CallSummary]) -> str:
    if not calls:
        return "<h2>Timeline</h2><p class=muted>no calls recorded</p>"
    tools = [t for t, _ in Counter(c.tool for c in calls).most_common(12)]
    lane = {t: i for i, t in enumerate(tools)}
    t0, t1 = calls[0].time, max(c.time for c in calls)
    span = (t1 - t0) or 1.0
    width, label_w, row = 900, 140, 26
    height = row * len(tools) + 40
    step = max(1, len(calls) // _MAX_POINTS)
    out = [
        "<h2>Timeline of calls and decisions</h2>",
        f'<svg viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
        'aria-label="timeline">',
    ]
    for t, i in lane.items():
        y = i * row + 18
        out.append(
            f'<line x1="{label_w}" y1="{y}" x2="{width - 10}" y2="{y}" stroke="#ddd"/>'
            f'<text x="{label_w - 8}" y="{y + 4}" text-anchor="end" class="lbl">{_e(t[:20])}</text>'
        )
    for c in calls[::step]:
        if c.tool not in lane:
            continue
        x = label_w + (width - label_w - 20) * (c.time - t0) / span
        y = lane[c.tool] * row + 18
        out.append(
            f'<circle cx="{x:.1f}" cy="{y}" r="5" fill="{_COLORS[c.outcome]}" fill-opacity="0.75">'
            f"<title>#{c.seq} {_e(c.tool)}.{_e(c.action)} {_e(c.outcome)} [{_e(c.rule)}] "
            f"{_e(_when(c.time))}</title></circle>"
        )
    for i in range(1, 4):  # intermediate ticks: time of day only
        x = label_w + (width - label_w - 20) * i / 4
        tick = _dt.datetime.fromtimestamp(t0 + span * i / 4, tz=_dt.timezone.utc)
        out.append(
            f'<line x1="{x:.1f}" y1="8" x2="{x:.1f}" y2="{height - 22}" stroke="#f0f0f0"/>'
            f'<text x="{x:.1f}" y="{height - 6}" text-anchor="middle" class="lbl">'
            f"{tick.strftime('%H:%M:%S')}</text>"
        )
    out.append(
        f'<text x="{label_w}" y="{height - 6}" class="lbl">{_e(_when(t0))}</text>'
        f'<text x="{width - 10}" y="{height - 6}" text-anchor="end" class="lbl">{_e(_when(t1))}'
        "</text></svg>"
    )
    return "".join(out)


def _table(title: str, head: list[str], rows: list[list[Any]], empty: str) -> str:
    if not rows:
        return f"<h2>{_e(title)}</h2><p class=muted>{_e(empty)}</p>"
    cells = "".join(f"<th>{_e(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{_e(v)}</td>" for v in r) + "</tr>" for r in rows)
    return f"<h2>{_e(title)}</h2><table><tr>{cells}</tr>{body}</table>"


def _grouped(
    calls: list[CallSummary], key: str, limit: int = 15
) -> list[tuple[str, dict[str, int]]]:
    groups: dict[str, Counter[str]] = {}
    for c in calls:
        groups.setdefault(str(getattr(c, key)), Counter())[c.outcome] += 1
    ranked = sorted(groups.items(), key=lambda kv: -sum(kv[1].values()))[:limit]
    return [(k, dict(v)) for k, v in ranked]


def render_report(
    records: Iterable[StoredRecord],
    *,
    origin: str,
    location: str,
    verified: str,
    verified_ok: bool,
) -> str:
    """The HTML page for the records of one log; ``verified`` is the verify outcome in words."""
    calls = summarise(records)
    outcomes = Counter(c.outcome for c in calls)
    denied = [c for c in calls if c.outcome == "deny"]
    by_rule = Counter(c.rule for c in denied).most_common(15)
    slow = sorted(calls, key=lambda c: -c.duration_ms)[:15]
    span = f"{_when(calls[0].time)} to {_when(calls[-1].time)}" if calls else "no records"
    banner = "ok" if verified_ok else "bad"
    cards = "".join(
        f'<div class=card><b style="color:{_COLORS.get(k, "#333")}">{outcomes.get(k, 0)}</b>'
        f"<span>{_e(label)}</span></div>"
        for k, label in (
            ("allow", "allowed"),
            ("deny", "denied"),
            ("ask", "waiting for approval"),
            ("error", "tool errors"),
        )
    )
    parts = [
        "<!doctype html><html lang=en><head><meta charset=utf-8>",
        "<meta http-equiv=Content-Security-Policy "
        "content=\"default-src 'none'; style-src 'unsafe-inline'\">",
        f"<title>stockade audit report: {_e(origin)}</title><style>{_CSS}</style></head><body>",
        f"<h1>Audit report <small>{_e(origin)}</small></h1>",
        f"<p class=muted>{_e(location)} &middot; {len(calls)} calls &middot; {_e(span)}</p>",
        f"<div class='verify {banner}'>{_e(verified)}</div>",
        "<div class=cards><div class=card>"
        f"<b>{len(calls)}</b><span>calls</span></div>{cards}</div>",
        _timeline(calls),
        _bars(
            "Denials by rule",
            [(rule, {"deny": n}) for rule, n in by_rule],
            "no call was denied",
        ),
        _bars("Calls per tool", _grouped(calls, "tool"), "no calls"),
        _bars("Calls per session", _grouped(calls, "session"), "no calls"),
        _table(
            "Slowest calls",
            ["seq", "time", "tool", "session", "decision", "ms"],
            [
                [
                    c.seq,
                    _when(c.time),
                    f"{c.tool}.{c.action}",
                    c.session,
                    c.outcome,
                    f"{c.duration_ms:.1f}",
                ]
                for c in slow
            ],
            "no calls",
        ),
        _table(
            "Latest denials",
            ["seq", "time", "tool", "session", "rule", "reason"],
            [
                [c.seq, _when(c.time), f"{c.tool}.{c.action}", c.session, c.rule, c.reason[:160]]
                for c in denied[-25:][::-1]
            ],
            "no call was denied",
        ),
        "<p class=muted>legend: "
        + " ".join(f'<span style="color:{v}">&#9679; {k}</span>' for k, v in _COLORS.items())
        + "</p></body></html>",
    ]
    return "\n".join(parts)


_CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:960px;color:#222}
h1 small{font-weight:normal;color:#666;font-size:60%}
h2{margin-top:1.8em;font-size:1.1em;border-bottom:1px solid #eee}
.muted{color:#777}.lbl{font-size:11px;fill:#444}.num{font-size:11px;fill:#222}
.verify{padding:.6em 1em;border-radius:6px;margin:1em 0;font-weight:600}
.verify.ok{background:#e8f5e9;color:#1b5e20}.verify.bad{background:#ffebee;color:#b71c1c}
.cards{display:flex;gap:1em;flex-wrap:wrap}
.card{border:1px solid #e5e5e5;border-radius:6px;padding:.6em 1em;min-width:8em}
.card b{display:block;font-size:1.6em}.card span{color:#666}
table{border-collapse:collapse;width:100%;font-size:13px}
td,th{border-bottom:1px solid #eee;padding:.3em .5em;text-align:left;vertical-align:top}
td{word-break:break-word}
"""
