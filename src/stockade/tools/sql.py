"""The SQL tool: read-only (or narrowly scoped write) access to SQLite,
PostgreSQL and MariaDB/MySQL, held by two independent layers.

>>> guard = Guard.from_text('''
... version: 1
... sql:
...   databases:
...     shop:
...       url: sqlite:///shop.db
...       tables:
...         orders: {}
...         customers: {deny_columns: [ssn], mask: [email], confidential: true}
... ''')                                                              # doctest: +SKIP
>>> guard.call("sql", "query", {"sql": "SELECT count(*) FROM orders"}).value  # doctest: +SKIP
{'database': 'shop', 'columns': ['COUNT(*)'], 'rows': [[42]], 'row_count': 1, 'truncated': False}

One tool named ``sql`` serves every database of the policy; its ``database``
argument names one (it may be left out when there is only one). Actions:

- ``tables``: the allowed tables;
- ``describe``: the allowed columns of one allowed table (``table``);
- ``query``: one read-only statement (``sql``);
- ``execute``: one INSERT/UPDATE/DELETE (``sql``), only for databases in
  ``mode: read-write`` and tables whose policy lists that kind.

``prepare`` parses the statement (:mod:`stockade.tools.sql_check`) and adds
canonical arguments that ordinary policy rules can match: ``kind``,
``tables``, ``tables_written``, ``columns`` (``table.column`` after ``*``
expansion), ``functions`` and ``statement`` (what will run). ``check`` denies
what the parser layer refuses (rules ``sql:read-only``, ``sql:stacked``,
``sql:table``, ``sql:column``, ``sql:function``, ...). ``execute`` runs the
checked statement on the engine layer (:mod:`stockade.tools.sql_engines`),
which enforces read-only access, table and column grants, a timeout and the
row cap on its own.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import decimal
import threading
import uuid
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from stockade.errors import ConfigurationError, SQLError, StockadeError
from stockade.model import Confidentiality, Decision, Integrity, Label, Output, ToolCall
from stockade.tools.base import Capability, Context
from stockade.tools.sql_check import Analysis, TablePolicy, Violation, analyse
from stockade.tools.sql_config import DatabaseConfig, SQLConfig, TableConfig, parse_section
from stockade.tools.sql_engines import ColumnInfo, Engine, open_engine

if TYPE_CHECKING:
    from stockade.policy import Policy
    from stockade.tools.journal import Journal, Restorer

__all__ = [
    "DatabaseConfig",
    "SQLConfig",
    "SQLTool",
    "TableConfig",
    "capability_from_policy",
    "parse_section",
]

MASK = "***"


# -- the capability -----------------------------------------------------------------------


@dataclass
class _Prepared:
    sql: str
    database: str
    analysis: Analysis | None = None
    violation: Violation | None = None


class SQLTool(Capability):
    """The ``sql`` tool for the databases of one policy.

    Engines connect lazily on first use; the schema of the allowed tables is
    read once and refreshed when a statement names an allowed table it does
    not know yet.
    """

    name = "sql"
    actions = frozenset({"tables", "describe", "query", "execute"})
    external = False

    def __init__(self, config: SQLConfig) -> None:
        if not config.databases:
            raise ConfigurationError("the sql tool needs at least one database")
        self.config = config
        self._engines: dict[str, Engine] = {}
        self._schemas: dict[str, dict[str, tuple[str, tuple[ColumnInfo, ...]]]] = {}
        self._policies: dict[str, dict[str, TablePolicy]] = {}
        self._analyses: OrderedDict[
            tuple[str, int, bool, str], tuple[Mapping[str, TablePolicy], Analysis | Violation]
        ] = OrderedDict()
        self._lock = threading.RLock()
        self._prepared: OrderedDict[str, _Prepared] = OrderedDict()
        self._writer: Any = None

    # -- engines and schema -------------------------------------------------------

    def _open_engine(self, db: DatabaseConfig) -> Engine:
        """The engine for ``db``, with the engine layer's limits on."""
        return open_engine(db.engine_spec())

    def engine(self, database: str) -> Engine:
        """The (lazily opened) engine of a database."""
        with self._lock:
            engine = self._engines.get(database)
            if engine is None:
                engine = self._open_engine(self.config.databases[database])
                self._engines[database] = engine
            return engine

    def _schema(
        self, db: DatabaseConfig, *, refresh: bool = False
    ) -> Mapping[str, tuple[str, tuple[ColumnInfo, ...]]]:
        with self._lock:
            if refresh or db.name not in self._schemas:
                self._schemas[db.name] = self.engine(db.name).schema()
            return self._schemas[db.name]

    def _table_policies(
        self, db: DatabaseConfig, *, refresh: bool = False
    ) -> dict[str, TablePolicy]:
        with self._lock:
            cached = self._policies.get(db.name)
            if cached is not None and not refresh and db.name in self._schemas:
                return cached
            policies = self._build_policies(db, refresh=refresh)
            self._policies[db.name] = policies
            return policies

    def _build_policies(self, db: DatabaseConfig, *, refresh: bool) -> dict[str, TablePolicy]:
        out: dict[str, TablePolicy] = {}
        for key, (real, cols) in self._schema(db, refresh=refresh).items():
            spec = db.tables.get(key)
            if spec is None:
                continue
            names = tuple(c.name for c in cols)
            # An account may not see the columns it cannot read (MariaDB hides
            # them): `*` still counts the columns the policy denies.
            visible = {n.lower() for n in names}
            names += tuple(d for d in spec.deny_columns if d.lower() not in visible)
            allowed_lower = spec.allowed_columns()
            denied = {c.lower() for c in spec.deny_columns}
            allowed = frozenset(
                c
                for c in names
                if (allowed_lower is None or c.lower() in allowed_lower) and c.lower() not in denied
            )
            masked = frozenset(c for c in names if c.lower() in {x.lower() for x in spec.mask})
            writable = not db.read_only and bool(spec.write)
            out[key] = TablePolicy(
                name=real,
                columns=names,
                allowed=allowed,
                masked=masked,
                write=frozenset(spec.write),
                # known before a write runs, so the parser layer can refuse
                # what undo could not put back
                primary_key=self.engine(db.name).primary_key(real) if writable else None,
            )
        return out

    # -- the guard's hooks ----------------------------------------------------------

    def _database(self, call: ToolCall) -> DatabaseConfig:
        name = call.args.get("database")
        dbs = self.config.databases
        if name is None:
            if len(dbs) != 1:
                names = ", ".join(f"`{n}`" for n in dbs)
                raise SQLError(f"name the database: one of {names}")
            return next(iter(dbs.values()))
        if not isinstance(name, str) or name not in dbs:
            raise SQLError(f"unknown database `{name}`")
        return dbs[name]

    def prepare(self, call: ToolCall) -> ToolCall:
        """Parse and check the statement; add the canonical arguments the policy sees."""
        db = self._database(call)
        args: dict[str, Any] = dict(call.args)
        args["database"] = db.name
        action = call.action
        allowed_keys = {"tables": {"database"}, "describe": {"database", "table"}}.get(
            action, {"database", "sql"}
        )
        extra = sorted(set(call.args) - allowed_keys)
        if extra:
            raise SQLError(f"unexpected argument `{extra[0]}` for `sql.{action}`")
        if action == "tables":
            return call.with_args(args)
        if action == "describe":
            table = call.args.get("table")
            if not isinstance(table, str) or not table:
                raise SQLError("`describe` needs a `table` name")
            # As for a query the parser refused: a table that is not allowed
            # (or does not exist) is not passed on, so the call is denied by
            # `check` with `sql:table` and the name the agent typed.
            args["tables"] = [table.lower()] if self._describable(db, table) is None else []
            return call.with_args(args)
        sql = call.args.get("sql")
        if not isinstance(sql, str) or not sql.strip():
            raise SQLError(f"`{action}` needs an `sql` statement")
        if len(sql) > db.max_sql_length:
            raise SQLError(f"the statement is longer than {db.max_sql_length} characters")
        prepared = _Prepared(sql=sql, database=db.name)
        try:
            analysis = self._analyse(db, sql, write=action == "execute")
        except Violation as v:
            prepared.violation = v
            args.update(
                {
                    "kind": "denied",
                    "tables": [],
                    "tables_written": [],
                    "columns": [],
                    "functions": [],
                }
            )
        else:
            prepared.analysis = analysis
            args.update(analysis.derived())
            args["tables"] = [t.lower() for t in analysis.tables] + [
                t.lower() for t in analysis.tables_written
            ]
            args["tables_written"] = [t.lower() for t in analysis.tables_written]
        self._remember(call.call_id, prepared)
        return call.with_args(args)

    def _analyse(self, db: DatabaseConfig, sql: str, *, write: bool) -> Analysis:
        if write and db.read_only:
            raise Violation("sql:read-only", f"database `{db.name}` is read-only")
        tables = self._table_policies(db)
        try:
            analysis = self._run_analysis(db, sql, tables, write)
        except Violation as v:
            if v.rule != "sql:table" or len(tables) == len(db.tables):
                raise
            # An allowed table the cached schema does not know: read it again once.
            analysis = self._run_analysis(db, sql, self._table_policies(db, refresh=True), write)
        if write and analysis.kind == "select":
            raise Violation("sql:statement", "`execute` is for writes; read with `query`")
        return analysis

    def _run_analysis(
        self, db: DatabaseConfig, sql: str, tables: Mapping[str, TablePolicy], write: bool
    ) -> Analysis:
        # The same text against the same table policies gives the same answer:
        # agents repeat statements (retries, paging), so keep the last few.
        key = (db.name, id(tables), write, sql)
        with self._lock:
            hit = self._analyses.get(key)
            if hit is not None and hit[0] is tables:
                self._analyses.move_to_end(key)
                if isinstance(hit[1], Violation):
                    raise hit[1]
                return hit[1]
        outcome: Analysis | Violation
        try:
            outcome = analyse(
                sql,
                engine=db.engine,
                tables=tables,
                namespace=self.engine(db.name).namespace,
                write=write,
                max_rows=db.max_rows,
                functions_allow=db.functions_allow,
                functions_deny=db.functions_deny,
            )
        except Violation as v:
            outcome = v
        with self._lock:
            self._analyses[key] = (tables, outcome)
            while len(self._analyses) > 256:
                self._analyses.popitem(last=False)
        if isinstance(outcome, Violation):
            raise outcome
        return outcome

    def _remember(self, call_id: str, prepared: _Prepared) -> None:
        with self._lock:
            self._prepared[call_id] = prepared
            while len(self._prepared) > 1024:
                self._prepared.popitem(last=False)

    def _recall(self, call: ToolCall) -> _Prepared:
        """The analysis of this very call; analysed again if it was evicted."""
        with self._lock:
            prepared = self._prepared.get(call.call_id)
        sql = call.args.get("sql")
        db = self._database(call)
        if prepared is None or prepared.sql != sql or prepared.database != db.name:
            if not isinstance(sql, str):
                raise SQLError("missing `sql` statement")
            prepared = _Prepared(sql=sql, database=db.name)
            try:
                prepared.analysis = self._analyse(db, sql, write=call.action == "execute")
            except Violation as v:
                prepared.violation = v
        return prepared

    def check(self, call: ToolCall) -> Decision | None:
        """Deny what the parser layer refuses (``sql:*`` rules)."""
        if call.action in ("tables", "describe"):
            if call.action == "describe":
                db = self._database(call)
                reason = self._describable(db, str(call.args.get("table", "")))
                if reason is not None:
                    return Decision.deny("sql:table", reason)
            return None
        prepared = self._recall(call)
        if prepared.violation is not None:
            return Decision.deny(prepared.violation.rule, prepared.violation.reason)
        if prepared.analysis is None:  # pragma: no cover - one of the two is always set
            return Decision.deny("sql:error", "the statement was not analysed")
        return None

    def execute(self, call: ToolCall, ctx: Context) -> Output:
        """Run the action on the engine layer."""
        db = self._database(call)
        if call.action == "tables":
            return self._tables(db)
        if call.action == "describe":
            return self._describe(db, str(call.args.get("table", "")))
        prepared = self._recall(call)
        if prepared.violation is not None or prepared.analysis is None:
            raise SQLError("the statement was refused by the parser layer")
        with self._lock:
            self._prepared.pop(call.call_id, None)
        if call.action == "execute":
            return self._write(db, prepared.analysis, call, ctx)
        return self._query(db, prepared.analysis)

    def _labels(self, db: DatabaseConfig, tables: tuple[str, ...]) -> tuple[Label, ...]:
        labels = []
        for t in sorted({t.lower() for t in tables}):
            spec = db.tables.get(t)
            if spec is None:
                continue
            labels.append(
                Label(
                    f"sql:{db.name}.{t}",
                    spec.integrity,
                    Confidentiality.SECRET if spec.confidential else Confidentiality.INTERNAL,
                )
            )
        return tuple(labels) or (Label(f"sql:{db.name}", Integrity.TRUSTED),)

    def _describable(self, db: DatabaseConfig, table: str) -> str | None:
        """Why ``describe`` of ``table`` is refused (``None`` when it is not).

        A table the policy does not list is "not allowed" whether it exists or
        not, as in a query: the answer tells nothing of the database beyond
        the name the agent typed. A listed table that is missing is said to be
        missing (its name is the policy's, which the tool's description shows).
        """
        key = table.lower()
        if key not in db.tables:
            return f"table `{table[:100]}` is not allowed"
        if key not in self._table_policies(db) and key not in self._table_policies(
            db, refresh=True
        ):
            return f"table `{table[:100]}` does not exist in database `{db.name}`"
        return None

    def _tables(self, db: DatabaseConfig) -> Output:
        schema = self._schema(db, refresh=True)
        names = sorted(real for real, _ in schema.values())
        return Output(
            value={"database": db.name, "tables": names},
            labels=(Label(f"sql:{db.name}", Integrity.TRUSTED),),
            meta={"database": db.name},
        )

    def _describe(self, db: DatabaseConfig, table: str) -> Output:
        policies = self._table_policies(db, refresh=True)
        spec = policies.get(table.lower())
        if spec is None:
            raise SQLError(f"table `{table}` does not exist or is not allowed")
        types = {c.name: c.type for c in self._schema(db)[table.lower()][1]}
        columns = [
            {"name": c, "type": types.get(c, ""), "masked": c in spec.masked}
            for c in spec.columns
            if c in spec.allowed
        ]
        return Output(
            value={"database": db.name, "table": spec.name, "columns": columns},
            labels=(Label(f"sql:{db.name}.{table.lower()}", Integrity.TRUSTED),),
            meta={"database": db.name, "table": spec.name},
        )

    def _query(self, db: DatabaseConfig, analysis: Analysis) -> Output:
        result = self.engine(db.name).query(
            analysis.statement, max_rows=db.max_rows, timeout=db.timeout
        )
        masked = set(analysis.masked_outputs)
        rows = [
            [MASK if i in masked and v is not None else _jsonable(v) for i, v in enumerate(row)]
            for row in result.rows
        ]
        value = {
            "database": db.name,
            "columns": list(result.columns),
            "rows": rows,
            "row_count": len(rows),
            "truncated": result.truncated,
        }
        return Output(
            value=value,
            labels=self._labels(db, analysis.tables),
            meta={
                "database": db.name,
                "tables": list(analysis.tables),
                "rows": len(rows),
                "truncated": result.truncated,
                "masked_columns": len(masked),
            },
        )

    def _write(
        self, db: DatabaseConfig, analysis: Analysis, call: ToolCall, ctx: Context
    ) -> Output:
        from stockade.tools.sql_write import run_write

        return run_write(self, db, analysis, call)

    def describe(self) -> Mapping[str, Any]:
        """The actions, a JSON schema and a description of each, for integrations."""
        dbs = self.config.databases
        database: dict[str, Any] = {
            "type": "string",
            "enum": sorted(dbs),
            "description": "the database"
            + (" (may be left out: there is only one)" if len(dbs) == 1 else ""),
        }
        sql = {"type": "string", "description": "exactly one SQL statement"}
        table = {"type": "string", "description": "an allowed table"}
        required = [] if len(dbs) == 1 else ["database"]

        def schema(props: dict[str, Any], need: list[str]) -> dict[str, Any]:
            return {
                "type": "object",
                "properties": {"database": database, **props},
                "required": required + need,
                "additionalProperties": False,
            }

        engines = {"sqlite": "SQLite", "postgres": "PostgreSQL", "mysql": "MariaDB/MySQL"}
        about = "; ".join(
            f"`{d.name}` ({engines[d.engine]}, {d.mode}): tables "
            + ", ".join(t.name for t in d.tables.values())
            for d in dbs.values()
        )
        return {
            "name": self.name,
            "actions": sorted(self.actions),
            "arguments": {
                "tables": ["database"],
                "describe": ["database", "table"],
                "query": ["database", "sql"],
                "execute": ["database", "sql"],
            },
            "schemas": {
                "tables": schema({}, []),
                "describe": schema({"table": table}, ["table"]),
                "query": schema({"sql": sql}, ["sql"]),
                "execute": schema({"sql": sql}, ["sql"]),
            },
            "descriptions": {
                "tables": "list the tables you may read",
                "describe": "the columns of one table you may read (masked ones are marked)",
                "query": (
                    "run one read-only query (SELECT, WITH ... SELECT, UNION); name the "
                    f"columns you need; at most the row cap comes back. Databases: {about}"
                ),
                "execute": (
                    "run one INSERT, UPDATE or DELETE (with WHERE) on a writable table; "
                    "every change is journaled and can be undone"
                ),
            },
            "description": f"SQL databases: {about}",
        }

    # -- journal and undo -----------------------------------------------------------

    @property
    def journal(self) -> Journal | None:
        """The journal of the rows writes changed (``None`` when every database is
        read-only); opened on first use."""
        if self.config.journal is None:
            return None
        with self._lock:
            if self._writer is None:
                from stockade.tools.journal import Journal

                self._writer = Journal(self.config.journal, blob_budget=self.config.journal_budget)
            journal: Journal = self._writer
            return journal

    def restorers(self) -> Mapping[str, Restorer]:
        """What ``stockade undo`` uses to put this tool's rows back."""
        from stockade.tools.sql_write import SQLRestorer

        return {"sql": SQLRestorer(self)}

    def close(self) -> None:
        """Close every engine."""
        with self._lock:
            for engine in self._engines.values():
                with contextlib.suppress(StockadeError):
                    engine.close()
            self._engines.clear()
            if self._writer is not None:
                self._writer.close()
                self._writer = None


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    if isinstance(value, (bytes, bytearray, memoryview)):
        return "base64:" + base64.b64encode(bytes(value)[:4096]).decode("ascii")
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return str(value)


def capability_from_policy(policy: Policy) -> list[Capability]:
    """The ``sql`` tool when the policy has an ``sql:`` section."""
    config = policy.section("sql")
    if not isinstance(config, SQLConfig):
        return []
    return [SQLTool(config)]
