"""The SQL tool's write mode: one checked INSERT/UPDATE/DELETE, journaled, capped.

Inside one transaction on the engine (whose account may only change the
tables the policy lists):

1. the rows the statement will touch are read whole (UPDATE, DELETE);
2. the statement runs (INSERT gets ``RETURNING`` of the primary key);
3. the number of changed rows is compared with ``max_affected``: over it,
   the transaction is rolled back and the call fails;
4. the changed rows as they were and as they are now are recorded in the
   journal; if the journal cannot take them, the transaction is rolled back;
5. the transaction commits.

``stockade undo`` puts the rows back through :class:`SQLRestorer`, after
checking that nobody changed them since (a conflict stops the whole undo).
Values go through the journal as JSON with type tags, so bytes, decimals and
dates come back as what they were.
"""

from __future__ import annotations

import base64
import datetime
import decimal
import json
import uuid
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from sqlglot import exp

from stockade.errors import JournalError, SQLError
from stockade.model import Confidentiality, Integrity, Label, Output, ToolCall
from stockade.tools.sql_check import DIALECTS

if TYPE_CHECKING:
    from stockade.tools.journal import JournalEntry
    from stockade.tools.sql import DatabaseConfig, SQLTool
    from stockade.tools.sql_check import Analysis
    from stockade.tools.sql_engines import Engine, Runner

__all__ = ["SQLRestorer", "decode_value", "encode_value", "run_write"]


def encode_value(value: Any) -> Any:
    """A database value as JSON with a type tag where JSON has no such type."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"$bytes": base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, decimal.Decimal):
        return {"$decimal": str(value)}
    if isinstance(value, datetime.datetime):
        return {"$datetime": value.isoformat()}
    if isinstance(value, datetime.date):
        return {"$date": value.isoformat()}
    if isinstance(value, datetime.time):
        return {"$time": value.isoformat()}
    if isinstance(value, datetime.timedelta):
        return {"$seconds": value.total_seconds()}
    if isinstance(value, uuid.UUID):
        return {"$uuid": str(value)}
    if isinstance(value, (list, tuple)):
        return {"$array": [encode_value(v) for v in value]}
    if isinstance(value, dict):
        # a JSON document: restored as its text, which the database casts back
        return {"$json": json.dumps(value, sort_keys=True, default=str)}
    return {"$text": str(value)}


def decode_value(value: Any) -> Any:
    """The inverse of :func:`encode_value`."""
    if not isinstance(value, dict) or len(value) != 1:
        return value
    tag, data = next(iter(value.items()))
    decoders: dict[str, Any] = {
        "$bytes": lambda d: base64.b64decode(d),
        "$decimal": decimal.Decimal,
        "$datetime": datetime.datetime.fromisoformat,
        "$date": datetime.date.fromisoformat,
        "$time": datetime.time.fromisoformat,
        "$seconds": lambda d: datetime.timedelta(seconds=d),
        "$uuid": uuid.UUID,
        "$array": lambda d: [decode_value(v) for v in d],
        "$json": str,
        "$text": str,
    }
    decode = decoders.get(tag)
    return decode(data) if decode is not None else value


def _ident(name: str, dialect: str) -> str:
    return exp.to_identifier(name, quoted=True).sql(dialect=dialect)


def _pk_where(pk: Sequence[str], dialect: str, ph: str) -> str:
    return " AND ".join(f"{_ident(c, dialect)} = {ph}" for c in pk)


def _rows_by_pk(
    run: Runner, engine: Engine, table: str, pk: Sequence[str], keys: list[list[Any]], dialect: str
) -> tuple[tuple[str, ...], list[list[Any]]]:
    """The current rows with these primary keys (missing ones are left out)."""
    sql = (
        f"SELECT * FROM {_ident(table, dialect)} WHERE {_pk_where(pk, dialect, engine.placeholder)}"  # noqa: S608 - quoted identifiers, values as parameters
    )
    columns: tuple[str, ...] = ()
    rows: list[list[Any]] = []
    for key in keys:
        result = run(sql, [decode_value(v) for v in key])
        columns = result.columns or columns
        rows.extend([encode_value(v) for v in row] for row in result.rows)
    return columns, rows


def run_write(tool: SQLTool, db: DatabaseConfig, analysis: Analysis, call: ToolCall) -> Output:
    """Run one checked write (see the module docs); return what changed."""
    journal = tool.journal
    if journal is None:  # pragma: no cover - the policy loader requires a journal
        raise SQLError("write mode needs the `sql:` section's journal")
    engine = tool.engine(db.name)
    dialect = DIALECTS[db.engine]
    table = analysis.target
    # The parser layer has refused both cases below already (`sql:primary-key`,
    # from the schema it read); read again here in case the table changed since.
    pk = engine.primary_key(table)
    if not pk:
        raise SQLError(f"table `{table}` has no primary key: its changes could not be undone")
    tree = analysis.tree
    if tree is None:  # pragma: no cover - write analyses keep their tree
        raise SQLError("the statement was not analysed")
    if analysis.kind == "update":
        targets = {str(a.this.name).lower() for a in tree.expressions if isinstance(a, exp.EQ)}
        if targets & {c.lower() for c in pk}:
            raise SQLError("an `UPDATE` may not change primary-key columns")
    entry_id: int | None = None
    try:
        with engine.transaction(timeout=db.timeout) as run:
            before_cols: tuple[str, ...] = ()
            before: list[list[Any]] = []
            if analysis.kind in ("update", "delete"):
                lock = " FOR UPDATE" if db.engine == "mysql" else ""
                probe = run(
                    f"SELECT * FROM {_ident(table, dialect)} WHERE {analysis.where}"  # noqa: S608 - quoted identifiers, values as parameters
                    f" LIMIT {db.max_affected + 1}{lock}"
                )
                if len(probe.rows) > db.max_affected:
                    raise SQLError(
                        f"the statement would change more than {db.max_affected} rows; "
                        "nothing was changed"
                    )
                before_cols = probe.columns
                before = [[encode_value(v) for v in row] for row in probe.rows]
            statement = analysis.statement
            if analysis.kind == "insert":
                statement = _with_returning(tree, pk, dialect)
            result = run(statement)
            affected = result.affected if analysis.kind != "insert" else len(result.rows)
            if affected > db.max_affected:
                raise SQLError(
                    f"the statement changed {affected} rows, more than {db.max_affected}; "
                    "it was rolled back"
                )
            index = {c.lower(): i for i, c in enumerate(before_cols)}
            if analysis.kind == "insert":
                keys = [[encode_value(v) for v in row] for row in result.rows]
            else:
                keys = [[row[index[c.lower()]] for c in pk] for row in before]
            after_cols: tuple[str, ...] = ()
            after: list[list[Any]] = []
            if analysis.kind != "delete":
                after_cols, after = _rows_by_pk(run, engine, table, pk, keys, dialect)
            entry_id = journal.record(
                call_id=call.call_id,
                session=call.session,
                tool="sql",
                kind=analysis.kind,
                target=f"{db.name}.{table}",
                before={
                    "database": db.name,
                    "table": table,
                    "pk": list(pk),
                    "keys": keys,
                    "columns": list(before_cols),
                    "rows": before,
                },
                after={"columns": list(after_cols), "rows": after},
            )
    except JournalError as exc:
        raise SQLError(f"the change could not be journaled, so it was not made: {exc}") from exc
    except BaseException:
        if entry_id is not None:  # the commit failed after the journal took the entry
            journal.discard(entry_id)
        raise
    spec = db.tables.get(table.lower())
    return Output(
        value={
            "database": db.name,
            "table": table,
            "kind": analysis.kind,
            "affected": affected,
            "journal": entry_id,
        },
        labels=(
            Label(
                f"sql:{db.name}.{table.lower()}",
                spec.integrity if spec is not None else Integrity.UNTRUSTED,
                Confidentiality.SECRET
                if spec is not None and spec.confidential
                else Confidentiality.INTERNAL,
            ),
        ),
        meta={"database": db.name, "table": table, "affected": affected, "journal": entry_id},
    )


def _with_returning(tree: exp.Expr, pk: Sequence[str], dialect: str) -> str:
    statement = tree.copy()
    statement.set(
        "returning",
        exp.Returning(expressions=[exp.column(c, quoted=True) for c in pk]),
    )
    return statement.sql(dialect=dialect, comments=False)


class SQLRestorer:
    """Puts rows changed by the sql tool back (see :class:`~stockade.tools.journal.Restorer`)."""

    def __init__(self, tool: SQLTool) -> None:
        self._tool = tool
        # Rows as the checks of this undo have promised them: checks run newest
        # first and judge each entry as if the newer ones were already undone.
        self._overlay: dict[tuple[str, str, str], list[Any] | None] = {}

    def _where(self, entry: JournalEntry) -> tuple[DatabaseConfig, Engine, str, list[str]]:
        before = entry.before
        name = str(before.get("database", ""))
        db = self._tool.config.databases.get(name)
        if db is None or db.read_only:
            raise SQLError(f"database `{name}` of entry #{entry.id} is not writable in this policy")
        return db, self._tool.engine(name), str(before["table"]), list(before["pk"])

    def _current(self, entry: JournalEntry) -> list[list[Any]]:
        db, engine, table, pk = self._where(entry)
        keys = [list(k) for k in entry.before["keys"]]
        rows: list[list[Any]] = []
        unknown = [k for k in keys if (db.name, table, repr(k)) not in self._overlay]
        if unknown:
            with engine.transaction(timeout=db.timeout) as run:
                _, rows = _rows_by_pk(run, engine, table, pk, unknown, DIALECTS[db.engine])
        for k in keys:
            promised = self._overlay.get((db.name, table, repr(k)))
            if promised is not None:
                rows.append(promised)
        return rows

    def check(self, entry: JournalEntry) -> None:
        """Raise when a row this entry changed was changed again since (by
        anything but the newer entries of the same undo)."""
        current = self._current(entry)
        expected = list((entry.after or {}).get("rows", []))
        if sorted(map(repr, current)) != sorted(map(repr, expected)):
            raise SQLError(
                f"rows of `{entry.target}` changed since entry #{entry.id}; "
                "undoing it would overwrite that change"
            )
        db, _, table, pk = self._where(entry)
        columns = [c.lower() for c in entry.before.get("columns", [])]
        before = {
            repr([row[columns.index(c.lower())] for c in pk]): row
            for row in entry.before.get("rows", [])
        }
        for key in entry.before["keys"]:
            self._overlay[(db.name, table, repr(list(key)))] = before.get(repr(list(key)))

    def restore(self, entry: JournalEntry) -> None:
        """Delete inserted rows, put deleted rows back, set updated rows to what they were."""
        db, engine, table, pk = self._where(entry)
        dialect = DIALECTS[db.engine]
        ph = engine.placeholder
        before: Mapping[str, Any] = entry.before
        columns = list(before.get("columns", []))
        with engine.transaction(timeout=db.timeout) as run:
            if entry.kind == "insert":
                for key in before["keys"]:
                    run(
                        f"DELETE FROM {_ident(table, dialect)} WHERE {_pk_where(pk, dialect, ph)}",  # noqa: S608 - quoted identifiers, values as parameters
                        [decode_value(v) for v in key],
                    )
            elif entry.kind == "delete":
                names = ", ".join(_ident(c, dialect) for c in columns)
                marks = ", ".join(ph for _ in columns)
                for row in before["rows"]:
                    run(
                        f"INSERT INTO {_ident(table, dialect)} ({names}) VALUES ({marks})",  # noqa: S608 - quoted identifiers, values as parameters
                        [decode_value(v) for v in row],
                    )
            elif entry.kind == "update":
                index = {c.lower(): i for i, c in enumerate(columns)}
                sets = ", ".join(f"{_ident(c, dialect)} = {ph}" for c in columns)
                for row in before["rows"]:
                    key = [row[index[c.lower()]] for c in pk]
                    run(
                        f"UPDATE {_ident(table, dialect)} SET {sets} "  # noqa: S608 - quoted identifiers, values as parameters
                        f"WHERE {_pk_where(pk, dialect, ph)}",
                        [decode_value(v) for v in row] + [decode_value(v) for v in key],
                    )
            else:
                raise SQLError(f"entry #{entry.id} has an unknown kind `{entry.kind}`")
