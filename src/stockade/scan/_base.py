"""Pieces every scanner shares: the hit record, RE2 helpers, walking nested values."""

from __future__ import annotations

import bisect
import json
import math
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import re2

from stockade.errors import ConfigurationError
from stockade.model import Finding

__all__ = [
    "INT_DIGITS",
    "Encoded",
    "Hit",
    "Spans",
    "compile_re2",
    "entropy",
    "key_path",
    "map_strings",
    "number_text",
    "walk_strings",
]


@dataclass(frozen=True, slots=True)
class Hit:
    """One thing a scanner found in one string: what, where, how sure, why.

    ``start``/``end`` are character offsets into the scanned string. A hit
    never holds the found text itself, so it can be logged.
    """

    scanner: str
    kind: str
    start: int
    end: int
    score: float = 1.0
    reason: str = ""

    def finding(self, where: str = "result", *, masked: bool = False, offset: int = 0) -> Finding:
        """The hit as the pipeline's :class:`~stockade.model.Finding`."""
        return Finding(
            scanner=self.scanner,
            kind=self.kind,
            start=self.start + offset,
            end=self.end + offset,
            score=self.score,
            reason=self.reason,
            masked=masked,
            where=where,
        )


class Encoded:
    """A text encoded to UTF-8 once, for running many RE2 patterns over its bytes.

    RE2 works on bytes; handing it a ``str`` re-encodes the whole text on every
    call. Scanners match on :attr:`data` and turn byte offsets back into
    character offsets with :meth:`char` (free for ASCII text).
    """

    __slots__ = ("_bytes", "_chars", "ascii", "data", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self.ascii = text.isascii()
        self.data = text.encode("utf-8", "surrogatepass")
        self._bytes: list[int] = [0]  # known byte offsets, sorted, with their characters
        self._chars: list[int] = [0]

    def char(self, offset: int) -> int:
        """The character offset of byte ``offset`` (decodes only from the nearest known one)."""
        if self.ascii:
            return offset
        i = bisect.bisect_right(self._bytes, offset) - 1
        base_b, base_c = self._bytes[i], self._chars[i]
        if base_b == offset:
            return base_c
        got = base_c + len(self.data[base_b:offset].decode("utf-8", "ignore"))
        self._bytes.insert(i + 1, offset)
        self._chars.insert(i + 1, got)
        return got

    def span(self, m: Any, group: int = 0) -> tuple[int, int]:
        """The character span of a match (or one of its groups) on :attr:`data`."""
        s, e = m.span(group)
        if s < 0:
            return s, e
        return self.char(s), self.char(e)

    def group(self, m: Any, group: int = 0) -> str:
        """A match group on :attr:`data` as text."""
        raw = m.group(group)
        return "" if raw is None else bytes(raw).decode("utf-8", "replace")


class Spans:
    """Claimed, non-overlapping character spans kept sorted: an overlap check is O(log n)."""

    def __init__(self, spans: list[tuple[int, int]] | None = None) -> None:
        merged: list[list[int]] = []
        for s, e in sorted(spans or ()):
            if merged and s < merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], e)
            else:
                merged.append([s, e])
        self._starts = [s for s, _ in merged]
        self._ends = [e for _, e in merged]

    def free(self, s: int, e: int) -> bool:
        """Whether ``[s, e)`` overlaps no claimed span."""
        i = bisect.bisect_left(self._starts, e)  # spans starting before e
        # claimed spans never overlap, so only the last one starting before e can reach s
        return i == 0 or self._ends[i - 1] <= s

    def add(self, s: int, e: int) -> None:
        """Claim ``[s, e)``; callers check :meth:`free` first."""
        i = bisect.bisect_left(self._starts, s)
        self._starts.insert(i, s)
        self._ends.insert(i, e)


def _options(case_insensitive: bool) -> Any:
    opts = re2.Options()
    opts.case_sensitive = not case_insensitive
    opts.max_mem = 64 << 20
    return opts


def compile_re2(pattern: str, *, case_insensitive: bool = False) -> Any:
    """Compile ``pattern`` with RE2 (linear time); a bad pattern is a configuration error."""
    try:
        return re2.compile(pattern, _options(case_insensitive))
    except re2.error as exc:
        raise ConfigurationError(f"bad scanner pattern `{pattern[:40]}`: {exc}") from exc


def compile_set(patterns: list[str], *, case_insensitive: bool = False) -> Any:
    """An RE2 set that says in one pass which of ``patterns`` occur in a text."""
    rset = re2.Set.SearchSet(_options(case_insensitive))
    for pattern in patterns:
        if rset.Add(pattern) < 0:
            raise ConfigurationError(f"bad scanner pattern `{pattern[:40]}`")
    try:
        rset.Compile()
    except Exception as exc:  # the binding raises its own errors
        raise ConfigurationError("the scanner pattern set does not compile") from exc
    return rset


def entropy(text: str) -> float:
    """Shannon entropy of ``text`` in bits per character."""
    if not text:
        return 0.0
    n = len(text)
    return -sum(c / n * math.log2(c / n) for c in Counter(text).values())


def walk_strings(value: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """Every string inside a nested value, with a dotted path to it.

    Mapping keys are not yielded: scanners look at values.
    """
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from walk_strings(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            yield from walk_strings(item, f"{path}[{i}]")


#: Integers with at least this many digits are scanned as their decimal text
#: (a card number or an ID stored in a ``BIGINT`` column or a JSON number).
INT_DIGITS = 9
_INT_MIN = 10 ** (INT_DIGITS - 1)
_FLOAT_MAX = 1e19  # beyond this a float's text is in exponent form: no digits to read


def key_path(path: str) -> str:
    """The path that names the keys of the mapping at ``path`` (a key is not yet a path)."""
    return f"{path}.(key)" if path else "(key)"


def number_text(value: object) -> str | None:
    """The digits a scanner reads for a number, or ``None`` when it is not scanned.

    Integers (not ``bool``) of :data:`INT_DIGITS` or more digits give their
    decimal text; so do floats holding such a whole number (``4111111111111111.0``
    reads as the card it holds). Other numbers are too short for a card and
    too common (counts, ports, dates, fractional timestamps) to scan.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        if abs(value) < _INT_MIN:
            return None
        try:
            return int.__repr__(value)  # the digits, also for int subclasses and enums
        except ValueError:  # longer than Python prints: nothing renders it as text either
            return None
    if isinstance(value, float) and _INT_MIN <= abs(value) < _FLOAT_MAX and value.is_integer():
        return int.__repr__(int(value))
    return None


def _map_number(value: Any, fn: Callable[[str, str], str], path: str) -> Any:
    text = number_text(value)
    if text is None:
        return value
    new = fn(path, text)
    return value if new == text else new


def map_strings(
    value: Any,
    fn: Callable[[str, str], str],
    path: str = "",
    *,
    numbers: bool = False,
    name: Callable[[Any], str] | None = None,
) -> Any:
    """A copy of ``value`` with every string ``s`` at ``path`` replaced by ``fn(path, s)``.

    Dicts, lists and tuples are rebuilt; other values are kept as they are.
    String keys are mapped too (``fn(key_path(path), key)``); a mapped key
    that collides with another key gets a ``#2``, ``#3``... suffix (keys left
    unchanged keep their name). The path below a key is built from the
    mapped key, or from ``name(key)`` when given (so a pass that restores
    real values can still name paths by their masked keys). With
    ``numbers``, long numbers (keys and values, see :func:`number_text`) go
    through ``fn`` as their digits and are replaced by ``fn``'s string when
    it changes them.
    """
    if isinstance(value, str):
        return fn(path, value)
    if numbers and isinstance(value, (int, float)):
        return _map_number(value, fn, path)
    if isinstance(value, dict):
        return _map_dict(value, fn, path, numbers, name)
    if isinstance(value, list):
        return [
            map_strings(item, fn, f"{path}[{i}]", numbers=numbers, name=name)
            for i, item in enumerate(value)
        ]
    if isinstance(value, tuple):
        return tuple(
            map_strings(item, fn, f"{path}[{i}]", numbers=numbers, name=name)
            for i, item in enumerate(value)
        )
    return value


def _map_dict(
    value: dict[Any, Any],
    fn: Callable[[str, str], str],
    path: str,
    numbers: bool,
    name: Callable[[Any], str] | None,
) -> dict[Any, Any]:
    kpath = key_path(path)
    mapped: list[Any] = []
    for key in value:
        if isinstance(key, str):
            mapped.append(fn(kpath, key))
        elif numbers and isinstance(key, (int, float)):
            mapped.append(_map_number(key, fn, kpath))
        else:
            mapped.append(key)
    if any(
        not isinstance(k, str) and isinstance(m, str) for k, m in zip(value, mapped, strict=True)
    ):
        # a masked number became text: its neighbours become their JSON text too, so the
        # keys stay one type (as a model reads them) and can still be sorted and dumped
        mapped = [json.dumps(m) if _json_scalar(m) else m for m in mapped]
    # keys the mapping left alone keep their name; a changed key never overwrites one
    taken = {new for key, new in zip(value, mapped, strict=True) if new is key or new == key}
    out: dict[Any, Any] = {}
    for (key, item), new in zip(value.items(), mapped, strict=True):
        if not (new is key or new == key):
            base, n = new, 2
            while new in taken:
                new, n = f"{base}#{n}", n + 1
            taken.add(new)
        label = name(key) if name is not None else str(new)
        out[new] = map_strings(
            item, fn, f"{path}.{label}" if path else label, numbers=numbers, name=name
        )
    return out


def _json_scalar(value: object) -> bool:
    return value is None or isinstance(value, (bool, int, float))
