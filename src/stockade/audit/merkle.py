"""RFC 6962 Merkle tree hashing, proofs and proof verification.

Leaf hash ``SHA-256(0x00 || data)``, node hash ``SHA-256(0x01 || left || right)``,
the empty tree's root ``SHA-256("")``. Proofs follow RFC 6962 section 2.1
(``PATH`` and ``SUBPROOF``); verification follows RFC 9162 section 2.1.3 and
2.1.4. Verifiers raise :class:`~stockade.errors.AuditIntegrityError` (kind
``invalid``), never return ``False``.

>>> leaves = [leaf_hash(b"a"), leaf_hash(b"b"), leaf_hash(b"c")]
>>> proof = inclusion_proof(leaves, 2)
>>> verify_inclusion(leaves[2], 2, 3, proof, tree_root(leaves))
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from stockade.errors import AuditIntegrityError

__all__ = [
    "EMPTY_ROOT",
    "CompactRange",
    "consistency_proof",
    "inclusion_proof",
    "leaf_hash",
    "node_hash",
    "tree_root",
    "verify_consistency",
    "verify_inclusion",
]

_sha256 = hashlib.sha256
_LEAF = _sha256(b"\x00")
_NODE = b"\x01"

#: the root of the empty tree: SHA-256 of the empty string
EMPTY_ROOT = _sha256(b"").digest()


def leaf_hash(data: bytes) -> bytes:
    """The RFC 6962 hash of one leaf: ``SHA-256(0x00 || data)``."""
    h = _LEAF.copy()
    h.update(data)
    return h.digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """The RFC 6962 hash of an interior node: ``SHA-256(0x01 || left || right)``."""
    return _sha256(_NODE + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two smaller than ``n`` (``n`` > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


def tree_root(leaves: Sequence[bytes]) -> bytes:
    """The Merkle tree hash (RFC 6962 ``MTH``) of a list of leaf hashes."""
    if not leaves:
        return EMPTY_ROOT
    cr = CompactRange()
    for h in leaves:
        cr.append(h)
    return cr.root()


class CompactRange:
    """The right edge of a growing tree: one hash per set bit of its size.

    Appending is amortised one node hash; :meth:`root` folds at most log2(n)
    hashes. The audit log keeps one to sign checkpoints without reading the
    whole log, and ``verify`` streams every record through one.
    """

    __slots__ = ("_stack", "size")

    def __init__(self) -> None:
        self._stack: list[bytes] = []
        self.size = 0

    def append(self, leaf: bytes) -> None:
        """Add the next leaf hash."""
        h = leaf
        k = self.size
        stack = self._stack
        while k & 1:
            h = _sha256(_NODE + stack.pop() + h).digest()
            k >>= 1
        stack.append(h)
        self.size += 1

    def root(self) -> bytes:
        """The root of the tree of every leaf appended so far."""
        stack = self._stack
        if not stack:
            return EMPTY_ROOT
        h = stack[-1]
        for left in reversed(stack[:-1]):
            h = _sha256(_NODE + left + h).digest()
        return h

    def copy(self) -> CompactRange:
        """An independent copy."""
        other = CompactRange()
        other._stack = list(self._stack)
        other.size = self.size
        return other


# -- proofs ---------------------------------------------------------------------


def inclusion_proof(leaves: Sequence[bytes], index: int, size: int | None = None) -> list[bytes]:
    """The audit path for leaf ``index`` in the tree of the first ``size`` leaves."""
    n = len(leaves) if size is None else size
    if not 0 <= index < n <= len(leaves):
        raise ValueError(f"leaf {index} is not in a tree of size {n}")
    return _path(index, leaves, 0, n)


def _path(m: int, leaves: Sequence[bytes], lo: int, hi: int) -> list[bytes]:
    n = hi - lo
    if n == 1:
        return []
    k = _split(n)
    if m < k:
        return [*_path(m, leaves, lo, lo + k), _mth(leaves, lo + k, hi)]
    return [*_path(m - k, leaves, lo + k, hi), _mth(leaves, lo, lo + k)]


def _mth(leaves: Sequence[bytes], lo: int, hi: int) -> bytes:
    n = hi - lo
    if n == 1:
        return leaves[lo]
    k = _split(n)
    return node_hash(_mth(leaves, lo, lo + k), _mth(leaves, lo + k, hi))


def consistency_proof(leaves: Sequence[bytes], size1: int, size2: int | None = None) -> list[bytes]:
    """The proof that the tree of ``size1`` leaves is a prefix of the tree of ``size2``."""
    n = len(leaves) if size2 is None else size2
    if not 0 < size1 <= n <= len(leaves):
        raise ValueError(f"no consistency proof from size {size1} to size {n}")
    return _subproof(size1, leaves, 0, n, True)


def _subproof(m: int, leaves: Sequence[bytes], lo: int, hi: int, whole: bool) -> list[bytes]:
    n = hi - lo
    if m == n:
        return [] if whole else [_mth(leaves, lo, hi)]
    k = _split(n)
    if m <= k:
        return [*_subproof(m, leaves, lo, lo + k, whole), _mth(leaves, lo + k, hi)]
    return [*_subproof(m - k, leaves, lo + k, hi, False), _mth(leaves, lo, lo + k)]


# -- verification -----------------------------------------------------------------


def _bad(message: str) -> AuditIntegrityError:
    return AuditIntegrityError(message, kind="invalid")


def verify_inclusion(
    leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> None:
    """Check that ``leaf`` is leaf ``index`` of the tree of ``size`` with ``root``; raise if not."""
    if len(leaf) != 32:
        raise _bad("inclusion proof: a leaf hash must be 32 bytes")
    if index < 0 or index >= size:
        raise _bad(f"inclusion proof: leaf {index} is not in a tree of size {size}")
    fn, sn = index, size - 1
    r = leaf
    for p in proof:
        if len(p) != 32 or sn == 0:
            raise _bad("inclusion proof: malformed or too long")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise _bad("inclusion proof: too short")
    if r != root:
        raise _bad("inclusion proof: the root does not match")


def verify_consistency(
    size1: int, size2: int, proof: Sequence[bytes], root1: bytes, root2: bytes
) -> None:
    """Check that the tree (``size1``, ``root1``) is a prefix of (``size2``, ``root2``).

    A proof from the empty tree proves nothing and is refused (``size1`` must
    be at least 1), as the vectors in ``shared/data/merkle-vectors`` expect.
    """
    if size1 < 1:
        raise _bad("consistency proof: the first tree must not be empty")
    if size2 < size1:
        raise _bad(f"consistency proof: size {size2} is smaller than size {size1}")
    if size1 == size2:
        if proof:
            raise _bad("consistency proof: equal sizes need an empty proof")
        if root1 != root2:
            raise _bad("consistency proof: equal sizes with different roots")
        return
    if not proof or any(len(p) != 32 for p in proof):
        raise _bad("consistency proof: malformed or empty")
    path = list(proof)
    if size1 & (size1 - 1) == 0:  # a power of two: the old root is the first node
        path.insert(0, root1)
    fn, sn = size1 - 1, size2 - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise _bad("consistency proof: too long")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise _bad("consistency proof: too short")
    if fr != root1 or sr != root2:
        raise _bad("consistency proof: the roots do not match")
