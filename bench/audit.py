"""Audit log benchmark: append rates (SQLite, PostgreSQL), verify rate, bytes per record.

    .venv/bin/python bench/audit.py          # figures, medians of several runs
    .venv/bin/python bench/audit.py --json   # one JSON object

Every figure comes with a baseline measured in the same run on the same
machine: the raw database doing the same inserts and commits without any
audit work (for appends), and a plain read of the same rows (for verify).

"crash-safe" here: ``append`` returns only after the record's transaction has
committed. SQLite default (``durability: process``) is WAL with
``synchronous=NORMAL``: committed records survive ``kill -9`` of the process;
``durability: power`` adds an fsync per commit (``synchronous=FULL``).
PostgreSQL commits with the server's ``synchronous_commit`` (``on`` here).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from stockade.audit.log import AuditLog
from stockade.audit.store import Store
from stockade.audit.store_sqlite import SQLiteStore
from stockade.audit.verify import verify_log
from stockade.model import AuditEvent, Decision, Effect, Finding, Label

PG_URL = os.environ.get("STOCKADE_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")
KEY = Ed25519PrivateKey.generate()
HMAC = os.urandom(32)


def event(i: int) -> AuditEvent:
    """A typical decision event (about 700 bytes as a record)."""
    return AuditEvent(
        kind="decision",
        time=time.time(),
        session=f"session-{i % 17}",
        principal="agent-1",
        call_id=uuid.uuid4().hex,
        tool="fs",
        action="read",
        args={"path": f"notes/2024/meeting-{i}.md", "encoding": "utf-8", "max_bytes": 65536},
        decision=Decision(Effect.ALLOW, "notes-read", "the assistant may read notes"),
        labels=(Label("fs:notes"),),
        findings=(Finding("pii", "email", 10, 27, 0.93, masked=True, where="args"),),
        duration_ms=0.37,
        raw_args={"path": f"notes/2024/meeting-{i}.md", "encoding": "utf-8", "max_bytes": 65536},
    )


def _log(store: Store, every: int = 1000) -> AuditLog:
    return AuditLog(
        store, signing_key=KEY, hmac_key=HMAC, checkpoint_every=every, checkpoint_interval=0
    )


def _rate(n: int, fn: Callable[[], None]) -> float:
    start = time.perf_counter()
    fn()
    return n / (time.perf_counter() - start)


def _appends(log: AuditLog, n: int, threads: int) -> float:
    events = [event(i) for i in range(n)]
    if threads == 1:

        def run1() -> None:
            for e in events:
                log.append(e)

        return _rate(n, run1)
    per = n // threads

    def run() -> None:
        def work(k: int) -> None:
            for e in events[k * per : (k + 1) * per]:
                log.append(e)

        ts = [threading.Thread(target=work, args=(k,)) for k in range(threads)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()

    return _rate(per * threads, run)


def sqlite_appends(tmp: Path, n: int, durability: str, threads: int) -> float:
    path = tmp / f"a-{uuid.uuid4().hex}.db"
    log = _log(SQLiteStore(path, "bench", durability=durability))
    try:
        return _appends(log, n, threads)
    finally:
        log.close()


def sqlite_appends_cpu(tmp: Path, n: int) -> tuple[float, float]:
    """Appends and raw inserts per CPU-second of this process (one thread, no fsync).

    On a shared, loaded machine the wall-clock rate mostly measures the other
    processes; CPU time is what an append costs.
    """
    log = _log(SQLiteStore(tmp / f"c-{uuid.uuid4().hex}.db", "bench"))
    events = [event(i) for i in range(n)]
    start = time.process_time()
    for e in events:
        log.append(e)
    ours = n / (time.process_time() - start)
    log.close()
    start = time.process_time()
    sqlite_baseline(tmp, n, "process")
    return ours, n / (time.process_time() - start)


def sqlite_baseline(tmp: Path, n: int, durability: str) -> float:
    """Raw SQLite: one INSERT + COMMIT per record of the same size, same settings."""
    db = sqlite3.connect(tmp / f"b-{uuid.uuid4().hex}.db", isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(f"PRAGMA synchronous={'NORMAL' if durability == 'process' else 'FULL'}")
    db.execute("CREATE TABLE t (seq INTEGER PRIMARY KEY, record TEXT, chain BLOB)")
    payload, chain = "x" * 700, bytes(32)

    def run() -> None:
        for i in range(n):
            db.execute("BEGIN IMMEDIATE")
            db.execute("INSERT INTO t VALUES (?, ?, ?)", (i, payload, chain))
            db.execute("COMMIT")

    try:
        return _rate(n, run)
    finally:
        db.close()


def pg_available() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=0.5):
            return True
    except OSError:
        return False


@contextmanager
def bench_database(admin_url: str) -> Iterator[str]:
    """A new PostgreSQL database for the run, dropped afterwards."""
    import psycopg

    name = f"stockade_audit_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_url, autocommit=True) as c:
        c.execute(f"CREATE DATABASE {name}")
    try:
        yield admin_url.rsplit("/", 1)[0] + "/" + name
    finally:
        with psycopg.connect(admin_url, autocommit=True) as c:
            c.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def pg_appends(url: str, n: int, threads: int) -> float:
    from stockade.audit.store_postgres import PostgresStore

    log = _log(PostgresStore(url, f"bench-{uuid.uuid4().hex[:8]}"))
    try:
        return _appends(log, n, threads)
    finally:
        log.close()


def pg_baseline(url: str, n: int) -> float:
    """Raw PostgreSQL: one autocommit INSERT per record (one round trip, one commit)."""
    import psycopg

    table = f"bench_audit_raw_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(url, autocommit=True) as c:
        c.execute(f"CREATE TABLE {table} (seq bigint PRIMARY KEY, record text, chain bytea)")
        payload, chain = "x" * 700, bytes(32)
        sql = f"INSERT INTO {table} VALUES (%s, %s, %s)"

        def run() -> None:
            for i in range(n):
                c.execute(sql, (i, payload, chain))

        try:
            return _rate(n, run)
        finally:
            c.execute(f"DROP TABLE {table}")


def build_log(tmp: Path, n: int) -> Path:
    path = tmp / "verify.db"
    log = _log(SQLiteStore(path, "bench"))
    # many writer threads fill the log quickly through group commit
    per = n // 8

    def work(k: int) -> None:
        for i in range(per):
            log.append(event(k * per + i))

    ts = [threading.Thread(target=work, args=(k,)) for k in range(8)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    log.close()
    return path


def verify_rate(path: Path) -> tuple[float, float, int]:
    store = SQLiteStore(path, "", readonly=True)
    try:
        report = verify_log(store, KEY.public_key(), strict=True)
        n = report.records
        rate = _rate(n, lambda: verify_log(store, KEY.public_key()) and None)
        base = _rate(n, lambda: sum(1 for _ in store.scan()) and None)
    finally:
        store.close()
    return rate, base, n


def bytes_per_record(path: Path) -> tuple[float, float]:
    db = sqlite3.connect(path)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    n, total = db.execute(
        "SELECT count(*), sum(length(CAST(record AS BLOB))) FROM records"
    ).fetchone()
    db.close()
    size = path.stat().st_size + (
        Path(str(path) + "-wal").stat().st_size if Path(str(path) + "-wal").exists() else 0
    )
    return size / n, total / n


def median(runs: int, fn: Callable[[], float]) -> float:
    return statistics.median(fn() for _ in range(runs))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--runs", type=int, default=3, help="runs per figure (median)")
    ap.add_argument("--appends", type=int, default=10000, help="appends per run")
    ap.add_argument("--records", type=int, default=200000, help="records in the verify log")
    args = ap.parse_args(argv)
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="stockade-bench-") as t:
        tmp = Path(t)
        n, runs = args.appends, args.runs
        out["sqlite_appends_per_s"] = median(runs, lambda: sqlite_appends(tmp, n, "process", 1))
        out["sqlite_baseline_per_s"] = median(runs, lambda: sqlite_baseline(tmp, n, "process"))
        cpu = [sqlite_appends_cpu(tmp, n) for _ in range(runs)]
        out["sqlite_appends_per_cpu_s"] = statistics.median(c[0] for c in cpu)
        out["sqlite_baseline_per_cpu_s"] = statistics.median(c[1] for c in cpu)
        out["sqlite_appends_per_s_8_threads"] = median(
            runs, lambda: sqlite_appends(tmp, n, "process", 8)
        )
        m = max(n // 4, 400)
        out["sqlite_power_appends_per_s"] = median(runs, lambda: sqlite_appends(tmp, m, "power", 1))
        out["sqlite_power_baseline_per_s"] = median(runs, lambda: sqlite_baseline(tmp, m, "power"))
        out["sqlite_power_appends_per_s_8_threads"] = median(
            runs, lambda: sqlite_appends(tmp, m, "power", 8)
        )
        if pg_available():
            p = max(n // 4, 400)
            with bench_database(PG_URL) as url:
                out["postgres_appends_per_s"] = median(runs, lambda: pg_appends(url, n, 8))
                out["postgres_appends_per_s_sequential"] = median(
                    runs, lambda: pg_appends(url, p, 1)
                )
                out["postgres_baseline_per_s"] = median(runs, lambda: pg_baseline(url, p))
        else:
            out["postgres_appends_per_s"] = None
            print("PostgreSQL is not running on 127.0.0.1:5432; skipped", file=sys.stderr)
        path = build_log(tmp, args.records)
        rates = [verify_rate(path) for _ in range(runs)]
        out["verify_records_per_s"] = statistics.median(r[0] for r in rates)
        out["verify_baseline_read_per_s"] = statistics.median(r[1] for r in rates)
        out["verify_log_records"] = rates[0][2]
        out["bytes_per_record"], out["record_json_bytes"] = bytes_per_record(path)
    if hasattr(os, "getloadavg"):
        out["load_average"] = os.getloadavg()[0]
    out = {k: (round(v, 1) if isinstance(v, float) else v) for k, v in out.items()}
    if args.json:
        print(json.dumps(out))
        return 0

    def line(label: str, key: str, base: str | None = None, target: float | None = None) -> None:
        v = out.get(key)
        if v is None:
            print(f"{label:<52} n/a")
            return
        extra = ""
        if base and out.get(base):
            extra += f"  ({v / out[base]:.2f}x the raw database: {out[base]:,.0f}/s)"
        if target is not None:
            extra += "  target met" if v >= target else f"  BELOW target {target:,.0f}"
        print(f"{label:<52} {v:>12,.0f}{extra}")

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"stockade audit benchmark (median of {args.runs} runs, {os.cpu_count()} cpus, "
        f"load average {load:.1f})"
    )
    line(
        "SQLite appends/s, 1 thread (WAL, sync NORMAL)",
        "sqlite_appends_per_s",
        "sqlite_baseline_per_s",
        10000,
    )
    line(
        "SQLite appends per CPU-second, 1 thread",
        "sqlite_appends_per_cpu_s",
        "sqlite_baseline_per_cpu_s",
    )
    line("SQLite appends/s, 8 threads (group commit)", "sqlite_appends_per_s_8_threads")
    line(
        "SQLite appends/s, 1 thread, fsync (sync FULL)",
        "sqlite_power_appends_per_s",
        "sqlite_power_baseline_per_s",
    )
    line("SQLite appends/s, 8 threads, fsync", "sqlite_power_appends_per_s_8_threads")
    line(
        "PostgreSQL appends/s, one writer process, 8 threads", "postgres_appends_per_s", None, 3000
    )
    line(
        "PostgreSQL appends/s, one thread",
        "postgres_appends_per_s_sequential",
        "postgres_baseline_per_s",
    )
    line("verify records/s", "verify_records_per_s", None, 200000)
    line("  (plain read of the same rows, records/s)", "verify_baseline_read_per_s")
    line("bytes per record on disk (SQLite file, after WAL checkpoint)", "bytes_per_record")
    line("bytes per record JSON", "record_json_bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
