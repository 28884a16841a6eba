"""Sessions and the store behind their counters.

A :class:`Session` is one conversation of one agent: rate limits, budgets and
(with the flow part) provenance labels are kept per session. Counters live in
a :class:`SessionStore`: in memory by default, Redis when several processes
or machines share the same sessions.

>>> from stockade import Guard
>>> guard = Guard.from_text("version: 1")
>>> with guard.session("ticket-42", principal="support-bot") as s:
...     s.id
'ticket-42'
"""

from __future__ import annotations

import contextvars
import threading
import time
import uuid
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from stockade.errors import ConfigurationError

if TYPE_CHECKING:
    from types import TracebackType

    from stockade.guard import Guard

__all__ = ["MemorySessionStore", "RedisSessionStore", "Session", "SessionStore", "current_session"]


@runtime_checkable
class SessionStore(Protocol):
    """Counters for rate limits and budgets; every operation is atomic."""

    def hit(self, key: str, window: float, limit: int) -> bool:
        """Count one event in the current fixed window of ``window`` seconds.

        Return ``False`` (and count nothing) when ``limit`` events were
        already counted in this window.
        """
        ...

    def add(self, key: str, amount: int) -> int:
        """Add ``amount`` to a counter that never expires; return the new total."""
        ...

    def get(self, key: str) -> int:
        """The current value of a counter (0 when unknown)."""
        ...


class MemorySessionStore:
    """Counters in this process's memory; the default."""

    def __init__(self, clock: Any = time.monotonic) -> None:
        self._clock = clock
        self._windows: dict[str, tuple[int, int]] = {}
        self._counters: dict[str, int] = {}
        self._lock = threading.Lock()

    def hit(self, key: str, window: float, limit: int) -> bool:
        """See :meth:`SessionStore.hit`."""
        slot = int(self._clock() // window)
        with self._lock:
            current_slot, count = self._windows.get(key, (slot, 0))
            if current_slot != slot:
                count = 0
            if count >= limit:
                self._windows[key] = (slot, count)
                return False
            self._windows[key] = (slot, count + 1)
            return True

    def add(self, key: str, amount: int) -> int:
        """See :meth:`SessionStore.add`."""
        with self._lock:
            total = self._counters.get(key, 0) + amount
            self._counters[key] = total
            return total

    def get(self, key: str) -> int:
        """See :meth:`SessionStore.get`."""
        with self._lock:
            return self._counters.get(key, 0)


_HIT = """
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
if n > tonumber(ARGV[1]) then redis.call('DECR', KEYS[1]) return 0 end
return 1
"""


class RedisSessionStore:
    """Counters in Redis, shared by every worker that uses the same server.

    Needs the ``redis`` extra (``pip install 'stockade[redis]'``). Keys are
    prefixed with ``prefix`` so several deployments can share a server.
    """

    def __init__(self, url: str = "redis://127.0.0.1:6379/0", *, prefix: str = "stockade:") -> None:
        try:
            import redis
        except ImportError as exc:
            raise ConfigurationError(
                "the redis session store needs the redis extra: pip install 'stockade[redis]'"
            ) from exc
        self._redis = redis.Redis.from_url(url)
        self._prefix = prefix
        self._hit = self._redis.register_script(_HIT)
        self._errors = (redis.RedisError,)

    def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except self._errors as exc:
            raise ConfigurationError(f"redis session store failed: {type(exc).__name__}") from exc

    def hit(self, key: str, window: float, limit: int) -> bool:
        """See :meth:`SessionStore.hit`."""
        slot = int(time.time() // window)
        k = f"{self._prefix}w:{key}:{slot}"
        ms = max(1, int(window * 1000))
        return bool(self._call(self._hit, keys=[k], args=[limit, ms]))

    def add(self, key: str, amount: int) -> int:
        """See :meth:`SessionStore.add`."""
        return int(self._call(self._redis.incrby, f"{self._prefix}c:{key}", amount))

    def get(self, key: str) -> int:
        """See :meth:`SessionStore.get`."""
        value = self._call(self._redis.get, f"{self._prefix}c:{key}")
        return int(value) if value is not None else 0

    def close(self) -> None:
        """Close the connection pool."""
        self._redis.close()


_CURRENT: contextvars.ContextVar[Session | None] = contextvars.ContextVar(
    "stockade_session", default=None
)


def current_session() -> Session | None:
    """The session entered with ``with guard.session(...)`` in this context, if any."""
    return _CURRENT.get()


class Session:
    """One conversation of one agent with a guard.

    Use it as a context manager so guarded functions called inside belong to
    it, or pass it as ``session=`` to :meth:`Guard.call`.
    """

    def __init__(self, guard: Guard, id: str | None = None, principal: str = "") -> None:
        self.guard = guard
        self.id = id or uuid.uuid4().hex
        self.principal = principal
        self.state: dict[str, Any] = {}
        self._tokens: list[contextvars.Token[Session | None]] = []

    def user_said(self, text: str) -> None:
        """Record ``text`` as the user's own, trusted words.

        Argument values that the user gave stay trusted even when they also
        appear in untrusted content the agent read.
        """
        self.guard._user_said(self, text)

    def __enter__(self) -> Session:
        self._tokens.append(_CURRENT.set(self))
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        _CURRENT.reset(self._tokens.pop())

    def __repr__(self) -> str:
        return f"Session(id={self.id!r}, principal={self.principal!r})"
