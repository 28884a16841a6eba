"""A durable approval queue that other processes answer.

The agent's process puts an ``ask`` into the queue (:class:`QueueApprover`)
and waits; a human answers from another process or machine with
``stockade approvals list|approve|deny`` (or any program using
:class:`ApprovalQueue`). Requests expire: an answer after the expiry is
refused and the waiting call is denied. Every answer names its approver. An
approval with scope ``session`` also covers later calls of the same tool with
the same arguments in the same session, until it lapses.

Backends: SQLite (``sqlite:///path.db``, one machine, several processes) and
PostgreSQL (``postgresql://...``, needs the ``postgres`` extra).

>>> q = ApprovalQueue("sqlite:///:memory:")
>>> q.pending()
[]
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stockade.approvals.render import scope_key
from stockade.errors import ApprovalError, ConfigurationError
from stockade.model import ToolCall
from stockade.stages import Approval, ApprovalRequest

__all__ = ["ApprovalQueue", "QueueApprover", "QueuedRequest"]

_STATUSES = ("pending", "approved", "denied", "expired")
_COLUMNS = (
    "id",
    "created",
    "expires",
    "session",
    "principal",
    "call_id",
    "tool",
    "action",
    "args",
    "scope_key",
    "rule",
    "reason",
    "provenance",
    "status",
    "approver",
    "answer_reason",
    "scope",
    "answered",
    "grant_expires",
)


@dataclass(frozen=True)
class QueuedRequest:
    """One request in the queue, as stored (arguments masked)."""

    id: str
    created: float
    expires: float
    session: str
    principal: str
    call_id: str
    tool: str
    action: str
    args: Mapping[str, Any]
    scope_key: str
    rule: str
    reason: str
    provenance: Mapping[str, Any]
    status: str
    approver: str | None = None
    answer_reason: str | None = None
    scope: str | None = None
    answered: float | None = None
    grant_expires: float | None = None

    def call(self) -> ToolCall:
        """The call as the queue knows it (masked arguments)."""
        return ToolCall(
            self.tool, self.action, self.args, self.session, self.call_id, self.principal
        )

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-able data."""
        return {c: getattr(self, c) for c in _COLUMNS}


class _DB:
    """The few statements the queue needs, on SQLite or PostgreSQL."""

    def __init__(self, url: str, base_dir: Path | None) -> None:
        self.kind: str
        self._lock = threading.Lock()
        if url.startswith("sqlite:"):
            self.kind = "sqlite"
            if not url.startswith("sqlite:///"):
                raise ConfigurationError(
                    "a SQLite approval queue is `sqlite:///relative.db` or `sqlite:////abs.db`"
                )
            # SQLAlchemy style: sqlite:///rel.db is relative, sqlite:////abs.db absolute
            path = url[len("sqlite:///") :]
            if path != ":memory:" and not Path(path).is_absolute():
                path = str((base_dir or Path.cwd()) / path)
            try:
                self._conn: Any = sqlite3.connect(
                    path, timeout=30.0, isolation_level=None, check_same_thread=False
                )
                self._conn.execute("PRAGMA journal_mode=WAL")
                self._conn.execute("PRAGMA busy_timeout=30000")
            except sqlite3.Error as exc:
                raise ApprovalError(f"cannot open the approval queue: {exc}") from exc
            self._errors: tuple[type[BaseException], ...] = (sqlite3.Error,)
        elif url.startswith(("postgresql://", "postgres://")):
            self.kind = "postgres"
            try:
                import psycopg
            except ImportError as exc:
                raise ConfigurationError(
                    "a PostgreSQL approval queue needs the postgres extra: "
                    "pip install 'stockade[postgres]'"
                ) from exc
            try:
                self._conn = psycopg.connect(url, autocommit=True)
            except psycopg.Error as exc:
                raise ApprovalError(
                    f"cannot connect to the approval queue: {type(exc).__name__}"
                ) from exc
            self._errors = (psycopg.Error,)
        else:
            raise ConfigurationError(
                f"unknown approval queue `{url.split(':', 1)[0]}:`; "
                "expected sqlite:///PATH or postgresql://..."
            )

    def run(self, sql: str, params: Sequence[Any] = ()) -> tuple[list[tuple[Any, ...]], int]:
        """Run one statement; return its rows and the number of rows changed."""
        if self.kind == "postgres":
            sql = sql.replace("?", "%s")
        with self._lock:
            try:
                cur = self._conn.execute(sql, tuple(params))
                rows = cur.fetchall() if cur.description is not None else []
                return rows, cur.rowcount
            except self._errors as exc:
                raise ApprovalError(f"the approval queue failed: {type(exc).__name__}") from exc

    def close(self) -> None:
        with self._lock:
            self._conn.close()


class ApprovalQueue:
    """Requests waiting for a human, in SQLite or PostgreSQL.

    ``table`` names the table (several deployments can share a database);
    ``base_dir`` is where a relative SQLite path points from.
    """

    def __init__(
        self,
        url: str,
        *,
        table: str = "stockade_approvals",
        base_dir: Path | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not table.replace("_", "").isalnum() or not table[0].isalpha():
            raise ConfigurationError(f"bad approval table name `{table}`")
        self.url = url
        self.table = table
        self._clock = clock
        self._db = _DB(url, base_dir)
        real = "DOUBLE PRECISION"
        self._db.run(
            f"CREATE TABLE IF NOT EXISTS {table} ("
            "id TEXT PRIMARY KEY, created {r} NOT NULL, expires {r} NOT NULL, "
            "session TEXT NOT NULL, principal TEXT NOT NULL, call_id TEXT NOT NULL, "
            "tool TEXT NOT NULL, action TEXT NOT NULL, args TEXT NOT NULL, "
            "scope_key TEXT NOT NULL, rule TEXT NOT NULL, reason TEXT NOT NULL, "
            "provenance TEXT NOT NULL, status TEXT NOT NULL, approver TEXT, "
            "answer_reason TEXT, scope TEXT, answered {r}, grant_expires {r})".replace("{r}", real)
        )
        self._db.run(f"CREATE INDEX IF NOT EXISTS {table}_status ON {table} (status, expires)")
        self._db.run(f"CREATE INDEX IF NOT EXISTS {table}_scope ON {table} (scope_key)")

    # -- the agent's side -----------------------------------------------------------

    def submit(self, request: ApprovalRequest, *, ttl: float) -> str:
        """Queue a request that expires in ``ttl`` seconds; return its id."""
        now = self._clock()
        rid = uuid.uuid4().hex[:16]
        call = request.call
        provenance = {k: dict(v) for k, v in request.provenance.items() if isinstance(v, Mapping)}
        for name, shown in request.args.items():
            if name in provenance and call.args.get(name) != shown:
                provenance[name]["masked"] = True  # spans refer to the raw value
        self._db.run(
            f"INSERT INTO {self.table} (id, created, expires, session, principal, call_id, "  # noqa: S608 - the table name is checked
            "tool, action, args, scope_key, rule, reason, provenance, status) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'pending')",
            (
                rid,
                now,
                now + ttl,
                call.session,
                call.principal,
                call.call_id,
                call.tool,
                call.action,
                _json(request.args),
                scope_key(call),
                request.decision.rule,
                request.decision.reason,
                _json(provenance),
            ),
        )
        return rid

    def grant_for(self, call: ToolCall) -> QueuedRequest | None:
        """A live session-scoped approval that covers ``call``, if any."""
        rows, _ = self._db.run(
            f"SELECT {', '.join(_COLUMNS)} FROM {self.table} WHERE scope_key = ? "  # noqa: S608 - the table name is checked
            "AND status = 'approved' AND scope = 'session' AND grant_expires > ? "
            "ORDER BY answered DESC LIMIT 1",
            (scope_key(call), self._clock()),
        )
        return _row(rows[0]) if rows else None

    # -- the human's side ---------------------------------------------------------

    def get(self, rid: str) -> QueuedRequest | None:
        """One request by id."""
        rows, _ = self._db.run(
            f"SELECT {', '.join(_COLUMNS)} FROM {self.table} WHERE id = ?",  # noqa: S608 - the table name is checked
            (rid,),
        )
        return _row(rows[0]) if rows else None

    def pending(self) -> list[QueuedRequest]:
        """Requests still waiting for an answer, oldest first."""
        self.expire()
        rows, _ = self._db.run(
            f"SELECT {', '.join(_COLUMNS)} FROM {self.table} WHERE status = 'pending' "  # noqa: S608 - the table name is checked
            "ORDER BY created",
        )
        return [_row(r) for r in rows]

    def recent(self, limit: int = 50) -> list[QueuedRequest]:
        """The latest requests whatever their status, newest first."""
        self.expire()
        rows, _ = self._db.run(
            f"SELECT {', '.join(_COLUMNS)} FROM {self.table} ORDER BY created DESC LIMIT ?",  # noqa: S608 - the table name is checked
            (limit,),
        )
        return [_row(r) for r in rows]

    def answer(
        self,
        rid: str,
        *,
        approved: bool,
        approver: str,
        reason: str = "",
        scope: str = "call",
        scope_ttl: float = 8 * 3600.0,
    ) -> QueuedRequest:
        """Approve or refuse a pending request; raise :class:`ApprovalError`
        when it is unknown, already answered or expired."""
        if scope not in ("call", "session"):
            raise ApprovalError(f"unknown scope `{scope}`; expected call or session")
        if not approver:
            raise ApprovalError("an answer needs the approver's name")
        now = self._clock()
        status = "approved" if approved else "denied"
        _, changed = self._db.run(
            f"UPDATE {self.table} SET status = ?, approver = ?, answer_reason = ?, scope = ?, "  # noqa: S608 - the table name is checked
            "answered = ?, grant_expires = ? WHERE id = ? AND status = 'pending' AND expires > ?",
            (status, approver, reason, scope, now, now + scope_ttl, rid, now),
        )
        current = self.get(rid)
        if changed != 1 or current is None:
            if current is None:
                raise ApprovalError(f"no approval request `{rid}`")
            if current.status == "pending":
                self.expire()
                raise ApprovalError(f"approval request `{rid}` has expired")
            raise ApprovalError(f"approval request `{rid}` is already {current.status}")
        return current

    def expire(self) -> int:
        """Mark pending requests past their expiry as expired; return how many."""
        _, changed = self._db.run(
            f"UPDATE {self.table} SET status = 'expired', answered = ? "  # noqa: S608 - the table name is checked
            "WHERE status = 'pending' AND expires <= ?",
            (self._clock(), self._clock()),
        )
        return max(0, changed)

    def close(self) -> None:
        """Close the connection."""
        self._db.close()

    def __enter__(self) -> ApprovalQueue:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class QueueApprover:
    """Sends ``ask`` decisions to an :class:`ApprovalQueue` and waits for the answer.

    ``timeout`` is how long a request lives (and the call waits); ``poll``
    how often the queue is read. No answer in time refuses the call.
    """

    def __init__(
        self,
        queue: ApprovalQueue,
        *,
        timeout: float = 300.0,
        poll: float = 0.5,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.queue = queue
        self.timeout = timeout
        self.poll = poll
        self._sleep = sleep

    def approve(self, request: ApprovalRequest) -> Approval:
        """Queue the request (unless a session-scoped approval covers it) and wait."""
        grant = self.queue.grant_for(request.call)
        if grant is not None and grant.approver:
            return Approval(
                True,
                grant.approver,
                f"covered by session-scoped approval `{grant.id}`",
                scope="session",
            )
        rid = self.queue.submit(request, ttl=self.timeout)
        deadline = time.monotonic() + self.timeout
        while True:
            row = self.queue.get(rid)
            if row is not None and row.status in ("approved", "denied"):
                return Approval(
                    row.status == "approved",
                    row.approver or "?",
                    row.answer_reason or f"answered in the approval queue (`{rid}`)",
                    scope=row.scope or "call",
                )
            if row is not None and row.status == "expired":
                break
            if time.monotonic() >= deadline:
                break
            self._sleep(min(self.poll, max(0.0, deadline - time.monotonic())))
        self.queue.expire()
        row = self.queue.get(rid)
        if row is not None and row.status in ("approved", "denied"):  # answered at the wire
            return Approval(row.status == "approved", row.approver or "?", row.answer_reason or "")
        return Approval(False, "queue:expired", f"no answer within {self.timeout:g}s (`{rid}`)")


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str, ensure_ascii=False)


def _row(row: Sequence[Any]) -> QueuedRequest:
    data = dict(zip(_COLUMNS, row, strict=True))
    data["args"] = json.loads(data["args"])
    data["provenance"] = json.loads(data["provenance"])
    return QueuedRequest(**data)
