# Table names are module constants; every value is a bound parameter.
# ruff: noqa: S608
"""The fleet audit store: PostgreSQL (psycopg 3), one sequence per origin.

Every host (or worker group) appends to its own ``origin``; all origins live in
the same three tables, keyed by ``(origin, seq)``, with the same record and
checkpoint formats as the SQLite store. Writers on one origin serialise on the
origin's head row (``SELECT ... FOR UPDATE``), so several processes may share
an origin and still keep one gap-free sequence.

A commit returns after PostgreSQL has made it durable (``synchronous_commit``
as the server is configured; the default ``on`` flushes the WAL).

Needs the ``postgres`` extra: ``pip install 'stockade[postgres]'``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from typing import Any

from stockade.audit.checkpoint import Checkpoint
from stockade.audit.record import StoredRecord
from stockade.audit.store import Head, Query, Row, Store, Transaction, hide_password
from stockade.errors import AuditError, ConfigurationError

try:
    import psycopg
except ImportError as exc:  # pragma: no cover - depends on the install
    raise ConfigurationError(
        "the PostgreSQL audit store needs psycopg: pip install 'stockade[postgres]'"
    ) from exc

__all__ = ["PostgresStore", "list_origins"]

RECORDS = "stockade_audit_records"
CHECKPOINTS = "stockade_audit_checkpoints"
HEADS = "stockade_audit_heads"

_J = "(record::jsonb)"
#: what queries filter on, as expressions over the record: there are no copies
#: of record fields to disagree with it, and an insert parses the JSON only
#: for the two indexes
_FIELDS = {
    "session": f"({_J}->>'session')",
    "tool": f"({_J}->>'tool')",
    "action": f"({_J}->>'action')",
    "decision": f"({_J}->>'decision')",
    "rule": f"({_J}->>'rule')",
    "kind": f"({_J}->>'kind')",
    "time": f"(({_J}->>'time')::double precision)",
}
_SCHEMA = (
    f"""CREATE TABLE IF NOT EXISTS {RECORDS} (
    origin text NOT NULL,
    seq bigint NOT NULL,
    record text NOT NULL,
    chain bytea NOT NULL,
    PRIMARY KEY (origin, seq))""",
    f"CREATE INDEX IF NOT EXISTS {RECORDS}_session ON {RECORDS} (origin, {_FIELDS['session']})",
    f"CREATE INDEX IF NOT EXISTS {RECORDS}_time ON {RECORDS} (origin, {_FIELDS['time']})",
    f"""CREATE TABLE IF NOT EXISTS {CHECKPOINTS} (
    id bigserial PRIMARY KEY,
    origin text NOT NULL,
    size bigint NOT NULL,
    root bytea NOT NULL,
    time double precision NOT NULL,
    key_id text NOT NULL,
    signature bytea NOT NULL)""",
    f"CREATE INDEX IF NOT EXISTS {CHECKPOINTS}_origin ON {CHECKPOINTS} (origin, id)",
    f"""CREATE TABLE IF NOT EXISTS {HEADS} (
    origin text PRIMARY KEY,
    size bigint NOT NULL,
    chain bytea NOT NULL,
    frontier bytea NOT NULL)""",
)

_PAGE = 10000

# Autocommit makes this one statement one transaction: the head row moves only
# if nobody appended since this writer's last commit, and the records go in
# only if it moved. The arrays go in binary (%b): as text, psycopg would
# escape every quote of every record with a regex.
_FAST_APPEND = f"""
WITH h AS (
    UPDATE {HEADS} SET size = %(size)s, chain = %(chain)s, frontier = %(frontier)s
    WHERE origin = %(origin)s AND size = %(old)s
    RETURNING origin
)
INSERT INTO {RECORDS} (origin, seq, record, chain)
SELECT h.origin, r.seq, r.record, r.chain
FROM h, unnest(%(seqs)b::bigint[], %(records)b::text[], %(chains)b::bytea[])
    AS r(seq, record, chain)
"""
# The same for the usual single record, with plain parameters: adapting three
# one-element arrays costs the client more than the rest of the statement.
_FAST_APPEND_ONE = f"""
WITH h AS (
    UPDATE {HEADS} SET size = %(size)s, chain = %(chain)s, frontier = %(frontier)s
    WHERE origin = %(origin)s AND size = %(old)s
    RETURNING origin
)
INSERT INTO {RECORDS} (origin, seq, record, chain)
SELECT h.origin, %(seq)s::bigint, %(record)s::text, %(rchain)s::bytea FROM h
"""


def _fail(what: str, exc: BaseException) -> AuditError:
    detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return AuditError(f"audit store: {what}: {detail}")


def list_origins(url: str) -> list[tuple[str, int]]:
    """The origins the database at ``url`` holds, with their record counts, by name.

    Raise :class:`AuditError` when the database cannot be read.
    """
    try:
        with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
            exists = conn.execute("SELECT to_regclass(%s)", (HEADS,)).fetchone()
            if exists is None or exists[0] is None:
                return []
            rows = conn.execute(f"SELECT origin, size FROM {HEADS} ORDER BY origin").fetchall()
    except psycopg.Error as exc:
        raise _fail(f"cannot read `{hide_password(url)}`", exc) from exc
    return [(str(origin), int(size)) for origin, size in rows]


class _Tx(Transaction):
    def __init__(self, conn: psycopg.Connection[Any], origin: str) -> None:
        self._conn = conn
        self._origin = origin

    def head(self) -> Head:
        sql = f"SELECT size, chain, frontier FROM {HEADS} WHERE origin = %s FOR UPDATE"
        row = self._conn.execute(sql, (self._origin,)).fetchone()
        if row is None:
            self._conn.execute(
                f"INSERT INTO {HEADS} (origin, size, chain, frontier) "
                "VALUES (%s, 0, %s, '') ON CONFLICT DO NOTHING",
                (self._origin, bytes(32)),
            )
            row = self._conn.execute(sql, (self._origin,)).fetchone()
        assert row is not None
        return Head.load(int(row[0]), bytes(row[1]), bytes(row[2]))

    def insert(self, rows: Sequence[Row]) -> None:
        with self._conn.cursor() as cur:
            cur.executemany(
                f"INSERT INTO {RECORDS} (origin, seq, record, chain) VALUES (%s, %s, %s, %s)",
                [
                    (self._origin, r.seq, r.data.decode("utf-8", "surrogatepass"), r.chain)
                    for r in rows
                ],
            )

    def add_checkpoint(self, checkpoint: Checkpoint, *, refresh: bool = False) -> None:
        c = checkpoint
        if refresh:
            moved = self._conn.execute(
                f"UPDATE {CHECKPOINTS} SET time = %s, key_id = %s, signature = %s "
                f"WHERE id = (SELECT max(id) FROM {CHECKPOINTS} WHERE origin = %s) "
                "AND size = %s AND root = %s",
                (c.time, c.key_id, c.signature, self._origin, c.size, c.root),
            ).rowcount
            if moved == 1:
                return
        self._conn.execute(
            f"INSERT INTO {CHECKPOINTS} (origin, size, root, time, key_id, signature) "
            "VALUES (%s, %s, %s, %s, %s, %s)",
            (self._origin, c.size, c.root, c.time, c.key_id, c.signature),
        )

    def set_head(self, head: Head) -> None:
        self._conn.execute(
            f"UPDATE {HEADS} SET size = %s, chain = %s, frontier = %s WHERE origin = %s",
            (head.size, head.chain, head.frontier_bytes(), self._origin),
        )


class PostgresStore(Store):
    """Audit logs of many origins in one PostgreSQL database.

    >>> store = PostgresStore("postgresql://audit@db/audit", origin="worker-7")  # doctest: +SKIP
    """

    def __init__(self, url: str, origin: str, *, readonly: bool = False) -> None:
        self.url = url
        self.origin = origin
        self.location = hide_password(url)
        self.readonly = readonly
        self._read_lock = threading.RLock()
        self._w: psycopg.Connection[Any] | None = None
        try:
            self._r = psycopg.connect(url, autocommit=True)
            if not readonly:
                self._w = self._connect()
                with self._w.transaction():
                    self._w.execute(
                        "SELECT pg_advisory_xact_lock(hashtext('stockade_audit_schema'))"
                    )
                    for statement in _SCHEMA:
                        self._w.execute(statement)
        except psycopg.Error as exc:
            raise _fail(f"cannot open `{self.location}`", exc) from exc

    def _connect(self) -> psycopg.Connection[Any]:
        return psycopg.connect(self.url, autocommit=True)

    @contextmanager
    def transaction(self) -> Iterator[Transaction]:
        """A transaction holding this origin's head row; reconnects once after a lost link."""
        if self.readonly:
            raise AuditError(f"audit store `{self.location}` is open read-only")
        try:
            if self._w is None or self._w.closed or self._w.broken:
                self._w = self._connect()
            conn = self._w
        except psycopg.Error as exc:
            raise _fail("cannot connect", exc) from exc
        try:
            with conn.transaction():
                yield _Tx(conn, self.origin)
        except psycopg.Error as exc:
            raise _fail("cannot write", exc) from exc

    def append_fast(self, old_size: int, head: Head, rows: Sequence[Row]) -> bool:
        """One statement, one round trip, one commit: the head moves only from ``old_size``."""
        if self.readonly:
            raise AuditError(f"audit store `{self.location}` is open read-only")
        try:
            if self._w is None or self._w.closed or self._w.broken:
                self._w = self._connect()
            params: dict[str, Any] = {
                "origin": self.origin,
                "old": old_size,
                "size": head.size,
                "chain": head.chain,
                "frontier": head.frontier_bytes(),
            }
            if len(rows) == 1:
                row = rows[0]
                params.update(
                    seq=row.seq,
                    record=row.data.decode("utf-8", "surrogatepass"),
                    rchain=row.chain,
                )
                cur = self._w.execute(_FAST_APPEND_ONE, params, prepare=True)
            else:
                params.update(
                    seqs=[r.seq for r in rows],
                    records=[r.data.decode("utf-8", "surrogatepass") for r in rows],
                    chains=[r.chain for r in rows],
                )
                cur = self._w.execute(_FAST_APPEND, params)
        except psycopg.Error as exc:
            raise _fail("cannot write", exc) from exc
        return cur.rowcount == len(rows)

    # -- reading --------------------------------------------------------------

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        """A repeatable-read, read-only transaction around the reads in the block."""
        with self._read_lock:
            try:
                self._r.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            except psycopg.Error as exc:
                raise _fail("cannot read", exc) from exc
            try:
                yield
            finally:
                with suppress(psycopg.Error):
                    self._r.execute("COMMIT")

    def _fetch(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        with self._read_lock:
            try:
                return self._r.execute(sql, params).fetchall()
            except psycopg.Error as exc:
                raise _fail("cannot read", exc) from exc

    def scan_batches(
        self, start: int = 0, stop: int | None = None
    ) -> Iterator[list[tuple[int, bytes, bytes]]]:
        """Pages of ``(seq, record, chain)`` in order."""
        nxt = start
        while True:
            limit = _PAGE if stop is None else min(_PAGE, stop - nxt)
            if limit <= 0:
                return
            rows = self._fetch(
                f"SELECT seq, record, chain FROM {RECORDS} WHERE origin = %s AND seq >= %s "
                "ORDER BY seq LIMIT %s",
                (self.origin, nxt, limit),
            )
            yield [
                (int(seq), record.encode("utf-8", "surrogatepass"), bytes(chain))
                for seq, record, chain in rows
            ]
            if len(rows) < limit:
                return
            nxt = int(rows[-1][0]) + 1

    def checkpoints(self) -> list[Checkpoint]:
        """Every checkpoint of this origin, oldest first."""
        rows = self._fetch(
            f"SELECT size, root, time, key_id, signature FROM {CHECKPOINTS} "
            "WHERE origin = %s ORDER BY id",
            (self.origin,),
        )
        return [
            Checkpoint(self.origin, int(s), bytes(r), float(t), str(k), bytes(sig))
            for s, r, t, k, sig in rows
        ]

    def query(self, q: Query) -> Iterator[StoredRecord]:
        """Records matching ``q``, fetched in pages."""
        where = ["origin = %s"]
        params: list[Any] = [self.origin]
        for column in ("session", "tool", "action", "decision", "rule", "kind"):
            value = getattr(q, column)
            if value is not None:
                where.append(f"{_FIELDS[column]} = %s")
                params.append(value)
        if q.since is not None:
            where.append(f"{_FIELDS['time']} >= %s")
            params.append(q.since)
        if q.until is not None:
            where.append(f"{_FIELDS['time']} < %s")
            params.append(q.until)
        if q.after_seq is not None:
            where.append("seq > %s")
            params.append(q.after_seq)
        order = "DESC" if q.newest_first else "ASC"
        # only fixed column names go into the text; values are bound parameters
        sql = f"SELECT seq, record FROM {RECORDS} WHERE {' AND '.join(where)} ORDER BY seq {order}"
        if q.limit is not None:
            sql += f" LIMIT {int(q.limit)}"
        for seq, record in self._fetch(sql, params):
            yield StoredRecord(self.origin, int(seq), record.encode("utf-8", "surrogatepass"))

    def size(self) -> int:
        """The head's size (0 for an origin never written)."""
        rows = self._fetch(f"SELECT size FROM {HEADS} WHERE origin = %s", (self.origin,))
        return int(rows[0][0]) if rows else 0

    def close(self) -> None:
        """Close both connections."""
        for conn in (self._w, self._r):
            if conn is not None:
                with suppress(psycopg.Error):
                    conn.close()
