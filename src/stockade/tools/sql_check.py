"""The SQL tool's parser layer: what a statement really does, decided on its syntax tree.

:func:`analyse` parses one statement with sqlglot in the engine's dialect,
expands ``*`` against the real schema, resolves every column to the table it
comes from (through aliases, subqueries, CTEs and set operations), and either
raises :class:`Violation` (with a rule id such as ``sql:read-only``,
``sql:table``, ``sql:column``, ``sql:function``) or returns an
:class:`Analysis`: the canonical facts (statement kind, tables read and
written, columns, functions) the policy can match, and the statement to run,
regenerated from the checked tree with comments dropped and the row cap applied.

The engine layer (:mod:`stockade.tools.sql_engines`) does not trust any of
this: it enforces its own limits on whatever reaches it.
"""

from __future__ import annotations

import contextvars
import functools
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlglot import exp
from sqlglot.dialects.dialect import Dialect, NormalizationStrategy
from sqlglot.errors import SqlglotError
from sqlglot.optimizer.normalize_identifiers import normalize_identifiers
from sqlglot.optimizer.qualify_columns import qualify_columns
from sqlglot.optimizer.qualify_tables import qualify_tables
from sqlglot.optimizer.scope import Scope, traverse_scope
from sqlglot.schema import MappingSchema
from sqlglot.tokenizer_core import Token

__all__ = [
    "DANGEROUS_FUNCTIONS",
    "DIALECTS",
    "SAFE_EXTRA_FUNCTIONS",
    "Analysis",
    "TablePolicy",
    "Violation",
    "analyse",
]

# sqlglot logs a warning (quoting the statement) when it parses a statement it
# does not model as a generic Command: `EXPLAIN ...`, `LOCK ...`, `CALL ...`.
# The parser layer refuses every Command anyway, so while *our* parse runs
# that one message is dropped: it would print the agent's statement on the
# application's stderr (logging's last resort) for nothing. A filter on
# sqlglot's logger, active only inside `analyse` (a context variable, so per
# thread and per task), leaves the application's own sqlglot use untouched.
_QUIET_FALLBACK: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "stockade_sqlglot_quiet_fallback", default=False
)
_FALLBACK_MESSAGE = "contains unsupported syntax. Falling back to parsing as a 'Command'."


class _CommandFallbackFilter(logging.Filter):
    """Drop sqlglot's Command-fallback warning while the parser layer parses."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (_QUIET_FALLBACK.get() and record.getMessage().endswith(_FALLBACK_MESSAGE))


def _install_filter() -> None:
    logger = logging.getLogger("sqlglot")
    if not any(isinstance(f, _CommandFallbackFilter) for f in logger.filters):
        logger.addFilter(_CommandFallbackFilter())


_install_filter()

#: sqlglot dialect per engine
DIALECTS = {"sqlite": "sqlite", "postgres": "postgres", "mysql": "mysql"}

# One sqlglot dialect object per engine, made once: naming the dialect by its
# string makes sqlglot build a new object at every step (parse, each optimizer
# rule, generation). A dialect object holds only its settings.
_DIALECT_OBJECTS: Mapping[str, Dialect] = {
    engine: Dialect.get_or_raise(name) for engine, name in DIALECTS.items()
}

_PG_DANGEROUS = {
    # files and directories on the server
    "pg_read_file", "pg_read_binary_file", "pg_ls_dir", "pg_stat_file", "pg_ls_logdir",
    "pg_ls_waldir", "pg_ls_tmpdir", "pg_ls_archive_statusdir", "pg_file_write",
    "pg_file_rename", "pg_file_unlink", "pg_file_sync", "pg_logdir_ls",
    # large objects
    "lo_import", "lo_export", "lo_open", "lo_create", "lo_creat", "lo_unlink", "lo_get",
    "lo_put", "lo_from_bytea", "loread", "lowrite", "lo_truncate", "lo_truncate64",
    "lo_close", "lo_lseek", "lo_lseek64", "lo_tell", "lo_tell64",
    # remote links
    "dblink", "dblink_exec", "dblink_connect", "dblink_connect_u", "dblink_send_query",
    "dblink_open", "dblink_fetch", "dblink_get_result", "dblink_close", "dblink_disconnect",
    # settings
    "set_config", "current_setting", "pg_reload_conf",
    # sleeping and locks
    "pg_sleep", "pg_sleep_for", "pg_sleep_until", "pg_advisory_lock", "pg_advisory_lock_shared",
    "pg_advisory_xact_lock", "pg_advisory_xact_lock_shared", "pg_try_advisory_lock",
    "pg_try_advisory_lock_shared", "pg_try_advisory_xact_lock",
    "pg_try_advisory_xact_lock_shared", "pg_advisory_unlock", "pg_advisory_unlock_all",
    "pg_advisory_unlock_shared",
    # process and server control
    "pg_terminate_backend", "pg_cancel_backend", "pg_rotate_logfile", "pg_promote",
    "pg_switch_wal", "pg_create_restore_point", "pg_backup_start", "pg_backup_stop",
    "pg_start_backup", "pg_stop_backup", "pg_log_backend_memory_contexts",
    "pg_create_logical_replication_slot", "pg_create_physical_replication_slot",
    "pg_drop_replication_slot", "pg_logical_emit_message", "pg_notify",
    "pg_import_system_collations", "pg_stat_reset", "pg_stat_reset_shared",
    "pg_stat_reset_single_table_counters", "pg_stat_reset_single_function_counters",
    "pg_stat_reset_slru", "pg_stat_reset_replication_slot",
    # writes through functions; SQL text run by a function
    "nextval", "setval", "txid_current", "pg_current_xact_id", "query_to_xml",
    "query_to_xml_and_xmlschema", "query_to_xmlschema", "cursor_to_xml", "table_to_xml",
    "table_to_xml_and_xmlschema", "schema_to_xml", "database_to_xml",
    "database_to_xml_and_xmlschema", "schema_to_xml_and_xmlschema",
}  # fmt: skip

_MYSQL_DANGEROUS = {
    "load_file", "sleep", "benchmark", "get_lock", "release_lock", "release_all_locks",
    "is_free_lock", "is_used_lock", "master_pos_wait", "source_pos_wait", "master_gtid_wait",
    "sys_exec", "sys_eval", "sys_get", "sys_set", "lib_mysqludf_sys_info", "kill",
    "set_config",
}  # fmt: skip

_SQLITE_DANGEROUS = {
    "load_extension", "readfile", "writefile", "edit", "fts3_tokenizer", "zipfile",
    "sqlar_compress", "sqlar_uncompress", "fsdir", "lsmode",
}  # fmt: skip

#: built-in functions per engine that are denied whatever the policy says:
#: file access, large objects, remote links, settings, sleeping, locks,
#: process control, extension loading
DANGEROUS_FUNCTIONS: Mapping[str, frozenset[str]] = {
    "postgres": frozenset(_PG_DANGEROUS),
    "mysql": frozenset(_MYSQL_DANGEROUS),
    "sqlite": frozenset(_SQLITE_DANGEROUS),
}

#: built-ins that sqlglot does not model but that are known to be side-effect
#: free; any other function sqlglot does not know (a user-defined function
#: may do anything) needs the policy's ``functions: {allow: [...]}``
SAFE_EXTRA_FUNCTIONS: Mapping[str, frozenset[str]] = {
    "postgres": frozenset(
        {"age", "json_build_object", "jsonb_build_object", "to_json", "to_jsonb",
         "row_to_json", "octet_length", "every", "json_object_agg", "jsonb_object_agg",
         "format", "initcap", "date_part", "justify_days", "justify_hours", "array_to_string"}
    ),
    "mysql": frozenset(
        {"now", "octet_length", "date_format", "curdate", "curtime", "datediff", "dayname",
         "monthname", "weekday", "field", "elt", "format", "inet_ntoa", "inet_aton"}
    ),
    "sqlite": frozenset(
        {"julianday", "datetime", "date", "time", "printf", "format", "quote", "total",
         "octet_length", "unixepoch", "char", "unicode", "likely", "unlikely", "iif",
         "instr", "ifnull", "nullif", "typeof", "hex", "glob", "like", "changes"}
    ),
}  # fmt: skip

# Statements that never belong in a query, named for the message.
_DML = (exp.Insert, exp.Update, exp.Delete, exp.Merge)
_QUERY = (exp.Select, exp.SetOperation)
_WRITE_KINDS = {exp.Insert: "insert", exp.Update: "update", exp.Delete: "delete"}


class Violation(Exception):
    """A statement the parser layer refuses: ``rule`` (``sql:...``) and ``reason``."""

    def __init__(self, rule: str, reason: str) -> None:
        super().__init__(reason)
        self.rule = rule
        self.reason = reason


@dataclass(frozen=True)
class TablePolicy:
    """What the parser layer needs to know of one allowed table.

    ``name`` is the real name in the database; ``columns`` all its columns in
    order, ``allowed`` the ones that may be referenced, ``masked`` the ones that
    may only be selected directly (their values are masked in results);
    ``write`` the statement kinds allowed on it in write mode;
    ``primary_key`` its primary-key columns (empty: it has none; ``None``:
    not known, as for tables that are not written).
    """

    name: str
    columns: tuple[str, ...]
    allowed: frozenset[str]
    masked: frozenset[str] = frozenset()
    write: frozenset[str] = frozenset()
    primary_key: tuple[str, ...] | None = None

    @functools.cached_property
    def by_lower(self) -> dict[str, str]:
        """Lower-cased column name to the real one."""
        return {c.lower(): c for c in self.columns}


@dataclass
class Analysis:
    """What one statement does, as far as the parser layer can tell."""

    kind: str
    statement: str
    tables: tuple[str, ...]
    tables_written: tuple[str, ...]
    columns: tuple[str, ...]
    functions: tuple[str, ...]
    masked_outputs: tuple[int, ...] = ()
    target: str = ""
    where: str = ""
    tree: exp.Expr | None = field(default=None, repr=False)

    def derived(self) -> dict[str, Any]:
        """The canonical arguments the policy sees (lists of plain strings)."""
        return {
            "kind": self.kind,
            "statement": self.statement,
            "tables": list(self.tables),
            "tables_written": list(self.tables_written),
            "columns": list(self.columns),
            "functions": list(self.functions),
        }


def _executable_comment(sql: str, tokens: list[Token]) -> bool:
    """MySQL runs the text of ``/*! ... */`` and ``/*M! ... */`` comments."""
    for tok in tokens:
        for comment in tok.comments:
            if comment.lstrip().startswith(("!", "M!", "m!")):
                return True
    # A comment that ends the text is attached to no token.
    return "/*!" in sql or "/*M!" in sql.upper()


def _function_name(f: exp.Func) -> str:
    if isinstance(f, exp.Anonymous):
        return str(f.name).lower()
    return f.sql_name().lower()


def analyse(
    sql: str,
    *,
    engine: str,
    tables: Mapping[str, TablePolicy],
    namespace: str,
    write: bool = False,
    max_rows: int = 100,
    functions_allow: frozenset[str] = frozenset(),
    functions_deny: frozenset[str] = frozenset(),
) -> Analysis:
    """Check one statement; return what it does or raise :class:`Violation`.

    ``tables`` maps the lower-cased name of every allowed table to its
    :class:`TablePolicy`; ``namespace`` is the schema (PostgreSQL), database
    (MySQL) or ``main`` (SQLite) a table may be qualified with; ``write``
    admits INSERT/UPDATE/DELETE on tables whose policy lists that kind.
    """
    dialect = DIALECTS[engine]
    sqlglot_dialect = _DIALECT_OBJECTS[engine]
    # The text is tokenized once: MySQL's comments are judged on the same
    # tokens the parser then reads.
    tokens: list[Token] | None = None
    if dialect == "mysql":
        try:
            tokens = sqlglot_dialect.tokenize(sql)
        except SqlglotError:
            tokens = None  # text it cannot tokenize cannot be shown free of such comments
        if tokens is None or _executable_comment(sql, tokens):
            raise Violation("sql:comment", "executable comments (`/*! ... */`) are not allowed")
    quiet = _QUIET_FALLBACK.set(True)
    try:
        if tokens is None:
            tokens = sqlglot_dialect.tokenize(sql)
        parsed = sqlglot_dialect.parser().parse(tokens, sql)
        statements = [s for s in parsed if s is not None]
    except Exception as exc:  # sqlglot raises more than its own errors on odd input
        raise Violation("sql:syntax", f"the statement does not parse: {_short(exc)}") from None
    finally:
        _QUIET_FALLBACK.reset(quiet)
    if len(statements) != 1:
        raise Violation("sql:stacked", f"exactly one statement is allowed, got {len(statements)}")
    root = statements[0]
    kind = _kind(root)
    if kind == "select":
        pass
    elif kind in ("insert", "update", "delete"):
        if not write:
            raise Violation(
                "sql:read-only", f"`{kind.upper()}` is a write; this database is read-only"
            )
    elif write:
        raise Violation(
            "sql:statement",
            f"`{_statement_name(kind)}` is not allowed: this database takes queries "
            "(`query`) and INSERT/UPDATE/DELETE on its writable tables (`execute`)",
        )
    else:
        raise Violation(
            "sql:read-only",
            f"`{_statement_name(kind)}` is not allowed: `query` runs one query "
            "(SELECT, WITH ... SELECT, UNION ...)",
        )
    nodes = _check_nodes(
        root, write=write, engine=engine, allow=functions_allow, deny=functions_deny
    )
    fnames = nodes.functions
    target = _check_tables(nodes.tables, nodes.ctes, tables, namespace)
    if kind != "select":
        return _analyse_write(root, kind, target, tables, dialect, fnames)
    try:
        # What sqlglot's `qualify` does with our options, step by step, so the
        # dialect object and schema are passed ready-made. Identifiers are
        # normalized as the engine would resolve them (case-wise), tables get
        # their aliases, then `*` is expanded and every column qualified.
        # Not run: quoting every identifier (the regenerated text keeps the
        # agent's own quoting) and sqlglot's own validation (_check_columns
        # resolves every column itself and denies what it cannot).
        if nodes.single_scope and _SQLGLOT_META not in sql:
            _normalize_identifiers(nodes, sqlglot_dialect)
            qualified = root
        else:
            qualified = normalize_identifiers(
                root, dialect=sqlglot_dialect, store_original_column_identifiers=True
            )
        # sqlglot's table qualification builds every scope to alias tables and
        # derived tables and to rewrite `db.table.column`; a single plain
        # SELECT needs only its table aliases, set here exactly as it would.
        # (Whichever way, the columns are then resolved by qualify_columns on
        # this tree and checked by _check_columns, and this tree is what runs.)
        single_scope = nodes.single_scope and _alias_tables(nodes.tables, engine)
        if not single_scope:
            qualified = qualify_tables(qualified, dialect=sqlglot_dialect)
        qualified = qualify_columns(qualified, _schema(tables, dialect))
    except Exception as exc:
        raise Violation("sql:column", f"cannot resolve every column: {_short(exc)}") from None
    read, cols, masked = _check_columns(qualified, tables, nodes.tables if single_scope else None)
    _strip_generated_aliases(qualified)
    _cap_rows(qualified, max_rows)
    statement = qualified.sql(dialect=sqlglot_dialect, comments=False, copy=False)
    return Analysis(
        kind="select",
        statement=statement,
        tables=tuple(sorted(read)),
        tables_written=(),
        columns=tuple(sorted(cols)),
        functions=tuple(sorted(fnames)),
        masked_outputs=tuple(masked),
        tree=qualified,
    )


def _short(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    # sqlglot highlights with ANSI escapes; keep the message one plain line
    text = text.replace("\x1b[4m", "").replace("\x1b[0m", "")
    return text[:160]


def _kind(root: exp.Expr) -> str:
    if isinstance(root, _QUERY):
        return "select"
    for cls, name in _WRITE_KINDS.items():
        if isinstance(root, cls):
            return name
    if isinstance(root, exp.Command):
        return str(root.this).lower() or "command"
    return str(root.key).lower()


_STATEMENT_NAMES = {"truncatetable": "TRUNCATE", "transaction": "BEGIN", "command": "statement"}


def _statement_name(kind: str) -> str:
    """The statement's keyword for messages: ``DROP``, ``TRUNCATE``, ``EXPLAIN``."""
    return _STATEMENT_NAMES.get(kind, kind.upper())[:40]


_FORBIDDEN_INSIDE = (*_DML, exp.Command, exp.Copy, exp.Set, exp.Create, exp.Drop, exp.Alter,
                     exp.TruncateTable)  # fmt: skip
_VARIABLES = (exp.SessionParameter, exp.Parameter, exp.Placeholder)

# What _check_nodes does with a node, by the node's class; _SCOPED is added to
# the classes that open or shape a scope (queries, derived tables, table
# functions, CTEs, pivots, dotted names): a statement without them is one
# plain SELECT whose tables can be aliased without sqlglot's scope machinery.
# _IDENTIFIER, _STAR and _WHOLE_ROW are plain nodes to the clause walk.
_PLAIN, _IDENTIFIER, _STAR, _WHOLE_ROW, _COLUMN, _FUNC, _FORBIDDEN, _INTO, _LOCK = range(9)
_VARIABLE, _ASSIGN, _RETURNING, _TABLE, _CTE = range(9, 14)
_SCOPED = 16
_SCOPE_SHAPING = (exp.Query, exp.DerivedTable, exp.With, exp.Dot, exp.Pivot, exp.JoinHint,
                  exp.Comprehension, exp.Final)  # fmt: skip
_NODE_ROLE: dict[type[exp.Expr], int] = {}


def _node_role(cls: type[exp.Expr]) -> int:
    """The role of a node class, decided by the same tests in the same order as a
    per-node ``isinstance`` chain would, and remembered in ``_NODE_ROLE`` (which
    the walks read first): a tree has hundreds of nodes but few classes."""
    checks: tuple[tuple[type[exp.Expr] | tuple[type[exp.Expr], ...], int], ...] = (
        (exp.Func, _FUNC),
        (exp.Column, _COLUMN),
        (exp.Identifier, _IDENTIFIER),
        (exp.Literal, _PLAIN),
        (_FORBIDDEN_INSIDE, _FORBIDDEN),
        (exp.Into, _INTO),
        (exp.Lock, _LOCK),
        (_VARIABLES, _VARIABLE),
        (exp.PropertyEQ, _ASSIGN),
        (exp.Returning, _RETURNING),
        (exp.Table, _TABLE),
        (exp.CTE, _CTE),
        (exp.Star, _STAR),
        (exp.TableColumn, _WHOLE_ROW),
    )
    role = next((r for kinds, r in checks if issubclass(cls, kinds)), _PLAIN)
    if issubclass(cls, _SCOPE_SHAPING):
        role |= _SCOPED
    _NODE_ROLE[cls] = role
    return role


@dataclass
class _Nodes:
    """What the clause walk found besides violations."""

    functions: set[str]
    tables: list[exp.Table]  # in walk order
    ctes: list[exp.CTE]
    columns: list[exp.Column]
    identifiers: list[exp.Identifier]
    single_scope: bool  # one plain SELECT: no subquery, derived table, CTE, dotted column


def _check_nodes(
    root: exp.Expr, *, write: bool, engine: str, allow: frozenset[str], deny: frozenset[str]
) -> _Nodes:
    """One walk over the tree: forbidden clauses and functions.

    Also collect the function names, and the tables and CTEs for
    :func:`_check_tables` (judged after the walk, so a forbidden clause or
    function is reported before a forbidden table, wherever each stands).
    """
    dangerous = DANGEROUS_FUNCTIONS[engine]
    safe = SAFE_EXTRA_FUNCTIONS[engine]
    names: set[str] = set()
    tables: list[exp.Table] = []
    ctes: list[exp.CTE] = []
    columns: list[exp.Column] = []
    identifiers: list[exp.Identifier] = []
    single_scope = type(root) is exp.Select
    roles = _NODE_ROLE
    for node in root.walk():
        role = roles.get(type(node))
        if role is None:
            role = _node_role(type(node))
        if role <= _WHOLE_ROW:
            if role == _IDENTIFIER:
                identifiers.append(node)  # type: ignore[arg-type]
            continue
        if role == _COLUMN:
            columns.append(node)  # type: ignore[arg-type]
            # `db.table.column` is rewritten by sqlglot's table qualification
            if node.args.get("db") is not None:
                single_scope = False
            continue
        if role & _SCOPED:
            if node is not root:
                single_scope = False
            role ^= _SCOPED
            if role <= _WHOLE_ROW:
                continue
        if role == _FUNC:
            name = _function_name(node)  # type: ignore[arg-type]
            names.add(name)
            if name in dangerous or name in deny:
                raise Violation("sql:function", f"function `{name}` is not allowed")
            if isinstance(node, exp.Anonymous) and name not in safe and name not in allow:
                raise Violation(
                    "sql:function",
                    f"function `{name}` is not a known built-in; allow it in the policy if it "
                    "is safe",
                )
            continue
        if role == _TABLE:
            tables.append(node)  # type: ignore[arg-type]
            continue
        if role == _CTE:
            ctes.append(node)  # type: ignore[arg-type]
            continue
        if node is root:
            continue
        if role == _FORBIDDEN:
            what = (
                "data-modifying statements inside a query are"
                if isinstance(node, _DML)
                else f"`{_kind(node)}` inside a statement is"
            )
            raise Violation("sql:read-only", f"{what} not allowed")
        if role == _INTO:
            raise Violation("sql:into", "`SELECT ... INTO` is not allowed")
        if role == _LOCK:
            raise Violation(
                "sql:lock", "locking clauses (`FOR UPDATE`, `FOR SHARE`) are not allowed"
            )
        if role == _VARIABLE:
            raise Violation("sql:variable", "variables and parameters are not allowed")
        if role == _ASSIGN:
            raise Violation("sql:variable", "assignments (`:=`) are not allowed")
        if role == _RETURNING and not write:
            raise Violation("sql:read-only", "`RETURNING` is only for writes")
    return _Nodes(names, tables, ctes, columns, identifiers, single_scope)


def _check_tables(
    found: list[exp.Table],
    cte_nodes: list[exp.CTE],
    tables: Mapping[str, TablePolicy],
    namespace: str,
) -> str:
    """Every real table must be allowed; rewrite each to its real, unqualified name."""
    ctes = {str(c.alias_or_name).lower() for c in cte_nodes}
    target = ""
    for table in found:
        if not isinstance(table.this, exp.Identifier):
            raise Violation("sql:table", "table functions are not allowed in `FROM`")
        name = str(table.name)
        if table.args.get("catalog") is not None:
            raise Violation("sql:table", f"table `{table.sql()}` is not allowed")
        db = table.args.get("db")
        if db is not None:
            if str(table.db).lower() != namespace.lower():
                raise Violation("sql:table", f"table `{table.sql()}` is not allowed")
            table.set("db", None)
        elif name.lower() in ctes:
            continue
        spec = tables.get(name.lower())
        if spec is None:
            raise Violation("sql:table", f"table `{name}` is not allowed")
        alias = table.args.get("alias")
        if isinstance(alias, exp.TableAlias) and alias.columns:
            # `customers AS c(id, name, email, country)` renames by position:
            # `c.country` would then read the fourth column, whatever it is.
            raise Violation("sql:column", f"column aliases on table `{name}` are not allowed")
        table.set("this", exp.to_identifier(spec.name))
        if not target:
            target = spec.name
    return target


# The comment marker that lets a statement set sqlglot metadata on a node, such
# as `case_sensitive` (which exempts a name from normalization).
_SQLGLOT_META = "sqlglot.meta"
_LOWERCASING = (NormalizationStrategy.LOWERCASE, NormalizationStrategy.CASE_INSENSITIVE)


def _normalize_identifiers(nodes: _Nodes, dialect: Dialect) -> None:
    """sqlglot's ``normalize_identifiers`` (keeping the original column names)
    on the nodes the clause walk collected, instead of another walk.

    Only for a single plain SELECT without ``sqlglot.meta`` comments: no
    dotted names to record and no node exempt from normalization. Each name
    is normalized by the dialect itself, as the engine resolves it.
    """
    for column in nodes.columns:
        # the spelling before normalization, as sqlglot records it
        column.meta["dot_parts"] = [p.name for p in column.parts]
    # a dialect that lowercases names leaves one without capitals as it is
    lowercases = dialect.normalization_strategy in _LOWERCASING
    for identifier in nodes.identifiers:
        name = identifier.this
        if not (lowercases and name == name.lower()):
            dialect.normalize_identifier(identifier)
    for table in nodes.tables:
        # _check_tables gave each table a new name identifier
        dialect.normalize_identifier(table.this)


def _alias_tables(found: list[exp.Table], engine: str) -> bool:
    """Alias each table of a single plain SELECT as sqlglot's ``qualify_tables`` does
    (``orders`` becomes ``orders AS orders``, the alias normalized for the dialect).

    Return False, changing nothing, for any shape this does not cover: a table
    outside ``FROM``/``JOIN``, a nested join, a pivot, a nameless alias, or
    two sources with one name (sqlglot renames the second).
    """
    names: set[str] = set()
    for table in found:
        alias = table.args.get("alias")
        if (
            not isinstance(table.parent, (exp.From, exp.Join))
            or table.args.get("joins")
            or table.args.get("pivots")
            or (alias is not None and not alias.name)
            or table.alias_or_name in names
        ):
            return False
        names.add(table.alias_or_name)
    for table in found:
        if table.args.get("alias") is None:
            name = _normalized_alias(table.name, engine)
            table.set("alias", exp.TableAlias(this=exp.to_identifier(name)))
    return True


@functools.lru_cache(maxsize=1024)
def _normalized_alias(name: str, engine: str) -> str:
    return str(normalize_identifiers(name, dialect=_DIALECT_OBJECTS[engine]).name)


_SCHEMAS: dict[tuple[str, tuple[tuple[str, tuple[str, ...]], ...]], MappingSchema] = {}


def _schema(tables: Mapping[str, TablePolicy], dialect: str) -> MappingSchema:
    """sqlglot's schema object for the tables, built once per schema and dialect."""
    key = (dialect, tuple(sorted((t.name, t.columns) for t in tables.values())))
    schema = _SCHEMAS.get(key)
    if schema is None:
        schema = MappingSchema(
            {t.name: dict.fromkeys(t.columns, "text") for t in tables.values()}, dialect=dialect
        )
        if len(_SCHEMAS) > 256:
            _SCHEMAS.clear()
        _SCHEMAS[key] = schema
    return schema


def _resolve(scope: Scope, table: str) -> Any:
    s: Scope | None = scope
    while s is not None:
        if table in s.sources:
            return s.sources[table]
        s = s.parent
    return None


def _check_columns(
    root: exp.Expr, tables: Mapping[str, TablePolicy], single_scope: list[exp.Table] | None
) -> tuple[set[str], set[str], list[int]]:
    """Judge every column of the qualified tree; return tables read, columns, masked outputs.

    ``single_scope`` lists the tables of a statement that is one plain SELECT
    with unique table aliases (else None): see :func:`_columns_of_single_scope`.
    """
    by_name = {t.name: t for t in tables.values()}
    found = _columns_of_single_scope(root, single_scope, by_name) if single_scope else None
    read, cols, masked_refs = found if found is not None else _columns_by_scope(root, by_name)
    # Masks are judged last, so a denied column is reported as such.
    masked = sorted(_masked_position(root, c, t, n) for c, t, n in masked_refs)
    if masked and isinstance(root, exp.Select):
        # `ORDER BY 2` becomes `ORDER BY email`: sorting by a masked value leaks it
        names = {root.expressions[i].alias_or_name for i in masked}
        order = root.args.get("order")
        for column in order.find_all(exp.Column) if order is not None else ():
            if not column.table and column.name in names:
                raise Violation(
                    "sql:mask", f"sorting by masked column `{column.name}` is not allowed"
                )
    return read, cols, masked


_Found = tuple[set[str], set[str], list[tuple[exp.Column, str, str]]]


def _judge_column(
    column: exp.Column,
    source: exp.Table,
    by_name: Mapping[str, TablePolicy],
    cols: set[str],
    masked_refs: list[tuple[exp.Column, str, str]],
) -> None:
    """A column of a real table: the table and the column must be allowed."""
    spec = by_name.get(source.name)
    if spec is None:
        raise Violation("sql:table", f"table `{source.name}` is not allowed")
    name = column.name
    real = spec.by_lower.get(name.lower())
    if real is None:
        raise Violation("sql:column", f"table `{spec.name}` has no column `{name}`")
    if real not in spec.allowed:
        raise Violation("sql:column", f"column `{spec.name}.{real}` is not allowed")
    cols.add(f"{spec.name}.{real}")
    if real in spec.masked:
        masked_refs.append((column, spec.name, real))


def _columns_by_scope(root: exp.Expr, by_name: Mapping[str, TablePolicy]) -> _Found:
    """Resolve every column through sqlglot's scopes (aliases, subqueries, CTEs,
    set operations, correlated references)."""
    read: set[str] = set()
    cols: set[str] = set()
    masked_refs: list[tuple[exp.Column, str, str]] = []
    seen: set[int] = set()
    for scope in traverse_scope(root):
        for src in scope.sources.values():
            if isinstance(src, exp.Table):
                read.add(by_name[src.name].name if src.name in by_name else src.name)
        for column in scope.columns:
            seen.add(id(column))
            source: Any = _resolve(scope, column.table) if column.table else None
            if source is None:
                if _is_output_ref(column):
                    continue  # ORDER BY an output column: the projection was checked
                if column.table:
                    raise Violation("sql:column", f"cannot resolve column `{column.sql()}`")
                raise Violation("sql:column", f"cannot resolve column `{column.name}`")
            if not isinstance(source, exp.Table):
                continue  # a derived table or CTE: its own scope was checked
            _judge_column(column, source, by_name, cols, masked_refs)
    # Kept for safety, though it walks the tree once more: a column no scope
    # listed, a whole-row reference or a `*` left over is something the
    # resolution above did not judge.
    for node in root.walk():
        if isinstance(node, exp.Column):
            if id(node) not in seen and not _is_output_ref(node):
                raise Violation("sql:column", f"cannot resolve column `{node.sql()}`")
        elif isinstance(node, exp.TableColumn):
            raise Violation("sql:column", f"whole-row reference `{node.sql()}` is not allowed")
        elif isinstance(node, exp.Star) and not isinstance(node.parent, exp.Count):
            raise Violation("sql:column", "`*` could not be expanded against the schema")
    return read, cols, masked_refs


def _columns_of_single_scope(
    root: exp.Expr, tables: list[exp.Table], by_name: Mapping[str, TablePolicy]
) -> _Found | None:
    """The columns of one plain SELECT, without building sqlglot's scopes.

    With one scope, the sources are the tables of ``FROM``/``JOIN`` by their
    (unique) aliases, and after ``qualify_columns`` every column names its
    source. One walk over the whole tree (not only over a scope) judges every
    column node, in the order the scope would list them. Return None, having
    judged nothing wrong, at anything else (an unqualified column that is not
    an ``ORDER BY`` output, a ``*`` or whole-row reference left, a node that
    opens a scope, a table not listed): the scope path then decides, and
    reports exactly what it would have.
    """
    sources = {t.alias_or_name: t for t in tables}
    known = {id(t) for t in tables}
    cols: set[str] = set()
    masked_refs: list[tuple[exp.Column, str, str]] = []
    met = 0
    roles = _NODE_ROLE
    # depth-first, as sqlglot walks a scope: the first column denied is the
    # one the scope path would deny first
    for node in root.walk(bfs=False):
        role = roles.get(type(node))
        if role is None:
            role = _node_role(type(node))
        if role <= _IDENTIFIER:
            continue
        if role == _WHOLE_ROW or (role == _STAR and not isinstance(node.parent, exp.Count)):
            return None
        if role & _SCOPED and node is not root:
            return None
        if role == _TABLE:
            if id(node) not in known:
                return None
            met += 1
            continue
        if role != _COLUMN:
            continue
        if type(node) is not exp.Column or isinstance(node.this, exp.Star):
            return None
        qualifier = node.table
        if not qualifier:
            if _is_output_ref(node):
                continue  # ORDER BY an output column: the projection is judged
            return None
        source = sources.get(qualifier)
        if source is None:
            raise Violation("sql:column", f"cannot resolve column `{node.sql()}`")
        _judge_column(node, source, by_name, cols, masked_refs)
    if met != len(tables):
        return None
    read = {by_name[t.name].name if t.name in by_name else t.name for t in tables}
    return read, cols, masked_refs


def _is_output_ref(column: exp.Column) -> bool:
    """An unqualified ``ORDER BY`` name that refers to one of the query's outputs."""
    if column.table:
        return False
    order = column.find_ancestor(exp.Order)
    if order is None:
        return False
    query = order.parent
    return isinstance(query, _QUERY) and column.name in query.named_selects


def _masked_position(root: exp.Expr, column: exp.Column, table: str, name: str) -> int:
    """A masked column may only be selected directly by the outermost query."""
    parent = column.parent
    if isinstance(parent, exp.Alias):
        parent = parent.parent
        holder: exp.Expr = column.parent  # type: ignore[assignment]
    else:
        holder = column
    if parent is root and isinstance(root, exp.Select) and holder in root.expressions:
        return root.expressions.index(holder)
    raise Violation(
        "sql:mask",
        f"masked column `{table}.{name}` may only be selected directly, not used in expressions",
    )


def _strip_generated_aliases(root: exp.Expr) -> None:
    """Give the agent the engine's own column names, not sqlglot's ``_col_0``."""
    if not isinstance(root, exp.Select):
        return
    for projection in root.expressions:
        if isinstance(projection, exp.Alias) and projection.alias.startswith("_col_"):
            projection.replace(projection.this)
        elif isinstance(projection, exp.Subquery) and projection.alias.startswith("_col_"):
            projection.set("alias", None)


def _cap_rows(root: exp.Expr, max_rows: int) -> None:
    """Make the query return at most ``max_rows + 1`` rows (one more tells truncation)."""
    cap = max_rows + 1
    if not isinstance(root, _QUERY):
        return
    current = root.args.get("limit")
    if isinstance(current, exp.Limit):
        n = current.expression
        if isinstance(n, exp.Literal) and n.is_int and int(n.this) <= cap:
            return
        current.set("expression", exp.Literal.number(cap))
        return
    if isinstance(current, exp.Fetch):
        count = current.args.get("count")
        if isinstance(count, exp.Literal) and count.is_int and int(count.this) <= cap:
            return
    root.set("limit", exp.Limit(expression=exp.Literal.number(cap)))


def _analyse_write(
    root: exp.Expr,
    kind: str,
    target: str,
    tables: Mapping[str, TablePolicy],
    dialect: str,
    functions: set[str],
) -> Analysis:
    """One INSERT/UPDATE/DELETE on one table the policy lists for that kind.

    No subqueries, joins, ``USING``, ``ON CONFLICT``/``ON DUPLICATE KEY``,
    ``RETURNING`` or ``INSERT ... SELECT``; UPDATE and DELETE need a WHERE.
    """
    tables_in = list(root.find_all(exp.Table))
    if len(tables_in) != 1:
        raise Violation("sql:statement", f"`{kind.upper()}` may name exactly one table")
    target = str(tables_in[0].name)
    spec = next((t for t in tables.values() if t.name == target), None)
    if spec is None or kind not in spec.write:
        raise Violation("sql:write", f"`{kind.upper()}` on table `{target}` is not allowed")
    if root.find(exp.Select) is not None or root.find(exp.Subquery) is not None:
        raise Violation("sql:statement", f"subqueries in `{kind.upper()}` are not allowed")
    for arg in ("from", "from_", "joins", "using", "conflict", "on_conflict", "returning"):
        if root.args.get(arg):
            raise Violation(
                "sql:statement", f"`{kind.upper()}` with `{arg.rstrip('_').upper()}` is not allowed"
            )
    if root.find(exp.OnConflict) is not None:
        raise Violation("sql:statement", "`ON CONFLICT` / `ON DUPLICATE KEY` is not allowed")
    names: list[str] = [str(c.name) for c in root.find_all(exp.Column)]
    if kind == "insert":
        schema = root.this
        if isinstance(schema, exp.Schema):
            names += [str(i.name) for i in schema.expressions]
    cols: set[str] = set()
    for name in names:
        real = spec.by_lower.get(name.lower())
        if real is None:
            raise Violation("sql:column", f"table `{target}` has no column `{name}`")
        if real not in spec.allowed:
            raise Violation("sql:column", f"column `{target}.{real}` is not allowed")
        cols.add(f"{target}.{real}")
    where = ""
    if kind in ("update", "delete"):
        clause = root.args.get("where")
        if clause is None:
            raise Violation("sql:where", f"`{kind.upper()}` without `WHERE` is not allowed")
        where = clause.this.sql(dialect=dialect, comments=False)
    if kind == "update":
        for assignment in root.expressions:
            if not isinstance(assignment, exp.EQ) or not isinstance(assignment.this, exp.Column):
                raise Violation("sql:statement", "`UPDATE` must set plain columns")
    if spec.primary_key is not None:
        # Undo finds the changed rows again by their primary key.
        if not spec.primary_key:
            raise Violation(
                "sql:primary-key",
                f"table `{target}` has no primary key: its changes could not be undone",
            )
        if kind == "update":
            pk = {c.lower() for c in spec.primary_key}
            for assignment in root.expressions:
                name = str(assignment.this.name)
                if name.lower() in pk:
                    raise Violation(
                        "sql:primary-key",
                        f"`UPDATE` may not change primary-key column `{target}.{name}`: "
                        "undo finds rows by their primary key",
                    )
    return Analysis(
        kind=kind,
        statement=root.sql(dialect=dialect, comments=False),
        tables=(),
        tables_written=(target,),
        columns=tuple(sorted(cols)),
        functions=tuple(sorted(functions)),
        target=target,
        where=where,
        tree=root,
    )
