"""The default audit store: one SQLite file in WAL mode, no setup needed.

Crash safety: every append is a committed transaction before ``append``
returns. ``durability="process"`` (the default) runs WAL with
``synchronous=NORMAL``: a committed record survives the process being killed
at any instant (``kill -9``), and the file is never left corrupt; an operating
system crash or power cut may lose the last transactions (they are lost
whole, and a checkpoint mirror shows the loss). ``durability="power"`` runs
``synchronous=FULL``: each commit is fsynced before ``append`` returns, so a
record also survives a power cut, at the cost of one fsync per commit
(appends from many threads share one commit, see :class:`AuditLog`).

Threads and processes may append to the same file: each commit takes
SQLite's write lock (``BEGIN IMMEDIATE``) and reads the head inside it, so the
sequence stays one and gap-free.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from stockade.audit.checkpoint import Checkpoint
from stockade.audit.record import StoredRecord
from stockade.audit.store import Head, Query, Row, Store, Transaction
from stockade.errors import AuditError

__all__ = ["SQLiteStore"]

SCHEMA_VERSION = "1"

# The query columns are VIRTUAL: computed from the record when a query reads
# them, never stored, never indexed by default. Indexes on them cost two JSON
# parses and two extra pages per append (about a quarter of the append time);
# `audit query` scans instead (see docs/audit.md for adding an index).
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS records (
    seq INTEGER PRIMARY KEY,
    record TEXT NOT NULL,
    chain BLOB NOT NULL,
    time REAL GENERATED ALWAYS AS (json_extract(record, '$.time')) VIRTUAL,
    kind TEXT GENERATED ALWAYS AS (json_extract(record, '$.kind')) VIRTUAL,
    session TEXT GENERATED ALWAYS AS (json_extract(record, '$.session')) VIRTUAL,
    tool TEXT GENERATED ALWAYS AS (json_extract(record, '$.tool')) VIRTUAL,
    action TEXT GENERATED ALWAYS AS (json_extract(record, '$.action')) VIRTUAL,
    decision TEXT GENERATED ALWAYS AS (json_extract(record, '$.decision')) VIRTUAL,
    rule TEXT GENERATED ALWAYS AS (json_extract(record, '$.rule')) VIRTUAL
);
CREATE TABLE IF NOT EXISTS checkpoints (
    id INTEGER PRIMARY KEY,
    size INTEGER NOT NULL,
    root BLOB NOT NULL,
    time REAL NOT NULL,
    key_id TEXT NOT NULL,
    signature BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS head (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    size INTEGER NOT NULL,
    chain BLOB NOT NULL,
    frontier BLOB NOT NULL
);
"""

_SYNC = {"process": "NORMAL", "power": "FULL"}


def _fail(what: str, exc: BaseException) -> AuditError:
    detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return AuditError(f"audit store: {what}: {detail}")


class _Tx(Transaction):
    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def head(self) -> Head:
        row = self._conn.execute("SELECT size, chain, frontier FROM head WHERE id = 1").fetchone()
        if row is None:
            return Head.empty()
        return Head.load(int(row[0]), bytes(row[1]), bytes(row[2]))

    def insert(self, rows: Sequence[Row]) -> None:
        sql = "INSERT INTO records (seq, record, chain) VALUES (?, ?, ?)"
        if len(rows) == 1:
            r = rows[0]
            self._conn.execute(sql, (r.seq, r.data.decode("utf-8", "surrogatepass"), r.chain))
            return
        self._conn.executemany(
            sql, [(r.seq, r.data.decode("utf-8", "surrogatepass"), r.chain) for r in rows]
        )

    def add_checkpoint(self, checkpoint: Checkpoint, *, refresh: bool = False) -> None:
        c = checkpoint
        if refresh:
            moved = self._conn.execute(
                "UPDATE checkpoints SET time = ?, key_id = ?, signature = ? "
                "WHERE id = (SELECT max(id) FROM checkpoints) AND size = ? AND root = ?",
                (c.time, c.key_id, c.signature, c.size, c.root),
            ).rowcount
            if moved == 1:
                return
        self._conn.execute(
            "INSERT INTO checkpoints (size, root, time, key_id, signature) VALUES (?, ?, ?, ?, ?)",
            (c.size, c.root, c.time, c.key_id, c.signature),
        )

    def set_head(self, head: Head) -> None:
        self._conn.execute(
            "UPDATE head SET size = ?, chain = ?, frontier = ? WHERE id = 1",
            (head.size, head.chain, head.frontier_bytes()),
        )


class SQLiteStore(Store):
    """An audit log in one SQLite file.

    >>> store = SQLiteStore(Path("audit.db"), origin="laptop")  # doctest: +SKIP
    """

    def __init__(
        self,
        path: Path,
        origin: str,
        *,
        durability: str = "process",
        readonly: bool = False,
        busy_timeout: float = 30.0,
    ) -> None:
        if durability not in _SYNC:
            raise AuditError(f"unknown durability `{durability}`; expected process or power")
        self.path = Path(path)
        self.location = str(self.path)
        self.origin = origin
        self.readonly = readonly
        self._read_lock = threading.Lock()
        try:
            if readonly:
                if not self.path.exists():
                    raise AuditError(f"audit store `{self.path}` does not exist")
                uri = f"file:{self.path.resolve()}?mode=ro"
                self._w: sqlite3.Connection | None = None
                self._r = sqlite3.connect(
                    uri, uri=True, isolation_level=None, check_same_thread=False
                )
            else:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                w = sqlite3.connect(
                    self.path, isolation_level=None, check_same_thread=False, timeout=busy_timeout
                )
                self._w = w
                w.execute("PRAGMA journal_mode=WAL")
                w.execute(f"PRAGMA synchronous={_SYNC[durability]}")
                w.execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")
                self._init_schema(w)
                self._r = sqlite3.connect(
                    self.path, isolation_level=None, check_same_thread=False, timeout=busy_timeout
                )
            self._r.text_factory = bytes
            self._r.execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")
            self._check_meta()
        except sqlite3.Error as exc:
            raise _fail(f"cannot open `{self.path}`", exc) from exc
        except OSError as exc:
            raise AuditError(f"audit store: cannot open `{self.path}`: {exc.strerror}") from exc

    def _init_schema(self, w: sqlite3.Connection) -> None:
        w.execute("BEGIN IMMEDIATE")
        try:
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    w.execute(statement)
            w.execute(
                "INSERT OR IGNORE INTO meta (key, value) VALUES ('schema', ?), ('origin', ?)",
                (SCHEMA_VERSION, self.origin),
            )
            w.execute(
                "INSERT OR IGNORE INTO head (id, size, chain, frontier) VALUES (1, 0, ?, x'')",
                (bytes(32),),
            )
            w.execute("COMMIT")
        except BaseException:
            if w.in_transaction:
                w.execute("ROLLBACK")
            raise

    def _check_meta(self) -> None:
        rows = dict(self._r.execute("SELECT key, value FROM meta").fetchall())
        origin = rows.get(b"origin", b"").decode("utf-8")
        if self.readonly and not self.origin:
            self.origin = origin
        elif origin != self.origin:
            raise AuditError(
                f"audit store `{self.path}` holds origin `{origin}`, not `{self.origin}`"
            )

    # -- writing --------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[Transaction]:
        """A ``BEGIN IMMEDIATE`` transaction; raise :class:`AuditError` on any failure."""
        w = self._w
        if w is None:
            raise AuditError(f"audit store `{self.path}` is open read-only")
        try:
            w.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise _fail("cannot start a transaction", exc) from exc
        try:
            yield _Tx(w)
            w.execute("COMMIT")
        except BaseException as exc:
            try:
                if w.in_transaction:
                    w.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            if isinstance(exc, sqlite3.Error):
                raise _fail("cannot write", exc) from exc
            raise

    def append_fast(self, old_size: int, head: Head, rows: Sequence[Row]) -> bool:
        """One transaction without reading the head: it moves only if it still says ``old_size``."""
        w = self._w
        if w is None:
            raise AuditError(f"audit store `{self.path}` is open read-only")
        try:
            w.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise _fail("cannot start a transaction", exc) from exc
        try:
            moved = w.execute(
                "UPDATE head SET size = ?, chain = ?, frontier = ? WHERE id = 1 AND size = ?",
                (head.size, head.chain, head.frontier_bytes(), old_size),
            ).rowcount
            if moved != 1:
                w.execute("ROLLBACK")
                return False
            _Tx(w).insert(rows)
            w.execute("COMMIT")
            return True
        except BaseException as exc:
            with suppress(sqlite3.Error):
                if w.in_transaction:
                    w.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                raise _fail("cannot write", exc) from exc
            raise

    # -- reading --------------------------------------------------------------

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        """One read transaction: every read inside sees the same state."""
        try:
            self._r.execute("BEGIN")
        except sqlite3.Error as exc:
            raise _fail("cannot read", exc) from exc
        try:
            yield
        finally:
            with suppress(sqlite3.Error):
                self._r.execute("COMMIT")

    def _rows(self, sql: str, params: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
        with self._read_lock:
            try:
                cur = self._r.execute(sql, params)
                while True:
                    batch = cur.fetchmany(4096)
                    if not batch:
                        return
                    yield from batch
            except sqlite3.Error as exc:
                raise _fail("cannot read", exc) from exc

    def scan_batches(
        self, start: int = 0, stop: int | None = None
    ) -> Iterator[list[tuple[int, bytes, bytes]]]:
        """Lists of ``(seq, record, chain)`` in order."""
        sql = "SELECT seq, record, chain FROM records WHERE seq >= ?"
        params: tuple[int, ...] = (start,)
        if stop is not None:
            sql += " AND seq < ?"
            params = (start, stop)
        with self._read_lock:
            try:
                cur = self._r.execute(sql + " ORDER BY seq", params)
                while True:
                    batch = cur.fetchmany(8192)
                    if not batch:
                        return
                    yield batch
            except sqlite3.Error as exc:
                raise _fail("cannot read", exc) from exc

    def checkpoints(self) -> list[Checkpoint]:
        """Every checkpoint, oldest first."""
        return [
            Checkpoint(self.origin, int(size), bytes(root), float(t), kid.decode(), bytes(sig))
            for size, root, t, kid, sig in self._rows(
                "SELECT size, root, time, key_id, signature FROM checkpoints ORDER BY id"
            )
        ]

    def query(self, q: Query) -> Iterator[StoredRecord]:
        """Records matching ``q``."""
        where, params = _where(q)
        # only fixed column names go into the text; values are bound parameters
        sql = "SELECT seq, record FROM records" + (" WHERE " + " AND ".join(where) if where else "")  # noqa: S608
        sql += " ORDER BY seq DESC" if q.newest_first else " ORDER BY seq"
        if q.limit is not None:
            sql += f" LIMIT {int(q.limit)}"
        for seq, data in self._rows(sql, tuple(params)):
            yield StoredRecord(self.origin, int(seq), bytes(data))

    def size(self) -> int:
        """The head's size (0 for an empty log)."""
        rows = list(self._rows("SELECT size FROM head WHERE id = 1"))
        return int(rows[0][0]) if rows else 0

    def close(self) -> None:
        """Close both connections."""
        for conn in (self._w, self._r):
            if conn is not None:
                with suppress(sqlite3.Error):
                    conn.close()


def _where(q: Query) -> tuple[list[str], list[Any]]:
    where: list[str] = []
    params: list[Any] = []
    for column in ("session", "tool", "action", "decision", "rule", "kind"):
        value = getattr(q, column)
        if value is not None:
            where.append(f"{column} = ?")
            params.append(value)
    if q.since is not None:
        where.append("time >= ?")
        params.append(q.since)
    if q.until is not None:
        where.append("time < ?")
        params.append(q.until)
    if q.after_seq is not None:
        where.append("seq > ?")
        params.append(q.after_seq)
    return where, params
