"""The SQL tool's engine layer: each database enforces its own limits.

This layer does not trust the parser layer (:mod:`stockade.tools.sql_check`).
Whatever statement reaches it:

- **SQLite** is opened read-only (``mode=ro`` URI) with an authorizer that
  admits only reads of the allowed tables and columns and the functions that
  are not on the deny list (no writes, ``ATTACH``, ``PRAGMA``, DDL, ``VACUUM``),
  the number of attached databases limited to 0, and a progress handler that
  interrupts a statement past its timeout. Python's driver runs one statement
  per call.
- **PostgreSQL** runs the statement as ``DECLARE ... CURSOR FOR <statement>``
  through the extended protocol (one statement, and only a query can be a
  cursor) in a ``READ ONLY`` transaction whose first query sets
  ``statement_timeout`` (so ``transaction_read_only`` cannot be switched off
  afterwards), fetches at most the row cap and always rolls back. The real
  control is the role: at connect time the tool refuses a role that is a
  superuser, belongs to a server-file or signalling role, or may do more than
  ``SELECT`` on the allowed tables and columns.
- **MariaDB/MySQL** runs in ``START TRANSACTION READ ONLY`` with
  ``max_statement_time`` (``max_execution_time`` on MySQL), without
  multi-statements or ``LOCAL INFILE`` on the client, and always rolls back;
  at connect time the tool refuses an account with any grant beyond
  ``SELECT`` on the allowed tables and columns.

In write mode the same engines admit INSERT/UPDATE/DELETE on the tables the
policy lists for writing, inside a transaction the tool commits or rolls back.

This module holds the shared pieces and SQLite; PostgreSQL is in
:mod:`stockade.tools.sql_postgres`, MariaDB/MySQL in
:mod:`stockade.tools.sql_mysql` (their drivers are imported on first use).
"""

from __future__ import annotations

import re
import sqlite3
import sys
import threading
import time
import urllib.parse
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stockade.errors import ConfigurationError, SQLError
from stockade.tools.sql_check import DANGEROUS_FUNCTIONS
from stockade.tools.sql_errors import sqlite_error_text

__all__ = [
    "ColumnInfo",
    "Engine",
    "EngineSpec",
    "QueryResult",
    "SQLiteEngine",
    "engine_kind",
    "open_engine",
]

# Single-quoted literals in a driver's message may hold row values.
_LITERAL = re.compile(r"'[^']*'")


@dataclass(frozen=True)
class ColumnInfo:
    """One column of a table as the database describes it."""

    name: str
    type: str


@dataclass(frozen=True)
class QueryResult:
    """Rows a statement returned (at most the cap), or rows it changed."""

    columns: tuple[str, ...]
    rows: list[tuple[Any, ...]]
    truncated: bool = False
    affected: int = 0


@dataclass(frozen=True)
class EngineSpec:
    """What an engine needs to know: where, which tables (lower-cased name to
    the allowed lower-cased column names, ``None`` for all), which may be
    written, which columns are denied, and whether it is read-only. ``base_dir`` resolves relative
    SQLite paths; ``namespace`` is the PostgreSQL schema (default ``public``)."""

    url: str
    tables: Mapping[str, frozenset[str] | None]
    denied_columns: Mapping[str, frozenset[str]] = field(default_factory=dict)
    write_tables: frozenset[str] = frozenset()
    read_only: bool = True
    base_dir: Path = field(default_factory=Path.cwd)
    namespace: str = ""
    verify_grants: bool = True

    def column_allowed(self, table: str, column: str) -> bool:
        """Whether a (lower-cased) column of an allowed (lower-cased) table may be read."""
        if table not in self.tables:
            return False
        allowed = self.tables[table]
        if allowed is not None and column not in allowed:
            return False
        return column not in self.denied_columns.get(table, frozenset())


def engine_kind(url: str) -> str:
    """``sqlite``, ``postgres`` or ``mysql`` for a connection URL; raise otherwise."""
    scheme = url.split(":", 1)[0].lower()
    if scheme == "sqlite":
        return "sqlite"
    if scheme in ("postgresql", "postgres"):
        return "postgres"
    if scheme in ("mysql", "mariadb"):
        return "mysql"
    raise ConfigurationError(
        f"unknown database URL scheme `{scheme}`; expected sqlite, postgresql or mysql"
    )


def _redact_url(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(":" + parts.password + "@", ":***@", 1)
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def _message(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return _LITERAL.sub("'…'", text)[:200]


Runner = Callable[..., QueryResult]


class Engine(ABC):
    """One connection to one database, with the engine's own limits.

    Methods take a lock: one statement at a time per engine.
    """

    kind: str = ""
    namespace: str = ""
    placeholder: str = "%s"

    def __init__(self, spec: EngineSpec) -> None:
        self.spec = spec
        self._lock = threading.RLock()

    @abstractmethod
    def schema(self) -> dict[str, tuple[str, tuple[ColumnInfo, ...]]]:
        """Lower-cased table name to (real name, columns) for the allowed tables that exist."""

    @abstractmethod
    def query(self, sql: str, *, max_rows: int, timeout: float) -> QueryResult:
        """Run one read-only statement; return at most ``max_rows`` rows."""

    @abstractmethod
    @contextmanager
    def transaction(self, *, timeout: float) -> Iterator[Runner]:
        """A write transaction: yields ``run(sql, params)``; commits when the block
        ends without an exception, rolls back otherwise. ``params`` fill the
        engine's placeholders (:attr:`placeholder`); without them the text is
        sent as it is (no ``%`` formatting)."""

    def primary_key(self, table: str) -> tuple[str, ...]:
        """The primary-key columns of an allowed table (empty when it has none)."""
        return ()

    @abstractmethod
    def close(self) -> None:
        """Close the connection."""


# -- SQLite -------------------------------------------------------------------------

_SQLITE_READ_ACTIONS = {sqlite3.SQLITE_SELECT, sqlite3.SQLITE_RECURSIVE}


class SQLiteEngine(Engine):
    """A SQLite file opened read-only (or read-write for write mode) with an authorizer."""

    kind = "sqlite"
    namespace = "main"
    placeholder = "?"

    def __init__(self, spec: EngineSpec) -> None:
        super().__init__(spec)
        path = _sqlite_path(spec.url, spec.base_dir)
        if not path.is_file():
            raise ConfigurationError(f"sqlite database `{path}` does not exist")
        mode = "ro" if spec.read_only else "rw"
        uri = path.resolve().as_uri() + f"?mode={mode}"
        self._trusted = False
        # writes are admitted only inside transaction(), never through query()
        self._writing = False
        self._dangerous = DANGEROUS_FUNCTIONS["sqlite"]
        try:
            self._conn = sqlite3.connect(
                uri, uri=True, check_same_thread=False, isolation_level=None
            )
        except sqlite3.Error as exc:
            raise ConfigurationError(f"cannot open sqlite database: {_message(exc)}") from exc
        if sys.version_info >= (3, 11):
            self._conn.setlimit(sqlite3.SQLITE_LIMIT_ATTACHED, 0)
            self._conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, 50_000_000)
        with self._trust():
            self._conn.execute("PRAGMA trusted_schema = OFF")
            if spec.read_only:
                self._conn.execute("PRAGMA query_only = ON")
        self._conn.set_authorizer(self._authorize)

    @contextmanager
    def _trust(self) -> Iterator[None]:
        """Our own introspection statements, which the authorizer lets through."""
        self._trusted = True
        try:
            yield
        finally:
            self._trusted = False

    def _authorize(
        self, action: int, arg1: str | None, arg2: str | None, db: str | None, source: str | None
    ) -> int:
        try:
            if self._trusted:
                return sqlite3.SQLITE_OK
            if action in _SQLITE_READ_ACTIONS:
                return sqlite3.SQLITE_OK
            if action == sqlite3.SQLITE_READ:
                return self._read(arg1 or "", arg2 or "", db, source)
            if action == sqlite3.SQLITE_FUNCTION:
                name = (arg2 or "").lower()
                return sqlite3.SQLITE_DENY if name in self._dangerous else sqlite3.SQLITE_OK
            if self._writing:
                return self._write(action, arg1 or "", db)
        except Exception:  # an authorizer must never fail open
            return sqlite3.SQLITE_DENY
        return sqlite3.SQLITE_DENY

    def _read(self, table: str, column: str, db: str | None, source: str | None) -> int:
        if db is None:
            return sqlite3.SQLITE_OK  # a CTE or subquery: its own reads are checked
        if db != "main":
            return sqlite3.SQLITE_DENY
        tables = self.spec.tables
        view = (source or "").lower()
        if view in tables and tables[view] is None and view not in self.spec.denied_columns:
            return sqlite3.SQLITE_OK  # a view the policy allows as a whole
        key = table.lower()
        if key not in tables:
            return sqlite3.SQLITE_DENY
        if not column or self.spec.column_allowed(key, column.lower()):
            return sqlite3.SQLITE_OK
        return sqlite3.SQLITE_DENY

    def _write(self, action: int, table: str, db: str | None) -> int:
        if action in (sqlite3.SQLITE_TRANSACTION, sqlite3.SQLITE_SAVEPOINT):
            return sqlite3.SQLITE_OK
        writes = (sqlite3.SQLITE_INSERT, sqlite3.SQLITE_UPDATE, sqlite3.SQLITE_DELETE)
        if action in writes and db == "main" and table.lower() in self.spec.write_tables:
            return sqlite3.SQLITE_OK
        return sqlite3.SQLITE_DENY

    def schema(self) -> dict[str, tuple[str, tuple[ColumnInfo, ...]]]:
        """See :meth:`Engine.schema`."""
        out: dict[str, tuple[str, tuple[ColumnInfo, ...]]] = {}
        with self._lock, self._trust():
            try:
                names = [
                    str(r[0])
                    for r in self._conn.execute(
                        "SELECT name FROM sqlite_schema WHERE type IN ('table', 'view')"
                    )
                ]
                for name in names:
                    if name.lower() not in self.spec.tables:
                        continue
                    cols = self._conn.execute(
                        "SELECT name, type FROM pragma_table_info(?)", (name,)
                    ).fetchall()
                    out[name.lower()] = (name, tuple(ColumnInfo(str(c), str(t)) for c, t in cols))
            except sqlite3.Error as exc:
                raise SQLError(
                    f"cannot read the schema: {sqlite_error_text(str(exc), '')}"
                ) from exc
        return out

    @contextmanager
    def _deadline(self, timeout: float) -> Iterator[None]:
        deadline = time.monotonic() + timeout
        self._conn.set_progress_handler(lambda: int(time.monotonic() > deadline), 1000)
        try:
            yield
        finally:
            self._conn.set_progress_handler(None, 0)

    def _fail(self, exc: sqlite3.Error, timeout: float, statement: str = "") -> SQLError:
        """A fixed message by the message's shape: SQLite's text may quote row
        values, so it never passes (see :mod:`stockade.tools.sql_errors`)."""
        text = str(exc)
        if "interrupted" in text:
            return SQLError(f"the statement timed out after {timeout:g}s")
        if "not authorized" in text or "prohibited" in text:
            return SQLError("the database refused the statement: not authorized")
        return SQLError(sqlite_error_text(text, statement))

    def query(self, sql: str, *, max_rows: int, timeout: float) -> QueryResult:
        """See :meth:`Engine.query`."""
        with self._lock, self._deadline(timeout):
            try:
                cur = self._conn.execute(sql)
                try:
                    rows = cur.fetchmany(max_rows + 1)
                    columns = tuple(d[0] for d in cur.description or ())
                finally:
                    cur.close()
                if self._conn.in_transaction:
                    self._conn.rollback()
            except sqlite3.Error as exc:
                raise self._fail(exc, timeout, sql) from exc
        return QueryResult(columns, rows[:max_rows], truncated=len(rows) > max_rows)

    def primary_key(self, table: str) -> tuple[str, ...]:
        """See :meth:`Engine.primary_key`."""
        with self._lock, self._trust():
            rows = self._conn.execute(
                "SELECT name FROM pragma_table_info(?) WHERE pk > 0 ORDER BY pk", (table,)
            ).fetchall()
        return tuple(str(r[0]) for r in rows)

    @contextmanager
    def transaction(self, *, timeout: float) -> Iterator[Runner]:
        """See :meth:`Engine.transaction`."""
        if self.spec.read_only:
            raise SQLError("this database is read-only")
        with self._lock, self._deadline(timeout):

            def run(sql: str, params: Sequence[Any] | None = None) -> QueryResult:
                try:
                    cur = self._conn.execute(sql, tuple(params or ()))
                    rows = cur.fetchall()
                    columns = tuple(d[0] for d in cur.description or ())
                    return QueryResult(columns, rows, affected=max(cur.rowcount, 0))
                except sqlite3.Error as exc:
                    raise self._fail(exc, timeout, sql) from exc

            self._writing = True
            try:
                try:
                    self._conn.execute("BEGIN IMMEDIATE")
                    yield run
                except BaseException:
                    if self._conn.in_transaction:
                        self._conn.rollback()
                    raise
                try:
                    self._conn.commit()
                except sqlite3.Error as exc:
                    raise self._fail(exc, timeout) from exc
            finally:
                self._writing = False

    def close(self) -> None:
        """See :meth:`Engine.close`."""
        with self._lock:
            self._conn.close()


def _sqlite_path(url: str, base_dir: Path) -> Path:
    """``sqlite:///relative.db`` or ``sqlite:////absolute.db`` to a path."""
    if not url.lower().startswith("sqlite:///"):
        raise ConfigurationError(
            "a sqlite URL looks like `sqlite:///file.db` or `sqlite:////abs/file.db`"
        )
    rest = urllib.parse.unquote(url[len("sqlite:///") :].split("?", 1)[0])
    if not rest or rest == ":memory:":
        raise ConfigurationError("the sql tool needs a sqlite file, not an in-memory database")
    path = Path(rest)
    return path if path.is_absolute() else base_dir / path


def open_engine(spec: EngineSpec) -> Engine:
    """The engine for ``spec.url`` with all its limits on (drivers imported on first use)."""
    kind = engine_kind(spec.url)
    if kind == "postgres":
        from stockade.tools.sql_postgres import PostgresEngine

        return PostgresEngine(spec)
    if kind == "mysql":
        from stockade.tools.sql_mysql import MySQLEngine

        return MySQLEngine(spec)
    return SQLiteEngine(spec)
