"""How an approval request reads to a human: the call, why, and each
argument with where its value came from, the untrusted parts marked.

Used by the terminal approver and by ``stockade approvals list``.
"""

from __future__ import annotations

import hashlib
import json
import unicodedata
from collections.abc import Mapping
from typing import Any

from stockade.flow.text import canon
from stockade.model import ToolCall

__all__ = ["describe_origin", "render_request", "safe", "scope_key"]

_RED = "\033[1;31m"
_YELLOW = "\033[33m"
_DIM = "\033[2m"
_BOLD = "\033[1m"
_RESET = "\033[0m"
_MAX_VALUE = 400


def scope_key(call: ToolCall) -> str:
    """What a session-scoped approval covers: this session, this tool and
    action, exactly these arguments (a SHA-256 digest, never the values)."""
    data = json.dumps(
        {"session": call.session, "tool": call.tool, "action": call.action, "args": call.args},
        sort_keys=True,
        default=str,
        ensure_ascii=False,
    )
    return hashlib.sha256(data.encode("utf-8", "surrogatepass")).hexdigest()


def describe_origin(span: Mapping[str, Any]) -> str:
    """One line saying where a stretch of a value came from."""
    labels = span.get("labels") or []
    if span.get("user"):
        return "the user's own words"
    sources = ", ".join(str(x.get("source", "?")) for x in labels) or "?"
    integrity = "untrusted" if any(x.get("integrity") == "untrusted" for x in labels) else "trusted"
    levels = sorted({str(x.get("confidentiality")) for x in labels})
    what = f"{integrity}, {'/'.join(levels)}" if levels else integrity
    return safe(
        f"{what}: result #{span.get('piece')} of {span.get('tool')}.{span.get('action')} "
        f"({sources})"
    )


def _show(ch: str) -> str:
    """One character as it may reach a human's terminal.

    Control and format characters (ESC, CR, newline, bidi overrides, zero-width)
    are shown escaped, so an argument cannot move the cursor, rewrite earlier
    lines, start a line that looks like a header, or reorder what is shown.
    """
    if ch in " \u00a0" or unicodedata.category(ch) not in ("Cc", "Cf", "Zl", "Zp", "Co", "Cs"):
        return ch
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def safe(text: str) -> str:
    """``text`` with every control and format character escaped (see :func:`_show`)."""
    return "".join(_show(ch) for ch in text)


def _plain(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, default=str)


def _marks(text: str, spans: list[Mapping[str, Any]], color: bool) -> tuple[str, str | None]:
    """The text with counting spans highlighted (colour), or a caret line under it."""
    bad = [
        (int(s["start"]), int(s["end"]))
        for s in spans
        if s.get("counts") and 0 <= int(s["start"]) < int(s["end"]) <= len(text)
    ]
    shown = [_show(ch) for ch in text]
    if not bad:
        return "".join(shown), None
    flags = [False] * len(text)
    for start, end in bad:
        for i in range(start, end):
            flags[i] = True
    if color:
        out = []
        for i, ch in enumerate(shown):
            if flags[i] and (i == 0 or not flags[i - 1]):
                out.append(_RED)
            out.append(ch)
            if flags[i] and (i == len(text) - 1 or not flags[i + 1]):
                out.append(_RESET)
        return "".join(out), None
    caret = "".join(("^" if f else " ") * len(ch) for f, ch in zip(flags, shown, strict=True))
    return "".join(shown), caret.rstrip()


def render_request(
    call: ToolCall,
    rule: str,
    reason: str,
    args: Mapping[str, Any],
    provenance: Mapping[str, Any],
    *,
    color: bool = False,
) -> str:
    """The request as text for a human to decide on.

    ``args`` are the (masked) arguments shown; where the flow stage reported
    spans, they refer to the canonical form of the raw value, so they are
    drawn on it only when masking left the value alone.
    """
    b, r = (_BOLD, _RESET) if color else ("", "")
    lines = [
        f"{b}approval needed{r}: {safe(call.tool)}.{safe(call.action)}"
        f" (session {safe(call.session)}"
        + (f", principal {safe(call.principal)}" if call.principal else "")
        + ")",
        f"  why   {safe(rule)}: {safe(reason)}",
    ]
    width = max([len(safe(k)) for k in args] + [4])
    for name, shown in args.items():
        text = _plain(shown)
        raw = call.args.get(name, shown)
        prov = provenance.get(name) or {}
        spans = list(prov.get("spans") or [])
        unmasked = _plain(raw) == text and not prov.get("masked")
        caret: str | None = None
        if spans and unmasked and isinstance(raw, str):
            text, caret = _marks(canon(raw), spans, color)
        else:
            text = safe(text)
        if len(text) > _MAX_VALUE:
            text, caret = text[:_MAX_VALUE] + "…", caret[:_MAX_VALUE] if caret else caret
        lines.append(f"  {safe(name):<{width}}  {text}")
        if caret:
            lines.append(f"  {'':<{width}}  {caret}")
        lines.extend(_origin_lines(prov, width, color))
    for key, prov in provenance.items():
        if key not in args and isinstance(prov, Mapping):
            lines.append(f"  {safe(key):<{width}}  (value of several arguments or a part)")
            lines.extend(_origin_lines(prov, width, color))
    return "\n".join(lines)


def _origin_lines(prov: Mapping[str, Any], width: int, color: bool) -> list[str]:
    out = []
    seen: set[tuple[Any, ...]] = set()
    y, d, r = (_YELLOW, _DIM, _RESET) if color else ("", "", "")
    for span in prov.get("spans") or []:
        key = (span.get("piece"), span.get("start"), span.get("end"))
        if key in seen:
            continue
        seen.add(key)
        mark = f"{y}!{r}" if span.get("counts") else f"{d}-{r}"
        out.append(
            f"  {'':<{width}}  {mark} chars {span.get('start')}-{span.get('end')} from "
            f"{describe_origin(span)}"
        )
    for label in prov.get("unindexed") or []:
        out.append(
            f"  {'':<{width}}  {y}!{r} may come from content past the index bound "
            f"({label.get('source')}, {label.get('integrity')})"
        )
    return out
