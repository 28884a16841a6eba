"""The sql tool's section, actions, results, labels, derived arguments and failures."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
from sql_support import TABLES_YAML, SQLEnv, make_sqlite, mariadb_env, pg_env, sqlite_env

from stockade.errors import ConfigurationError, Denied, PolicyError, SQLError
from stockade.guard import Guard
from stockade.model import Confidentiality, Integrity, ToolCall
from stockade.policy import Policy
from stockade.stages import MemoryAuditSink, NoFlow, NoScanner
from stockade.tools import sql as sql_module
from stockade.tools.sql import SQLConfig, SQLTool, capability_from_policy
from stockade.tools.sql_engines import EngineSpec, SQLiteEngine, engine_kind
from stockade.tools.sql_postgres import PostgresEngine

__all__ = ["mariadb_env", "pg_env", "sqlite_env"]


def _guard(text: str) -> Guard:
    return Guard(
        Policy.from_text(text), audit=MemoryAuditSink(), scanner=NoScanner(), flow=NoFlow()
    )


# -- the section ------------------------------------------------------------------------


def test_section_adds_rules_per_database(sqlite_env: SQLEnv) -> None:
    policy = Policy.from_text(sqlite_env.policy_text())
    ids = {r.id for r in policy.rules}
    assert {"sql:shop:list", "sql:shop:read"} <= ids
    assert "sql:shop:write" not in ids
    config = policy.section("sql")
    assert isinstance(config, SQLConfig)
    shop = config.databases["shop"]
    assert shop.engine == "sqlite"
    assert shop.read_only
    assert shop.tables["customers"].deny_columns == ("ssn",)
    assert shop.timeout == 0.5


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("databases: {}", "configure at least one database"),
        ("databases: {shop: {url: 'oracle://x', tables: {a: {}}}}", "unknown database URL scheme"),
        ("databases: {shop: {url: 'sqlite:///x.db', tables: {}}}", "list at least one table"),
        ("databases: {'bad name': {url: 'sqlite:///x.db', tables: {a: {}}}}", "invalid database"),
        ("databases: {shop: {url: 'sqlite:///x.db', tables: {'a b': {}}}}", "invalid table name"),
        ("databases: {shop: {url: 'sqlite:///x.db', tables: {a: {colour: 1}}}}", "unknown key"),
        (
            "databases: {shop: {url: 'sqlite:///x.db', tables: {a: {columns: [x], mask: [y]}}}}",
            "column `y` is not in `columns`",
        ),
        (
            "databases: {shop: {url: 'sqlite:///x.db', tables: {a: {deny_columns: [x], mask: [x]}}}}",
            "both denied and masked",
        ),
        (
            "databases: {shop: {url: 'sqlite:///x.db', tables: {a: {write: [insert]}}}}",
            "needs the database in `mode: read-write`",
        ),
        (
            "databases: {shop: {url: 'sqlite:///x.db', mode: read-write, tables: {a: {}}}}",
            "needs a `journal`",
        ),
        ("databases: {shop: {url: 'sqlite:///x.db', timeout: 0, tables: {a: {}}}}", "timeout"),
        ("databases: {shop: {url: 'sqlite:///x.db', max_rows: 0, tables: {a: {}}}}", ">= 1"),
        (
            "databases: {shop: {url: 'sqlite:///x.db', schema: s, tables: {a: {}}}}",
            "applies to postgresql only",
        ),
    ],
)
def test_section_errors_are_located(body: str, message: str) -> None:
    with pytest.raises(PolicyError) as info:
        Policy.from_text(f"version: 1\nsql:\n  {body}\n", source="p.yaml")
    text = str(info.value)
    assert message in text
    assert text.startswith("p.yaml:")


def test_engine_kind_of_urls() -> None:
    assert engine_kind("sqlite:///a.db") == "sqlite"
    assert engine_kind("postgresql://u@h/db") == "postgres"
    assert engine_kind("postgres://u@h/db") == "postgres"
    assert engine_kind("mysql://u@h/db") == "mysql"
    assert engine_kind("mariadb://u@h/db") == "mysql"
    with pytest.raises(ConfigurationError):
        engine_kind("mssql://x")


def test_relative_sqlite_path_is_relative_to_the_policy(tmp_path: Path) -> None:
    env = make_sqlite(tmp_path)
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(env.policy_text(url="sqlite:///shop.db"), encoding="utf-8")
    guard = Guard(Policy.from_file(policy_file), scanner=NoScanner(), flow=NoFlow())
    with guard:
        assert guard.call("sql", "query", {"sql": "SELECT count(*) FROM orders"}).value["rows"] == [
            [12]
        ]


def test_capability_from_policy() -> None:
    assert capability_from_policy(Policy.from_text("version: 1")) == []


# -- actions and results ------------------------------------------------------------------


def test_tables_and_describe(sqlite_env: SQLEnv) -> None:
    guard = sqlite_env.shared_guard()
    assert guard.call("sql", "tables").value == {
        "database": "shop",
        "tables": ["customers", "orders"],
    }
    desc = guard.call("sql", "describe", {"table": "customers"}).value
    assert [c["name"] for c in desc["columns"]] == ["id", "name", "email", "country"]
    assert [c["masked"] for c in desc["columns"]] == [False, False, True, False]
    with pytest.raises(Denied) as info:
        guard.call("sql", "describe", {"table": "secrets"})
    assert info.value.rule == "sql:table"


@pytest.mark.parametrize(
    "env_name",
    [
        "sqlite_env",
        pytest.param("pg_env", marks=pytest.mark.postgres),
        pytest.param("mariadb_env", marks=pytest.mark.mariadb),
    ],
)
def test_describe_of_a_table_not_allowed_names_it_as_a_query_does(
    request: pytest.FixtureRequest, env_name: str
) -> None:
    env: SQLEnv = request.getfixturevalue(env_name)
    tables = TABLES_YAML + "        ghost: {}\n"  # listed, but not in the database
    guard = env.guard(tables=tables)
    try:
        # `secrets` exists, `nosuch` does not: the same answer, so describe tells
        # nothing of the database beyond the name the agent typed
        for table in ("secrets", "nosuch", "Secrets", "contacts"):
            with pytest.raises(Denied) as info:
                guard.call("sql", "describe", {"table": table})
            assert info.value.rule == "sql:table"
            assert info.value.decision.reason == f"table `{table}` is not allowed"
            with pytest.raises(Denied) as query:
                guard.call("sql", "query", {"sql": f"SELECT * FROM {table}"})
            assert query.value.rule == "sql:table"
            assert query.value.decision.reason == info.value.decision.reason
        with pytest.raises(Denied) as info:
            guard.call("sql", "describe", {"table": "ghost"})
        assert info.value.rule == "sql:table"
        assert info.value.decision.reason == "table `ghost` does not exist in database `shop`"
        # nothing names a table the policy does not allow, unless the agent typed it
        listed = guard.call("sql", "tables").value["tables"]
        assert sorted(t.lower() for t in listed) == ["customers", "orders"]
        described = guard.call("sql", "describe", {"table": "orders"}).value
        assert "secrets" not in repr(described).lower()
        assert guard.call("sql", "describe", {"table": "ORDERS"}).value == described
    finally:
        guard.close()


def test_query_result_labels_and_masking(sqlite_env: SQLEnv) -> None:
    guard = sqlite_env.shared_guard()
    result = guard.call(
        "sql",
        "query",
        {
            "sql": "SELECT c.name, c.email, o.total FROM customers c JOIN orders o "
            "ON o.customer_id = c.id WHERE o.id = 1"
        },
    )
    assert result.value["columns"] == ["name", "email", "total"]
    assert result.value["rows"] == [["Ada", "***", 250]]
    labels = {label.source: label for label in result.labels}
    assert set(labels) == {"sql:shop.customers", "sql:shop.orders"}
    assert labels["sql:shop.customers"].confidentiality is Confidentiality.SECRET
    assert labels["sql:shop.orders"].confidentiality is Confidentiality.INTERNAL
    assert labels["sql:shop.orders"].integrity is Integrity.UNTRUSTED
    assert result.meta["tables"] == ["customers", "orders"]


def test_masked_values_never_reach_the_result(sqlite_env: SQLEnv) -> None:
    guard = sqlite_env.shared_guard()
    value = guard.call("sql", "query", {"sql": "SELECT email, email AS e2 FROM customers"}).value
    assert all(v == "***" for row in value["rows"] for v in row)
    assert "example.com" not in repr(value)
    for sql in (
        "SELECT upper(email) FROM customers",
        "SELECT name FROM customers ORDER BY email",
        "SELECT e FROM (SELECT email AS e FROM customers) AS s",
        "SELECT count(*) FROM customers WHERE email LIKE 'a%'",
        "SELECT name FROM customers UNION SELECT email FROM customers",
    ):
        with pytest.raises(Denied) as info:
            guard.call("sql", "query", {"sql": sql})
        assert info.value.rule == "sql:mask", sql


def test_row_cap_truncates(sqlite_env: SQLEnv) -> None:
    text = sqlite_env.policy_text().replace("max_rows: 50", "max_rows: 5")
    guard = _guard(text)
    with guard:
        value = guard.call("sql", "query", {"sql": "SELECT id FROM orders ORDER BY id"}).value
        assert value["row_count"] == 5
        assert value["truncated"] is True
        value = guard.call("sql", "query", {"sql": "SELECT id FROM orders LIMIT 3"}).value
        assert (value["row_count"], value["truncated"]) == (3, False)
        call = guard.call("sql", "query", {"sql": "SELECT id FROM orders LIMIT 1000"}).call
        assert call.args["statement"].endswith("LIMIT 6")


def test_derived_arguments_are_canonical(sqlite_env: SQLEnv) -> None:
    result = sqlite_env.shared_guard().call(
        "sql", "query", {"sql": "select * from ORDERS o where o.total > 100 -- big"}
    )
    args = result.call.args
    assert args["kind"] == "select"
    assert args["tables"] == ["orders"]
    assert args["columns"] == ["orders.customer_id", "orders.id", "orders.note", "orders.total"]
    assert "--" not in args["statement"]
    assert args["database"] == "shop"


def test_policy_rules_can_match_derived_arguments(sqlite_env: SQLEnv) -> None:
    text = sqlite_env.policy_text() + (
        "rules:\n"
        "  - id: no-country-reports\n"
        "    tool: sql\n"
        "    action: query\n"
        "    effect: deny\n"
        "    when: {columns: {one_of: [customers.country]}}\n"
        "  - id: no-group-concat\n"
        "    tool: sql\n"
        "    effect: deny\n"
        "    when: {functions: {one_of: [group_concat]}}\n"
    )
    with _guard(text) as guard:
        with pytest.raises(Denied) as info:
            guard.call("sql", "query", {"sql": "SELECT id FROM customers WHERE country = 'US'"})
        assert info.value.rule == "no-country-reports"
        with pytest.raises(Denied) as info:
            guard.call("sql", "query", {"sql": "SELECT group_concat(name) FROM customers"})
        assert info.value.rule == "no-group-concat"
        guard.call("sql", "query", {"sql": "SELECT id FROM customers"})


def test_bad_arguments_are_denied_as_invalid(sqlite_env: SQLEnv) -> None:
    guard = sqlite_env.shared_guard()
    for action, args in [
        ("query", {}),
        ("query", {"sql": 42}),
        ("query", {"sql": "   "}),
        ("query", {"sql": "SELECT 1", "extra": 1}),
        ("query", {"sql": "SELECT 1", "database": "other"}),
        ("describe", {}),
    ]:
        with pytest.raises(Denied) as info:
            guard.call("sql", action, args)
        assert info.value.rule == "sql:invalid", (action, args)
    with pytest.raises(Denied) as info:
        guard.call("sql", "drop", {})
    assert info.value.rule == "sql:unknown-action"
    with pytest.raises(Denied) as info:
        guard.call("sql", "query", {"sql": "SELECT 1 " + " " * 30_000})
    assert info.value.rule == "sql:invalid"


def test_execute_on_a_read_only_database_is_denied(sqlite_env: SQLEnv) -> None:
    with pytest.raises(Denied) as info:
        sqlite_env.shared_guard().call(
            "sql", "execute", {"sql": "UPDATE orders SET total = 0 WHERE id = 1"}
        )
    assert info.value.rule in ("sql:read-only", "default-deny")


def test_two_databases_need_a_name(tmp_path: Path) -> None:
    a = make_sqlite(tmp_path)
    text = (
        "version: 1\nsql:\n  databases:\n"
        f"    one: {{url: '{a.url}', tables: {{orders: {{}}}}}}\n"
        f"    two: {{url: '{a.url}', tables: {{customers: {{columns: [id]}}}}}}\n"
    )
    with _guard(text) as guard:
        with pytest.raises(Denied) as info:
            guard.call("sql", "query", {"sql": "SELECT 1"})
        assert info.value.rule == "sql:invalid"
        assert guard.call("sql", "query", {"sql": "SELECT count(*) FROM orders", "database": "one"})
        with pytest.raises(Denied) as info:
            guard.call("sql", "query", {"sql": "SELECT count(*) FROM orders", "database": "two"})
        assert info.value.rule == "sql:table"
        with pytest.raises(Denied) as info:
            guard.call("sql", "query", {"sql": "SELECT name FROM customers", "database": "two"})
        assert info.value.rule == "sql:column"


def test_schema_is_read_again_for_a_new_allowed_table(tmp_path: Path) -> None:
    env = make_sqlite(tmp_path)
    text = env.policy_text(tables="      tables:\n        orders: {}\n        later: {}\n")
    with _guard(text) as guard:
        with pytest.raises(Denied):
            guard.call("sql", "query", {"sql": "SELECT x FROM later"})
        conn = sqlite3.connect(tmp_path / "shop.db")
        conn.execute("CREATE TABLE later (x INTEGER)")
        conn.commit()
        conn.close()
        assert guard.call("sql", "query", {"sql": "SELECT x FROM later"}).value["rows"] == []


# -- fail closed -----------------------------------------------------------------------------


def test_an_exception_in_the_parser_layer_denies(
    sqlite_env: SQLEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("bug")

    with sqlite_env.guard() as guard:
        monkeypatch.setattr(sql_module, "analyse", boom)
        with pytest.raises(Denied) as info:
            guard.call("sql", "query", {"sql": "SELECT id FROM orders"})
        assert info.value.rule == "error:prepare"


def test_an_exception_in_the_authorizer_denies(sqlite_env: SQLEnv) -> None:
    engine = SQLiteEngine(sqlite_env.config().engine_spec())

    def broken(table: str, column: str) -> bool:
        raise RuntimeError("bug")

    try:
        engine.spec = EngineSpec(url=engine.spec.url, tables=engine.spec.tables)
        object.__setattr__(engine.spec, "column_allowed", broken)
        with pytest.raises(SQLError, match="refused"):
            engine.query("SELECT id FROM orders", max_rows=5, timeout=1)
    finally:
        engine.close()


def test_unreachable_database_denies(tmp_path: Path) -> None:
    text = (
        "version: 1\nsql:\n  databases:\n    shop:\n"
        "      url: postgresql://nobody@127.0.0.1:1/none\n      tables: {orders: {}}\n"
    )
    with _guard(text) as guard, pytest.raises(Denied) as info:
        guard.call("sql", "query", {"sql": "SELECT 1"})
    assert info.value.rule == "sql:invalid"
    assert "cannot connect" in info.value.decision.reason


def test_missing_sqlite_file_is_a_configuration_error(tmp_path: Path) -> None:
    spec = EngineSpec(url=f"sqlite:///{tmp_path}/none.db", tables={})
    with pytest.raises(ConfigurationError):
        SQLiteEngine(spec)


def test_evicted_analysis_is_redone_before_execution(sqlite_env: SQLEnv) -> None:
    tool = SQLTool(Policy.from_text(sqlite_env.policy_text()).section("sql"))
    try:
        call = tool.prepare(ToolCall("sql", "query", {"sql": "SELECT id FROM orders"}, session="s"))
        tool._prepared.clear()
        assert tool.check(call) is None
        changed = call.with_args({**call.args, "sql": "DROP TABLE orders"})
        decision = tool.check(changed)
        assert decision is not None and decision.rule == "sql:read-only"
    finally:
        tool.close()


# -- the account the tool connects as ----------------------------------------------------------


@pytest.mark.postgres
def test_postgres_refuses_a_superuser(pg_env: SQLEnv) -> None:
    with pytest.raises(ConfigurationError, match="superuser"):
        PostgresEngine(pg_env.config(url=pg_env.admin_url).engine_spec())


@pytest.mark.postgres
def test_postgres_refuses_a_role_with_wider_grants(pg_env: SQLEnv) -> None:
    import psycopg

    role = pg_env.extras["role"]
    admin = pg_env.shared("admin_conn", lambda: psycopg.connect(pg_env.admin_url, autocommit=True))
    for grant, revoke, message in [
        (
            f'GRANT SELECT ON secrets TO "{role}"',
            f'REVOKE SELECT ON secrets FROM "{role}"',
            "secrets",
        ),
        (
            f'GRANT SELECT (ssn) ON customers TO "{role}"',
            f'REVOKE SELECT (ssn) ON customers FROM "{role}"',
            "customers.ssn",
        ),
        (f'GRANT UPDATE ON orders TO "{role}"', f'REVOKE UPDATE ON orders FROM "{role}"', "change"),
        (
            f'GRANT pg_read_server_files TO "{role}"',
            f'REVOKE pg_read_server_files FROM "{role}"',
            "pg_read_server_files",
        ),
    ]:
        admin.execute(grant)
        try:
            with pytest.raises(ConfigurationError, match=message):
                PostgresEngine(pg_env.config().engine_spec())
        finally:
            admin.execute(revoke)
    PostgresEngine(pg_env.config().engine_spec()).close()


@pytest.mark.mariadb
def test_mariadb_refuses_root_and_wider_grants(mariadb_env: SQLEnv) -> None:
    import pymysql

    from stockade.tools.sql_mysql import MySQLEngine, mysql_params

    with pytest.raises(ConfigurationError):
        MySQLEngine(mariadb_env.config(url=mariadb_env.admin_url).engine_spec())
    user = mariadb_env.extras["user"]
    root = pymysql.connect(**mysql_params(mariadb_env.admin_url), autocommit=True)
    db = mariadb_env.database
    try:
        for grant, revoke in [
            (
                f"GRANT SELECT ON `{db}`.`secrets` TO '{user}'@'%'",
                f"REVOKE SELECT ON `{db}`.`secrets` FROM '{user}'@'%'",
            ),
            (
                f"GRANT SELECT ON `{db}`.* TO '{user}'@'%'",
                f"REVOKE SELECT ON `{db}`.* FROM '{user}'@'%'",
            ),
            (
                f"GRANT DELETE ON `{db}`.`orders` TO '{user}'@'%'",
                f"REVOKE DELETE ON `{db}`.`orders` FROM '{user}'@'%'",
            ),
            (f"GRANT FILE ON *.* TO '{user}'@'%'", f"REVOKE FILE ON *.* FROM '{user}'@'%'"),
        ]:
            with root.cursor() as cur:
                cur.execute(grant)
            try:
                with pytest.raises(ConfigurationError):
                    MySQLEngine(mariadb_env.config().engine_spec())
            finally:
                with root.cursor() as cur:
                    cur.execute(revoke)
    finally:
        root.close()
    MySQLEngine(mariadb_env.config().engine_spec()).close()


def test_repeated_statements_reuse_the_analysis_until_the_schema_changes(
    sqlite_env: SQLEnv,
) -> None:
    tool = SQLTool(Policy.from_text(sqlite_env.policy_text()).section("sql"))
    try:
        first = tool.prepare(
            ToolCall("sql", "query", {"sql": "SELECT id FROM orders"}, session="s")
        )
        again = tool.prepare(
            ToolCall("sql", "query", {"sql": "SELECT id FROM orders"}, session="s")
        )
        assert first.args == again.args
        for _ in range(2):
            denied = tool.prepare(
                ToolCall("sql", "query", {"sql": "DROP TABLE orders"}, session="s")
            )
            decision = tool.check(denied)
            assert decision is not None and decision.rule == "sql:read-only"
        cached = len(tool._analyses)
        tool._table_policies(tool.config.databases["shop"], refresh=True)
        tool.prepare(ToolCall("sql", "query", {"sql": "SELECT id FROM orders"}, session="s"))
        assert len(tool._analyses) == cached + 1
    finally:
        tool.close()


def test_describe_gives_integrations_a_schema_per_action(sqlite_env: SQLEnv) -> None:
    from stockade.integrations.schema import schema_for, tool_description

    tool = sqlite_env.shared_guard().capability("sql")
    assert tool is not None
    query = schema_for(tool, "query")
    assert query["required"] == ["sql"]
    assert query["properties"]["database"]["enum"] == ["shop"]
    assert "customers" in tool_description(tool, "query")
    assert schema_for(tool, "describe")["required"] == ["table"]
