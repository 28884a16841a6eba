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
import re
import threading
import uuid
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stockade.errors import ConfigurationError, SQLError, StockadeError
from stockade.model import Confidentiality, Decision, Integrity, Label, Output, ToolCall
from stockade.policy.node import Node
from stockade.policy.policy import SectionContext
from stockade.policy.rules import RuleSpec
from stockade.tools.base import Capability, Context
from stockade.tools.sql_check import Analysis, TablePolicy, Violation, analyse
from stockade.tools.sql_engines import ColumnInfo, Engine, EngineSpec, engine_kind, open_engine

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

_DB_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,62}$")
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]{0,62}$")
_WRITE_KINDS = ("insert", "update", "delete")
MASK = "***"


@dataclass(frozen=True)
class TableConfig:
    """One table (or view) the policy allows.

    ``columns`` lists the allowed columns (``None``: all of them);
    ``deny_columns`` are never readable; ``mask`` columns may be selected but
    their values come back as ``***``; ``confidential`` labels results from
    it as secret; ``write`` lists the statement kinds allowed in write mode.
    """

    name: str
    columns: tuple[str, ...] | None = None
    deny_columns: tuple[str, ...] = ()
    mask: tuple[str, ...] = ()
    confidential: bool = False
    integrity: Integrity = Integrity.UNTRUSTED
    write: tuple[str, ...] = ()

    def allowed_columns(self) -> frozenset[str] | None:
        """Lower-cased names of the listed columns, ``None`` when all are (less the denied)."""
        return None if self.columns is None else frozenset(c.lower() for c in self.columns)


@dataclass(frozen=True)
class DatabaseConfig:
    """One database of the ``sql:`` section."""

    name: str
    url: str
    engine: str
    mode: str = "read-only"
    tables: Mapping[str, TableConfig] = field(default_factory=dict)
    max_rows: int = 100
    timeout: float = 5.0
    max_sql_length: int = 20_000
    functions_allow: frozenset[str] = frozenset()
    functions_deny: frozenset[str] = frozenset()
    max_affected: int = 10
    namespace: str = ""
    base_dir: Path = field(default_factory=Path.cwd)

    @property
    def read_only(self) -> bool:
        """Whether this database admits only queries."""
        return self.mode == "read-only"

    def engine_spec(self) -> EngineSpec:
        """What the engine layer enforces for this database."""
        return EngineSpec(
            url=self.url,
            tables={k: t.allowed_columns() for k, t in self.tables.items()},
            denied_columns={
                k: frozenset(c.lower() for c in t.deny_columns)
                for k, t in self.tables.items()
                if t.deny_columns
            },
            write_tables=frozenset(k for k, t in self.tables.items() if t.write),
            read_only=self.read_only,
            base_dir=self.base_dir,
            namespace=self.namespace,
        )


@dataclass(frozen=True)
class SQLConfig:
    """The parsed ``sql:`` section: databases by name, and the journal that keeps
    the rows writes change (needed when any database is read-write)."""

    databases: Mapping[str, DatabaseConfig]
    journal: Path | None = None
    journal_budget: int = 50_000_000


# -- the policy section -----------------------------------------------------------------

_DB_KEYS = (
    "url",
    "mode",
    "tables",
    "max_rows",
    "timeout",
    "max_sql_length",
    "functions",
    "max_affected",
    "schema",
)
_TABLE_KEYS = ("columns", "deny_columns", "mask", "confidential", "integrity", "write")


def _idents(node: Node) -> tuple[str, ...]:
    names = node.strings()
    for n in names:
        if not _IDENT.match(n):
            node.fail(f"invalid identifier `{n}`; expected letters, digits and _")
    return tuple(names)


def _parse_table(name: str, node: Node, mode: str) -> TableConfig:
    m = node.mapping(allowed=_TABLE_KEYS) if node.value is not None else {}
    columns = _idents(m["columns"]) if "columns" in m else None
    deny = _idents(m["deny_columns"]) if "deny_columns" in m else ()
    mask = _idents(m["mask"]) if "mask" in m else ()
    if columns is not None:
        lower = {c.lower() for c in columns}
        for c in (*deny, *mask):
            if c.lower() not in lower:
                node.fail(f"column `{c}` is not in `columns` of table `{name}`")
    if {c.lower() for c in deny} & {c.lower() for c in mask}:
        node.fail(f"a column of table `{name}` cannot be both denied and masked")
    write: tuple[str, ...] = ()
    if "write" in m:
        write = tuple(sorted({w.lower() for w in m["write"].strings()}))
        for w in write:
            if w not in _WRITE_KINDS:
                m["write"].fail(
                    f"unknown statement kind `{w}`; expected one of: insert, update, delete"
                )
        if mode != "read-write":
            m["write"].fail("`write` needs the database in `mode: read-write`")
    integrity = (
        Integrity(m["integrity"].string(choices=("trusted", "untrusted")))
        if "integrity" in m
        else Integrity.UNTRUSTED
    )
    return TableConfig(
        name=name,
        columns=columns,
        deny_columns=deny,
        mask=mask,
        confidential=m["confidential"].boolean() if "confidential" in m else False,
        integrity=integrity,
        write=write,
    )


def _parse_database(name: str, node: Node, ctx: SectionContext) -> DatabaseConfig:
    m = node.mapping(allowed=_DB_KEYS, required=("url", "tables"))
    url = m["url"].string()
    try:
        engine = engine_kind(url)
    except ConfigurationError as exc:
        m["url"].fail(str(exc))
    mode = m["mode"].string(choices=("read-only", "read-write")) if "mode" in m else "read-only"
    tables: dict[str, TableConfig] = {}
    tnode = m["tables"]
    for tname, tn in tnode.mapping().items():
        if not _IDENT.match(tname):
            tnode.fail(f"invalid table name `{tname}`", key=tname)
        if tname.lower() in tables:
            tnode.fail(f"table `{tname}` is listed twice", key=tname)
        tables[tname.lower()] = _parse_table(tname, tn, mode)
    if not tables:
        tnode.fail("list at least one table")
    functions_allow: frozenset[str] = frozenset()
    functions_deny: frozenset[str] = frozenset()
    if "functions" in m:
        fm = m["functions"].mapping(allowed=("allow", "deny"))
        if "allow" in fm:
            functions_allow = frozenset(f.lower() for f in _idents(fm["allow"]))
        if "deny" in fm:
            functions_deny = frozenset(f.lower() for f in _idents(fm["deny"]))
    for t in tables.values():
        if t.write and (t.columns is not None or t.deny_columns):
            tnode.fail(
                f"table `{t.name}` is writable: it cannot restrict columns (the journal "
                "must read whole rows to undo a change)",
                key=t.name,
            )
    namespace = m["schema"].string() if "schema" in m else ""
    if namespace and engine != "postgres":
        m["schema"].fail("`schema` applies to postgresql only")
    return DatabaseConfig(
        name=name,
        url=url,
        engine=engine,
        mode=mode,
        tables=tables,
        max_rows=m["max_rows"].integer(minimum=1, maximum=100_000) if "max_rows" in m else 100,
        timeout=_timeout(m["timeout"]) if "timeout" in m else 5.0,
        max_sql_length=(
            m["max_sql_length"].integer(minimum=16, maximum=1_000_000)
            if "max_sql_length" in m
            else 20_000
        ),
        functions_allow=functions_allow,
        functions_deny=functions_deny,
        max_affected=m["max_affected"].integer(minimum=1) if "max_affected" in m else 10,
        namespace=namespace,
        base_dir=ctx.base_dir,
    )


def _timeout(node: Node) -> float:
    value = node.duration()
    if not 0 < value <= 3600:
        node.fail("expected a timeout between 1ms and 1h")
    return value


def parse_section(node: Node, ctx: SectionContext) -> SQLConfig:
    """Read the ``sql:`` section and add the rules that allow its actions.

    For each database ``D`` the section adds ``sql:D:list`` (action
    ``tables``), ``sql:D:read`` (``describe`` and ``query`` on the allowed
    tables) and, in read-write mode, ``sql:D:write`` (``execute`` of the
    listed kinds on the listed tables).
    """
    m = node.mapping(allowed=("databases", "journal", "journal_budget"), required=("databases",))
    dbs: dict[str, DatabaseConfig] = {}
    dnode = m["databases"]
    for name, n in dnode.mapping().items():
        if not _DB_NAME.match(name):
            dnode.fail(
                f"invalid database name `{name}`; expected letters, digits, _ and -", key=name
            )
        db = _parse_database(name, n, ctx)
        dbs[name] = db
        _add_rules(db, n, ctx)
    if not dbs:
        dnode.fail("configure at least one database")
    journal = None
    if "journal" in m:
        journal = Path(m["journal"].string())
        if not journal.is_absolute():
            journal = ctx.base_dir / journal
    writer = next((d for d in dbs.values() if not d.read_only), None)
    if writer is not None and journal is None:
        dnode.fail(
            f"database `{writer.name}` is read-write: the `sql:` section needs a `journal` "
            "folder so its writes can be undone"
        )
    budget = m["journal_budget"].size() if "journal_budget" in m else 50_000_000
    return SQLConfig(databases=dbs, journal=journal, journal_budget=budget)


def _add_rules(db: DatabaseConfig, node: Node, ctx: SectionContext) -> None:
    from stockade.model import Effect

    origin = f"{node.file}:{node.line}:{node.column}"
    base = {"database": {"equals": db.name}}
    ctx.add_rule(
        RuleSpec(
            id=f"sql:{db.name}:list",
            tools=("sql",),
            actions=("tables",),
            effect=Effect.ALLOW,
            mode=ctx.mode,
            when=base,
            reason=f"the agent may list the allowed tables of `{db.name}`",
            origin=origin,
            node=node,
        )
    )
    ctx.add_rule(
        RuleSpec(
            id=f"sql:{db.name}:read",
            tools=("sql",),
            actions=("describe", "query"),
            effect=Effect.ALLOW,
            mode=ctx.mode,
            when={**base, "tables": {"one_of": sorted(db.tables)}},
            reason=f"the agent may query the allowed tables of `{db.name}`",
            origin=origin,
            node=node,
        )
    )
    writable = sorted(k for k, t in db.tables.items() if t.write)
    if db.mode == "read-write" and writable:
        ctx.add_rule(
            RuleSpec(
                id=f"sql:{db.name}:write",
                tools=("sql",),
                actions=("execute",),
                effect=Effect.ALLOW,
                mode=ctx.mode,
                # the statement kinds per table are the tool's own check (sql:write)
                when={**base, "tables_written": {"one_of": writable}},
                reason=f"the agent may change rows of listed tables in `{db.name}`",
                origin=origin,
                node=node,
            )
        )


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
            out[key] = TablePolicy(
                name=real,
                columns=names,
                allowed=allowed,
                masked=masked,
                write=frozenset(spec.write),
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
            args["tables"] = [table.lower()]
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
                table = str(call.args.get("table", "")).lower()
                if table not in db.tables:
                    return Decision.deny("sql:table", f"table `{table}` is not allowed")
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
