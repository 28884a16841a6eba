"""The provenance index of one session: what it read, and where each piece is.

Content is indexed once, when the session reads it (``observe``); a check
then costs lookups proportional to the argument, never to the content. Each
indexed piece (a tool result, or a message from the user) keeps its labels;
the index maps hashes of word shingles and of token grams to
``(piece, offset)`` references.

The hash table is a small log-structured merge of sorted arrays: new
references go to a dict; when it fills, it is sorted into a compact array
segment (12 bytes a reference), and segments of similar size are merged, so
there are only a few to search (binary search each).
"""

from __future__ import annotations

import bisect
import threading
from array import array
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from stockade.flow.text import GRAM, SHINGLE, canon, skeleton_map, tokens, words
from stockade.model import Confidentiality, Integrity, Label

__all__ = ["HashIndex", "Match", "Piece", "SessionIndex"]

_HASH_BITS = 40
_PIECE_BITS = 24
_HASH_MASK = (1 << _HASH_BITS) - 1
_MAX_PIECES = (1 << _PIECE_BITS) - 1
_LOOKUP_CAP = 1024
_RANK = {Confidentiality.PUBLIC: 0, Confidentiality.INTERNAL: 1, Confidentiality.SECRET: 2}


def rank(level: Confidentiality) -> int:
    """Order of confidentiality levels: public < internal < secret."""
    return _RANK[level]


class HashIndex:
    """A multimap from 40-bit hashes to ``(piece, offset)``, compact and append-only."""

    def __init__(self, flush_at: int = 1 << 16) -> None:
        self._flush_at = flush_at
        self._mem: dict[int, list[int]] = {}
        self._mem_n = 0
        self._segments: list[tuple[array[int], array[int]]] = []

    def add_many(self, piece: int, entries: Iterable[tuple[int, int]]) -> None:
        """Add ``(hash, offset)`` entries of one piece."""
        mem = self._mem
        tag = piece << 32
        n = 0
        for h, offset in entries:
            key = h & _HASH_MASK
            ref = tag | offset
            bucket = mem.get(key)
            if bucket is None:
                mem[key] = [ref]
            else:
                bucket.append(ref)
            n += 1
        self._mem_n += n
        if self._mem_n >= self._flush_at:
            self.flush()

    def flush(self) -> None:
        """Sort the dict into an array segment and merge segments of similar size."""
        if not self._mem:
            return
        packed = sorted(
            ((key << _PIECE_BITS | (ref >> 32)) << 32) | (ref & 0xFFFFFFFF)
            for key, refs in self._mem.items()
            for ref in refs
        )
        self._mem = {}
        self._mem_n = 0
        self._segments.append(_segment(packed))
        segs = self._segments
        while len(segs) >= 2 and len(segs[-2][0]) <= 2 * len(segs[-1][0]):
            b = segs.pop()
            a = segs.pop()
            merged = sorted(_unpack(a) + _unpack(b))  # two sorted runs: a linear merge
            segs.append(_segment(merged))

    def get(self, h: int) -> list[tuple[int, int]]:
        """``(piece, offset)`` references for a hash (at most a bounded number)."""
        key = h & _HASH_MASK
        out: list[tuple[int, int]] = []
        bucket = self._mem.get(key)
        if bucket is not None:
            out.extend((ref >> 32, ref & 0xFFFFFFFF) for ref in bucket[:_LOOKUP_CAP])
        lo_key = key << _PIECE_BITS
        hi_key = (key + 1) << _PIECE_BITS
        for keys, offsets in self._segments:
            i = bisect.bisect_left(keys, lo_key)
            n = len(keys)
            while i < n and keys[i] < hi_key and len(out) < _LOOKUP_CAP:
                out.append((keys[i] & _MAX_PIECES, offsets[i]))
                i += 1
        return out

    def nbytes(self) -> int:
        """Approximate memory held, in bytes."""
        seg = sum(k.itemsize * len(k) + o.itemsize * len(o) for k, o in self._segments)
        # a dict slot, a list and its int objects: roughly 100 bytes a reference
        return seg + self._mem_n * 100 + len(self._mem) * 60


def _segment(packed: Sequence[int]) -> tuple[array[int], array[int]]:
    keys = array("Q", [p >> 32 for p in packed])
    offsets = array("I", [p & 0xFFFFFFFF for p in packed])
    return keys, offsets


def _unpack(seg: tuple[array[int], array[int]]) -> list[int]:
    keys, offsets = seg
    return [(k << 32) | o for k, o in zip(keys, offsets, strict=True)]


@dataclass(frozen=True, slots=True)
class Piece:
    """One piece of content the session read (or the user said)."""

    id: int
    labels: tuple[Label, ...]
    tool: str = ""
    action: str = ""
    call_id: str = ""
    user: bool = False
    length: int = 0

    @property
    def untrusted(self) -> bool:
        """Whether any of its labels is untrusted."""
        return any(label.integrity is Integrity.UNTRUSTED for label in self.labels)

    @property
    def confidentiality(self) -> Confidentiality:
        """Its highest confidentiality level."""
        levels = [label.confidentiality for label in self.labels]
        return max(levels, key=rank) if levels else Confidentiality.PUBLIC

    def describe(self) -> dict[str, object]:
        """JSON-able description for provenance reports."""
        return {
            "piece": self.id,
            "tool": self.tool,
            "action": self.action,
            "call_id": self.call_id,
            "user": self.user,
            "labels": [label.as_dict() for label in self.labels],
        }


@dataclass(frozen=True, slots=True)
class Match:
    """A stretch of an argument value (offsets in its canonical form) that
    also stands in a piece the session read (offsets in that piece's canonical
    text)."""

    start: int
    end: int
    piece: int
    at: tuple[int, int]
    via: str  # "words" or "token"


@dataclass
class SessionIndex:
    """Everything one session read, indexed for provenance lookups.

    ``max_bytes`` bounds the content indexed; content past it is not indexed
    but its labels are kept in ``unindexed`` so checks can fail closed.
    """

    max_bytes: int = 16 * 1024 * 1024
    pieces: list[Piece] = field(default_factory=list)
    indexed_bytes: int = 0
    unindexed: list[Label] = field(default_factory=list)
    read_untrusted: bool = False
    read_confidentiality: Confidentiality | None = None
    read_sources: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _index: HashIndex = field(default_factory=HashIndex, repr=False)

    # -- observing -----------------------------------------------------------

    def add(
        self,
        text: str,
        labels: Sequence[Label],
        *,
        tool: str = "",
        action: str = "",
        call_id: str = "",
        user: bool = False,
    ) -> Piece | None:
        """Index ``text`` as a new piece with ``labels``; return it (``None``
        when the session's index is full and only the labels were kept)."""
        labels = tuple(labels)
        with self.lock:
            if not user:
                self._note(labels)
            if self.indexed_bytes + len(text) > self.max_bytes or len(self.pieces) >= _MAX_PIECES:
                self.unindexed.extend(x for x in labels if x not in self.unindexed)
                return None
            piece = Piece(len(self.pieces), labels, tool, action, call_id, user, len(text))
            self.pieces.append(piece)
            self.indexed_bytes += len(text)
            self._index.add_many(piece.id, _entries(canon(text)))
            return piece

    def _note(self, labels: tuple[Label, ...]) -> None:
        for label in labels:
            self.read_sources.add(label.source)
            if label.integrity is Integrity.UNTRUSTED:
                self.read_untrusted = True
            cur = self.read_confidentiality
            if cur is None or rank(label.confidentiality) > rank(cur):
                self.read_confidentiality = label.confidentiality

    # -- looking up ------------------------------------------------------------

    def matches(self, value: str) -> tuple[str, list[Match]]:
        """The canonical form of ``value`` and every stretch of it found in
        the session's pieces (each a maximal run, per piece)."""
        c = canon(value)
        found: list[Match] = []
        with self.lock:
            found.extend(self._word_matches(c))
            found.extend(self._token_matches(c))
        return c, found

    def _word_matches(self, c: str) -> list[Match]:
        ws = list(words(c))
        if len(ws) < SHINGLE:
            return []
        out: list[Match] = []
        open_runs: dict[int, list[int]] = {}
        for i in range(len(ws) - SHINGLE + 1):
            h = hash(tuple(w for _, _, w in ws[i : i + SHINGLE]))
            hits: dict[int, int] = {}
            for piece, offset in self._index.get(h):
                hits.setdefault(piece, offset)
            for piece, offset in hits.items():
                run = open_runs.get(piece)
                if run is not None and run[1] == i - 1:
                    run[1] = i
                else:
                    if run is not None:
                        out.append(_word_match(ws, run, piece))
                    open_runs[piece] = [i, i, offset]
        for piece, run in open_runs.items():
            out.append(_word_match(ws, run, piece))
        return out

    def _token_matches(self, c: str) -> list[Match]:
        skel, offsets = skeleton_map(c)
        if len(skel) < GRAM:
            return []
        if len(skel) > _FULL_SCAN:
            # long values: only the tokens that matter in them
            spans = [(t.start, t.end) for t in tokens(c)]
            positions: Iterable[int] = sorted(
                {
                    j
                    for s, e in spans
                    for j in range(bisect.bisect_left(offsets, s), bisect.bisect_left(offsets, e))
                }
            )
        else:
            positions = range(len(skel) - GRAM + 1)
        out: list[Match] = []
        open_runs: dict[int, list[int]] = {}
        for j in positions:
            if j + GRAM > len(skel):
                continue
            hits: dict[int, int] = {}
            for piece, offset in self._index.get(hash(("g", skel[j : j + GRAM]))):
                hits.setdefault(piece, offset)
            for piece, offset in hits.items():
                run = open_runs.get(piece)
                if run is not None and run[1] == j - 1:
                    run[1] = j
                else:
                    if run is not None:
                        out.append(_gram_match(offsets, run, piece))
                    open_runs[piece] = [j, j, offset]
        for piece, run in open_runs.items():
            out.append(_gram_match(offsets, run, piece))
        return out

    def nbytes(self) -> int:
        """Approximate memory held by the index, in bytes."""
        return self._index.nbytes() + 120 * len(self.pieces)

    def compact(self) -> None:
        """Move pending references into compact arrays."""
        with self.lock:
            self._index.flush()


_FULL_SCAN = 1024


def _word_match(ws: list[tuple[int, int, str]], run: list[int], piece: int) -> Match:
    first, last, at = run
    start, end = ws[first][0], ws[last + SHINGLE - 1][1]
    return Match(start, end, piece, (at, at + (end - start)), "words")


def _gram_match(offsets: list[int], run: list[int], piece: int) -> Match:
    first, last, at = run
    start, end = offsets[first], offsets[last + GRAM - 1] + 1
    return Match(start, end, piece, (at, at + (last - first) + GRAM), "token")


def _entries(c: str) -> Iterable[tuple[int, int]]:
    """``(hash, offset)`` entries for canonical text: word shingles and token grams,
    each hash once per piece."""
    seen: set[int] = set()
    ws = list(words(c))
    texts = [w for _, _, w in ws]
    for i in range(len(ws) - SHINGLE + 1):
        h = hash(tuple(texts[i : i + SHINGLE]))
        if h not in seen:
            seen.add(h)
            yield h, ws[i][0]
    for tok in tokens(c):
        skel, offs = skeleton_map(tok.text)
        for j in range(len(skel) - GRAM + 1):
            h = hash(("g", skel[j : j + GRAM]))
            if h not in seen:
                seen.add(h)
                yield h, tok.start + offs[j]
