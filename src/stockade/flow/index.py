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
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from stockade.flow.text import GRAM, SHINGLE, WORD_PATTERN, canon, skeleton_map, tokens, words
from stockade.model import Confidentiality, Integrity, Label

__all__ = ["HashIndex", "Match", "Piece", "SessionIndex"]

_HASH_BITS = 40
_PIECE_BITS = 24
_HASH_MASK = (1 << _HASH_BITS) - 1
_MAX_PIECES = (1 << _PIECE_BITS) - 1
_FANOUT = 4
#: a hash held by more pieces than this is "common": looked up by label class
_COMMON = 32
_RANK = {Confidentiality.PUBLIC: 0, Confidentiality.INTERNAL: 1, Confidentiality.SECRET: 2}


def rank(level: Confidentiality) -> int:
    """Order of confidentiality levels: public < internal < secret."""
    return _RANK[level]


def piece_class(piece: Piece) -> int:
    """What the flow rules care about in a piece, as a small number:
    the user's words or not, untrusted or not, and the confidentiality level."""
    return (6 if piece.user else 0) + (3 if piece.untrusted else 0) + rank(piece.confidentiality)


class HashIndex:
    """A multimap from 40-bit hashes to ``(piece, offset)``, compact and append-only.

    Small batches go to a dict; big ones (and the dict, when it fills) become
    sorted array segments; segments of similar size are merged. A Bloom filter
    over every key answers most lookups (misses) with one byte read; the
    others do one dict probe and a binary search in each of a few segments.
    """

    def __init__(
        self,
        flush_at: int = 1 << 16,
        direct_at: int = 1 << 12,
        *,
        classes: list[int] | None = None,
        cap: int = _COMMON,
    ) -> None:
        self._flush_at = flush_at
        self._direct_at = direct_at
        self._classes: _ClassLookup = classes if classes is not None else _NoClasses()
        self._cap = cap
        self._mem: dict[int, list[int]] = {}
        self._mem_mask: dict[int, int] = {}
        self._mem_n = 0
        self._segments: list[_Segment] = []
        self._views: list[tuple[array[int], array[int], dict[int, int]]] = []
        # A Bloom filter (one probe, 8 bits an entry: about 12% false hits)
        # over every key: most lookups miss, and a miss then costs one byte
        # read instead of a probe per segment.
        self._bloom_bits = 1 << 16
        self._bloom = bytearray(self._bloom_bits >> 3)
        self._count = 0

    def add_many(self, piece: int, hashes: Sequence[int], offsets: Sequence[int]) -> None:
        """Add the entries of one piece: ``hashes[i]`` found at ``offsets[i]``."""
        self._count += len(hashes)
        if self._count * 8 > self._bloom_bits:
            self._grow_bloom(hashes)
        else:
            self._mark(hashes)
        if len(hashes) >= self._direct_at:
            tag = piece << 32
            packed = sorted(
                [
                    ((h & _HASH_MASK) << (_PIECE_BITS + 32)) | tag | o
                    for h, o in zip(hashes, offsets, strict=True)
                ]
            )
            self._push(self._segment(packed))
            return
        mem = self._mem
        masks = self._mem_mask
        tag = piece << 32
        bit = 1 << self._classes[piece]
        for h, offset in zip(hashes, offsets, strict=True):
            key = h & _HASH_MASK
            bucket = mem.get(key)
            if bucket is None:
                mem[key] = [tag | offset]
                masks[key] = bit
            else:
                bucket.append(tag | offset)
                masks[key] |= bit
        self._mem_n += len(hashes)
        if self._mem_n >= self._flush_at:
            self.flush()

    def flush(self) -> None:
        """Sort the dict into an array segment."""
        if not self._mem:
            return
        packed = sorted(
            [(key << (_PIECE_BITS + 32)) | ref for key, refs in self._mem.items() for ref in refs]
        )
        self._mem = {}
        self._mem_mask = {}
        self._mem_n = 0
        self._push(self._segment(packed))

    def _push(self, seg: _Segment) -> None:
        segs = self._segments
        segs.append(seg)
        # Tiers of four: when the last four segments are of about the same size
        # they become one, so an entry is re-sorted about log4(n) times and a
        # lookup that gets past the Bloom filter searches a handful of arrays.
        while len(segs) >= _FANOUT and len(segs[-_FANOUT].keys) <= 2 * len(segs[-1].keys):
            group = segs[-_FANOUT:]
            del segs[-_FANOUT:]
            packed: list[int] = []
            for seg in group:
                packed.extend(seg.unpack())
            packed.sort()  # sorted runs: Timsort merges them in linear time
            segs.append(self._segment(packed))
        # plain tuples: the lookup loop reads them without attribute lookups
        self._views = [(x.keys, x.offsets, x.common) for x in segs]

    def _segment(self, packed: list[int]) -> _Segment:
        keys = array("Q", [p >> 32 for p in packed])
        offsets = array("I", [p & 0xFFFFFFFF for p in packed])
        return _Segment(keys, offsets, self._classes, self._cap)

    def _mark(self, hashes: Iterable[int]) -> None:
        bloom = self._bloom
        top = self._bloom_bits - 1
        for h in hashes:
            a = h & top
            bloom[a >> 3] |= 1 << (a & 7)

    def _grow_bloom(self, new: Sequence[int]) -> None:
        bits = self._bloom_bits
        while self._count * 8 > bits:
            bits <<= 1
        self._bloom_bits = bits
        self._bloom = bytearray(bits >> 3)
        self._mark(new)
        self._mark(self._mem)
        for seg in self._segments:
            self._mark([k >> _PIECE_BITS for k in seg.keys])

    def get(self, h: int) -> tuple[list[tuple[int, int]], int]:
        """``(piece, offset)`` references for a hash, and a mask of label
        classes for the part of them that is too common to list (``0`` when
        every reference is listed)."""
        key = h & _HASH_MASK
        a = key & (self._bloom_bits - 1)
        if not (self._bloom[a >> 3] >> (a & 7)) & 1:
            return [], 0
        out: list[tuple[int, int]] = []
        mask = 0
        bucket = self._mem.get(key)
        if bucket is not None:
            if len(bucket) > self._cap:
                mask = self._mem_mask[key]
            else:
                out.extend((ref >> 32, ref & 0xFFFFFFFF) for ref in bucket)
        lo_key = key << _PIECE_BITS
        hi_key = lo_key + (1 << _PIECE_BITS)
        for keys, offsets, common in self._views:
            if common and key in common:
                mask |= common[key]
                continue
            i = bisect.bisect_left(keys, lo_key)
            n = len(keys)
            while i < n:
                k = keys[i]
                if k >= hi_key:
                    break
                out.append((k & _MAX_PIECES, offsets[i]))
                i += 1
        if len(out) > self._cap:  # common over several segments: by class too
            classes = self._classes
            for piece, _ in out:
                mask |= 1 << classes[piece]
            out = []
        return out, mask

    def __len__(self) -> int:
        return self._mem_n + sum(len(seg.keys) for seg in self._segments)

    def nbytes(self) -> int:
        """Approximate memory held, in bytes."""
        seg = sum(x.nbytes() for x in self._segments) + len(self._bloom)
        # a dict slot, a list and its int objects: roughly 100 bytes a reference
        return seg + self._mem_n * 100 + len(self._mem) * 60


class _Segment:
    """Sorted keys (hash and piece) and their offsets, searched by bisection
    (the Bloom filter in front turns most lookups away before they get here).

    ``common`` maps each hash held by more than ``cap`` pieces to the mask of
    their label classes: such hashes are not listed piece by piece.
    """

    __slots__ = ("common", "keys", "offsets")

    def __init__(
        self, keys: array[int], offsets: array[int], classes: _ClassLookup, cap: int
    ) -> None:
        self.keys = keys
        self.offsets = offsets
        self.common: dict[int, int] = {}
        n = len(keys)
        # A hash with more than `cap` entries covers `cap + 1` sorted positions,
        # so it spans some pair (i, i + cap // 2) with i a multiple of cap // 2.
        step = max(1, cap // 2)
        shift = _PIECE_BITS
        for i in range(0, n - step, step):
            key = keys[i] >> shift
            if key != keys[i + step] >> shift or key in self.common:
                continue
            lo = bisect.bisect_left(keys, key << shift)
            hi = bisect.bisect_left(keys, (key + 1) << shift, lo)
            if hi - lo > cap:
                mask = 0
                for k in keys[lo:hi]:
                    mask |= 1 << classes[k & _MAX_PIECES]
                self.common[key] = mask

    def unpack(self) -> list[int]:
        return [(k << 32) | o for k, o in zip(self.keys, self.offsets, strict=True)]

    def nbytes(self) -> int:
        return sum(a.itemsize * len(a) for a in (self.keys, self.offsets)) + 100 * len(self.common)


class _ClassLookup(Protocol):
    def __getitem__(self, piece: int, /) -> int: ...


class _NoClasses:
    """Every piece in class 0 (a bare index, as in tests)."""

    def __getitem__(self, piece: int) -> int:
        return 0


@dataclass(frozen=True, slots=True)
class Piece:
    """One piece of content the session read (or the user said).

    ``untrusted`` (any label untrusted) and ``confidentiality`` (the highest
    level) are worked out once from the labels.
    """

    id: int
    labels: tuple[Label, ...]
    tool: str = ""
    action: str = ""
    call_id: str = ""
    user: bool = False
    length: int = 0
    untrusted: bool = field(init=False)
    confidentiality: Confidentiality = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "untrusted", any(x.integrity is Integrity.UNTRUSTED for x in self.labels)
        )
        levels = [x.confidentiality for x in self.labels]
        object.__setattr__(
            self,
            "confidentiality",
            max(levels, key=rank) if levels else Confidentiality.PUBLIC,
        )

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
    #: the stretch stands in too many pieces to list; ``piece`` is the first
    #: piece of the same kind (user, integrity, confidentiality)
    many: bool = False


@dataclass
class SessionIndex:
    """Everything one session read, indexed for provenance lookups.

    ``max_bytes`` bounds the content indexed; content past it is not indexed
    but its labels are kept in ``unindexed`` so checks can fail closed.
    """

    max_bytes: int = 16 * 1024 * 1024
    pieces: list[Piece] = field(default_factory=list)
    indexed_bytes: int = 0
    user_bytes: int = 0
    unindexed: list[Label] = field(default_factory=list)
    read_untrusted: bool = False
    read_confidentiality: Confidentiality | None = None
    read_labels: set[Label] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    classes: list[int] = field(default_factory=list, repr=False)
    first_of_class: dict[int, int] = field(default_factory=dict, repr=False)
    _index: HashIndex = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._index = HashIndex(classes=self.classes)

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
            # The user's words have their own allowance: a full index must not
            # stop the user from vouching for a value.
            used = self.user_bytes if user else self.indexed_bytes
            if used + len(text) > self.max_bytes or len(self.pieces) >= _MAX_PIECES:
                if not user:
                    self.unindexed.extend(x for x in labels if x not in self.unindexed)
                return None
            piece = Piece(len(self.pieces), labels, tool, action, call_id, user, len(text))
            self.pieces.append(piece)
            cls = piece_class(piece)
            self.classes.append(cls)
            self.first_of_class.setdefault(cls, piece.id)
            if user:
                self.user_bytes += len(text)
            else:
                self.indexed_bytes += len(text)
            hashes, offsets = _entries(canon(text))
            self._index.add_many(piece.id, hashes, offsets)
            return piece

    def _note(self, labels: tuple[Label, ...]) -> None:
        for label in labels:
            if len(self.read_labels) < 256:
                self.read_labels.add(label)
            if label.integrity is Integrity.UNTRUSTED:
                self.read_untrusted = True
            cur = self.read_confidentiality
            if cur is None or rank(label.confidentiality) > rank(cur):
                self.read_confidentiality = label.confidentiality

    # -- looking up ------------------------------------------------------------

    def matches(self, value: str, *, shingles: bool = True) -> tuple[str, list[Match]]:
        """The canonical form of ``value`` and every stretch of it found in
        the session's pieces (each a maximal run, per piece); ``shingles=False``
        looks for token grams only."""
        c = canon(value)
        found: list[Match] = []
        with self.lock:
            if shingles:
                found.extend(self._word_matches(c))
            found.extend(self._token_matches(c))
        return c, _outermost(found)

    def _word_matches(self, c: str) -> list[Match]:
        ws = list(words(c))
        if len(ws) < SHINGLE:
            return []
        probes = [
            (i, hash((ws[i][2], ws[i + 1][2], ws[i + 2][2]))) for i in range(len(ws) - SHINGLE + 1)
        ]
        out = []
        for piece, first, last, at, many in self._runs(probes):
            start, end = ws[first][0], ws[last + SHINGLE - 1][1]
            out.append(Match(start, end, piece, (at, at + end - start), "words", many))
        return out

    def _token_matches(self, c: str) -> list[Match]:
        skel, offsets = skeleton_map(c)
        if len(skel) < GRAM:
            return []
        if len(skel) > _FULL_SCAN:
            # long values: only the tokens that matter in them
            spans = [(t.start, min(t.end, t.start + _MAX_TOKEN)) for t in tokens(c)]
            positions: Iterable[int] = sorted(
                {
                    j
                    for s, e in spans
                    for j in range(bisect.bisect_left(offsets, s), bisect.bisect_left(offsets, e))
                    if j + GRAM <= len(skel)
                }
            )
        else:
            positions = range(len(skel) - GRAM + 1)
        probes = [(j, hash(("g", skel[j : j + GRAM]))) for j in positions]
        out = []
        for piece, first, last, at, many in self._runs(probes):
            start, end = offsets[first], offsets[last + GRAM - 1] + 1
            width = last - first + GRAM
            out.append(Match(start, end, piece, (at, at + width), "token", many))
        return out

    def _runs(self, probes: list[tuple[int, int]]) -> list[tuple[int, int, int, int, bool]]:
        """Maximal runs of consecutive probe positions found in one piece:
        ``(piece, first, last, offset in piece, many)``.

        A common hash (held by too many pieces to list) continues the run of
        any piece of a class it is held by, and a run that starts right after
        such hashes reaches back over them. Stretches made only of common
        hashes give runs per class (``many``), so a value copied into many
        pieces is still found.
        """
        classes = self.classes
        get = self._index.get
        out: list[tuple[int, int, int, int, bool]] = []
        runs: dict[int, list[int]] = {}  # piece -> [first, last, offset]
        class_runs: dict[int, list[int]] = {}  # class -> [first, last]
        common: dict[int, int] = {}  # position -> class mask
        prev = -2

        def close_all() -> None:
            for piece, (first, last, at) in runs.items():
                out.append((piece, first, last, at, False))
            for cls, (first, last) in class_runs.items():
                out.append((self.first_of_class[cls], first, last, 0, True))
            runs.clear()
            class_runs.clear()

        for pos, h in probes:
            if pos != prev + 1:
                close_all()
            prev = pos
            refs, mask = get(h)
            if not refs and not mask:
                if runs or class_runs:
                    close_all()
                continue
            here: dict[int, int] = {}
            for piece, offset in refs:
                here.setdefault(piece, offset)
            for piece in list(runs):
                if piece in here or (mask >> classes[piece]) & 1:
                    runs[piece][1] = pos
                else:
                    first, last, at = runs.pop(piece)
                    out.append((piece, first, last, at, False))
            for piece, offset in here.items():
                if piece not in runs:
                    first = pos
                    bit = 1 << classes[piece]
                    while common.get(first - 1, 0) & bit:
                        first -= 1
                    runs[piece] = [first, pos, max(0, offset - (pos - first))]
            if mask:
                common[pos] = mask
            for cls in list(class_runs):
                if (mask >> cls) & 1:
                    class_runs[cls][1] = pos
                else:
                    first, last = class_runs.pop(cls)
                    out.append((self.first_of_class[cls], first, last, 0, True))
            while mask:
                low = mask & -mask
                cls = low.bit_length() - 1
                mask ^= low
                class_runs.setdefault(cls, [pos, pos])
        close_all()
        return out

    def probe_seam(self, a: str, b: str) -> bool:
        """Whether any token gram that crosses from canonical ``a`` into
        canonical ``b`` stands in the index (a cheap test before a full check
        of ``a + b``)."""
        ska = "".join(WORD_PATTERN.findall(a))[-(GRAM - 1) :]
        skb = "".join(WORD_PATTERN.findall(b))[: GRAM - 1]
        probes = [
            hash(("g", ska[len(ska) - k :] + skb[: GRAM - k]))
            for k in range(1, GRAM)
            if k <= len(ska) and GRAM - k <= len(skb)
        ]
        with self.lock:
            for h in probes:
                refs, mask = self._index.get(h)
                if refs or mask:
                    return True
            return False

    def nbytes(self) -> int:
        """Approximate memory held by the index, in bytes."""
        return self._index.nbytes() + 120 * len(self.pieces)

    def compact(self) -> None:
        """Move pending references into compact arrays."""
        with self.lock:
            self._index.flush()


def _outermost(found: list[Match]) -> list[Match]:
    """Drop matches inside a longer (or equal, earlier) match of the same piece."""
    found.sort(key=lambda m: (m.piece, m.start, -m.end))
    out: list[Match] = []
    for m in found:
        if out and out[-1].piece == m.piece and out[-1].start <= m.start and m.end <= out[-1].end:
            continue
        out.append(m)
    return out


#: values with a longer skeleton are scanned for token grams only where they hold tokens
_FULL_SCAN = 128


_CHUNK = 1 << 20


#: characters the chunks overlap by: more than the longest token indexed
_OVERLAP = 512
#: characters of a token cut into grams (a longer one is a blob, not a value)
_MAX_TOKEN = 256


def _chunks(c: str) -> Iterator[tuple[int, str]]:
    """Cut long text into about 1 MB chunks so temporary memory stays bounded.

    A chunk ends at a space where there is one in its second half, and the
    next starts ``_OVERLAP`` characters earlier (at a word start where there
    is one), so no shingle or token gram is lost at a cut; every step moves
    on by at least half a chunk, whatever the text.
    """
    start = 0
    n = len(c)
    while start < n:
        end = min(n, start + _CHUNK)
        if end < n:
            cut = c.rfind(" ", start + _CHUNK // 2, end)
            end = cut if cut > start else end
        yield start, c[start:end]
        if end >= n:
            return
        back = max(start + _CHUNK // 2, end - _OVERLAP)
        space = c.find(" ", back, end)
        start = space + 1 if space >= 0 else back


def _entries(c: str) -> tuple[list[int], list[int]]:
    """Hashes and offsets for canonical text: word shingles and token grams,
    each hash once per chunk (first offset wins)."""
    hashes: list[int] = []
    offsets: list[int] = []
    for base, chunk in _chunks(c):
        ws = WORD_PATTERN.findall(chunk)
        starts = [base + m.start() for m in WORD_PATTERN.finditer(chunk)]
        shingles = [hash(t) for t in zip(ws, ws[1:], ws[2:], strict=False)]
        grams: list[int] = []
        gram_at: list[int] = []
        for tok in tokens(chunk):
            skel, offs = skeleton_map(tok.text[:_MAX_TOKEN])
            for j in range(len(skel) - GRAM + 1):
                grams.append(hash(("g", skel[j : j + GRAM])))
                gram_at.append(base + tok.start + offs[j])
        first = dict(zip(reversed(grams), reversed(gram_at), strict=True))
        first.update(zip(reversed(shingles), reversed(starts[: len(shingles)]), strict=True))
        hashes.extend(first)
        offsets.extend(first.values())
    return hashes, offsets
