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

__all__ = [
    "ColumnInfo",
    "Engine",
    "EngineSpec",
    "MySQLEngine",
    "PostgresEngine",
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
                raise SQLError(f"cannot read the schema: {_message(exc)}") from exc
        return out

    @contextmanager
    def _deadline(self, timeout: float) -> Iterator[None]:
        deadline = time.monotonic() + timeout
        self._conn.set_progress_handler(lambda: int(time.monotonic() > deadline), 1000)
        try:
            yield
        finally:
            self._conn.set_progress_handler(None, 0)

    def _fail(self, exc: sqlite3.Error, timeout: float) -> SQLError:
        text = str(exc)
        if "interrupted" in text:
            return SQLError(f"the statement timed out after {timeout:g}s")
        if "not authorized" in text or "prohibited" in text:
            return SQLError(f"the database refused the statement: {_message(exc)}")
        return SQLError(f"the statement failed: {_message(exc)}")

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
                raise self._fail(exc, timeout) from exc
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
                    raise self._fail(exc, timeout) from exc

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


# -- PostgreSQL -----------------------------------------------------------------------

_PG_DANGEROUS_ROLES = (
    "pg_read_server_files",
    "pg_write_server_files",
    "pg_execute_server_program",
    "pg_signal_backend",
    "pg_write_all_data",
    "pg_read_all_data",
    "pg_checkpoint",
)

_PG_CURSOR = "stockade_cursor"


class PostgresEngine(Engine):
    """PostgreSQL through psycopg 3 (the ``postgres`` extra), as a least-privilege role."""

    kind = "postgres"

    def __init__(self, spec: EngineSpec) -> None:
        super().__init__(spec)
        try:
            import psycopg
        except ImportError as exc:  # pragma: no cover - the extra is installed in tests
            raise ConfigurationError(
                "postgresql needs the postgres extra: pip install 'stockade[postgres]'"
            ) from exc
        self._psycopg = psycopg
        self.namespace = spec.namespace or "public"
        self._conn: Any = None
        self._connect()
        if spec.verify_grants:
            try:
                self.verify_role()
            except BaseException:
                self.close()
                raise

    def _connect(self) -> None:
        psycopg = self._psycopg
        try:
            conn = psycopg.connect(
                self.spec.url,
                autocommit=False,
                connect_timeout=10,
                application_name="stockade",
            )
        except psycopg.Error as exc:
            raise SQLError(
                f"cannot connect to `{_redact_url(self.spec.url)}`: {type(exc).__name__}"
            ) from exc
        conn.read_only = self.spec.read_only
        self._conn = conn

    def _live(self) -> Any:
        if self._conn is None or self._conn.closed or self._conn.broken:
            self._connect()
            if self.spec.verify_grants:  # grants may have changed since: check again
                try:
                    self.verify_role()
                except BaseException:
                    self._conn.close()
                    raise
        return self._conn

    def verify_role(self) -> None:
        """Refuse a role whose privileges are wider than the policy (see the module docs)."""
        conn = self._live()
        try:
            with conn.cursor() as cur:
                cur.execute(
                    "SELECT rolsuper, rolcreaterole, rolcreatedb, rolbypassrls, rolreplication, "
                    "current_user FROM pg_roles WHERE rolname = current_user"
                )
                row = cur.fetchone()
                if row is None or any(row[:5]):
                    raise ConfigurationError(
                        f"postgresql role `{row[5] if row else '?'}` is a superuser or may create "
                        "roles or databases, bypass row security or replicate; connect as a "
                        "least-privilege role (see `stockade sql grant-readonly`)"
                    )
                cur.execute(
                    "SELECT rolname FROM pg_roles WHERE rolname = ANY(%s) "
                    "AND pg_has_role(current_user, oid, 'USAGE')",
                    (list(_PG_DANGEROUS_ROLES),),
                )
                bad = [r[0] for r in cur.fetchall()]
                if bad:
                    raise ConfigurationError(
                        f"postgresql role `{row[5]}` is a member of `{bad[0]}`; "
                        "connect as a least-privilege role"
                    )
                self._verify_tables(cur, str(row[5]))
        except self._psycopg.Error as exc:
            raise SQLError(f"cannot check the role's privileges: {type(exc).__name__}") from exc
        finally:
            conn.rollback()

    def _verify_tables(self, cur: Any, role: str) -> None:
        cur.execute(
            "SELECT n.nspname, c.relname, "
            "has_table_privilege(c.oid, 'INSERT,UPDATE,DELETE,TRUNCATE,REFERENCES,TRIGGER'), "
            "has_any_column_privilege(c.oid, 'SELECT'), "
            "has_table_privilege(c.oid, 'TRUNCATE'), "
            "has_any_column_privilege(c.oid, 'INSERT,UPDATE') "
            "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f') "
            "AND n.nspname NOT IN ('pg_catalog', 'information_schema') "
            "AND n.nspname NOT LIKE 'pg\\_toast%%' AND n.nspname NOT LIKE 'pg\\_temp%%'"
        )
        tables = self.spec.tables
        for nsp, rel, any_write, any_select, trunc, col_write in cur.fetchall():
            allowed = nsp == self.namespace and rel.lower() in tables
            name = f"{nsp}.{rel}"
            if any_select and not allowed:
                raise ConfigurationError(
                    f"postgresql role `{role}` may read `{name}`, which the policy does not "
                    "allow; grant only the policy's tables (see `stockade sql grant-readonly`)"
                )
            may_write = (
                allowed and rel.lower() in self.spec.write_tables and not self.spec.read_only
            )
            if (any_write or col_write) and not may_write:
                raise ConfigurationError(
                    f"postgresql role `{role}` may change `{name}`; the policy allows only "
                    "reading it"
                )
            if may_write and trunc:
                raise ConfigurationError(f"postgresql role `{role}` may truncate `{name}`")
            restricted = (
                tables.get(rel.lower()) is not None or rel.lower() in self.spec.denied_columns
            )
            if allowed and restricted:
                cur.execute(
                    "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass "
                    "AND attnum > 0 AND NOT attisdropped "
                    "AND has_column_privilege(attrelid, attnum, 'SELECT')",
                    (f'"{nsp}"."{rel}"',),
                )
                extra = [
                    a
                    for (a,) in cur.fetchall()
                    if not self.spec.column_allowed(rel.lower(), a.lower())
                ]
                if extra:
                    raise ConfigurationError(
                        f"postgresql role `{role}` may read column `{name}.{extra[0]}`, which "
                        "the policy does not allow; grant only the allowed columns"
                    )

    def schema(self) -> dict[str, tuple[str, tuple[ColumnInfo, ...]]]:
        """See :meth:`Engine.schema`."""
        out: dict[str, tuple[str, tuple[ColumnInfo, ...]]] = {}
        with self._lock:
            conn = self._live()
            try:
                with conn.cursor() as cur:
                    cur.execute(
                        "SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod) "
                        "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                        "JOIN pg_attribute a ON a.attrelid = c.oid "
                        "WHERE n.nspname = %s AND c.relkind IN ('r', 'p', 'v', 'm', 'f') "
                        "AND a.attnum > 0 AND NOT a.attisdropped ORDER BY c.relname, a.attnum",
                        (self.namespace,),
                    )
                    rows = cur.fetchall()
            except self._psycopg.Error as exc:
                raise SQLError(f"cannot read the schema: {type(exc).__name__}") from exc
            finally:
                conn.rollback()
        cols: dict[str, list[ColumnInfo]] = {}
        names: dict[str, str] = {}
        for rel, att, typ in rows:
            if rel.lower() not in self.spec.tables:
                continue
            names[rel.lower()] = rel
            cols.setdefault(rel.lower(), []).append(ColumnInfo(att, typ))
        for key, real in names.items():
            out[key] = (real, tuple(cols[key]))
        return out

    def _fail(self, exc: Exception, timeout: float) -> SQLError:
        errors = self._psycopg.errors
        if isinstance(exc, errors.QueryCanceled):
            return SQLError(f"the statement timed out after {timeout:g}s")
        diag = getattr(exc, "diag", None)
        primary = getattr(diag, "message_primary", None) or str(exc)
        text = _LITERAL.sub("'…'", primary.splitlines()[0] if primary else "")[:200]
        if isinstance(exc, (errors.InsufficientPrivilege, errors.ReadOnlySqlTransaction)):
            return SQLError(f"the database refused the statement: {text}")
        return SQLError(f"the statement failed ({type(exc).__name__}): {text}")

    def _begin(self, cur: Any, timeout: float) -> None:
        # The first query takes a snapshot: after it, `transaction_read_only`
        # can no longer be switched off in this transaction.
        ms = str(max(1, int(timeout * 1000)))
        cur.execute(
            "SELECT set_config('statement_timeout', %s, true), "
            "set_config('lock_timeout', %s, true), "
            "set_config('idle_in_transaction_session_timeout', %s, true)",
            (ms, ms, str(max(1000, int(timeout * 2000)))),
        )

    def query(self, sql: str, *, max_rows: int, timeout: float) -> QueryResult:
        """See :meth:`Engine.query`."""
        with self._lock:
            conn = self._live()
            try:
                conn.read_only = True
                with conn.cursor() as cur:
                    self._begin(cur, timeout)
                    cur.execute(
                        f"DECLARE {_PG_CURSOR} NO SCROLL CURSOR FOR {sql}",
                        prepare=True,
                    )
                    cur.execute(f"FETCH FORWARD {int(max_rows) + 1} FROM {_PG_CURSOR}")
                    rows = cur.fetchall()
                    columns = tuple(d.name for d in cur.description or ())
            except self._psycopg.Error as exc:
                raise self._fail(exc, timeout) from exc
            finally:
                self._rollback()
                self._release_session_state()
        return QueryResult(columns, rows[:max_rows], truncated=len(rows) > max_rows)

    def _release_session_state(self) -> None:
        """Session-level advisory locks outlive a rollback: drop any the statement took."""
        try:
            if self._conn is not None and not self._conn.closed:
                self._conn.execute("SELECT pg_advisory_unlock_all()")
                self._conn.rollback()
                self._conn.read_only = self.spec.read_only
        except self._psycopg.Error:
            self._conn.close()

    def _rollback(self) -> None:
        try:
            if self._conn is not None and not self._conn.closed:
                self._conn.rollback()
        except self._psycopg.Error:
            self._conn.close()  # a lost connection: the next statement opens a new one

    def primary_key(self, table: str) -> tuple[str, ...]:
        """See :meth:`Engine.primary_key`."""
        with self._lock:
            conn = self._live()
            try:
                rows = conn.execute(
                    "SELECT a.attname FROM pg_index i JOIN pg_attribute a "
                    "ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) "
                    "WHERE i.indrelid = %s::regclass AND i.indisprimary ORDER BY a.attnum",
                    (f'"{self.namespace}"."{table}"',),
                ).fetchall()
            except self._psycopg.Error as exc:
                raise SQLError(f"cannot read the primary key: {type(exc).__name__}") from exc
            finally:
                self._rollback()
        return tuple(str(r[0]) for r in rows)

    @contextmanager
    def transaction(self, *, timeout: float) -> Iterator[Runner]:
        """See :meth:`Engine.transaction` (REPEATABLE READ: a row changed by someone
        else between our read and our write fails the transaction)."""
        if self.spec.read_only:
            raise SQLError("this database is read-only")
        with self._lock:
            conn = self._live()
            conn.isolation_level = self._psycopg.IsolationLevel.REPEATABLE_READ
            cur = conn.cursor()

            def run(sql: str, params: Sequence[Any] | None = None) -> QueryResult:
                try:
                    cur.execute(sql, params, prepare=True)
                    rows = cur.fetchall() if cur.description else []
                    columns = tuple(d.name for d in cur.description or ())
                    return QueryResult(columns, rows, affected=max(cur.rowcount, 0))
                except self._psycopg.Error as exc:
                    raise self._fail(exc, timeout) from exc

            try:
                try:
                    self._begin(cur, timeout)
                    yield run
                except BaseException:
                    self._rollback()
                    raise
                try:
                    conn.commit()
                except self._psycopg.Error as exc:
                    self._rollback()
                    raise self._fail(exc, timeout) from exc
            finally:
                cur.close()
                if not conn.closed:
                    conn.isolation_level = None

    def close(self) -> None:
        """See :meth:`Engine.close`."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()


# -- MariaDB / MySQL ---------------------------------------------------------------------

_GRANT = re.compile(r"^GRANT (.+?) ON (\S+) TO ", re.DOTALL)
_PRIV = re.compile(r"^(SELECT|INSERT|UPDATE|DELETE|USAGE)(?: \((.*)\))?$")


def _split_privileges(text: str) -> list[str]:
    out: list[str] = []
    current: list[str] = []
    depth = 0
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            out.append("".join(current).strip())
            current = []
        else:
            current.append(ch)
    out.append("".join(current).strip())
    return out


def _unquote_ident(text: str) -> str:
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] == "`":
        return text[1:-1].replace("``", "`")
    return text


def mysql_params(url: str) -> dict[str, Any]:
    """Connection arguments for PyMySQL from a ``mysql://user:pass@host:port/db`` URL."""
    parts = urllib.parse.urlsplit(url)
    db = urllib.parse.unquote(parts.path.lstrip("/"))
    if not db:
        raise ConfigurationError("a mysql URL must name the database: `mysql://user@host/db`")
    return {
        "host": parts.hostname or "127.0.0.1",
        "port": parts.port or 3306,
        "user": urllib.parse.unquote(parts.username or ""),
        "password": urllib.parse.unquote(parts.password or ""),
        "database": db,
    }


class MySQLEngine(Engine):
    """MariaDB or MySQL through PyMySQL (the ``mysql`` extra), as a SELECT-only account."""

    kind = "mysql"

    def __init__(self, spec: EngineSpec) -> None:
        super().__init__(spec)
        try:
            import pymysql
            import pymysql.cursors
        except ImportError as exc:  # pragma: no cover - the extra is installed in tests
            raise ConfigurationError(
                "mysql needs the mysql extra: pip install 'stockade[mysql]'"
            ) from exc
        self._pymysql = pymysql
        self._params = mysql_params(spec.url)
        self.namespace = self._params["database"]
        self._conn: Any = None
        self._mariadb = True
        self._connect()
        if spec.verify_grants:
            try:
                self.verify_grants()
            except BaseException:
                self.close()
                raise

    def _connect(self) -> None:
        pymysql = self._pymysql
        try:
            conn = pymysql.connect(
                **self._params,
                local_infile=False,  # LOAD DATA LOCAL INFILE would read client files
                client_flag=0,  # no CLIENT.MULTI_STATEMENTS: one statement per call
                autocommit=False,
                charset="utf8mb4",
                connect_timeout=10,
                cursorclass=pymysql.cursors.Cursor,
            )
        except pymysql.MySQLError as exc:
            raise SQLError(
                f"cannot connect to `{_redact_url(self.spec.url)}`: {type(exc).__name__}"
            ) from exc
        with conn.cursor() as cur:
            cur.execute("SELECT VERSION()")
            row = cur.fetchone()
        self._mariadb = "mariadb" in str(row[0] if row else "").lower()
        self._conn = conn

    def _live(self) -> Any:
        if self._conn is None or not self._conn.open:
            self._connect()
            if self.spec.verify_grants:  # grants may have changed since: check again
                try:
                    self.verify_grants()
                except BaseException:
                    self._conn.close()
                    raise
        return self._conn

    def verify_grants(self) -> None:
        """Refuse an account with any grant beyond the policy's tables and columns."""
        conn = self._live()
        try:
            with conn.cursor() as cur:
                cur.execute("SHOW GRANTS")
                grants = [str(r[0]) for r in cur.fetchall()]
        except self._pymysql.MySQLError as exc:
            raise SQLError(f"cannot check the account's grants: {type(exc).__name__}") from exc
        for grant in grants:
            self._check_grant(grant)

    def _check_grant(self, grant: str) -> None:
        m = _GRANT.match(grant)
        if m is None:  # roles, proxies: anything we do not understand is too wide
            raise ConfigurationError(
                "the mysql account has a grant other than SELECT on single tables; "
                "connect as a least-privilege account (see `stockade sql grant-readonly`)"
            )
        privileges, target = m.group(1), m.group(2)
        if "WITH GRANT OPTION" in grant.upper():
            raise ConfigurationError("the mysql account may grant privileges to others")
        if target == "*.*":
            if privileges.strip().upper() != "USAGE":
                raise ConfigurationError(
                    "the mysql account has global privileges; it needs only SELECT on the "
                    "policy's tables"
                )
            return
        db, _, table = target.partition(".")
        table_name = _unquote_ident(table).lower()
        if _unquote_ident(db) != self.namespace or table_name not in self.spec.tables:
            raise ConfigurationError(
                f"the mysql account has privileges on "
                f"`{_unquote_ident(db)}.{_unquote_ident(table)}`, which the policy does not allow"
            )
        restricted = (
            self.spec.tables[table_name] is not None or table_name in self.spec.denied_columns
        )
        writable = not self.spec.read_only and table_name in self.spec.write_tables
        for priv in _split_privileges(privileges):
            pm = _PRIV.match(priv.strip().upper())
            if pm is None:
                raise ConfigurationError(
                    f"the mysql account has `{priv.split('(')[0].strip()}` on `{table_name}`"
                )
            kind, cols = pm.group(1), pm.group(2)
            if kind != "SELECT" and not (writable and kind in ("INSERT", "UPDATE", "DELETE")):
                raise ConfigurationError(f"the mysql account may {kind.lower()} `{table_name}`")
            if kind == "SELECT" and restricted:
                if cols is None:
                    raise ConfigurationError(
                        f"the mysql account may read every column of `{table_name}`; grant "
                        "only the allowed columns"
                    )
                for col in cols.split(","):
                    if not self.spec.column_allowed(table_name, _unquote_ident(col).lower()):
                        raise ConfigurationError(
                            f"the mysql account may read `{table_name}.{_unquote_ident(col)}`"
                        )

    def schema(self) -> dict[str, tuple[str, tuple[ColumnInfo, ...]]]:
        """See :meth:`Engine.schema`."""
        with self._lock:
            conn = self._live()
            try:
                with conn.cursor() as cur:
                    cur.execute(
                        "SELECT TABLE_NAME, COLUMN_NAME, COLUMN_TYPE "
                        "FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = %s "
                        "ORDER BY TABLE_NAME, ORDINAL_POSITION",
                        (self.namespace,),
                    )
                    rows = cur.fetchall()
                conn.rollback()
            except self._pymysql.MySQLError as exc:
                raise SQLError(f"cannot read the schema: {type(exc).__name__}") from exc
        cols: dict[str, list[ColumnInfo]] = {}
        names: dict[str, str] = {}
        for rel, att, typ in rows:
            if str(rel).lower() not in self.spec.tables:
                continue
            names[str(rel).lower()] = str(rel)
            cols.setdefault(str(rel).lower(), []).append(ColumnInfo(str(att), str(typ)))
        return {k: (v, tuple(cols[k])) for k, v in names.items()}

    def _fail(self, exc: Exception, timeout: float) -> SQLError:
        code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else 0
        text = str(exc.args[1]) if len(exc.args) > 1 else str(exc)
        text = _LITERAL.sub("'…'", text.splitlines()[0] if text else "")[:200]
        if code in (1969, 3024) or "max_statement_time" in text or "execution time" in text:
            return SQLError(f"the statement timed out after {timeout:g}s")
        if code in (1142, 1143, 1044, 1045, 1227, 1792, 1370, 1148, 1290):
            return SQLError(f"the database refused the statement: {text}")
        return SQLError(f"the statement failed ({code}): {text}")

    def _begin(self, cur: Any, timeout: float, *, read_only: bool, max_rows: int) -> None:
        if self._mariadb:
            cur.execute(f"SET SESSION max_statement_time = {float(timeout):.3f}")
        else:
            cur.execute(f"SET SESSION max_execution_time = {max(1, int(timeout * 1000))}")
        cur.execute(f"SET SESSION sql_select_limit = {int(max_rows) + 1}")
        cur.execute("START TRANSACTION READ ONLY" if read_only else "START TRANSACTION")

    def query(self, sql: str, *, max_rows: int, timeout: float) -> QueryResult:
        """See :meth:`Engine.query`."""
        pymysql = self._pymysql
        with self._lock:
            conn = self._live()
            cur = conn.cursor(pymysql.cursors.SSCursor)
            try:
                self._begin(cur, timeout, read_only=True, max_rows=max_rows)
                cur.execute(sql)  # no args: no %-formatting of the agent's text
                rows = list(cur.fetchmany(max_rows + 1))
                columns = tuple(d[0] for d in cur.description or ())
            except pymysql.MySQLError as exc:
                raise self._fail(exc, timeout) from exc
            finally:
                self._finish(cur)
        return QueryResult(columns, rows[:max_rows], truncated=len(rows) > max_rows)

    def _finish(self, cur: Any) -> None:
        pymysql = self._pymysql
        try:
            cur.close()
            self._conn.rollback()
        except pymysql.MySQLError:
            self._conn.close()

    def primary_key(self, table: str) -> tuple[str, ...]:
        """See :meth:`Engine.primary_key`."""
        with self._lock:
            conn = self._live()
            try:
                with conn.cursor() as cur:
                    cur.execute(
                        "SELECT COLUMN_NAME FROM information_schema.KEY_COLUMN_USAGE "
                        "WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s "
                        "AND CONSTRAINT_NAME = 'PRIMARY' ORDER BY ORDINAL_POSITION",
                        (self.namespace, table),
                    )
                    rows = cur.fetchall()
                conn.rollback()
            except self._pymysql.MySQLError as exc:
                raise SQLError(f"cannot read the primary key: {type(exc).__name__}") from exc
        return tuple(str(r[0]) for r in rows)

    @contextmanager
    def transaction(self, *, timeout: float) -> Iterator[Runner]:
        """See :meth:`Engine.transaction`."""
        if self.spec.read_only:
            raise SQLError("this database is read-only")
        pymysql = self._pymysql
        with self._lock:
            conn = self._live()
            cur = conn.cursor()

            def run(sql: str, params: Sequence[Any] | None = None) -> QueryResult:
                try:
                    affected = cur.execute(sql, tuple(params) if params is not None else None)
                    rows = list(cur.fetchall()) if cur.description else []
                    columns = tuple(d[0] for d in cur.description or ())
                    return QueryResult(columns, rows, affected=int(affected or 0))
                except pymysql.MySQLError as exc:
                    raise self._fail(exc, timeout) from exc

            try:
                self._begin(cur, timeout, read_only=False, max_rows=1_000_000)
                yield run
            except BaseException:
                self._finish(cur)
                raise
            try:
                conn.commit()
            except pymysql.MySQLError as exc:
                self._finish(cur)
                raise self._fail(exc, timeout) from exc
            cur.close()

    def close(self) -> None:
        """See :meth:`Engine.close`."""
        with self._lock:
            if self._conn is not None and self._conn.open:
                self._conn.close()


_ENGINES: Mapping[str, Callable[[EngineSpec], Engine]] = {
    "sqlite": SQLiteEngine,
    "postgres": PostgresEngine,
    "mysql": MySQLEngine,
}


def open_engine(spec: EngineSpec) -> Engine:
    """The engine for ``spec.url`` with all its limits on."""
    return _ENGINES[engine_kind(spec.url)](spec)
