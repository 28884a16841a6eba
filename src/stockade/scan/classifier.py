"""The shipped injection classifier: hashed n-grams and a linear model, in pure Python.

The model file (``models/injection.bin``) holds a small JSON header and one
int8 weight per hashed feature. Features are word unigrams and bigrams and
character n-grams (the header says which n; 3, 4 and 5 for the shipped model)
of the lower-cased text with invisible characters removed, hashed with CRC-32
into ``2**bits`` buckets; the score is the logistic of the summed weights of
the features present over the square root of their number (an L2-normalised
binary vector). No numpy, no model hub: loading reads one file of 1 MB.

Texts are scored in overlapping chunks (sizes in the header, as at training
time) and the worst chunk wins, less a small penalty growing with the number
of chunks, so an instruction buried in page 40 of a long page is not averaged
away and long honest pages are not flagged for their length.

>>> model = load_model()
>>> model is None or 0.0 <= model.score("what is the weather in Paris?") <= 1.0
True

``scripts/train_injection.py`` trains it; ``models/MODEL_CARD.md`` says on
what data, with what licences, and how well it does.
"""

from __future__ import annotations

import json
import math
import re
import zlib
from array import array
from dataclasses import dataclass
from importlib import resources
from itertools import pairwise
from pathlib import Path

from stockade.errors import ConfigurationError
from stockade.scan._base import Hit
from stockade.scan.hygiene import strip_invisible

__all__ = ["InjectionModel", "chunks", "features", "load_model"]

_MAGIC = b"STKM1\n"
_WORD = re.compile(r"\w+", re.UNICODE)  # no backtracking: one character class, one quantifier
_CHUNK = 1500
_OVERLAP = 300


def features(text: str, bits: int, char_ns: tuple[int, ...] = (4,)) -> set[int]:
    """The hashed feature indices of ``text`` (shared by training and inference).

    Word 1- and 2-grams, and character ``n``-grams for each ``n`` in ``char_ns``
    over the words joined by single spaces.
    """
    mask = (1 << bits) - 1
    crc = zlib.crc32
    low = strip_invisible(text).lower()
    words = _WORD.findall(low)
    out = {crc(w.encode("utf-8", "surrogatepass")) & mask for w in words}
    out.update(
        crc(f"{a} {b}".encode("utf-8", "surrogatepass"), 0x5A5A) & mask for a, b in pairwise(words)
    )
    joined = " " + " ".join(words) + " "
    data = joined.encode("utf-8", "surrogatepass")
    for n in char_ns:
        seed = 0xC4A5 if n == 4 else 0xC000 + n
        out.update(crc(data[i : i + n], seed) & mask for i in range(len(data) - n + 1))
    return out


def chunks(text: str, size: int = _CHUNK, overlap: int = _OVERLAP) -> list[tuple[int, int]]:
    """Overlapping ``(start, end)`` windows covering ``text``."""
    if len(text) <= size:
        return [(0, len(text))]
    step = size - overlap
    out = []
    start = 0
    while True:
        end = min(start + size, len(text))
        out.append((start, end))
        if end >= len(text):
            return out
        start += step


@dataclass(frozen=True)
class _Header:
    bits: int
    scale: float
    bias: float
    threshold: float
    version: str
    chunk: int = _CHUNK
    overlap: int = _OVERLAP
    length_penalty: float = 0.0
    char_ns: tuple[int, ...] = (4,)


class InjectionModel:
    """A loaded classifier; :meth:`score` gives the probability that a text injects."""

    def __init__(self, weights: array, header: _Header) -> None:  # type: ignore[type-arg]
        if len(weights) != 1 << header.bits:
            raise ConfigurationError("the injection model file is damaged")
        self._w = weights
        self._h = header

    @property
    def threshold(self) -> float:
        """The threshold calibrated on the validation split at training time."""
        return self._h.threshold

    @property
    def version(self) -> str:
        """The model's version string (training date and data)."""
        return self._h.version

    def _logit(self, text: str) -> float:
        idx = features(text, self._h.bits, self._h.char_ns)
        if not idx:
            return self._h.bias
        w = self._w
        total = float(sum(w[i] for i in idx)) * self._h.scale
        return total / math.sqrt(len(idx)) + self._h.bias

    def score_chunk(self, text: str) -> float:
        """The probability for one chunk of text."""
        return _sigmoid(self._logit(text))

    def chunks(self, text: str) -> list[tuple[int, int]]:
        """The windows this model scores ``text`` in (sized as at training time)."""
        return chunks(text, self._h.chunk, self._h.overlap)

    def chunk_logits(self, text: str) -> list[tuple[int, int, float]]:
        """Each chunk's logit, less the length penalty of a text with that many chunks.

        A long text has many chances for one benign chunk to look bad; the
        penalty (``length_penalty * ln(chunks)``, fitted at training time)
        keeps long documents' false-positive rate near that of short ones.
        """
        spans = self.chunks(text)
        penalty = self._h.length_penalty * math.log(len(spans))
        return [(s, e, self._logit(text[s:e]) - penalty) for s, e in spans]

    def score(self, text: str) -> float:
        """The probability for a whole text: its worst chunk, with the length penalty."""
        return _sigmoid(max(z for _, _, z in self.chunk_logits(text)))

    def scan(self, text: str, threshold: float) -> list[Hit]:
        """Chunks whose probability reaches ``threshold``, as hits."""
        hits = []
        for s, e, z in self.chunk_logits(text):
            p = _sigmoid(z)
            if p >= threshold:
                hits.append(Hit("injection", "classifier", s, e, p, f"classifier p={p:.2f}"))
        return hits


def _sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-max(-60.0, min(60.0, z))))


def read_model(path: str | Path) -> InjectionModel:
    """Load a model file written by ``scripts/train_injection.py``."""
    try:
        blob = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigurationError(f"cannot read the injection model: {exc.strerror}") from exc
    return _parse(blob)


def _parse(blob: bytes) -> InjectionModel:
    if not blob.startswith(_MAGIC):
        raise ConfigurationError("not an injection model file")
    end = blob.index(b"\n", len(_MAGIC))
    try:
        meta = json.loads(blob[len(_MAGIC) : end])
        header = _Header(
            int(meta["bits"]),
            float(meta["scale"]),
            float(meta["bias"]),
            float(meta["threshold"]),
            str(meta["version"]),
            int(meta.get("chunk", _CHUNK)),
            int(meta.get("overlap", _OVERLAP)),
            float(meta.get("length_penalty", 0.0)),
            tuple(int(n) for n in meta.get("char_ns", (4,))),
        )
        if not 0 <= header.overlap < header.chunk:
            raise ValueError("bad chunking")
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigurationError("the injection model header is damaged") from exc
    weights = array("b")
    weights.frombytes(blob[end + 1 :])
    return InjectionModel(weights, header)


def write_model(
    path: str | Path,
    weights: bytes,
    *,
    bits: int,
    scale: float,
    bias: float,
    threshold: float,
    version: str,
    extra: dict[str, object] | None = None,
) -> None:
    """Write a model file (used by the training script)."""
    meta = {
        "bits": bits,
        "scale": scale,
        "bias": bias,
        "threshold": threshold,
        "version": version,
        **(extra or {}),
    }
    Path(path).write_bytes(_MAGIC + json.dumps(meta).encode() + b"\n" + weights)


_CACHE: list[InjectionModel] = []


def load_model() -> InjectionModel | None:
    """The model shipped in the package (loaded once per process), or ``None`` if absent."""
    if _CACHE:
        return _CACHE[0]
    ref = resources.files("stockade.scan").joinpath("models/injection.bin")
    try:
        blob = ref.read_bytes()
    except FileNotFoundError:
        return None
    model = _parse(blob)
    _CACHE.append(model)
    return model
