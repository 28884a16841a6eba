"""Write mode on real SQLite, PostgreSQL and MariaDB: listed tables and kinds only,
WHERE required, a cap on changed rows inside the transaction, every change
journaled and undone with ``stockade undo``."""

from __future__ import annotations

import secrets
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sql_support import SQLEnv, mariadb_env, pg_env, sqlite_env

from stockade import cli
from stockade.errors import Denied, JournalError, SQLError
from stockade.guard import Guard
from stockade.hazmat.sql_connection import engine_only
from stockade.policy import Policy
from stockade.stages import MemoryAuditSink, NoFlow, NoScanner
from stockade.tools.sql import SQLConfig, SQLTool
from stockade.tools.sql_cli import grant_statements

__all__ = ["mariadb_env", "pg_env", "sqlite_env"]

WRITE_TABLES = """\
      tables:
        orders: {write: [insert, update, delete]}
        customers: {deny_columns: [ssn], mask: [email]}
"""


def _text(env: SQLEnv, url: str, journal: Path, tables: str = WRITE_TABLES) -> str:
    return (
        "version: 1\n"
        "sql:\n"
        f"  journal: {journal}\n"
        "  databases:\n"
        "    shop:\n"
        f"      url: {url}\n"
        "      mode: read-write\n"
        "      max_affected: 3\n"
        "      timeout: 2s\n"
        f"{tables}"
    )


def _write_url(env: SQLEnv, journal: Path, tables: str = WRITE_TABLES) -> str:
    """An account that may change `orders` (and only that), made with grant-readonly."""
    if env.kind == "sqlite":
        return env.url
    suffix = secrets.token_hex(3)
    name, password = f"stockade_w_{suffix}", secrets.token_hex(8)
    section = Policy.from_text(_text(env, env.url, journal, tables)).section("sql")
    assert isinstance(section, SQLConfig)
    statements = grant_statements(
        section.databases["shop"],
        role=name,
        schema={"customers": ["id", "name", "email", "ssn", "country"]},
        password=password,
    )
    if env.kind == "postgres":
        import psycopg

        with psycopg.connect(env.admin_url, autocommit=True) as conn:
            for stmt in statements:
                if not stmt.startswith("--"):
                    conn.execute(stmt)
        env.extras.setdefault("cleanup", []).append(lambda: _drop_pg_role(env, name))
        host = env.url.split("@", 1)[1]
        return f"postgresql://{name}:{password}@{host}"
    import pymysql

    from stockade.tools.sql_mysql import mysql_params

    conn = pymysql.connect(**mysql_params(env.admin_url), autocommit=True)
    try:
        with conn.cursor() as cur:
            for stmt in statements:
                if not stmt.startswith("--"):
                    cur.execute(stmt)
    finally:
        conn.close()
    env.extras.setdefault("cleanup", []).append(lambda: _drop_my_user(env, name))
    host = env.url.split("@", 1)[1]
    return f"mysql://{name}:{password}@{host}"


def _drop_pg_role(env: SQLEnv, name: str) -> None:
    import psycopg

    with psycopg.connect(env.admin_url, autocommit=True) as conn:
        conn.execute(f'DROP OWNED BY "{name}"')
        conn.execute(f'DROP ROLE IF EXISTS "{name}"')


def _drop_my_user(env: SQLEnv, name: str) -> None:
    import pymysql

    from stockade.tools.sql_mysql import mysql_params

    conn = pymysql.connect(**mysql_params(env.admin_url), autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.execute(f"DROP USER IF EXISTS '{name}'@'%'")
    finally:
        conn.close()


ENGINES = [
    pytest.param("sqlite_env", id="sqlite"),
    pytest.param("pg_env", id="postgres", marks=pytest.mark.postgres),
    pytest.param("mariadb_env", id="mysql", marks=pytest.mark.mariadb),
]


class Writer:
    """A guard in write mode on one engine, with helpers to read as the admin."""

    def __init__(self, env: SQLEnv, tmp: Path, tables: str = WRITE_TABLES) -> None:
        self.env = env
        self.journal_dir = tmp / "journal"
        self.url = _write_url(env, self.journal_dir, tables)
        self.policy_text = _text(env, self.url, self.journal_dir, tables)
        self.guard = Guard(
            Policy.from_text(self.policy_text),
            audit=MemoryAuditSink(),
            scanner=NoScanner(),
            flow=NoFlow(),
        )
        tool = self.guard.capability("sql")
        assert isinstance(tool, SQLTool)
        self.tool = tool

    def execute(self, sql: str) -> Any:
        return self.guard.call("sql", "execute", {"sql": sql}, session="w")

    def order(self, order_id: int) -> Any:
        rows = self.env.state()["data"]["orders"]
        return next((tuple(r) for r in rows if r[0] == order_id), None)

    def undo(self, call_id: str) -> list[Any]:
        journal = self.tool.journal
        assert journal is not None
        return journal.undo(call_id=call_id, restorers=self.tool.restorers())

    def close(self) -> None:
        self.guard.close()
        for fn in self.env.extras.pop("cleanup", []):
            fn()


@pytest.fixture(scope="module", params=ENGINES)
def shared_writer(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Writer]:
    env: SQLEnv = request.getfixturevalue(request.param)
    w = Writer(env, tmp_path_factory.mktemp("writer"))
    yield w
    w.close()


@pytest.fixture
def writer(shared_writer: Writer) -> Iterator[Writer]:
    before = shared_writer.env.state()
    yield shared_writer
    # every test leaves the data as it found it (through undo)
    assert shared_writer.env.state()["data"] == before["data"]


def test_update_is_journaled_and_undone(writer: Writer) -> None:
    original = writer.order(2)
    result = writer.execute("UPDATE orders SET total = 41, note = 'fixed' WHERE id = 2")
    assert result.value["affected"] == 1
    assert result.call.args["kind"] == "update"
    assert result.call.args["tables_written"] == ["orders"]
    assert writer.order(2)[2:] == (41, "fixed")
    undone = writer.undo(result.call.call_id)
    assert [e.kind for e in undone] == ["update"]
    assert writer.order(2) == original


def test_delete_and_insert_are_undone(writer: Writer) -> None:
    original = writer.order(12)
    deleted = writer.execute("DELETE FROM orders WHERE id = 12")
    assert deleted.value["affected"] == 1
    assert writer.order(12) is None
    inserted = writer.execute(
        "INSERT INTO orders (id, customer_id, total, note) VALUES (500, 1, 9, 'new')"
    )
    assert inserted.value["affected"] == 1
    assert writer.order(500) == (500, 1, 9, "new")
    writer.undo(inserted.call.call_id)
    assert writer.order(500) is None
    writer.undo(deleted.call.call_id)
    assert writer.order(12) == original


def test_affected_rows_cap_rolls_back(writer: Writer) -> None:
    journal = writer.tool.journal
    assert journal is not None
    entries_before = len(journal.entries())
    with pytest.raises(SQLError, match="more than 3"):
        writer.execute("UPDATE orders SET total = 0 WHERE total > 0")
    with pytest.raises(SQLError, match="more than 3"):
        writer.execute("DELETE FROM orders WHERE id > 2")
    with pytest.raises(SQLError, match="more than 3"):
        writer.execute(
            "INSERT INTO orders (id, customer_id, total) VALUES (601, 1, 1), (602, 1, 1), "
            "(603, 1, 1), (604, 1, 1)"
        )
    assert writer.order(601) is None
    assert len(journal.entries()) == entries_before


@pytest.mark.parametrize(
    ("sql", "rules"),
    [
        ("UPDATE orders SET total = 0", ("sql:where",)),
        ("DELETE FROM orders", ("sql:where",)),
        ("DROP TABLE orders", ("sql:statement",)),
        ("TRUNCATE orders", ("sql:statement",)),
        ("ALTER TABLE orders ADD COLUMN x INTEGER", ("sql:statement",)),
        ("UPDATE customers SET name = 'x' WHERE id = 1", ("sql:write", "default-deny")),
        (
            "UPDATE orders SET total = 0 WHERE id IN (SELECT id FROM secrets)",
            ("sql:statement", "sql:table"),
        ),
        ("DELETE FROM orders WHERE id = 1; DROP TABLE orders", ("sql:stacked",)),
        ("INSERT INTO orders (id, total) SELECT id, 0 FROM customers", ("sql:statement",)),
        ("UPDATE orders SET total = 0 WHERE id = 1 RETURNING *", ("sql:statement", "sql:syntax")),
        ("SELECT id FROM orders", ("sql:statement",)),
        ("INSERT INTO orders (id, nothere) VALUES (1, 2)", ("sql:column",)),
    ],
)
def test_write_mode_denies(writer: Writer, sql: str, rules: tuple[str, ...]) -> None:
    with pytest.raises(Denied) as info:
        writer.execute(sql)
    assert info.value.rule in rules


def test_update_of_the_primary_key_is_a_policy_refusal(writer: Writer) -> None:
    journal = writer.tool.journal
    assert journal is not None
    entries = len(journal.entries())
    for sql in (
        "UPDATE orders SET id = 77 WHERE id = 3",
        "UPDATE orders SET total = 1, ID = 77 WHERE id = 3",
    ):
        with pytest.raises(Denied) as info:
            writer.execute(sql)
        assert info.value.rule == "sql:primary-key"
        assert "primary-key column `orders." in info.value.decision.reason
    assert writer.order(77) is None
    assert len(journal.entries()) == entries  # decided before anything ran


def test_ddl_in_write_mode_says_what_the_database_takes(writer: Writer) -> None:
    with pytest.raises(Denied) as info:
        writer.execute("DROP TABLE orders")
    assert info.value.rule == "sql:statement"
    assert info.value.decision.reason == (
        "`DROP` is not allowed: this database takes queries (`query`) and "
        "INSERT/UPDATE/DELETE on its writable tables (`execute`)"
    )
    with pytest.raises(Denied) as info:
        writer.execute("TRUNCATE orders")
    assert info.value.decision.reason.startswith("`TRUNCATE` is not allowed: ")
    with pytest.raises(Denied) as info:
        writer.guard.call("sql", "query", {"sql": "DROP TABLE orders"})
    assert info.value.rule == "sql:read-only"
    assert info.value.decision.reason.startswith("`DROP` is not allowed: `query` runs one query")


def test_a_table_without_a_primary_key_is_refused_before_it_is_written(tmp_path: Path) -> None:
    path = tmp_path / "log.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE events (name TEXT, n INTEGER)")
    conn.execute("INSERT INTO events VALUES ('a', 1)")
    conn.commit()
    conn.close()
    text = (
        "version: 1\nsql:\n"
        f"  journal: {tmp_path / 'journal'}\n"
        "  databases:\n    log:\n"
        f"      url: sqlite:///{path}\n"
        "      mode: read-write\n"
        "      tables: {events: {write: [insert, update, delete]}}\n"
    )
    guard = Guard(
        Policy.from_text(text), audit=MemoryAuditSink(), scanner=NoScanner(), flow=NoFlow()
    )
    try:
        for sql in ("INSERT INTO events VALUES ('b', 2)", "DELETE FROM events WHERE n = 1"):
            with pytest.raises(Denied) as info:
                guard.call("sql", "execute", {"sql": sql})
            assert info.value.rule == "sql:primary-key"
            assert "no primary key" in info.value.decision.reason
    finally:
        guard.close()
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT name, n FROM events").fetchall() == [("a", 1)]
    conn.close()


def test_undo_refuses_to_overwrite_a_later_change(writer: Writer) -> None:
    original = writer.order(3)
    first = writer.execute("UPDATE orders SET total = 1 WHERE id = 3")
    writer.execute("UPDATE orders SET total = 2 WHERE id = 3")
    with pytest.raises(SQLError, match="changed since"):
        writer.undo(first.call.call_id)
    assert writer.order(3)[2] == 2
    journal = writer.tool.journal
    assert journal is not None
    journal.undo(session="w", restorers=writer.tool.restorers())
    assert writer.order(3) == original


def test_a_journal_failure_leaves_the_row_unchanged(
    writer: Writer, monkeypatch: pytest.MonkeyPatch
) -> None:
    journal = writer.tool.journal
    assert journal is not None

    def refuse(**kwargs: Any) -> int:
        raise JournalError("disk full")

    monkeypatch.setattr(journal, "record", refuse)
    original = writer.order(4)
    with pytest.raises(SQLError, match="could not be journaled"):
        writer.execute("UPDATE orders SET total = 7 WHERE id = 4")
    assert writer.order(4) == original


def test_engine_layer_alone_refuses_writes_outside_the_policy(writer: Writer) -> None:
    section = Policy.from_text(writer.policy_text).section("sql")
    assert isinstance(section, SQLConfig)
    engine = engine_only(section.databases["shop"])
    try:
        for sql in (
            "DELETE FROM customers WHERE id = 1",
            "UPDATE secrets SET token = 'x' WHERE id = 1",
            "DROP TABLE orders",
            "CREATE TABLE pwned (x INTEGER)",
        ):
            with pytest.raises(SQLError), engine.transaction(timeout=2) as run:
                run(sql)
    finally:
        engine.close()


def test_stockade_undo_command(sqlite_env: SQLEnv, tmp_path: Path) -> None:
    writer = Writer(sqlite_env, tmp_path)
    original = writer.order(5)
    try:
        result = writer.execute("UPDATE orders SET note = 'cli' WHERE id = 5")
    finally:
        writer.close()
    policy = tmp_path / "policy.yaml"
    policy.write_text(writer.policy_text, encoding="utf-8")
    assert cli.main(["undo", "--policy", str(policy), "--call", result.call.call_id]) == 0
    assert writer.order(5) == original


def test_query_on_a_writable_sqlite_database_cannot_write(
    sqlite_env: SQLEnv, tmp_path: Path
) -> None:
    writer = Writer(sqlite_env, tmp_path)
    try:
        section = Policy.from_text(writer.policy_text).section("sql")
        assert isinstance(section, SQLConfig)
        engine = engine_only(section.databases["shop"])
        try:
            with pytest.raises(SQLError, match="refused"):
                engine.query("DELETE FROM orders WHERE id = 1", max_rows=1, timeout=1)
        finally:
            engine.close()
        assert writer.order(1) is not None
    finally:
        writer.close()


def test_values_of_every_type_survive_the_journal() -> None:
    import datetime
    import decimal
    import uuid

    from stockade.tools.sql_write import decode_value, encode_value

    for value in (
        None,
        True,
        3,
        2.5,
        "text",
        b"\x00\xff",
        decimal.Decimal("12.340"),
        datetime.datetime(2026, 11, 26, 10, 0, tzinfo=datetime.timezone.utc),
        datetime.date(2026, 11, 26),
        datetime.time(10, 30),
        datetime.timedelta(seconds=90),
        uuid.UUID(int=7),
        [1, "a", None],
    ):
        assert decode_value(encode_value(value)) == value
    assert decode_value(encode_value({"b": 1})) == '{"b": 1}'
    assert decode_value({"$unknown": 1}) == {"$unknown": 1}


@pytest.mark.postgres
def test_postgres_typed_rows_are_restored_exactly(pg_env: SQLEnv, tmp_path: Path) -> None:
    import datetime
    import decimal

    import psycopg

    with psycopg.connect(pg_env.admin_url, autocommit=True) as admin:
        admin.execute(
            "CREATE TABLE ledger (id integer PRIMARY KEY, amount numeric(10, 3), "
            "at timestamptz, data bytea, tags text[])"
        )
        admin.execute(
            "INSERT INTO ledger VALUES (1, 12.345, '2026-11-26 10:00+00', '\\x00ff', "
            "'{a,b}'), (2, 0.5, NULL, NULL, NULL)"
        )
    tables = "      tables:\n        ledger: {write: [update, delete]}\n"
    writer = Writer(pg_env, tmp_path, tables)

    def rows() -> list[Any]:
        with psycopg.connect(pg_env.admin_url) as conn:
            return conn.execute("SELECT * FROM ledger ORDER BY id").fetchall()

    try:
        original = rows()
        assert original[0][1] == decimal.Decimal("12.345")
        assert isinstance(original[0][2], datetime.datetime)
        updated = writer.execute("UPDATE ledger SET amount = 1, data = NULL WHERE id = 1")
        deleted = writer.execute("DELETE FROM ledger WHERE id = 2")
        assert len(rows()) == 1
        writer.undo(deleted.call.call_id)
        writer.undo(updated.call.call_id)
        assert rows() == original
    finally:
        writer.close()
        with psycopg.connect(pg_env.admin_url, autocommit=True) as admin:
            admin.execute("DROP TABLE ledger")
