"""The SQL tool's engine layer on MariaDB/MySQL (PyMySQL, the ``mysql`` extra).

See :mod:`stockade.tools.sql_engines` for what every engine enforces. Here:
``START TRANSACTION READ ONLY`` with ``max_statement_time``
(``max_execution_time`` on MySQL) and ``sql_select_limit``, no
multi-statements and no ``LOCAL INFILE`` on the client, always rolled back;
and the account's grants are checked at connect time (and on every
reconnect) to be no wider than the policy.
"""

from __future__ import annotations

import re
import urllib.parse
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
from stockade.tools.sql_errors import mysql_error_text

__all__ = ["MySQLEngine", "mysql_params"]

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

    def _fail(self, exc: Exception, timeout: float, statement: str = "") -> SQLError:
        """A fixed message by error number: the server's text may quote row values,
        so it never passes (see :mod:`stockade.tools.sql_errors`)."""
        code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else 0
        message = str(exc.args[1]) if len(exc.args) > 1 else ""
        if code in (1969, 3024) or "max_statement_time" in message:
            return SQLError(f"the statement timed out after {timeout:g}s")
        return SQLError(mysql_error_text(code, message, statement))

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
                raise self._fail(exc, timeout, sql) from exc
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
                    raise self._fail(exc, timeout, sql) from exc

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
