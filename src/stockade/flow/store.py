"""Where session provenance indexes live: in this process's memory, bounded.

The flow checker asks an :class:`IndexStore` for a session's
:class:`SessionIndex`; :class:`MemoryIndexStore` keeps them in memory with
three bounds: indexed bytes per session, sessions held, and total indexed
bytes. A session pushed out keeps a *tombstone* (what it had read, as
labels), so when it comes back its arguments are judged against everything it
may have read instead of nothing (fail closed). A store backed by Redis or
another shared service can implement the same small interface.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Protocol, runtime_checkable

from stockade.flow.index import SessionIndex
from stockade.model import Label

__all__ = ["IndexStore", "MemoryIndexStore"]


@runtime_checkable
class IndexStore(Protocol):
    """Gives the provenance index of a session, creating it when new."""

    def get(self, session_id: str) -> SessionIndex:
        """The index of ``session_id`` (a new one, or one restored from a tombstone)."""
        ...

    def touch(self, session_id: str) -> None:
        """Note that the session's index grew (to enforce memory bounds)."""
        ...

    def drop(self, session_id: str) -> None:
        """Forget a finished session entirely."""
        ...


class MemoryIndexStore:
    """Session indexes in this process's memory, bounded.

    ``max_session_bytes`` bounds the content indexed per session;
    ``max_sessions`` and ``max_total_bytes`` bound what the store holds
    (least recently used sessions go first); sessions idle for ``idle``
    seconds are dropped with their tombstones (a session older than that is a
    new session). Tombstones are bounded by ``max_tombstones``.
    """

    def __init__(
        self,
        *,
        max_session_bytes: int = 16 * 1024 * 1024,
        max_sessions: int = 1000,
        max_total_bytes: int = 256 * 1024 * 1024,
        max_tombstones: int = 100_000,
        idle: float = 24 * 3600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_session_bytes = max_session_bytes
        self.max_sessions = max_sessions
        self.max_total_bytes = max_total_bytes
        self.max_tombstones = max_tombstones
        self.idle = idle
        self._clock = clock
        self._sessions: OrderedDict[str, tuple[SessionIndex, float]] = OrderedDict()
        self._tombstones: OrderedDict[str, tuple[tuple[Label, ...], float]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, session_id: str) -> SessionIndex:
        """See :meth:`IndexStore.get`."""
        now = self._clock()
        with self._lock:
            self._expire(now)
            entry = self._sessions.get(session_id)
            if entry is not None:
                self._sessions[session_id] = (entry[0], now)
                self._sessions.move_to_end(session_id)
                return entry[0]
            index = SessionIndex(max_bytes=self.max_session_bytes)
            tomb = self._tombstones.pop(session_id, None)
            if tomb is not None:
                index.unindexed.extend(tomb[0])
                index._note(tomb[0])
            self._sessions[session_id] = (index, now)
            self._evict()
            return index

    def touch(self, session_id: str) -> None:
        """See :meth:`IndexStore.touch`."""
        with self._lock:
            self._evict()

    def drop(self, session_id: str) -> None:
        """See :meth:`IndexStore.drop`."""
        with self._lock:
            self._sessions.pop(session_id, None)
            self._tombstones.pop(session_id, None)

    def __len__(self) -> int:
        return len(self._sessions)

    def total_bytes(self) -> int:
        """Content bytes indexed over all sessions held."""
        return sum(ix.indexed_bytes for ix, _ in self._sessions.values())

    def _expire(self, now: float) -> None:
        for store in (self._sessions, self._tombstones):
            while store:
                key, (_, seen) = next(iter(store.items()))
                if now - seen < self.idle:
                    break
                del store[key]

    def _evict(self) -> None:
        total = self.total_bytes()
        while len(self._sessions) > 1 and (
            len(self._sessions) > self.max_sessions or total > self.max_total_bytes
        ):
            sid, (index, seen) = self._sessions.popitem(last=False)
            total -= index.indexed_bytes
            labels = {label for piece in index.pieces if not piece.user for label in piece.labels}
            labels.update(index.unindexed)
            self._tombstones[sid] = (tuple(labels), seen)
            while len(self._tombstones) > self.max_tombstones:
                self._tombstones.popitem(last=False)
