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
  (``pаypal`` with a Cyrillic ``а``) looks like one thing and matches another.

>>> [h.kind for h in scan_hygiene("pay\\u200bpal")]
['zero-width']
>>> strip_invisible("ig\\u200bnore")
'ignore'

:func:`normalize` gives the text the other scanners should look at (invisible
characters removed, confusables folded) with a map back to the original offsets.
"""

from __future__ import annotations

from dataclasses import dataclass

from stockade.scan._base import Hit, compile_re2

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

_ANY_SUSPECT = compile_re2(
    f"[{_TAGS}{_ZERO_WIDTH}{_BIDI_OVERRIDE}{_BIDI_MARK}{_VARIATION}{_FULLWIDTH}]"
    r"|\p{Latin}[\p{Latin}\p{Cyrillic}\p{Greek}]*[\p{Cyrillic}\p{Greek}]"
    r"|[\p{Cyrillic}\p{Greek}][\p{Latin}\p{Cyrillic}\p{Greek}]*\p{Latin}"
)
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
_INVISIBLE_CHARS = compile_re2(f"[{_TAGS}{_ZERO_WIDTH}{_BIDI_OVERRIDE}{_BIDI_MARK}{_VARIATION}]")
_FULLWIDTH_RUN = compile_re2(f"[{_FULLWIDTH}]+")
_INVISIBLE_SET = frozenset(
    chr(cp)
    for lo, hi in (
        (0xE0000, 0xE007F),
        (0x200B, 0x200F),
        (0x2060, 0x2064),
        (0xFEFF, 0xFEFF),
        (0x180E, 0x180E),
        (0x034F, 0x034F),
        (0x115F, 0x1160),
        (0x3164, 0x3164),
        (0xFFA0, 0xFFA0),
        (0x202A, 0x202E),
        (0x2066, 0x2069),
        (0x061C, 0x061C),
        (0xE0100, 0xE01EF),
        (0xFE00, 0xFE0D),
    )
    for cp in range(lo, hi + 1)
)

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


def decode_hidden(text: str) -> list[tuple[int, int, str]]:
    """Payloads hidden in invisible characters: ``(start, end, decoded text)``.

    Tag characters decode to ASCII, variation selectors to bytes, runs of
    zero-width characters to bits.
    """
    if text.isascii() or _INVISIBLE_CHARS.search(text) is None:
        return []
    out: list[tuple[int, int, str]] = []
    for kind, (rx, _) in _RUNS.items():
        for m in rx.finditer(text):
            run = m.group(0)
            if kind == "tag-characters":
                decoded = _decode_tags(run)
            elif kind == "variation-selectors":
                decoded = _decode_variation(run)
            elif kind == "zero-width":
                decoded = _decode_bits(run)
            else:
                decoded = ""
            if decoded.strip():
                out.append((m.start(), m.end(), decoded))
    return out


def scan_hygiene(text: str) -> list[Hit]:
    """Report invisible characters, bidi overrides and mixed-script words."""
    if text.isascii() or _ANY_SUSPECT.search(text) is None:
        return []
    hits: list[Hit] = []
    for kind, (rx, score) in _RUNS.items():
        for m in rx.finditer(text):
            n = m.end() - m.start()
            hits.append(Hit("hygiene", kind, m.start(), m.end(), score, f"{n} {kind} char(s)"))
    hidden = {(s, e) for s, e, _ in decode_hidden(text)}
    if hidden:
        hits = [
            Hit("hygiene", h.kind, h.start, h.end, 1.0, h.reason + " encoding hidden text")
            if (h.start, h.end) in hidden
            else h
            for h in hits
        ]
    for m in _MIXED.finditer(text):
        hits.append(
            Hit(
                "hygiene", "homoglyph", m.start(), m.end(), 0.6, "word mixes Latin with look-alikes"
            )
        )
    for m in _FULLWIDTH_RUN.finditer(text):
        if m.end() - m.start() >= 3:
            hits.append(Hit("hygiene", "fullwidth", m.start(), m.end(), 0.4, "fullwidth letters"))
    hits.sort(key=lambda h: (h.start, h.end))
    return hits


def strip_invisible(text: str) -> str:
    """``text`` without invisible characters and bidi controls (nothing else changes)."""
    if text.isascii() or _INVISIBLE_CHARS.search(text) is None:
        return text
    return _INVISIBLE_CHARS.sub("", text)  # type: ignore[no-any-return]


@dataclass(frozen=True)
class Normalized:
    """A scanner's view of a text and the way back to the original offsets.

    ``origin[i]`` is the offset in the original of ``text[i]``; it is ``None``
    when nothing changed (then offsets are the same).
    """

    text: str
    origin: list[int] | None = None

    def span(self, start: int, end: int) -> tuple[int, int]:
        """The original span of ``text[start:end]``."""
        if self.origin is None:
            return start, end
        if not self.origin:
            return 0, 0
        s = self.origin[min(start, len(self.origin) - 1)]
        e = self.origin[min(max(end - 1, start), len(self.origin) - 1)] + 1
        return s, e


def normalize(text: str) -> Normalized:
    """Remove invisible characters, fold fullwidth forms and homoglyphs in mixed words."""
    if text.isascii() or _ANY_SUSPECT.search(text) is None:
        return Normalized(text)
    chars: list[str] = []
    origin: list[int] = []
    mixed = [(m.start(), m.end()) for m in _MIXED.finditer(text)]
    mi = 0
    for i, c in enumerate(text):
        if c in _INVISIBLE_SET:
            continue
        cp = ord(c)
        if 0xFF01 <= cp <= 0xFF5E:
            c = chr(cp - 0xFEE0)
        else:
            while mi < len(mixed) and mixed[mi][1] <= i:
                mi += 1
            if mi < len(mixed) and mixed[mi][0] <= i:
                c = c.translate(_CONFUSABLES)
        chars.append(c)
        origin.append(i)
    return Normalized("".join(chars), origin)
