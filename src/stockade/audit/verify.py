"""``verify``: check every record, chain hash, root and signature of a log.

:func:`verify_log` streams the records once, in sequence order, and raises
:class:`AuditIntegrityError` at the first problem:

- ``gap``: a sequence number is skipped (a record was deleted from the middle,
  or the log does not start at 0);
- ``invalid``: a record's chain hash does not follow from the records before
  it (changed, moved or inserted), a checkpoint's signature does not check, or
  the records do not give the root a signed checkpoint states;
- ``missing``: a checkpoint (in the log or in the mirror) covers records that
  are not there (the log was cut back), or, with ``strict``, records at the
  end are not covered by any checkpoint yet.

``seq`` on the error is the first bad sequence number: exact for gaps, for
changes caught by the chain hash and for missing records; when a forger also
rewrote the chain hashes, only the signed root catches the change and ``seq``
is the first record after the last checkpoint that still matched.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NoReturn

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from stockade.audit.checkpoint import Checkpoint
from stockade.audit.keys import key_id
from stockade.audit.merkle import EMPTY_ROOT
from stockade.audit.store import ZERO_CHAIN, Store
from stockade.errors import AuditIntegrityError

__all__ = ["VerifyReport", "verify_log"]

_sha256 = hashlib.sha256
_LEAF = _sha256(b"\x00")


@dataclass
class VerifyReport:
    """What a successful verification saw."""

    origin: str
    records: int
    checkpoints: int
    signed_size: int
    root: bytes
    last_checkpoint_time: float | None
    mirrored: int = 0
    warnings: list[str] = field(default_factory=list)

    @property
    def unsigned(self) -> int:
        """Records after the last checkpoint (not yet covered by a signature)."""
        return self.records - self.signed_size

    def as_dict(self) -> dict[str, object]:
        """Plain data for ``--json``."""
        return {
            "ok": True,
            "origin": self.origin,
            "records": self.records,
            "checkpoints": self.checkpoints,
            "signed_size": self.signed_size,
            "unsigned": self.unsigned,
            "root": self.root.hex(),
            "last_checkpoint_time": self.last_checkpoint_time,
            "mirrored": self.mirrored,
            "warnings": list(self.warnings),
        }


def _check_signatures(
    checkpoints: Sequence[Checkpoint], origin: str, public: Ed25519PublicKey, where: str
) -> None:
    kid = key_id(public)
    for cp in checkpoints:
        if cp.origin != origin:
            raise AuditIntegrityError(
                f"{where} checkpoint at size {cp.size} is for origin `{cp.origin}`, not `{origin}`",
                kind="invalid",
                seq=max(cp.size - 1, 0),
            )
        if cp.key_id and cp.key_id != kid:
            raise AuditIntegrityError(
                f"{where} checkpoint at size {cp.size} was signed by key {cp.key_id}, "
                f"not by the given key {kid}",
                kind="invalid",
                seq=max(cp.size - 1, 0),
            )
        cp.verify(public)


def _gap(seq: int, expect: int) -> NoReturn:
    if seq < expect:  # pragma: no cover - the primary key forbids it
        raise AuditIntegrityError(f"record {seq} appears twice", kind="invalid", seq=seq)
    raise AuditIntegrityError(
        f"records {expect}..{seq - 1} are gone: the sequence skips from {expect - 1} to {seq}",
        kind="gap",
        seq=expect,
    )


def _root(stack: list[bytes]) -> bytes:
    if not stack:
        return EMPTY_ROOT
    h = stack[-1]
    for left in reversed(stack[:-1]):
        h = _sha256(b"\x01" + left + h).digest()
    return h


def verify_log(
    store: Store,
    public_key: Ed25519PublicKey,
    *,
    mirror: Sequence[Checkpoint] = (),
    strict: bool = False,
) -> VerifyReport:
    """Verify the whole log in ``store``; raise :class:`AuditIntegrityError` at the first problem.

    Safe on a log that is being written: the reads share one snapshot.
    """
    with store.snapshot():
        return _verify(store, public_key, mirror, strict)


def _verify(
    store: Store, public_key: Ed25519PublicKey, mirror: Sequence[Checkpoint], strict: bool
) -> VerifyReport:
    origin = store.origin
    stored = store.checkpoints()
    _check_signatures(stored, origin, public_key, "stored")
    _check_signatures(mirror, origin, public_key, "mirrored")
    every = sorted([*stored, *mirror], key=lambda c: c.size)
    roots: dict[int, bytes] = {}
    for cp in every:
        seen = roots.setdefault(cp.size, cp.root)
        if seen != cp.root:
            raise AuditIntegrityError(
                f"two signed checkpoints at size {cp.size} disagree on the root",
                kind="invalid",
                seq=max(cp.size - 1, 0),
            )
    sizes = sorted(roots)
    # checkpoints of the empty tree carry nothing to compare
    pending = [s for s in sizes if s > 0]
    cp_index = 0
    next_size = pending[0] if pending else -1
    last_good = 0

    # The loop below is the hot path of verify: the compact range (the right
    # edge of the Merkle tree) is kept inline as a plain list of hashes.
    stack: list[bytes] = []
    chain = ZERO_CHAIN
    expect = 0
    leaf_copy = _LEAF.copy
    sha = _sha256
    for batch in store.scan_batches():
        for seq, data, stored_chain in batch:
            if seq != expect:
                _gap(seq, expect)
            h = leaf_copy()
            h.update(data)
            leaf = h.digest()
            chain = sha(chain + leaf).digest()
            if chain != stored_chain:
                raise AuditIntegrityError(
                    f"record {seq} was changed, moved or inserted: its chain hash does not follow",
                    kind="invalid",
                    seq=seq,
                )
            k = expect
            while k & 1:
                leaf = sha(b"\x01" + stack.pop() + leaf).digest()
                k >>= 1
            stack.append(leaf)
            expect += 1
            if expect == next_size:
                if _root(stack) != roots[expect]:
                    raise AuditIntegrityError(
                        f"records {last_good}..{expect - 1} do not give the root signed at "
                        f"size {expect}",
                        kind="invalid",
                        seq=last_good,
                    )
                last_good = expect
                cp_index += 1
                next_size = pending[cp_index] if cp_index < len(pending) else -1
    if next_size > 0:
        where = "mirrored" if any(c.size == next_size for c in mirror) else "signed"
        raise AuditIntegrityError(
            f"a {where} checkpoint covers {sizes[-1]} records but the log has {expect}: "
            f"records from {expect} on are missing",
            kind="missing",
            seq=expect,
        )
    head = store.size()
    if head > expect:
        raise AuditIntegrityError(
            f"the log's head says {head} records were written but only {expect} are there: "
            f"records from {expect} on are missing",
            kind="missing",
            seq=expect,
        )
    if head < expect:
        raise AuditIntegrityError(
            f"records from {head} on were not written by a log writer (the head says {head})",
            kind="invalid",
            seq=head,
        )
    signed = sizes[-1] if sizes else 0
    report = VerifyReport(
        origin=origin,
        records=expect,
        checkpoints=len(stored),
        signed_size=signed,
        root=_root(stack),
        last_checkpoint_time=max((c.time for c in every), default=None),
        mirrored=len(mirror),
    )
    if report.unsigned:
        message = (
            f"records {signed}..{expect - 1} are not covered by a checkpoint yet "
            "(written after the last one, or a cut-off writer)"
        )
        if strict:
            raise AuditIntegrityError(message, kind="missing", seq=signed)
        report.warnings.append(message)
    if not every and expect:
        report.warnings.append("the log has no checkpoint at all")
    return report
