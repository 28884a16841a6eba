"""What an audit store backend provides, and what both backends share.

A store keeps, for one origin, the records (``seq``, record bytes, chain
hash), the signed checkpoints, and a *head* row (size, last chain hash, the
Merkle tree's right edge) that writers read and update inside the same locked
transaction, so threads and processes appending to one log keep one gap-free
sequence and every writer signs the right root.

The chain hash of record ``n`` is ``SHA-256(chain[n-1] || leaf_hash[n])`` with
``chain[-1]`` 32 zero bytes. It is not a security boundary (the signed Merkle
roots are), it lets ``verify`` name the exact first record that was changed,
dropped or moved even between checkpoints.

Index columns (time, kind, session, tool, action, decision, rule) are
*generated* from the record JSON by the database itself, so a query can never
see a value the record does not hold.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass

from stockade.audit.checkpoint import Checkpoint
from stockade.audit.merkle import CompactRange
from stockade.audit.record import StoredRecord
from stockade.errors import AuditError

__all__ = ["ZERO_CHAIN", "Head", "Query", "Row", "Store", "Transaction", "hide_password"]

#: the chain value before the first record
ZERO_CHAIN = bytes(32)


@dataclass(frozen=True, slots=True)
class Row:
    """One record to insert: its sequence number, bytes and chain hash."""

    seq: int
    data: bytes
    chain: bytes


@dataclass(slots=True)
class Head:
    """The writer's view of the log's end: size, last chain hash, right edge of the tree."""

    size: int
    chain: bytes
    frontier: CompactRange

    @classmethod
    def empty(cls) -> Head:
        """The head of an empty log."""
        return cls(0, ZERO_CHAIN, CompactRange())

    def frontier_bytes(self) -> bytes:
        """The right edge, serialised (one 32-byte hash per set bit of the size)."""
        return b"".join(self.frontier._stack)

    @classmethod
    def load(cls, size: int, chain: bytes, frontier: bytes) -> Head:
        """Rebuild a head from its stored form."""
        cr = CompactRange()
        cr._stack = [frontier[i : i + 32] for i in range(0, len(frontier), 32)]
        cr.size = size
        if len(cr._stack) != bin(size).count("1") or len(chain) != 32:
            raise AuditError("the audit log's head row is damaged; run `stockade audit verify`")
        return cls(size, chain, cr)

    def copy(self) -> Head:
        """An independent copy."""
        return Head(self.size, self.chain, self.frontier.copy())


@dataclass(frozen=True)
class Query:
    """Filters for :meth:`Store.query`; ``None`` means any."""

    session: str | None = None
    tool: str | None = None
    action: str | None = None
    decision: str | None = None
    rule: str | None = None
    kind: str | None = None
    since: float | None = None
    until: float | None = None
    after_seq: int | None = None
    limit: int | None = None
    newest_first: bool = False


class Transaction(abc.ABC):
    """A locked write transaction on one origin (only one writer at a time)."""

    @abc.abstractmethod
    def head(self) -> Head:
        """The current head (locked until the transaction ends)."""

    @abc.abstractmethod
    def insert(self, rows: Sequence[Row]) -> None:
        """Insert records in sequence order."""

    @abc.abstractmethod
    def add_checkpoint(self, checkpoint: Checkpoint, *, refresh: bool = False) -> None:
        """Keep a signed checkpoint.

        With ``refresh``, a checkpoint that only restates the newest stored one
        (same size and root, a later time) replaces it instead of adding a row,
        so an idle log's timer does not grow the table.
        """

    @abc.abstractmethod
    def set_head(self, head: Head) -> None:
        """Store the new head."""


class Store(abc.ABC):
    """An audit store for one origin. Backends raise :class:`AuditError` on failure."""

    origin: str
    location: str

    @abc.abstractmethod
    def transaction(self) -> AbstractContextManager[Transaction]:
        """A locked write transaction; committed durably when the block ends."""

    def append_fast(self, old_size: int, head: Head, rows: Sequence[Row]) -> bool:
        """Append ``rows`` and move the head from ``old_size`` to ``head`` in one step.

        Returns ``False`` (and changes nothing) when the log's size is not
        ``old_size`` any more: another writer appended, the caller must take
        the locked path. A backend without a fast path always returns ``False``.
        """
        return False

    @abc.abstractmethod
    def snapshot(self) -> AbstractContextManager[None]:
        """Make the reads inside the block see one consistent state of the log."""

    @abc.abstractmethod
    def scan_batches(
        self, start: int = 0, stop: int | None = None
    ) -> Iterator[list[tuple[int, bytes, bytes]]]:
        """Lists of ``(seq, record bytes, chain)`` in sequence order (verify's hot path)."""

    def scan(self, start: int = 0, stop: int | None = None) -> Iterator[tuple[int, bytes, bytes]]:
        """``(seq, record bytes, chain)`` in sequence order, for verify and proofs."""
        for batch in self.scan_batches(start, stop):
            yield from batch

    @abc.abstractmethod
    def checkpoints(self) -> list[Checkpoint]:
        """Every checkpoint, oldest first."""

    @abc.abstractmethod
    def query(self, q: Query) -> Iterator[StoredRecord]:
        """Records matching the filters, in sequence order (or newest first)."""

    @abc.abstractmethod
    def size(self) -> int:
        """The number of records (the head's size)."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release connections."""


def hide_password(url: str) -> str:
    """A database URL with its password replaced by ``***``."""
    head, sep, rest = url.partition("://")
    creds, at, host = rest.rpartition("@")
    if not at or ":" not in creds:
        return url
    user = creds.split(":", 1)[0]
    return f"{head}{sep}{user}:***@{host}"
