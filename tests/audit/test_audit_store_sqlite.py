"""The SQLite store: appends, queries, read-only access, settings."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest
from audit_helpers import event, open_log

from stockade.audit.keys import KeyPaths, load_public_key
from stockade.audit.store import Query
from stockade.audit.store_sqlite import SQLiteStore
from stockade.audit.verify import verify_log
from stockade.errors import AuditError


def test_append_query_and_filters(tmp_path: Path, keys: KeyPaths) -> None:
    log = open_log(SQLiteStore(tmp_path / "a.db", "o"), keys, checkpoint_every=3)
    t0 = time.time()
    seqs = [
        log.append(event(i, session=f"s{i % 2}", tool="fs" if i < 6 else "http")) for i in range(10)
    ]
    assert seqs == list(range(10))
    store = log.store

    def q(**kw: object) -> list[int]:
        return [r.seq for r in store.query(Query(**kw))]  # type: ignore[arg-type]

    assert q() == list(range(10))
    assert q(session="s1") == [1, 3, 5, 7, 9]
    assert q(tool="http") == [6, 7, 8, 9]
    assert q(decision="deny") == [4, 9]
    assert q(rule="fs-secrets", tool="fs") == [4]
    assert q(kind="outcome") == []
    assert q(action="read", limit=2) == [0, 1]
    assert q(newest_first=True, limit=3) == [9, 8, 7]
    assert q(after_seq=7) == [8, 9]
    assert q(since=t0 - 1, until=time.time() + 1) == list(range(10))
    assert q(until=t0 - 1) == []
    assert store.size() == 10
    first = next(iter(store.query(Query(limit=1))))
    assert first.parsed()["call_id"] == "call-0"
    log.close()


def test_index_columns_come_from_the_record(tmp_path: Path, keys: KeyPaths) -> None:
    log = open_log(SQLiteStore(tmp_path / "a.db", "o"), keys)
    log.append(event(4))
    log.close()
    db = sqlite3.connect(tmp_path / "a.db")
    with pytest.raises(sqlite3.OperationalError, match="generated column"):
        db.execute("UPDATE records SET decision = 'allow' WHERE seq = 0")
    db.close()


def test_origin_is_fixed_per_file(tmp_path: Path) -> None:
    SQLiteStore(tmp_path / "a.db", "one").close()
    with pytest.raises(AuditError, match="holds origin `one`"):
        SQLiteStore(tmp_path / "a.db", "two")
    reader = SQLiteStore(tmp_path / "a.db", "", readonly=True)
    assert reader.origin == "one"
    with pytest.raises(AuditError, match="read-only"), reader.transaction():
        pass
    reader.close()


def test_open_errors(tmp_path: Path) -> None:
    with pytest.raises(AuditError, match="does not exist"):
        SQLiteStore(tmp_path / "none.db", "o", readonly=True)
    with pytest.raises(AuditError, match="durability"):
        SQLiteStore(tmp_path / "a.db", "o", durability="fast")
    (tmp_path / "dir.db").mkdir()
    with pytest.raises(AuditError, match="cannot open"):
        SQLiteStore(tmp_path / "dir.db", "o")
    (tmp_path / "file").write_text("x")
    with pytest.raises(AuditError, match="cannot open"):
        SQLiteStore(tmp_path / "file" / "a.db", "o")


def test_power_durability_and_group_commit(tmp_path: Path, keys: KeyPaths) -> None:
    store = SQLiteStore(tmp_path / "a.db", "o", durability="power")
    assert store._w is not None
    assert store._w.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert store._w.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    log = open_log(store, keys, checkpoint_every=50)
    got: list[int] = []
    lock = threading.Lock()

    def work(t: int) -> None:
        for i in range(40):
            seq = log.append(event(i, call_id=f"{t}-{i}"))
            with lock:
                got.append(seq)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(got) == list(range(320))
    log.close()
    reader = SQLiteStore(tmp_path / "a.db", "o", readonly=True)
    report = verify_log(reader, load_public_key(keys.public), strict=True)
    assert report.records == 320
    reader.close()


def test_write_failure_reaches_every_waiting_caller(tmp_path: Path, keys: KeyPaths) -> None:
    store = SQLiteStore(tmp_path / "a.db", "o")
    log = open_log(store, keys)
    log.append(event(0))
    assert store._w is not None
    # the SQLite way to say "disk full": no page may be added any more
    pages = store._w.execute("PRAGMA page_count").fetchone()[0]
    store._w.execute(f"PRAGMA max_page_count = {pages}")
    with pytest.raises(AuditError, match="full"):  # noqa: PT012 - fails once the page fills
        for i in range(200):
            log.append(event(i))
    store._w.execute("PRAGMA max_page_count = 1000000")
    seq = log.append(event(1))
    log.close()
    reader = SQLiteStore(tmp_path / "a.db", "o", readonly=True)
    verify_log(reader, load_public_key(keys.public))  # a refused batch leaves no trace
    assert reader.size() == seq + 1
    reader.close()


def test_group_commit_failure_reaches_every_thread(tmp_path: Path, keys: KeyPaths) -> None:
    store = SQLiteStore(tmp_path / "a.db", "o")
    log = open_log(store, keys)
    log.append(event(0))
    assert store._w is not None
    pages = store._w.execute("PRAGMA page_count").fetchone()[0]
    store._w.execute(f"PRAGMA max_page_count = {pages + 2}")
    outcomes: list[object] = []
    lock = threading.Lock()

    def work(t: int) -> None:
        for i in range(30):
            try:
                got: object = log.append(event(i, call_id=f"{t}-{i}"))
            except AuditError as exc:
                got = exc
            with lock:
                outcomes.append(got)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
        assert not t.is_alive()  # nobody waits forever for a failed leader
    seqs = sorted(o for o in outcomes if isinstance(o, int))
    assert len(outcomes) == 240 and any(isinstance(o, AuditError) for o in outcomes)
    assert seqs == list(range(1, 1 + len(seqs)))  # what was acknowledged is one sequence
    store._w.execute("PRAGMA max_page_count = 1000000")
    assert log.append(event(99)) == 1 + len(seqs)
    log.close()
    reader = SQLiteStore(tmp_path / "a.db", "o", readonly=True)
    assert verify_log(reader, load_public_key(keys.public), strict=True).records == len(seqs) + 2
    reader.close()
