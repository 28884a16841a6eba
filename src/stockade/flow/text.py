"""Text as the flow stage compares it: canonical form, words, tokens that matter.

An LLM copies values loosely: it changes case, spacing and Unicode forms,
percent- or HTML-encodes them, regroups the digits of an account number,
splits an address over two arguments or wraps it in a sentence. So both the
content a session reads and the argument values it later sends are brought to
one canonical form first, then cut into pieces that survive such copying:

- **words**: maximal runs of letters and digits of the canonical text;
  consecutive words form *shingles* of :data:`SHINGLE` words;
- **tokens that matter**: e-mail addresses, URLs and hosts, account numbers
  and IBANs, long numbers, file paths. Each is reduced to its *skeleton*
  (letters and digits only), and the skeleton is cut into overlapping grams
  of :data:`GRAM` characters, so a re-spaced, regrouped, partial or embedded
  copy still meets them.

>>> canon("Pay%20DE89 3704&#32;0044 ＡＢＣ")
'pay de89 3704 0044 abc'
>>> skeleton("DE89 3704-0044")
'de8937040044'
"""

from __future__ import annotations

import html
import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

import re2

__all__ = [
    "GRAM",
    "SHINGLE",
    "WORD_PATTERN",
    "Token",
    "canon",
    "skeleton",
    "skeleton_map",
    "tokens",
    "value_text",
    "words",
]

#: words per shingle: three consecutive words are a meaningful copy
SHINGLE = 3
#: characters per gram of a token's skeleton (and the shortest skeleton that counts)
GRAM = 6

# Characters that render as nothing: zero-width, joiners, bidi controls, tags.
_INVISIBLE = dict.fromkeys(
    [
        0x00AD,
        0x034F,
        0x061C,
        0x115F,
        0x1160,
        0x17B4,
        0x17B5,
        0x180E,
        *range(0x200B, 0x2010),
        *range(0x202A, 0x202F),
        *range(0x2060, 0x2070),
        0x3164,
        0xFEFF,
        0xFFA0,
        *range(0xE0000, 0xE0080),
    ]
)
# stdlib `re` here runs fixed, non-nested patterns of our own (linear time);
# the token patterns below, with alternations and repeats, run on RE2.
_PCT = re.compile(r"%[0-9A-Fa-f]{2}")
WORD_PATTERN = re.compile(r"[^\W_]+")
_WORD = WORD_PATTERN
_DECODE_ROUNDS = 3

_RE2 = re2.Options()
_RE2.log_errors = False
_TOKEN = re2.compile(
    "|".join(
        [
            r"(?P<url>(?:https?|ftp|file|wss?)://[^\s<>\"'`\\{}|^]+)",
            r"(?P<email>[\pL\pN._%+\-]+@[\pL\pN\-]+(?:\.[\pL\pN\-]+)+)",
            r"(?P<iban>\b[a-z]{2}[0-9]{2}(?:[ \-]?[a-z0-9]{4}){2,7}(?:[ \-]?[a-z0-9]{1,4})?\b)",
            r"(?P<number>\b[0-9](?:[ \-./]?[0-9]){5,40}\b)",
            r"(?P<path>(?:~|\.{1,2})?/[\pL\pN._\-/~]+|\b[a-z]:\\[\pL\pN._\-\\]+)",
            r"(?P<host>\b[\pL\pN](?:[\pL\pN\-]*[\pL\pN])?(?:\.[\pL\pN](?:[\pL\pN\-]*[\pL\pN])?)+\b)",
        ]
    ),
    options=_RE2,
)
_TOKEN_KINDS = ("url", "email", "iban", "number", "path", "host")
_TOKEN_GROUPS = tuple((kind, int(_TOKEN.groupindex[kind])) for kind in _TOKEN_KINDS)
_HOST_IN_URL = re2.compile(
    r"^[a-z][a-z0-9+.\-]*://(?:[^/@?#]*@)?(\[[^\]]*\]|[^:/?#]*)", options=_RE2
)


def canon(text: str) -> str:
    """The canonical form: URL- and HTML-decoded, NFKC, invisible characters
    dropped, case-folded.

    Decoding repeats (up to three rounds) so double encoding does not hide a
    value. The result is what words, tokens and their offsets refer to.
    """
    t = text
    for _ in range(_DECODE_ROUNDS):
        before = t
        if "%" in t and _PCT.search(t):
            t = unquote(t, errors="replace")
        if "&" in t:
            t = html.unescape(t)
        if t == before:
            break
    t = unicodedata.normalize("NFKC", t)
    if not t.isascii():
        t = t.translate(_INVISIBLE)
    return t.casefold()


def words(text: str) -> Iterator[tuple[int, int, str]]:
    """``(start, end, word)`` for each run of letters and digits in canonical ``text``."""
    for m in _WORD.finditer(text):
        yield m.start(), m.end(), m.group()


def skeleton(text: str) -> str:
    """Letters and digits only, of the canonical form of ``text``."""
    return "".join(_WORD.findall(canon(text)))


def skeleton_map(text: str) -> tuple[str, list[int]]:
    """The skeleton of canonical ``text`` and, for each of its characters,
    its offset in ``text``."""
    chars: list[str] = []
    offsets: list[int] = []
    for m in _WORD.finditer(text):
        start = m.start()
        word = m.group()
        chars.append(word)
        offsets.extend(range(start, start + len(word)))
    return "".join(chars), offsets


@dataclass(frozen=True, slots=True)
class Token:
    """A token that matters, found in canonical text: its kind and span."""

    kind: str
    start: int
    end: int
    text: str


def tokens(text: str) -> Iterator[Token]:
    """Tokens that matter in canonical ``text``: URLs (and their hosts), e-mail
    addresses, IBANs, long numbers, paths, host names."""
    for m in _TOKEN.finditer(text):
        for kind, group in _TOKEN_GROUPS:
            start = m.start(group)
            if start >= 0:
                end = m.end(group)
                tok = Token(kind, start, end, text[start:end])
                yield tok
                if kind == "url":
                    host = _HOST_IN_URL.search(tok.text)
                    if host is not None and host.group(1):
                        hs = start + host.start(1)
                        yield Token("host", hs, hs + len(host.group(1)), host.group(1))
                elif kind == "email":
                    at = tok.text.rfind("@")
                    yield Token("host", start + at + 1, end, tok.text[at + 1 :])
                break


def host_of(text: str) -> str | None:
    """The host part of a URL or an e-mail address in canonical ``text``, if any."""
    m = _HOST_IN_URL.search(text)
    if m is not None and m.group(1):
        return str(m.group(1))
    at = text.rfind("@")
    if at >= 0 and "." in text[at + 1 :]:
        return text[at + 1 :].strip().rstrip(">").strip()
    if "." in text and not any(c.isspace() for c in text.strip()):
        return text.strip().split("/", 1)[0]
    return None


def value_text(value: Any) -> str:
    """Content as text, whatever the tool returned."""
    if isinstance(value, str):
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode("utf-8", "replace")
    import json

    try:
        return json.dumps(value, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        return str(value)
