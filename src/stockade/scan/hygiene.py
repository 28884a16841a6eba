"""Invisible and confusable text: find it, decode what it hides, strip it.

Text an agent reads can carry instructions a human reviewer never sees:

- Unicode **tag characters** (U+E0000–U+E007F) mirror ASCII and render as
  nothing ("ASCII smuggling");
- **zero-width** characters (U+200B–U+200D, U+2060, U+FEFF...) split trigger
  words so keyword filters miss them, or encode bits;
- **variation selectors** U+E0100–U+E01EF (and U+FE00–U+FE0D) can carry one
  byte each behind a visible character;
- **bidi controls** (U+202A–U+202E, U+2066–U+2069) reorder what is shown
  ("trojan source");
- **homoglyphs**: a word mixing Latin with Cyrillic or Greek letters
  (``pаypal`` with a Cyrillic ``а``) looks like one thing and matches another;
- **invisible HTML**: elements styled ``display:none``, ``font-size:0``, white
  or off-screen carry text a person never sees on the rendered page.

>>> [h.kind for h in scan_hygiene("pay\\u200bpal")]
['zero-width']
>>> strip_invisible("ig\\u200bnore")
'ignore'

:func:`normalize` gives the text the other scanners should look at (invisible
characters removed, confusables folded) with a map back to the original offsets.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Any

from stockade.scan._base import Encoded, Hit, compile_re2, compile_set

__all__ = [
    "Normalized",
    "decode_hidden",
    "normalize",
    "scan_hygiene",
    "strip_invisible",
]

_TAGS = r"\x{E0000}-\x{E007F}"
_ZERO_WIDTH = (
    r"\x{200B}-\x{200D}\x{2060}-\x{2064}\x{FEFF}\x{180E}\x{034F}\x{115F}\x{1160}\x{3164}\x{FFA0}"
)
_BIDI_OVERRIDE = r"\x{202A}-\x{202E}\x{2066}-\x{2069}"
_BIDI_MARK = r"\x{200E}\x{200F}\x{061C}"
_VARIATION = r"\x{E0100}-\x{E01EF}\x{FE00}-\x{FE0D}"
_FULLWIDTH = r"\x{FF01}-\x{FF5E}"

_HIDDEN_HTML = compile_re2(
    r"(?i)<[a-z][a-z0-9]*\b[^>]*?(?:\bhidden\b(?:\s*=\s*[\"']?(?:hidden|true)?[\"']?)?[\s/>]|"
    r"\bstyle\s*=\s*[\"'][^\"'>]*(?:display\s*:\s*none|visibility\s*:\s*hidden|"
    r"font-size\s*:\s*0(?:px|pt|em|rem)?\s*[;\"']|opacity\s*:\s*0(?:\.0+)?\s*[;\"']|"
    r"(?:left|top|text-indent)\s*:\s*-\d{3,}|color\s*:\s*(?:#fff(?:fff)?|white|transparent)\b))"
)

#: one RE2 pass says which kinds of odd characters a text has at all; indexes below
_PRESENT = compile_set(
    [
        f"[{_TAGS}]",
        f"[{_ZERO_WIDTH}]",
        f"[{_BIDI_OVERRIDE}]",
        f"[{_VARIATION}]",
        f"[{_BIDI_MARK}]",
        f"[{_FULLWIDTH}]",
        r"[\p{Cyrillic}\p{Greek}]",
    ]
)
_P_RUN = {"tag-characters": 0, "zero-width": 1, "bidi-override": 2, "variation-selectors": 3}
_P_INVISIBLE = {0, 1, 2, 3, 4}
_P_FULLWIDTH = 5
_P_SCRIPTS = 6


def _present(enc: Encoded) -> set[int]:
    return set(_PRESENT.Match(enc.data) or ())


_RUNS = {
    "tag-characters": (compile_re2(f"[{_TAGS}]+"), 0.9),
    "zero-width": (compile_re2(f"[{_ZERO_WIDTH}]+"), 0.6),
    "bidi-override": (compile_re2(f"[{_BIDI_OVERRIDE}]+"), 0.8),
    "variation-selectors": (compile_re2(f"[{_VARIATION}]{{2,}}"), 0.7),
}
_MIXED = compile_re2(
    r"[\p{Latin}\p{Cyrillic}\p{Greek}]*(?:\p{Latin}[\p{Latin}\p{Cyrillic}\p{Greek}]*"
    r"[\p{Cyrillic}\p{Greek}]|[\p{Cyrillic}\p{Greek}][\p{Latin}\p{Cyrillic}\p{Greek}]*\p{Latin})"
    r"[\p{Latin}\p{Cyrillic}\p{Greek}]*"
)
_FOLDS = compile_re2(f"({_MIXED.pattern})|([{_FULLWIDTH}]+)")  # one pass for both kinds
_INVISIBLE_CHARS = compile_re2(f"[{_TAGS}{_ZERO_WIDTH}{_BIDI_OVERRIDE}{_BIDI_MARK}{_VARIATION}]")
_FULLWIDTH_RUN = compile_re2(f"[{_FULLWIDTH}]+")
_INVISIBLE_RUN = compile_re2(f"[{_TAGS}{_ZERO_WIDTH}{_BIDI_OVERRIDE}{_BIDI_MARK}{_VARIATION}]+")

#: Cyrillic and Greek letters that look like Latin ones (folded only inside
#: words that mix scripts, so Russian or Greek prose stays as it is).
_CONFUSABLES = str.maketrans(
    "аеорсухіјѕԁԛԝһӏАВЕКМНОРСТХІЈЅԜУοαειкνρτυχΑΒΕΖΗΙΚΜΝΟΡΤΥΧ",
    "aeopcyxijsdqwhlABEKMHOPCTXIJSWYoaeiknptuxABEZHIKMNOPTYX",
)


def _decode_tags(run: str) -> str:
    return "".join(chr(ord(c) - 0xE0000) for c in run if 0xE0020 <= ord(c) <= 0xE007E)


def _decode_variation(run: str) -> str:
    data = bytearray()
    for c in run:
        cp = ord(c)
        if 0xE0100 <= cp <= 0xE01EF:
            data.append(cp - 0xE0100 + 16)
        elif 0xFE00 <= cp <= 0xFE0F:
            data.append(cp - 0xFE00)
    return data.decode("utf-8", "replace")


def _decode_bits(run: str) -> str:
    """Zero-width characters used as bits (two common encodings); '' when not text."""
    best = ""
    for zero, one in (("\u200b", "\u200c"), ("\u200c", "\u200d"), ("\u200b", "\u200d")):
        bits = [("0" if c == zero else "1") for c in run if c in (zero, one)]
        if len(bits) < 16 or len(bits) % 8:
            continue
        data = bytes(int("".join(bits[i : i + 8]), 2) for i in range(0, len(bits), 8))
        text = data.decode("utf-8", "replace")
        printable = sum(ch.isprintable() or ch in "\n\t" for ch in text)
        if printable >= 0.9 * len(text) and len(text) > len(best):
            best = text
    return best


def _runs(rx: Any, enc: Encoded) -> list[tuple[int, int, str]]:
    """Matches on the encoded text as (character start, character end, text)."""
    out = []
    for m in rx.finditer(enc.data):
        s, e = enc.span(m)
        out.append((s, e, enc.group(m)))
    return out


def decode_hidden(text: str, enc: Encoded | None = None) -> list[tuple[int, int, str]]:
    """Payloads hidden in invisible characters: ``(start, end, decoded text)``.

    Tag characters decode to ASCII, variation selectors to bytes, runs of
    zero-width characters to bits.
    """
    if text.isascii():
        return []
    enc = enc or Encoded(text)
    present = _present(enc)
    if not present & _P_INVISIBLE:
        return []
    out: list[tuple[int, int, str]] = []
    for kind, (rx, _) in _RUNS.items():
        if _P_RUN[kind] not in present:
            continue
        for s, e, run in _runs(rx, enc):
            if kind == "tag-characters":
                decoded = _decode_tags(run)
            elif kind == "variation-selectors":
                decoded = _decode_variation(run)
            elif kind == "zero-width":
                decoded = _decode_bits(run)
            else:
                decoded = ""
            if decoded.strip():
                out.append((s, e, decoded))
    return out


def _hidden_html(text: str) -> list[Hit]:
    """HTML elements styled to be invisible: text a reader does not see but a model does."""
    if "<" not in text or ("style" not in text and "hidden" not in text):
        return []
    enc = Encoded(text)
    return [
        Hit("hygiene", "hidden-html", s, e, 0.5, "element styled invisible")
        for s, e, _ in _runs(_HIDDEN_HTML, enc)
    ]


def scan_hygiene(text: str) -> list[Hit]:
    """Report invisible characters, bidi overrides, mixed-script words, invisible HTML."""
    if text.isascii():
        return _hidden_html(text)
    enc = Encoded(text)
    present = _present(enc)
    if not present:
        return _hidden_html(text)
    hits: list[Hit] = []
    for kind, (rx, score) in _RUNS.items():
        if _P_RUN[kind] not in present:
            continue
        for s, e, _ in _runs(rx, enc):
            hits.append(Hit("hygiene", kind, s, e, score, f"{e - s} {kind} char(s)"))
    hidden = {(s, e) for s, e, _ in decode_hidden(text, enc)} if present & _P_INVISIBLE else set()
    if hidden:
        hits = [
            Hit("hygiene", h.kind, h.start, h.end, 1.0, h.reason + " encoding hidden text")
            if (h.start, h.end) in hidden
            else h
            for h in hits
        ]
    for s, e, mixed in _fold_spans(enc, present):
        if mixed:
            hits.append(Hit("hygiene", "homoglyph", s, e, 0.6, "word mixes Latin with look-alikes"))
        elif e - s >= 3:
            hits.append(Hit("hygiene", "fullwidth", s, e, 0.4, "fullwidth letters"))
    hits.extend(_hidden_html(text))
    hits.sort(key=lambda h: (h.start, h.end))
    return hits


def strip_invisible(text: str) -> str:
    """``text`` without invisible characters and bidi controls (nothing else changes)."""
    if text.isascii():
        return text
    data = text.encode("utf-8", "surrogatepass")
    if _INVISIBLE_CHARS.search(data) is None:
        return text
    out: bytes = _INVISIBLE_CHARS.sub(b"", data)
    return out.decode("utf-8", "surrogatepass")


@dataclass(frozen=True)
class Normalized:
    """A scanner's view of a text and the way back to the original offsets.

    ``origin`` lists breakpoints ``(offset in text, offset in the original)``:
    between two breakpoints characters correspond one to one. It is ``None``
    when nothing changed (then offsets are the same).
    """

    text: str
    origin: list[tuple[int, int]] | None = None
    invisible: bool = False  # whether invisible characters were removed

    def _map(self, i: int) -> int:
        assert self.origin is not None
        k = bisect.bisect_right(self.origin, (i, 1 << 62)) - 1
        norm, orig = self.origin[max(k, 0)]
        return orig + (i - norm)

    def span(self, start: int, end: int) -> tuple[int, int]:
        """The original span of ``text[start:end]``."""
        if self.origin is None:
            return start, end
        if not self.text:
            return 0, 0
        last = len(self.text) - 1
        s = self._map(min(start, last))
        e = self._map(min(max(end - 1, start), last)) + 1
        return s, e


def _fold_spans(enc: Encoded, present: set[int]) -> list[tuple[int, int, bool]]:
    """Words mixing scripts (``True``) and fullwidth runs (``False``), in order."""
    if _P_SCRIPTS in present and _P_FULLWIDTH in present:
        out = []
        for m in _FOLDS.finditer(enc.data):
            s, e = enc.span(m)
            out.append((s, e, m.group(1) is not None))
        return out
    if _P_SCRIPTS in present:
        return [(s, e, True) for s, e, _ in _runs(_MIXED, enc)]
    if _P_FULLWIDTH in present:
        return [(s, e, False) for s, e, _ in _runs(_FULLWIDTH_RUN, enc)]
    return []


def _fold_needed(enc: Encoded, present: set[int]) -> bool:
    """Whether fullwidth letters or a word mixing scripts are there to fold."""
    if _P_FULLWIDTH in present:
        return True
    return _P_SCRIPTS in present and _MIXED.search(enc.data) is not None


_FULLWIDTH_TABLE = {cp: cp - 0xFEE0 for cp in range(0xFF01, 0xFF5F)}


def normalize(text: str) -> Normalized:
    """Remove invisible characters, fold fullwidth forms and homoglyphs in mixed words.

    Works run by run (RE2 finds the runs), so a large text with one odd
    character costs about as much as one without.
    """
    if text.isascii():
        return Normalized(text)
    enc = Encoded(text)
    present = _present(enc)
    if not present - {_P_FULLWIDTH, _P_SCRIPTS} and not _fold_needed(enc, present):
        return Normalized(text)
    # 1. removals: each removed run starts a new breakpoint
    origin = [(0, 0)]
    stripped = text
    if present & _P_INVISIBLE:
        parts, pos, kept = [], 0, 0
        for s, e, _ in _runs(_INVISIBLE_RUN, enc):
            parts.append(text[pos:s])
            kept += s - pos
            pos = e
            origin.append((kept, pos))
        parts.append(text[pos:])
        stripped = "".join(parts)
    # 2. length-preserving folds on what is left (so "p<ZWSP>аypal" is one word):
    # fullwidth letters anywhere, look-alikes only inside words that mix scripts
    senc = enc if stripped is text else Encoded(stripped)
    spans = _fold_spans(senc, present)
    merged: list[list[int]] = []  # [start, end, mixed]
    for s, e, mixed in spans:
        if merged and s < merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], e)
            merged[-1][2] |= mixed
        else:
            merged.append([s, e, int(mixed)])
    parts, pos = [], 0
    for s, e, is_mixed in merged:
        seg = stripped[s:e].translate(_FULLWIDTH_TABLE)
        parts += [stripped[pos:s], seg.translate(_CONFUSABLES) if is_mixed else seg]
        pos = e
    folded = "".join([*parts, stripped[pos:]]) if merged else stripped
    return Normalized(folded, origin, invisible=bool(present & _P_INVISIBLE))
