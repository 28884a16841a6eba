"""Raw SQL connections and the SQL tool's layers one at a time. DANGER.

Nothing here goes through the guard: no policy decision, no audit record,
and each function switches one of the SQL tool's two layers off. They exist
so tests and benchmarks can show that each layer holds on its own, and so
integrators can measure them. You MUST NOT hand anything from this module to
an agent; use the ``sql`` tool of :class:`stockade.Guard` (``sql:`` section).

- :func:`engine_only` runs statements on the engine layer alone (read-only
  connection, authorizer, grants check, timeout, row cap) with no parser check.
- :func:`parser_only_tool` is the ``sql`` tool with the engine layer replaced
  by :class:`RawEngine`: a plain connection that runs and commits whatever
  the parser layer lets through.
- :class:`RawEngine` is that plain connection: no read-only transaction, no
  timeout, no authorizer; it commits.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from stockade.errors import SQLError
from stockade.tools.sql import DatabaseConfig, SQLConfig, SQLTool
from stockade.tools.sql_engines import (
    ColumnInfo,
    Engine,
    EngineSpec,
    QueryResult,
    Runner,
    _sqlite_path,
    engine_kind,
    open_engine,
)

__all__ = ["RawEngine", "engine_only", "parser_only_tool"]


def engine_only(db: DatabaseConfig) -> Engine:
    """The engine layer of ``db`` alone: run statements on it with no parser check."""
    return open_engine(db.engine_spec())


class RawEngine(Engine):
    """A plain connection from the URL: runs and commits anything. DANGER."""

    def __init__(self, spec: EngineSpec) -> None:
        super().__init__(spec)
        self.kind = engine_kind(spec.url)
        self._lock = threading.RLock()
        self._conn: Any
        if self.kind == "sqlite":
            self.namespace = "main"
            path = _sqlite_path(spec.url, spec.base_dir)
            self._conn = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        elif self.kind == "postgres":
            import psycopg

            self.namespace = spec.namespace or "public"
            self._conn = psycopg.connect(spec.url, autocommit=True)
        else:
            import pymysql

            from stockade.tools.sql_mysql import mysql_params

            params = mysql_params(spec.url)
            self.namespace = params["database"]
            self._conn = pymysql.connect(**params, autocommit=True)

    def schema(self) -> dict[str, tuple[str, tuple[ColumnInfo, ...]]]:
        """Every allowed table, read with the same queries as the real engines."""
        spec = EngineSpec(
            url=self.spec.url,
            tables=self.spec.tables,
            denied_columns=self.spec.denied_columns,
            base_dir=self.spec.base_dir,
            namespace=self.spec.namespace,
            verify_grants=False,
        )
        engine = open_engine(spec)
        try:
            return engine.schema()
        finally:
            engine.close()

    def query(self, sql: str, *, max_rows: int, timeout: float) -> QueryResult:
        """Run ``sql`` as is and commit."""
        with self._lock:
            try:
                cur = self._conn.cursor()
                cur.execute(sql)
                rows = list(cur.fetchmany(max_rows + 1)) if cur.description else []
                columns = tuple(d[0] for d in cur.description or ())
                if self.kind != "sqlite" or self._conn.in_transaction:
                    self._conn.commit()
            except Exception as exc:
                raise SQLError(f"raw statement failed: {type(exc).__name__}") from exc
        return QueryResult(columns, rows[:max_rows], truncated=len(rows) > max_rows)

    @contextmanager
    def transaction(self, *, timeout: float) -> Iterator[Runner]:
        """Run each statement as it comes (autocommit)."""
        yield lambda sql, params=None: self.query(sql, max_rows=1_000_000, timeout=timeout)

    def close(self) -> None:
        """Close the connection."""
        self._conn.close()


class _ParserOnlySQLTool(SQLTool):
    def _open_engine(self, db: DatabaseConfig) -> Engine:
        return RawEngine(db.engine_spec())


def parser_only_tool(config: SQLConfig | Mapping[str, DatabaseConfig]) -> SQLTool:
    """The ``sql`` tool with its engine layer switched off (see the module docs)."""
    if not isinstance(config, SQLConfig):
        config = SQLConfig(databases=dict(config))
    return _ParserOnlySQLTool(config)
