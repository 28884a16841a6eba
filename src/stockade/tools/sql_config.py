"""The ``sql:`` policy section: databases, tables, columns, write mode.

Parsed once when the policy loads (:func:`parse_section`); the section also
adds the ordinary allow rules ``sql:<db>:list``, ``sql:<db>:read`` and
``sql:<db>:write`` so its allow-lists are decided, explained and audited like
every other rule. See ``docs/sql.md`` for the reference.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from stockade.errors import ConfigurationError
from stockade.model import Effect, Integrity
from stockade.policy.node import Node
from stockade.policy.policy import SectionContext
from stockade.policy.rules import RuleSpec
from stockade.tools.sql_engines import EngineSpec, engine_kind

__all__ = ["DatabaseConfig", "SQLConfig", "TableConfig", "parse_section"]

_DB_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,62}$")
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]{0,62}$")
_WRITE_KINDS = ("insert", "update", "delete")


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
