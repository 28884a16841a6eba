"""The SQL tool's error messages never carry row values (red team R2).

A database's own error text may quote a value it read (PostgreSQL's
``invalid input syntax for type integer: "Ada"``, MariaDB's ``Incorrect
integer value: 'O'Brien'``, SQLite's ``JSON path error near '...'``); that text
would reach the model past the result scanner, the masking, the labels and the
flow stage. The engines map each error to a fixed text by its code instead,
quoting at most a piece of the agent's own statement. Real servers throughout.
"""

from __future__ import annotations

import secrets
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from sql_support import CUSTOMERS, SQLEnv, pg_env, sqlite_env

from stockade.errors import SQLError, StockadeError
from stockade.guard import Guard
from stockade.policy import Policy
from stockade.stages import MemoryAuditSink, NoFlow, NoScanner
from stockade.tools.sql_engines import Engine, EngineSpec, open_engine
from stockade.tools.sql_errors import mysql_error_text, postgres_error_text, sqlite_error_text

__all__ = ["pg_env", "sqlite_env"]

# Every value of the test tables that a leaking message could carry.
VALUES = [str(v) for row in CUSTOMERS for v in row[1:] if v is not None] + ["O'Brien", "Brien"]

# Statements whose engine error text quotes a value read from a row.
PG_LEAKS = [
    "SELECT CAST(name AS integer) FROM customers WHERE id = 1",
    "SELECT string_agg(name, ',')::int FROM customers",
    "SELECT name::regclass FROM customers WHERE id = 1",
    "SELECT name::regproc FROM customers WHERE id = 1",
    "SELECT CAST(name AS date) FROM customers WHERE id = 1",
    "SELECT name::jsonb FROM customers WHERE id = 1",
    "SELECT query_to_xml(name, true, true, '') FROM customers WHERE id = 1",
    "SELECT xmlparse(document name) FROM customers WHERE id = 1",
]


def _assert_no_value(text: str) -> None:
    lowered = text.lower()
    for value in VALUES:
        assert value.lower() not in lowered, f"{value!r} leaked in {text!r}"


def _error(engine: Engine, sql: str) -> str:
    with pytest.raises(SQLError) as info:
        engine.query(sql, max_rows=10, timeout=5)
    return str(info.value)


# -- PostgreSQL -------------------------------------------------------------------------


@pytest.mark.postgres
def test_pg_error_message_does_not_echo_row_values(pg_env: SQLEnv) -> None:
    # `customers` is confidential; `name` is an allowed column. A failing cast
    # makes PostgreSQL quote the value: the tool's message names the kind only.
    guard = Guard(
        Policy.from_text(pg_env.policy_text()),
        audit=MemoryAuditSink(),
        scanner=NoScanner(),
        flow=NoFlow(),
    )
    try:
        with pytest.raises(StockadeError) as info:
            guard.call(
                "sql", "query", {"sql": "SELECT CAST(name AS integer) FROM customers WHERE id = 1"}
            )
        text = str(info.value)
        assert "Ada" not in text
        assert "could not be converted" in text
        assert "22P02" in text
    finally:
        guard.close()


@pytest.mark.postgres
@pytest.mark.parametrize("sql", PG_LEAKS)
def test_pg_guard_messages_carry_no_values(pg_env: SQLEnv, sql: str) -> None:
    with pytest.raises(StockadeError) as info:
        pg_env.shared_guard().call("sql", "query", {"sql": sql})
    _assert_no_value(str(info.value))


@pytest.mark.postgres
@pytest.mark.parametrize("sql", PG_LEAKS)
def test_pg_engine_layer_alone_carries_no_values(pg_env: SQLEnv, sql: str) -> None:
    # The parser layer may refuse some of these first: the engine must not rely on it.
    _assert_no_value(_error(pg_env.shared_engine(), sql))


@pytest.mark.postgres
def test_pg_messages_stay_useful(pg_env: SQLEnv) -> None:
    engine = pg_env.shared_engine()
    text = _error(engine, "SELECT nme FROM customers")
    assert "column" in text and "42703" in text and "`nme`" in text
    text = _error(engine, "SELECT name FROM customers WHERE")
    assert "syntax error" in text and "end of the statement" in text
    text = _error(engine, "SELECT name FROM customers WHERE name = 'O''Brien' AND AND")
    assert "syntax error" in text and "`AND`" in text
    text = _error(engine, "SELECT 1 / (id - 1) FROM customers")
    assert text == "division by zero (SQLSTATE 22012)"
    assert "refused" in _error(engine, "SELECT token FROM secrets")


# -- MariaDB ----------------------------------------------------------------------------


@pytest.fixture
def maria_engine(mariadb_url: str) -> Iterator[Engine]:
    """A fresh database with a `people` table holding an apostrophe, in write mode."""
    import pymysql

    from stockade.tools.sql_mysql import mysql_params

    dbname = f"stockade_err_{secrets.token_hex(4)}"
    root = pymysql.connect(**mysql_params(mariadb_url), autocommit=True)
    engine: Engine | None = None
    try:
        with root.cursor() as cur:
            cur.execute(f"CREATE DATABASE `{dbname}`")
            cur.execute(
                f"CREATE TABLE `{dbname}`.people "
                "(id INTEGER PRIMARY KEY, name VARCHAR(50) UNIQUE, n INTEGER)"
            )
            cur.execute(f"INSERT INTO `{dbname}`.people VALUES (1, 'Ada', 1), (2, 'O''Brien', 2)")
        url = mariadb_url.rsplit("/", 1)[0] + f"/{dbname}"
        spec = EngineSpec(
            url=url,
            tables={"people": None},
            write_tables=frozenset({"people"}),
            read_only=False,
            verify_grants=False,  # the administrator account: only the messages are tested
        )
        engine = open_engine(spec)
        yield engine
    finally:
        if engine is not None:
            engine.close()
        with root.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{dbname}`")
        root.close()


def _write_error(engine: Engine, sql: str) -> str:
    with pytest.raises(SQLError) as info, engine.transaction(timeout=5) as run:
        run(sql)
    return str(info.value)


@pytest.mark.mariadb
def test_mariadb_apostrophe_value_does_not_survive(maria_engine: Engine) -> None:
    # `Incorrect integer value: 'O'Brien'`: a quote scrubber left `Brien'`.
    text = _write_error(maria_engine, "UPDATE people SET n = name WHERE id = 2")
    _assert_no_value(text)
    assert "1366" in text and "could not be converted" in text
    # `Duplicate entry 'O'Brien'`: the value was read from another row.
    text = _write_error(
        maria_engine,
        "UPDATE people SET name = (SELECT p.name FROM (SELECT name FROM people WHERE id = 2) p) "
        "WHERE id = 1",
    )
    _assert_no_value(text)
    assert "1062" in text and "unique" in text


@pytest.mark.mariadb
def test_mariadb_messages_stay_useful(maria_engine: Engine) -> None:
    text = _error(maria_engine, "SELEC name FROM people")
    assert "syntax error" in text and "`SELEC`" in text
    text = _error(maria_engine, "SELECT name FROM people WHERE name = 'O''Brien' AND")
    assert "syntax error" in text and "end of the statement" in text
    _assert_no_value(text)
    text = _error(maria_engine, "SELECT nme FROM people")
    assert "1054" in text and "`nme`" in text
    text = _error(maria_engine, "SELECT * FROM nosuch")
    assert "1146" in text and "`nosuch`" in text


# -- SQLite -----------------------------------------------------------------------------


@pytest.fixture
def people_sqlite(tmp_path: Path) -> Iterator[Engine]:
    """A SQLite file with a `people` table holding an apostrophe, read-only."""
    path = tmp_path / "people.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE people (id INTEGER PRIMARY KEY, name TEXT, n INTEGER)")
    conn.execute("INSERT INTO people VALUES (1, 'Ada', 1), (2, 'O''Brien', 2)")
    conn.commit()
    conn.close()
    engine = open_engine(EngineSpec(url=f"sqlite:///{path}", tables={"people": None}))
    yield engine
    engine.close()


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT json_extract('{}', name) FROM people WHERE id = 2",
        "SELECT json_insert('{}', name, 1) FROM people",
        "SELECT json(name) FROM people",
    ],
)
def test_sqlite_messages_carry_no_values(people_sqlite: Engine, sql: str) -> None:
    _assert_no_value(_error(people_sqlite, sql))


def test_sqlite_undecodable_text_is_not_quoted(tmp_path: Path) -> None:
    # Python's driver reports `Could not decode to UTF-8 column 'name' with
    # text '...'`: no pattern knows it, so only the fixed fallback remains.
    path = tmp_path / "bad.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE people (id INTEGER PRIMARY KEY, name TEXT)")
    conn.execute("INSERT INTO people VALUES (1, CAST(X'4F27427269656E80' AS TEXT))")
    conn.commit()
    conn.close()
    engine = open_engine(EngineSpec(url=f"sqlite:///{path}", tables={"people": None}))
    try:
        text = _error(engine, "SELECT name FROM people")
    finally:
        engine.close()
    _assert_no_value(text)
    assert text == "the statement failed"


def test_sqlite_guard_message_carries_no_values(sqlite_env: SQLEnv) -> None:
    with pytest.raises(StockadeError) as info:
        sqlite_env.shared_guard().call(
            "sql", "query", {"sql": "SELECT json_extract('{}', name) FROM customers WHERE id = 1"}
        )
    _assert_no_value(str(info.value))


def test_sqlite_messages_stay_useful(people_sqlite: Engine) -> None:
    assert "`selec`" in _error(people_sqlite, "selec name FROM people")
    assert "`nme`" in _error(people_sqlite, "SELECT nme FROM people")
    assert "end of the statement" in _error(people_sqlite, "SELECT name FROM people WHERE")
    assert "JSON path" in _error(people_sqlite, "SELECT json_extract('{}', name) FROM people")


# -- the mapping alone: a name is quoted only from the agent's own statement -------------


def test_names_outside_the_statement_are_never_quoted() -> None:
    statement = "SELECT x FROM people"
    assert "Ada" not in mysql_error_text(1054, "Unknown column 'Ada' in 'SELECT'", statement)
    assert "Ada" not in mysql_error_text(1146, "Table 'db.Ada' doesn't exist", statement)
    assert "Brien" not in mysql_error_text(
        1064, "You have an error ... near 'O'Brien' at line 1", statement
    )
    assert "Ada" not in sqlite_error_text("no such column: Ada", statement)
    assert "Ada" not in sqlite_error_text('near "Ada": syntax error', statement)
    assert "Ada" not in sqlite_error_text("some new message about 'Ada'", statement)
    # a commit-time error has no statement: no position is quoted
    assert postgres_error_text("23505", 3, "", 0) == (
        "a unique constraint is violated (SQLSTATE 23505)"
    )
    # no position: nothing from the statement either, only the kind and the code
    assert postgres_error_text("42P01", None, statement, 0) == (
        "a table named in the statement does not exist (SQLSTATE 42P01)"
    )


def test_unknown_codes_name_their_class() -> None:
    assert postgres_error_text("22999", None, "", 0).startswith("a data exception")
    assert postgres_error_text("23999", None, "", 0).startswith("an integrity constraint")
    assert postgres_error_text("42999", None, "", 0).startswith("the statement is not valid")
    assert mysql_error_text(9999, "Something about 'Ada'", "SELECT 1") == (
        "the statement failed (error 9999)"
    )
    assert "refused" in mysql_error_text(1142, "SELECT command denied to user 'x'", "SELECT 1")
