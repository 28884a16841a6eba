"""Inclusion and consistency proofs against signed checkpoints.

A proof is worth something only against a root somebody signed, so both
functions take their tree sizes from the log's checkpoints (the latest one by
default) and return the checkpoint with the proof. Each proof is verified
before it is returned.
"""

from __future__ import annotations

from typing import Any

from stockade.audit.checkpoint import Checkpoint
from stockade.audit.merkle import (
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    verify_consistency,
    verify_inclusion,
)
from stockade.audit.store import Store
from stockade.errors import AuditError, AuditIntegrityError

__all__ = ["prove_consistency", "prove_inclusion"]


def _checkpoint(store: Store, size: int | None) -> Checkpoint:
    cps = [c for c in store.checkpoints() if c.size > 0]
    if not cps:
        raise AuditError("the log has no checkpoint to prove against")
    if size is None:
        return max(cps, key=lambda c: (c.size, c.time))
    for c in reversed(cps):
        if c.size == size:
            return c
    sizes = ", ".join(str(s) for s in sorted({c.size for c in cps})[-8:])
    raise AuditError(f"no checkpoint at size {size}; signed sizes include: {sizes}")


def _leaves(store: Store, size: int) -> list[bytes]:
    out: list[bytes] = []
    for seq, data, _ in store.scan(0, size):
        if seq != len(out):
            raise AuditIntegrityError(f"record {len(out)} is missing", kind="gap", seq=len(out))
        out.append(leaf_hash(data))
    if len(out) < size:
        raise AuditIntegrityError(
            f"the checkpoint covers {size} records, the log has {len(out)}",
            kind="missing",
            seq=len(out),
        )
    return out


def prove_inclusion(store: Store, seq: int, size: int | None = None) -> dict[str, Any]:
    """The proof that record ``seq`` is in the tree of a signed checkpoint."""
    with store.snapshot():
        cp = _checkpoint(store, size)
        if not 0 <= seq < cp.size:
            raise AuditError(f"record {seq} is not covered by the checkpoint at size {cp.size}")
        leaves = _leaves(store, cp.size)
    proof = inclusion_proof(leaves, seq, cp.size)
    verify_inclusion(leaves[seq], seq, cp.size, proof, cp.root)
    return {
        "type": "inclusion",
        "origin": store.origin,
        "leaf_index": seq,
        "tree_size": cp.size,
        "leaf_hash": leaves[seq].hex(),
        "proof": [p.hex() for p in proof],
        "root": cp.root.hex(),
        "checkpoint": cp.as_dict(),
    }


def prove_consistency(store: Store, size1: int, size2: int | None = None) -> dict[str, Any]:
    """The proof that the signed tree at ``size1`` is a prefix of the one at ``size2``."""
    with store.snapshot():
        new = _checkpoint(store, size2)
        old = _checkpoint(store, size1)
        leaves = _leaves(store, new.size)
    if old.size > new.size:
        raise AuditError(f"size {old.size} is larger than size {new.size}")
    proof = consistency_proof(leaves, old.size, new.size)
    verify_consistency(old.size, new.size, proof, old.root, new.root)
    return {
        "type": "consistency",
        "origin": store.origin,
        "size1": old.size,
        "size2": new.size,
        "root1": old.root.hex(),
        "root2": new.root.hex(),
        "proof": [p.hex() for p in proof],
        "checkpoints": [old.as_dict(), new.as_dict()],
    }
