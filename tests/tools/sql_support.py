"""Real databases for the SQL tool's tests: SQLite files, and a fresh database
plus a least-privilege account on the local PostgreSQL and MariaDB servers.

Each :class:`SQLEnv` holds an administrator's URL (to build the data and to
check afterwards that nothing changed) and the URL of the account the tool
uses, made with the statements ``stockade sql grant-readonly`` prints.
Everything is created with unique names and dropped afterwards.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import sqlite3
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from stockade.guard import Guard
from stockade.policy import Policy
from stockade.stages import MemoryAuditSink, NoFlow, NoScanner
from stockade.tools.sql import DatabaseConfig, SQLConfig
from stockade.tools.sql_cli import grant_statements
from stockade_testing import require_service

ATTACKS = Path(__file__).resolve().parents[1] / "attacks" / "sql"

CUSTOMERS = [
    (1, "Ada", "ada@example.com", "123-45-6789", "GB"),
    (2, "Bob", "bob@example.com", "987-65-4321", "US"),
    (3, "Chen", "chen@example.com", "555-12-3456", "CN"),
    (4, "Dana", "dana@example.com", "111-22-3333", "US"),
    (5, "Eve", "eve@example.com", "999-88-7777", None),
]
ORDERS = [
    (1, 1, 250, "gift"),
    (2, 1, 40, None),
    (3, 2, 120, None),
    (4, 2, 30, None),
    (5, 3, 300, "rush"),
    (6, 3, 20, None),
    (7, 4, 90, None),
    (8, 4, 15, None),
    (9, 5, 60, None),
    (10, 5, 10, None),
    (11, 1, 80, None),
    (12, 2, 5, None),
]
SECRETS = [(1, "sk-live-0123456789abcdef")]

TABLES_YAML = """\
      tables:
        orders: {}
        customers: {deny_columns: [ssn], mask: [email], confidential: true}
"""


def _ddl(kind: str) -> list[str]:
    text = "TEXT" if kind != "mysql" else "VARCHAR(200)"
    out = [
        f"CREATE TABLE customers (id INTEGER PRIMARY KEY, name {text}, email {text}, "
        f"ssn {text}, country {text})",
        f"CREATE TABLE orders (id INTEGER PRIMARY KEY, customer_id INTEGER, total INTEGER, "
        f"note {text})",
        f"CREATE TABLE secrets (id INTEGER PRIMARY KEY, token {text})",
        "CREATE VIEW contacts AS SELECT name, ssn FROM customers",
    ]
    if kind == "postgres":
        out.append("CREATE SEQUENCE order_seq")
    return out


def _fill(cur: Any, kind: str) -> None:
    p = "?" if kind == "sqlite" else "%s"
    for stmt in _ddl(kind):
        cur.execute(stmt)
    cur.executemany(f"INSERT INTO customers VALUES ({p}, {p}, {p}, {p}, {p})", CUSTOMERS)
    cur.executemany(f"INSERT INTO orders VALUES ({p}, {p}, {p}, {p})", ORDERS)
    cur.executemany(f"INSERT INTO secrets VALUES ({p}, {p})", SECRETS)


@dataclass
class SQLEnv:
    """One prepared database on one engine."""

    kind: str  # sqlite | postgres | mysql
    admin_url: str
    url: str  # the least-privilege account (sqlite: the same file)
    tmp: Path
    database: str = ""
    admin_pid: int = 0
    extras: dict[str, Any] = field(default_factory=dict)

    def policy_text(self, *, url: str | None = None, extra: str = "", tables: str = "") -> str:
        """A policy with one database `shop` on this engine."""
        return (
            "version: 1\n"
            "sql:\n"
            "  databases:\n"
            "    shop:\n"
            f"      url: {url or self.url}\n"
            "      timeout: 500ms\n"
            "      max_rows: 50\n"
            f"{extra}"
            f"{tables or TABLES_YAML}"
        )

    def config(self, *, url: str | None = None, extra: str = "") -> DatabaseConfig:
        """The parsed `shop` database."""
        section = Policy.from_text(self.policy_text(url=url, extra=extra)).section("sql")
        assert isinstance(section, SQLConfig)
        return section.databases["shop"]

    def guard(self, *, url: str | None = None, extra: str = "", tables: str = "") -> Guard:
        """A guard with only the sql tool (other parts' stages left out on purpose)."""
        policy = Policy.from_text(self.policy_text(url=url, extra=extra, tables=tables))
        return Guard(policy, audit=MemoryAuditSink(), scanner=NoScanner(), flow=NoFlow())

    # -- shared per module: connections are slow to open on a busy machine --

    def shared(self, name: str, make: Any) -> Any:
        """One object per environment, closed with it (a guard, a tool, an engine)."""
        if name not in self.extras:
            self.extras[name] = make()
        return self.extras[name]

    def shared_guard(self) -> Guard:
        """A guard on the least-privilege account, shared by a module's tests."""
        guard: Guard = self.shared("guard", self.guard)
        return guard

    def shared_engine(self) -> Any:
        """The engine layer alone, shared by a module's tests."""
        from stockade.hazmat.sql_connection import engine_only

        return self.shared("engine", lambda: engine_only(self.config()))

    def shared_parser_tool(self) -> Any:
        """The parser layer alone (raw administrator connection), shared."""
        from stockade.hazmat.sql_connection import parser_only_tool

        return self.shared(
            "parser_tool", lambda: parser_only_tool({"shop": self.config(url=self.admin_url)})
        )

    def close(self) -> None:
        """Close what :meth:`shared` opened."""
        for key in ("guard", "engine", "parser_tool", "admin_conn"):
            obj = self.extras.pop(key, None)
            if obj is not None:
                obj.close()

    def marker(self, attack_id: str) -> Path:
        """A file path that an attack would create."""
        return self.tmp / f"marker-{attack_id}"

    def render(self, sql: str, attack_id: str) -> str:
        """Fill `{marker}`, `{admin_pid}` and `{database}` in a corpus statement."""
        return (
            sql.replace("{marker}", str(self.marker(attack_id)))
            .replace("{admin_pid}", str(self.admin_pid))
            .replace("{database}", self.database)
        )

    def state(self) -> dict[str, Any]:
        """Tables, views and their contents, read as the administrator."""
        names = ("customers", "orders", "secrets")
        if self.kind == "sqlite":
            path = urllib.parse.unquote(self.admin_url[len("sqlite:///") :])
            conn = sqlite3.connect(path)
            try:
                objects = sorted(r[0] for r in conn.execute("SELECT name FROM sqlite_master"))
                data = {n: conn.execute(f"SELECT * FROM {n} ORDER BY id").fetchall() for n in names}
            finally:
                conn.close()
            return {"objects": objects, "data": data}
        if self.kind == "postgres":
            import psycopg

            conn = self.shared(
                "admin_conn", lambda: psycopg.connect(self.admin_url, autocommit=True)
            )
            if True:
                objects = sorted(
                    r[0]
                    for r in conn.execute(
                        "SELECT relname FROM pg_class c JOIN pg_namespace n "
                        "ON n.oid = c.relnamespace WHERE n.nspname = 'public'"
                    )
                )
                data = {n: conn.execute(f"SELECT * FROM {n} ORDER BY id").fetchall() for n in names}
                seq = conn.execute("SELECT last_value, is_called FROM order_seq").fetchone()
                grants = conn.execute(
                    "SELECT count(*) FROM information_schema.role_table_grants"
                ).fetchone()
            return {"objects": objects, "data": data, "seq": seq, "grants": grants}
        import pymysql

        conn = self.shared(
            "admin_conn",
            lambda: pymysql.connect(**_mysql_params(self.admin_url), autocommit=True),
        )
        with conn.cursor() as cur:
            cur.execute("SHOW TABLES")
            objects = sorted(r[0] for r in cur.fetchall())
            data = {}
            for n in names:
                cur.execute(f"SELECT * FROM {n} ORDER BY id")
                data[n] = cur.fetchall()
            # The server's accounts, less the ones test and benchmark runs make
            # for themselves (`stockade_<hex>`, `stockade_b_<hex>`): another run
            # on the same server may add or drop those at any moment. No attack
            # in the corpus creates such a name.
            cur.execute(
                "SELECT user FROM mysql.user WHERE user NOT LIKE 'stockade\\_%' ORDER BY user"
            )
            users = cur.fetchall()
        return {"objects": objects, "data": data, "users": users}


def _mysql_params(url: str) -> dict[str, Any]:
    parts = urllib.parse.urlsplit(url)
    return {
        "host": parts.hostname,
        "port": parts.port or 3306,
        "user": urllib.parse.unquote(parts.username or ""),
        "password": urllib.parse.unquote(parts.password or ""),
        "database": parts.path.lstrip("/"),
    }


def make_sqlite(tmp: Path) -> SQLEnv:
    """A fresh SQLite file with the test data."""
    path = tmp / "shop.db"
    conn = sqlite3.connect(path)
    _fill(conn.cursor(), "sqlite")
    conn.commit()
    conn.close()
    url = f"sqlite:///{path}"
    return SQLEnv("sqlite", url, url, tmp)


@pytest.fixture(scope="module")
def sqlite_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SQLEnv]:
    """A fresh SQLite database (one per module)."""
    env = make_sqlite(tmp_path_factory.mktemp("sqlite"))
    yield env
    env.close()


def _schema_columns() -> dict[str, list[str]]:
    return {
        "customers": ["id", "name", "email", "ssn", "country"],
        "orders": ["id", "customer_id", "total", "note"],
    }


@pytest.fixture(scope="module")
def pg_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SQLEnv]:
    """A fresh PostgreSQL database and a least-privilege role (one per module)."""
    import psycopg

    require_service("PostgreSQL", "127.0.0.1", 5432)
    base = os.environ.get("STOCKADE_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")
    suffix = secrets.token_hex(4)
    dbname, role, password = f"stockade_sql_{suffix}", f"stockade_ro_{suffix}", secrets.token_hex(8)
    parts = urllib.parse.urlsplit(base)
    admin_url = urllib.parse.urlunsplit(parts._replace(path=f"/{dbname}"))
    host = parts.hostname or "127.0.0.1"
    ro_url = f"postgresql://{role}:{password}@{host}:{parts.port or 5432}/{dbname}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{dbname}"')
    admin = psycopg.connect(admin_url, autocommit=True)
    try:
        with admin.cursor() as cur:
            _fill(cur, "postgres")
            # Without contrib the dblink attacks meet a missing function instead.
            with contextlib.suppress(psycopg.Error):
                cur.execute("CREATE EXTENSION IF NOT EXISTS dblink")
        tmp = tmp_path_factory.mktemp("pg")
        env = SQLEnv("postgres", admin_url, ro_url, tmp, database=dbname)
        statements = grant_statements(
            env.config(), role=role, schema=_schema_columns(), password=password
        )
        with admin.cursor() as cur:
            for stmt in statements:
                if not stmt.startswith("--"):
                    cur.execute(stmt)
        env.admin_pid = int(admin.execute("SELECT pg_backend_pid()").fetchone()[0])  # type: ignore[index]
        env.extras["role"] = role
        env.extras["base"] = base
        yield env
        env.close()
    finally:
        admin.close()
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                (dbname,),
            )
            conn.execute(f'DROP DATABASE IF EXISTS "{dbname}"')
            conn.execute(f'DROP ROLE IF EXISTS "{role}"')


@pytest.fixture(scope="module")
def mariadb_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SQLEnv]:
    """A fresh MariaDB database and a SELECT-only account (one per module)."""
    import pymysql

    require_service("MariaDB", "127.0.0.1", 3306)
    base = os.environ.get("STOCKADE_TEST_MARIADB", "mysql://root@127.0.0.1:3306/test")
    suffix = secrets.token_hex(4)
    dbname, user, password = f"stockade_sql_{suffix}", f"stockade_{suffix}", secrets.token_hex(8)
    parts = urllib.parse.urlsplit(base)
    admin_url = urllib.parse.urlunsplit(parts._replace(path=f"/{dbname}"))
    host = parts.hostname or "127.0.0.1"
    ro_url = f"mysql://{user}:{password}@{host}:{parts.port or 3306}/{dbname}"
    root = pymysql.connect(**_mysql_params(base), autocommit=True)
    try:
        with root.cursor() as cur:
            cur.execute(f"CREATE DATABASE `{dbname}`")
            cur.execute(f"USE `{dbname}`")
            _fill(cur, "mysql")
        tmp = tmp_path_factory.mktemp("mariadb")
        env = SQLEnv("mysql", admin_url, ro_url, tmp, database=dbname)
        statements = grant_statements(
            env.config(), role=user, schema=_schema_columns(), password=password
        )
        with root.cursor() as cur:
            for stmt in statements:
                if not stmt.startswith("--"):
                    cur.execute(stmt)
        env.extras["user"] = user
        yield env
        env.close()
    finally:
        with root.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{dbname}`")
            cur.execute(f"DROP USER IF EXISTS '{user}'@'%'")
        root.close()


def load_corpus(name: str) -> dict[str, Any]:
    """One corpus file of tests/attacks/sql/."""
    data: dict[str, Any] = yaml.safe_load((ATTACKS / name).read_text(encoding="utf-8"))
    return data
