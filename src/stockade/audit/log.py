"""The audit sink: records in, durable sequence numbers out, checkpoints signed.

:class:`AuditLog` is what the guard appends to. ``append`` returns only once
the record is committed to the store (durable as the store's durability
setting says), and raises :class:`AuditError` when it is not: the guard then
denies the call. Appends from many threads are committed together (group
commit): a caller that finds a commit under way waits for it, and the next
caller commits everything queued meanwhile in one transaction. Before it
commits, a leader waits (at most 2 ms) for the appenders that were already
building their record, so batches grow with the number of callers; a lone
caller never waits. Every caller still returns only after its own record
committed, and a failed commit fails every record in it.

A checkpoint is signed whenever the log crosses a multiple of
``checkpoint_every`` records, every ``checkpoint_interval`` seconds from a
background thread (even when nothing was appended: the verifier can tell the
log was alive), and when the log is closed.
"""

from __future__ import annotations

import atexit
import hashlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from stockade.audit.checkpoint import Checkpoint, Mirror
from stockade.audit.merkle import leaf_hash
from stockade.audit.record import ArgsHMAC, encode_event
from stockade.audit.store import Head, Row, Store
from stockade.errors import AuditError
from stockade.model import AuditEvent

__all__ = ["AuditLog"]

log = logging.getLogger("stockade.audit")
_sha256 = hashlib.sha256
#: the longest a leader waits for appenders still building their record
_GATHER_WAIT = 0.002


@dataclass(slots=True)
class _Pending:
    data: bytes
    leaf: bytes
    seq: int = -1
    error: BaseException | None = None


class AuditLog:
    """An append-only, signed, verifiable audit log on a :class:`Store`.

    >>> log = AuditLog(store, signing_key=key, hmac_key=hkey)  # doctest: +SKIP
    >>> seq = log.append(event)  # doctest: +SKIP
    """

    def __init__(
        self,
        store: Store,
        *,
        signing_key: Ed25519PrivateKey,
        hmac_key: bytes,
        checkpoint_every: int = 1000,
        checkpoint_interval: float = 10.0,
        mirror: Mirror | None = None,
        clock: Callable[[], float] = time.time,
        redact_secrets: bool = False,
    ) -> None:
        if checkpoint_every < 1:
            raise AuditError("checkpoint_every must be at least 1")
        self.store = store
        self.origin = store.origin
        self._key = signing_key
        self._hmac = ArgsHMAC(hmac_key)
        self.checkpoint_every = checkpoint_every
        self.checkpoint_interval = checkpoint_interval
        self.mirror = mirror
        self._clock = clock
        # masks secrets itself when no scan stage made the masked copy
        self.redact_secrets = redact_secrets
        self._queue: list[_Pending] = []
        self._queue_lock = threading.Lock()
        # group commit: one leader commits everything queued; the others wait
        # on this condition for their sequence number (or to lead the next one)
        self._changed = threading.Condition(self._queue_lock)
        self._leading = False
        self._encoding = 0  # appends building their record, about to queue it
        self._commit_lock = threading.Lock()
        self._closed = False
        # the head after this writer's last commit: lets the next commit skip reading it
        self._head: Head | None = None
        self._stop = threading.Event()
        self._timer: threading.Thread | None = None
        # a process that ends without closing its guard still signs its tail
        # (the registration keeps an unclosed log alive until then)
        atexit.register(self.close)
        if checkpoint_interval > 0:
            self._timer = threading.Thread(
                target=self._tick, name=f"stockade-audit-checkpoints-{self.origin}", daemon=True
            )
            self._timer.start()

    # -- the sink interface -------------------------------------------------------

    def append(self, event: AuditEvent) -> int:
        """Store one event durably and return its sequence number; raise :class:`AuditError`."""
        if self._closed:
            raise AuditError("the audit log is closed")
        with self._queue_lock:
            self._encoding += 1
        item: _Pending | None = None
        try:
            data = encode_event(event, self.origin, self._hmac, redact=self.redact_secrets)
            item = _Pending(data, leaf_hash(data))
        finally:
            with self._queue_lock:
                self._encoding -= 1
                if item is not None:
                    self._queue.append(item)
                self._changed.notify_all()
        mirrored: Checkpoint | None = None
        with self._queue_lock:
            # wait until a leader committed this item, or become the leader
            while item.seq < 0 and item.error is None and self._leading:
                self._changed.wait()
            lead = item.seq < 0 and item.error is None
            if lead:
                self._leading = True
                # appenders still building their record join this commit
                # (bounded wait); a lone appender never waits
                if self._encoding:
                    want = len(self._queue) + self._encoding
                    self._changed.wait_for(
                        lambda: len(self._queue) >= want or not self._encoding, _GATHER_WAIT
                    )
        if lead:
            try:
                with self._commit_lock:
                    mirrored = self._commit()
            finally:
                with self._queue_lock:
                    self._leading = False
                    self._changed.notify_all()
        if mirrored is not None:
            self._mirror(mirrored)
        if item.error is not None:
            if isinstance(item.error, AuditError):
                raise AuditError(str(item.error)) from item.error
            raise AuditError(f"audit store failed: {type(item.error).__name__}") from item.error
        return item.seq

    def close(self) -> None:
        """Stop the checkpoint thread, sign a last checkpoint, release the store."""
        if self._closed:
            return
        atexit.unregister(self.close)
        self._stop.set()
        if self._timer is not None:
            self._timer.join()
        try:
            self.checkpoint()
        except AuditError as exc:
            log.error("audit log: no closing checkpoint: %s", exc)
        finally:
            self._closed = True
            self.store.close()

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writing ------------------------------------------------------------------

    def _commit(self) -> Checkpoint | None:
        """Commit everything queued in one transaction (caller holds the commit lock)."""
        with self._queue_lock:
            batch, self._queue = self._queue, []
        if not batch:
            return None
        cached = self._head
        every = self.checkpoint_every
        if cached is not None and (cached.size + len(batch)) // every == cached.size // every:
            # the cached head is moved in place: whatever happens next, it is
            # either the new head or dropped
            self._head = None
            start = cached.size
            rows = self._rows(cached, batch)
            try:
                done = self.store.append_fast(start, cached, rows)
            except BaseException as exc:
                for item in batch:
                    item.error = exc
                if not isinstance(exc, Exception):
                    raise
                return None
            if done:
                self._head = cached
                for i, item in enumerate(batch):
                    item.seq = start + i
                return None
        signed: Checkpoint | None = None
        try:
            with self.store.transaction() as tx:
                head = tx.head()
                start = head.size
                tx.insert(self._rows(head, batch))
                if head.size // every != start // every:
                    signed = self._sign(head.size, head.frontier.root())
                    tx.add_checkpoint(signed)
                tx.set_head(head)
        except BaseException as exc:
            self._head = None
            for item in batch:
                item.error = exc
            if not isinstance(exc, Exception):
                raise
            return None
        self._head = head
        for i, item in enumerate(batch):
            item.seq = start + i
        return signed

    @staticmethod
    def _rows(head: Head, batch: list[_Pending]) -> list[Row]:
        """The rows for ``batch`` after ``head``; moves ``head`` past them."""
        chain = head.chain
        start = head.size
        frontier = head.frontier
        rows = []
        for i, item in enumerate(batch):
            chain = _sha256(chain + item.leaf).digest()
            rows.append(Row(start + i, item.data, chain))
            frontier.append(item.leaf)
        head.size = start + len(batch)
        head.chain = chain
        return rows

    def _sign(self, size: int, root: bytes) -> Checkpoint:
        return Checkpoint.sign(
            self._key, origin=self.origin, size=size, root=root, time=self._clock()
        )

    def checkpoint(self) -> Checkpoint:
        """Sign the log's current size and root now (the timer and ``close`` call this).

        When nothing was appended since the newest stored checkpoint, the new
        one replaces it in the store (the mirror still gets every one).
        """
        with self._commit_lock, self.store.transaction() as tx:
            head = tx.head()
            signed = self._sign(head.size, head.frontier.root())
            tx.add_checkpoint(signed, refresh=True)
        self._mirror(signed)
        return signed

    def _mirror(self, checkpoint: Checkpoint) -> None:
        if self.mirror is None:
            return
        try:
            self.mirror.write(checkpoint)
        except AuditError as exc:
            log.error("audit log: %s", exc)

    def _tick(self) -> None:
        while not self._stop.wait(self.checkpoint_interval):
            try:
                self.checkpoint()
            except AuditError as exc:
                log.error("audit log: periodic checkpoint failed: %s", exc)
            except Exception as exc:  # the thread must survive a surprising store error
                log.error("audit log: periodic checkpoint failed: %s", type(exc).__name__)

    def __repr__(self) -> str:
        return f"AuditLog(origin={self.origin!r}, store={self.store.location!r})"
