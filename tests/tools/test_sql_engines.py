"""The engine layer, and the measured failures elsewhere that it answers.

The ``test_raw_*`` tests show, on the real engines, what goes wrong without
the engine layer's measures (the issue's "what measurably fails elsewhere");
the tests next to them show the engine layer holding.
"""

from __future__ import annotations

import secrets
import sqlite3
from pathlib import Path

import pytest
from sql_support import SQLEnv, mariadb_env, pg_env, sqlite_env

from stockade import cli
from stockade.errors import SQLError
from stockade.hazmat.sql_connection import engine_only

__all__ = ["mariadb_env", "pg_env", "sqlite_env"]


# -- SQLite -------------------------------------------------------------------------------


def test_raw_sqlite_attach_and_vacuum_into_write_files_on_a_read_only_connection(
    sqlite_env: SQLEnv, tmp_path: Path
) -> None:
    path = sqlite_env.admin_url[len("sqlite:///") :]
    conn = sqlite3.connect(Path(path).as_uri() + "?mode=ro", uri=True)
    try:
        conn.execute(f"ATTACH DATABASE '{tmp_path / 'attached.db'}' AS a")
        conn.execute(f"VACUUM INTO '{tmp_path / 'copy.db'}'")
        conn.execute("PRAGMA query_only = ON")
        conn.execute("PRAGMA query_only = OFF")
        assert conn.execute("PRAGMA query_only").fetchone() == (0,)
    finally:
        conn.close()
    assert (tmp_path / "attached.db").exists()
    assert (tmp_path / "copy.db").exists()


def test_sqlite_engine_limits_attached_databases_and_pragmas(
    sqlite_env: SQLEnv, tmp_path: Path
) -> None:
    engine = engine_only(sqlite_env.config())
    try:
        for sql in (
            f"ATTACH DATABASE '{tmp_path / 'a.db'}' AS a",
            f"VACUUM INTO '{tmp_path / 'b.db'}'",
            "PRAGMA query_only = OFF",
        ):
            with pytest.raises(SQLError):
                engine.query(sql, max_rows=5, timeout=1)
        # the limit holds even if the authorizer were to say yes
        conn = engine._conn  # type: ignore[attr-defined]
        assert conn.getlimit(sqlite3.SQLITE_LIMIT_ATTACHED) == 0
    finally:
        engine.close()
    assert list(tmp_path.iterdir()) == []


def test_sqlite_engine_reads_through_views_are_checked(sqlite_env: SQLEnv) -> None:
    engine = engine_only(sqlite_env.config())
    try:
        with pytest.raises(SQLError, match="refused"):
            engine.query("SELECT name FROM contacts", max_rows=5, timeout=1)
        result = engine.query(
            "WITH x AS (SELECT name FROM customers) SELECT name FROM x", max_rows=2, timeout=1
        )
        assert result.truncated and len(result.rows) == 2
    finally:
        engine.close()


# -- PostgreSQL ----------------------------------------------------------------------------


@pytest.mark.postgres
def test_raw_psycopg_runs_stacked_statements_and_read_only_is_undone(pg_env: SQLEnv) -> None:
    import psycopg

    with psycopg.connect(pg_env.admin_url) as conn:
        conn.read_only = True
        cur = conn.cursor()
        # simple protocol: two statements in one call
        cur.execute("SELECT 1; SELECT 2")
        conn.rollback()
        # as the first statement of a READ ONLY transaction, SET turns it off
        cur.execute("SET transaction_read_only = off")
        cur.execute("CREATE TEMP TABLE t_raw (x int)")
        cur.execute("LOCK TABLE orders IN ACCESS SHARE MODE")
        conn.rollback()
        # a prepared statement refuses several commands
        with pytest.raises(psycopg.errors.SyntaxError):
            cur.execute("SELECT 1; SELECT 2", prepare=True)
        conn.rollback()


@pytest.mark.postgres
def test_postgres_engine_cannot_be_switched_to_read_write(pg_env: SQLEnv) -> None:
    engine = pg_env.shared_engine()
    for sql in (
        "SELECT set_config('transaction_read_only', 'off', false)",
        "SET transaction_read_only = off",
        "SELECT 1; SET transaction_read_only = off",
    ):
        with pytest.raises(SQLError):
            engine.query(sql, max_rows=5, timeout=1)
    assert engine.query("SELECT count(*) FROM orders", max_rows=5, timeout=1).rows == [(12,)]


@pytest.mark.postgres
def test_postgres_engine_releases_advisory_locks(pg_env: SQLEnv) -> None:
    import psycopg

    engine = pg_env.shared_engine()
    engine.query("SELECT pg_advisory_lock(4242)", max_rows=1, timeout=1)
    with psycopg.connect(pg_env.admin_url, autocommit=True) as other:
        got = other.execute("SELECT pg_try_advisory_lock(4242)").fetchone()
        assert got == (True,)


@pytest.mark.postgres
def test_postgres_engine_releases_advisory_locks_of_a_failed_statement(pg_env: SQLEnv) -> None:
    import psycopg

    engine = pg_env.shared_engine()
    # the first row takes the lock, the second fails: the release runs apart
    with pytest.raises(SQLError):
        engine.query(
            "SELECT pg_advisory_lock(4243 + g - g), 10 / (2 - g) FROM generate_series(1, 2) g",
            max_rows=5,
            timeout=1,
        )
    with psycopg.connect(pg_env.admin_url, autocommit=True) as other:
        got = other.execute("SELECT pg_try_advisory_lock(4243)").fetchone()
        assert got == (True,)
    # and the engine goes on answering
    assert engine.query("SELECT 1", max_rows=1, timeout=1).rows == [(1,)]


@pytest.mark.postgres
def test_postgres_engine_reconnects_after_losing_its_connection(pg_env: SQLEnv) -> None:
    engine = engine_only(pg_env.config())
    try:
        pid = engine.query("SELECT pg_backend_pid()", max_rows=1, timeout=1).rows[0][0]
        import psycopg

        with psycopg.connect(pg_env.admin_url, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        with pytest.raises(SQLError):
            engine.query("SELECT 1", max_rows=1, timeout=1)
        assert engine.query("SELECT 1", max_rows=1, timeout=1).rows == [(1,)]
    finally:
        engine.close()


# -- MariaDB -------------------------------------------------------------------------------


@pytest.mark.mariadb
def test_raw_mysql_runs_executable_comments(mariadb_env: SQLEnv) -> None:
    import pymysql

    from stockade.tools.sql_mysql import mysql_params

    conn = pymysql.connect(**mysql_params(mariadb_env.admin_url))
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT 1 /*!, 2 */")
            assert cur.fetchone() == (1, 2)
    finally:
        conn.close()


@pytest.mark.mariadb
def test_mariadb_session_settings_do_not_outlive_a_statement(mariadb_env: SQLEnv) -> None:
    engine = mariadb_env.shared_engine()
    engine.query("SET SESSION max_statement_time = 0", max_rows=1, timeout=0.3)
    with pytest.raises(SQLError, match="timed out"):
        engine.query("SELECT SLEEP(5)", max_rows=1, timeout=0.3)
    result = engine.query("SELECT id FROM orders LIMIT 100", max_rows=3, timeout=1)
    assert result.truncated and len(result.rows) == 3


@pytest.mark.mariadb
def test_mariadb_client_refuses_local_infile(mariadb_env: SQLEnv, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("1\t1\t1\tleak\n", encoding="utf-8")
    engine = mariadb_env.shared_engine()
    with pytest.raises(SQLError):
        engine.query(f"LOAD DATA LOCAL INFILE '{secret}' INTO TABLE orders", max_rows=1, timeout=1)


# -- grant-readonly ------------------------------------------------------------------------


def _policy_file(tmp_path: Path, url: str, tables: str) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(
        f"version: 1\nsql:\n  databases:\n    shop:\n      url: {url}\n{tables}", encoding="utf-8"
    )
    return path


def test_grant_readonly_postgres(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _policy_file(
        tmp_path,
        "postgresql://agent@db/shop",
        "      tables:\n        orders: {}\n        customers: {columns: [id, name, email]}\n",
    )
    assert cli.main(["sql", "grant-readonly", "--policy", str(path)]) == 0
    out = capsys.readouterr().out
    assert 'GRANT SELECT ON "public"."orders" TO "agent";' in out
    assert 'GRANT SELECT ("id", "name", "email") ON "public"."customers" TO "agent";' in out
    assert "default_transaction_read_only = on" in out
    assert "INSERT" not in out and "UPDATE" not in out


def test_grant_readonly_mysql_and_sqlite(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _policy_file(tmp_path, "mysql://agent@db/shop", "      tables: {orders: {}}\n")
    assert cli.main(["sql", "grant-readonly", "--policy", str(path), "--role", "bot"]) == 0
    out = capsys.readouterr().out
    assert "CREATE USER 'bot'@'%'" in out
    assert "GRANT SELECT ON `shop`.`orders` TO 'bot'@'%';" in out
    path = _policy_file(tmp_path, "sqlite:///shop.db", "      tables: {orders: {}}\n")
    assert cli.main(["sql", "grant-readonly", "--policy", str(path)]) == 0
    assert "mode=ro" in capsys.readouterr().out


def test_grant_readonly_mariadb_placeholder_is_flagged(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _policy_file(tmp_path, "mysql://agent@db/shop", "      tables: {orders: {}}\n")
    assert cli.main(["sql", "grant-readonly", "--policy", str(path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    create = lines.index("CREATE USER 'agent'@'%' IDENTIFIED BY '<password>';")
    assert lines[create - 1].startswith("-- replace <password> below")
    assert "--password-env" in lines[create - 1]


def test_grant_readonly_password_env_must_be_set(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _policy_file(tmp_path, "mysql://agent@db/shop", "      tables: {orders: {}}\n")
    monkeypatch.delenv("STOCKADE_TEST_NO_SUCH_PASSWORD", raising=False)
    argv = ["sql", "grant-readonly", "--policy", str(path)]
    assert cli.main([*argv, "--password-env", "STOCKADE_TEST_NO_SUCH_PASSWORD"]) == 2
    captured = capsys.readouterr()
    assert "STOCKADE_TEST_NO_SUCH_PASSWORD" in captured.err and captured.out == ""
    monkeypatch.setenv("STOCKADE_TEST_PG_PASSWORD", "it's")
    pg = _policy_file(tmp_path, "postgresql://agent@db/shop", "      tables: {orders: {}}\n")
    argv = ["sql", "grant-readonly", "--policy", str(pg)]
    assert cli.main([*argv, "--password-env", "STOCKADE_TEST_PG_PASSWORD"]) == 0
    assert """CREATE ROLE "agent" LOGIN PASSWORD 'it''s';""" in capsys.readouterr().out


@pytest.mark.mariadb
def test_grant_readonly_mariadb_with_password_env_makes_a_working_account(
    mariadb_env: SQLEnv,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import pymysql

    from stockade.tools.sql_mysql import mysql_params

    role, password = f"stockade_pw_{secrets.token_hex(3)}", "pw-" + secrets.token_hex(6) + "'\\"
    monkeypatch.setenv("STOCKADE_TEST_MARIADB_PASSWORD", password)
    path = _policy_file(
        tmp_path,
        f"mysql://{role}@127.0.0.1:3306/{mariadb_env.database}",
        "      tables: {orders: {}}\n",
    )
    argv = ["sql", "grant-readonly", "--policy", str(path)]
    assert cli.main([*argv, "--password-env", "STOCKADE_TEST_MARIADB_PASSWORD"]) == 0
    out = capsys.readouterr().out
    assert "<password>" not in out
    root = pymysql.connect(**mysql_params(mariadb_env.admin_url), autocommit=True)
    try:
        with root.cursor() as cur:
            for stmt in out.splitlines():
                if stmt and not stmt.startswith("--"):
                    cur.execute(stmt)
        conn = pymysql.connect(
            host="127.0.0.1", port=3306, user=role, password=password, database=mariadb_env.database
        )
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM orders")
            assert cur.fetchone() == (12,)
        conn.close()
    finally:
        with root.cursor() as cur:
            cur.execute(f"DROP USER IF EXISTS '{role}'@'%'")
        root.close()


def test_grant_readonly_needs_columns_for_denied_columns(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _policy_file(
        tmp_path, "postgresql://agent@db/shop", "      tables: {c: {deny_columns: [ssn]}}\n"
    )
    assert cli.main(["sql", "grant-readonly", "--policy", str(path)]) == 1
    assert "--admin-url" in capsys.readouterr().err


@pytest.mark.postgres
def test_grant_readonly_reads_columns_with_admin_url(
    pg_env: SQLEnv, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(pg_env.policy_text(), encoding="utf-8")
    code = cli.main(
        ["sql", "grant-readonly", "--policy", str(path), "--admin-url", pg_env.admin_url]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert '("id", "name", "email", "country") ON "public"."customers"' in out
    assert "ssn" not in out


@pytest.mark.postgres
def test_postgres_grants_are_checked_again_on_reconnect(pg_env: SQLEnv) -> None:
    import psycopg

    from stockade.errors import ConfigurationError

    engine = engine_only(pg_env.config())
    role = pg_env.extras["role"]
    try:
        pid = engine.query("SELECT pg_backend_pid()", max_rows=1, timeout=1).rows[0][0]
        with psycopg.connect(pg_env.admin_url, autocommit=True) as admin:
            admin.execute(f'GRANT SELECT ON secrets TO "{role}"')
            try:
                admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
                with pytest.raises(SQLError):
                    engine.query("SELECT 1", max_rows=1, timeout=1)
                for _ in range(2):
                    with pytest.raises(ConfigurationError, match="secrets"):
                        engine.query("SELECT 1", max_rows=1, timeout=1)
            finally:
                admin.execute(f'REVOKE SELECT ON secrets FROM "{role}"')
        assert engine.query("SELECT 1", max_rows=1, timeout=1).rows == [(1,)]
    finally:
        engine.close()
