"""The SQL tool's engine layer on PostgreSQL (psycopg 3, the ``postgres`` extra).

See :mod:`stockade.tools.sql_engines` for what every engine enforces. Here:
the statement runs as ``DECLARE ... CURSOR FOR <statement>`` through the
extended protocol (one statement, and only a query can be a cursor) in a
``READ ONLY`` transaction whose first query sets ``statement_timeout``,
fetching at most the row cap, always rolled back; session advisory locks are
released after each statement (all of it in one pipelined round trip, then
the rollback); and the role is checked at connect time (and
on every reconnect) to be no wider than the policy.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from stockade.errors import ConfigurationError, SQLError
from stockade.tools.sql_engines import (
    ColumnInfo,
    Engine,
    EngineSpec,
    QueryResult,
    Runner,
    _redact_url,
)
from stockade.tools.sql_errors import postgres_error_text

__all__ = ["PostgresEngine"]

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
_PG_DECLARE = f"DECLARE {_PG_CURSOR} NO SCROLL CURSOR FOR "


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

    def _fail(
        self, exc: Exception, timeout: float, statement: str = "", prefix: int = 0
    ) -> SQLError:
        """A fixed message by SQLSTATE: the server's text may quote row values, so
        it never passes (see :mod:`stockade.tools.sql_errors`)."""
        if isinstance(exc, self._psycopg.errors.QueryCanceled):
            return SQLError(f"the statement timed out after {timeout:g}s")
        diag = getattr(exc, "diag", None)
        position: int | None = None
        try:
            raw = getattr(diag, "statement_position", None)
            position = int(raw) if raw is not None else None
        except (TypeError, ValueError):
            position = None
        sqlstate = getattr(exc, "sqlstate", None)
        if not sqlstate:  # a lost connection, a driver error: no server text either
            return SQLError(f"the statement failed ({type(exc).__name__})")
        return SQLError(
            postgres_error_text(
                sqlstate if isinstance(sqlstate, str) else None, position, statement, prefix
            )
        )

    def _begin(self, cur: Any, timeout: float) -> None:
        # The first query takes a snapshot: after it, `transaction_read_only`
        # can no longer be switched off in this transaction.
        ms = str(max(1, int(timeout * 1000)))
        cur.execute(
            "SELECT set_config('statement_timeout', %s, true), "
            "set_config('lock_timeout', %s, true), "
            "set_config('idle_in_transaction_session_timeout', %s, true)",
            (ms, ms, str(max(1000, int(timeout * 2000)))),
            prepare=False,  # see query(): a name prepared here dies at the rollback
        )

    def query(self, sql: str, *, max_rows: int, timeout: float) -> QueryResult:
        """See :meth:`Engine.query`."""
        with self._lock:
            conn = self._live()
            released = False
            try:
                conn.read_only = True
                # One round trip for the lot (pipeline mode): BEGIN READ ONLY,
                # the timeouts, the cursor, the fetch, and the release of any
                # session advisory lock the rows took (inside the transaction,
                # after the fetch; nothing runs after it but the rollback). A
                # failure anywhere skips the rest; the release then runs apart.
                # In pipeline mode psycopg sends every statement through the
                # extended protocol (one statement per query, `%` left alone),
                # which is what stops `...; DROP TABLE` at the engine. Nothing
                # is prepared by name: psycopg forgets its prepared statements
                # at every ROLLBACK and would spend a round trip on
                # `DEALLOCATE ALL` after each query.
                with conn.pipeline() as pipe, conn.cursor() as cur, conn.cursor() as after:
                    self._begin(cur, timeout)
                    cur.execute(_PG_DECLARE + sql, prepare=False)
                    cur.execute(
                        f"FETCH FORWARD {int(max_rows) + 1} FROM {_PG_CURSOR}", prepare=False
                    )
                    after.execute("SELECT pg_advisory_unlock_all()", prepare=False)
                    pipe.sync()
                    rows = cur.fetchall()
                    columns = tuple(d.name for d in cur.description or ())
                    after.fetchall()
                    released = True
            except self._psycopg.Error as exc:
                raise self._fail(exc, timeout, sql, len(_PG_DECLARE)) from exc
            finally:
                self._rollback()
                if released:
                    if not self._conn.closed:  # else the next statement reconnects
                        self._conn.read_only = self.spec.read_only
                else:
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
                    raise self._fail(exc, timeout, sql) from exc

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
