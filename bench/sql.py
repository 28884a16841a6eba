"""Benchmark of the sql tool: parser-layer check cost, and guarded vs direct queries.

    python bench/sql.py          # figures
    python bench/sql.py --json   # one JSON object

Figures (medians of several runs, measured in the same process):

- ``check_us_1kb``: the parser layer (``prepare`` + ``check``: parse, ``*``
  expansion, column resolution, function and clause checks, regeneration)
  for a ~1 KB query; target <= 300 us;
- ``sqlglot_parse_us_1kb``: ``sqlglot.parse`` alone on the same queries in the
  same dialect, the floor the check cannot go below; ``check_vs_parse_ratio``
  is ``check_us_1kb`` over it (what the check costs in parses);
- ``<engine>_guarded_ms`` / ``<engine>_direct_ms`` / ``<engine>_ratio``: one
  analytical query through ``guard.call`` (both layers, audit in memory)
  against the same query on a plain driver connection. PostgreSQL and
  MariaDB figures need the local servers; without them they are ``null``.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sqlite3
import statistics
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

import sqlglot

from stockade.guard import Guard
from stockade.model import ToolCall
from stockade.policy import Policy
from stockade.stages import MemoryAuditSink, NoFlow, NoScanner
from stockade.tools.sql import SQLConfig, SQLTool
from stockade.tools.sql_check import DIALECTS
from stockade.tools.sql_cli import grant_statements

ROWS = 2000
QUERY = (
    "SELECT c.country, count(*) AS n, sum(o.total) AS spent FROM orders o "
    "JOIN customers c ON c.id = o.customer_id WHERE o.total > 10 "
    "GROUP BY c.country ORDER BY spent DESC"
)


def _query_1kb(n: int = 50) -> str:
    cols = ", ".join(f"o.c{i}" for i in range(16))
    conds = " AND ".join(f"(o.c{i} > {i * 7} OR o.c{i} IS NULL)" for i in range(16))
    extra = " AND ".join(f"cu.c{i} < {i * 11}" for i in range(8))
    return (
        f"SELECT {cols}, cu.c0, cu.c1, count(*) AS n FROM orders o JOIN customers cu "
        f"ON cu.c0 = o.c1 WHERE {conds} AND {extra} "
        f"GROUP BY {cols}, cu.c0, cu.c1 ORDER BY n DESC LIMIT {n}"
    )


def _median(
    fn: Callable[[], Any], runs: int, warm: int = 3, clock: Callable[[], float] = time.perf_counter
) -> float:
    for _ in range(warm):
        fn()
    times = []
    for _ in range(runs):
        t = clock()
        fn()
        times.append(clock() - t)
    return statistics.median(times)


def _policy(url: str, columns: str = "") -> str:
    return (
        "version: 1\nsql:\n  databases:\n    shop:\n"
        f"      url: {url}\n      max_rows: 100\n      timeout: 10s\n"
        "      tables:\n"
        f"        orders: {{{columns}}}\n"
        f"        customers: {{{columns}}}\n"
    )


def _guard(text: str) -> Guard:
    return Guard(
        Policy.from_text(text), audit=MemoryAuditSink(), scanner=NoScanner(), flow=NoFlow()
    )


def bench_check(tmp: Path, runs: int) -> tuple[float, float, float, float]:
    """The parser layer alone on a ~1 KB query (schema cached, as in steady use):
    wall-clock and CPU time (the CPU figure is the fair one on a shared machine)
    of a statement seen for the first time, wall-clock time of a repeated one,
    and wall-clock time of sqlglot's parse alone on first-seen statements."""
    path = tmp / "wide.db"
    conn = sqlite3.connect(path)
    cols = ", ".join(f"c{i} INTEGER" for i in range(20))
    conn.execute(f"CREATE TABLE orders ({cols})")
    conn.execute(f"CREATE TABLE customers ({cols})")
    conn.commit()
    conn.close()
    config = Policy.from_text(_policy(f"sqlite:///{path}")).section("sql")
    assert isinstance(config, SQLConfig)
    tool = SQLTool(config)
    assert 900 <= len(_query_1kb()) <= 1200, len(_query_1kb())
    counter = iter(range(10, 10**9))

    def one(sql: str | None = None) -> None:
        # a new text each time (the LIMIT changes), so no cached analysis helps
        text = sql or _query_1kb(next(counter))
        call = tool.prepare(ToolCall("sql", "query", {"sql": text}, session="b"))
        if tool.check(call) is not None:
            raise AssertionError("the benchmark query was denied")

    def parse_only() -> None:
        # the same texts, the same dialect: the part of the check the issue mandates
        sqlglot.parse(_query_1kb(next(counter)), read=DIALECTS["sqlite"])

    try:
        wall = _median(one, runs) * 1e6
        cpu = _median(one, runs, clock=time.process_time) * 1e6
        repeated = _query_1kb(7)
        warm = _median(lambda: one(repeated), runs) * 1e6
        parse = _median(parse_only, runs) * 1e6
        return wall, cpu, warm, parse
    finally:
        tool.close()


def _data() -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    customers = [(i, f"name{i}", ["GB", "US", "CN", "DE"][i % 4]) for i in range(1, 201)]
    orders = [(i, 1 + i % 200, (i * 37) % 500) for i in range(1, ROWS + 1)]
    return customers, orders


def _fill(cur: Any, p: str) -> None:
    customers, orders = _data()
    cur.execute(
        "CREATE TABLE customers (id INTEGER PRIMARY KEY, name VARCHAR(50), country VARCHAR(4))"
    )
    cur.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, customer_id INTEGER, total INTEGER)")
    cur.executemany(f"INSERT INTO customers VALUES ({p}, {p}, {p})", customers)
    cur.executemany(f"INSERT INTO orders VALUES ({p}, {p}, {p})", orders)


def _compare(guard_url: str, direct: Callable[[], Any], runs: int) -> dict[str, float]:
    with _guard(_policy(guard_url)) as guard:
        guarded = _median(lambda: guard.call("sql", "query", {"sql": QUERY}), runs)
    plain = _median(direct, runs)
    return {"guarded_ms": guarded * 1e3, "direct_ms": plain * 1e3, "ratio": guarded / plain}


def bench_sqlite(tmp: Path, runs: int) -> dict[str, float]:
    """SQLite: the guarded tool against sqlite3 on the same file."""
    path = tmp / "shop.db"
    conn = sqlite3.connect(path)
    _fill(conn.cursor(), "?")
    conn.commit()
    try:
        return _compare(f"sqlite:///{path}", lambda: conn.execute(QUERY).fetchall(), runs)
    finally:
        conn.close()


def bench_postgres(runs: int) -> dict[str, float] | None:
    """PostgreSQL: the guarded tool (least-privilege role) against psycopg as the admin."""
    try:
        import psycopg
    except ImportError:
        return None
    base = os.environ.get("STOCKADE_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")
    suffix = secrets.token_hex(4)
    db, role, pw = f"stockade_bench_{suffix}", f"stockade_bench_{suffix}", secrets.token_hex(8)
    parts = urllib.parse.urlsplit(base)
    admin_url = urllib.parse.urlunsplit(parts._replace(path=f"/{db}"))
    ro_url = f"postgresql://{role}:{pw}@{parts.hostname}:{parts.port or 5432}/{db}"
    try:
        with psycopg.connect(base, autocommit=True, connect_timeout=3) as c:
            c.execute(f'CREATE DATABASE "{db}"')
    except psycopg.Error:
        return None
    admin = psycopg.connect(admin_url, autocommit=True)
    try:
        with admin.cursor() as cur:
            _fill(cur, "%s")
            section = Policy.from_text(_policy(ro_url)).section("sql")
            for stmt in grant_statements(section.databases["shop"], role=role, password=pw):
                if not stmt.startswith("--"):
                    cur.execute(stmt)
        return _compare(ro_url, lambda: admin.execute(QUERY).fetchall(), runs)
    finally:
        admin.close()
        with psycopg.connect(base, autocommit=True) as c:
            c.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (db,)
            )
            c.execute(f'DROP DATABASE IF EXISTS "{db}"')
            c.execute(f'DROP ROLE IF EXISTS "{role}"')


def bench_mariadb(runs: int) -> dict[str, float] | None:
    """MariaDB: the guarded tool (SELECT-only account) against PyMySQL as root."""
    try:
        import pymysql
    except ImportError:
        return None
    from stockade.tools.sql_mysql import mysql_params

    base = os.environ.get("STOCKADE_TEST_MARIADB", "mysql://root@127.0.0.1:3306/test")
    suffix = secrets.token_hex(4)
    db, user, pw = f"stockade_bench_{suffix}", f"stockade_b_{suffix}", secrets.token_hex(8)
    parts = urllib.parse.urlsplit(base)
    ro_url = f"mysql://{user}:{pw}@{parts.hostname}:{parts.port or 3306}/{db}"
    try:
        root = pymysql.connect(**mysql_params(base), autocommit=True, connect_timeout=3)
    except pymysql.MySQLError:
        return None
    try:
        with root.cursor() as cur:
            cur.execute(f"CREATE DATABASE `{db}`")
            cur.execute(f"USE `{db}`")
            _fill(cur, "%s")
            section = Policy.from_text(_policy(ro_url)).section("sql")
            for stmt in grant_statements(section.databases["shop"], role=user, password=pw):
                if not stmt.startswith("--"):
                    cur.execute(stmt)

        def direct() -> Any:
            with root.cursor() as cur:
                cur.execute(QUERY)
                return cur.fetchall()

        return _compare(ro_url, direct, runs)
    finally:
        with root.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{db}`")
            cur.execute(f"DROP USER IF EXISTS '{user}'@'%'")
        root.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--runs", type=int, default=30, help="timed runs per figure")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="stockade-bench-sql-") as tmp_name:
        tmp = Path(tmp_name)
        check, check_cpu, check_warm, parse = bench_check(tmp, args.runs * 3)
        lite = bench_sqlite(tmp, args.runs)
    pg = bench_postgres(args.runs)
    my = bench_mariadb(args.runs)
    out: dict[str, Any] = {
        "check_us_1kb": round(check, 1),
        "check_cpu_us_1kb": round(check_cpu, 1),
        "check_repeat_us_1kb": round(check_warm, 1),
        "check_target_us": 300,
        "sqlglot_parse_us_1kb": round(parse, 1),
        "check_vs_parse_ratio": round(check / parse, 2),
        "sqlite_ratio": round(lite["ratio"], 2),
        "sqlite_guarded_ms": round(lite["guarded_ms"], 3),
        "sqlite_direct_ms": round(lite["direct_ms"], 3),
        "postgres_ratio": round(pg["ratio"], 2) if pg else None,
        "postgres_guarded_ms": round(pg["guarded_ms"], 3) if pg else None,
        "postgres_direct_ms": round(pg["direct_ms"], 3) if pg else None,
        "mariadb_ratio": round(my["ratio"], 2) if my else None,
        "mariadb_guarded_ms": round(my["guarded_ms"], 3) if my else None,
        "mariadb_direct_ms": round(my["direct_ms"], 3) if my else None,
        "runs": args.runs,
        "cpus": os.cpu_count(),
        "load_average_1m": round(os.getloadavg()[0], 2),
    }
    if args.json:
        print(json.dumps(out))
        return 0
    print(
        f"parser layer, 1 KB query: {out['check_us_1kb']} us median wall, "
        f"{out['check_cpu_us_1kb']} us CPU (target <= 300 us); "
        f"a repeated statement: {out['check_repeat_us_1kb']} us"
    )
    print(
        f"sqlglot.parse alone on the same queries: {out['sqlglot_parse_us_1kb']} us; "
        f"the check costs {out['check_vs_parse_ratio']} parses"
    )
    for name in ("sqlite", "postgres", "mariadb"):
        if out[f"{name}_ratio"] is None:
            print(f"{name}: server not available")
            continue
        print(
            f"{name}: guarded {out[f'{name}_guarded_ms']} ms, direct "
            f"{out[f'{name}_direct_ms']} ms, ratio {out[f'{name}_ratio']}x"
        )
    print(f"(median of {args.runs} runs; {out['cpus']} CPUs, load {out['load_average_1m']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
