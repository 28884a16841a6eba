"""The PostgreSQL store: origins, queries, writers taking turns, a lost connection."""

from __future__ import annotations

import time

import psycopg
import pytest
from audit_helpers import event, make_store, open_log

from stockade.audit.keys import KeyPaths, load_public_key
from stockade.audit.store import Query
from stockade.audit.store_postgres import PostgresStore
from stockade.audit.verify import verify_log
from stockade.errors import AuditError


def test_append_query_and_origins(pg_db: str, keys: KeyPaths, origin: str) -> None:
    log = open_log(PostgresStore(pg_db, origin), keys, checkpoint_every=3)
    other = open_log(PostgresStore(pg_db, origin + "-x"), keys)
    t0 = time.time()
    assert [log.append(event(i, session=f"s{i % 2}")) for i in range(10)] == list(range(10))
    assert other.append(event(0)) == 0  # its own sequence
    store = log.store

    def q(**kw: object) -> list[int]:
        return [r.seq for r in store.query(Query(**kw))]  # type: ignore[arg-type]

    assert q(session="s1") == [1, 3, 5, 7, 9]
    assert q(decision="deny") == [4, 9]
    assert q(rule="fs-secrets", tool="fs", action="read", kind="decision") == [4, 9]
    assert q(newest_first=True, limit=2) == [9, 8]
    assert q(after_seq=8) == [9]
    assert q(since=t0 - 1, until=time.time() + 1) == list(range(10))
    assert store.size() == 10
    assert [seq for seq, _, _ in store.scan(2, 5)] == [2, 3, 4]
    log.close()
    other.close()
    reader = PostgresStore(pg_db, origin, readonly=True)
    assert verify_log(reader, load_public_key(keys.public), strict=True).records == 10
    with pytest.raises(AuditError, match="read-only"), reader.transaction():
        pass
    with pytest.raises(AuditError, match="read-only"):
        reader.append_fast(0, None, [])  # type: ignore[arg-type]
    reader.close()


def test_writers_taking_turns_keep_one_sequence(pg_db: str, keys: KeyPaths, origin: str) -> None:
    a = open_log(make_store("postgres", pg_db, origin), keys, checkpoint_every=4)
    b = open_log(make_store("postgres", pg_db, origin), keys, checkpoint_every=4)
    seqs = [w.append(event(i)) for i in range(12) for w in (a, b)]
    assert seqs == list(range(24))
    a.close()
    b.close()
    reader = make_store("postgres", pg_db, origin)
    verify_log(reader, load_public_key(keys.public), strict=True)
    reader.close()


def test_sqlite_writers_taking_turns(tmp_path: object, keys: KeyPaths) -> None:
    path = str(tmp_path) + "/a.db"
    a = open_log(make_store("sqlite", path, "o"), keys, checkpoint_every=4)
    b = open_log(make_store("sqlite", path, "o"), keys, checkpoint_every=4)
    assert [w.append(event(i)) for i in range(10) for w in (a, b)] == list(range(20))
    a.close()
    b.close()
    reader = make_store("sqlite", path, "o")
    verify_log(reader, load_public_key(keys.public), strict=True)
    reader.close()


def test_lost_connection_fails_one_append_then_reconnects(
    pg_db: str, keys: KeyPaths, origin: str
) -> None:
    store = PostgresStore(pg_db, origin)
    log = open_log(store, keys)
    log.append(event(0))
    assert store._w is not None
    pid = store._w.info.backend_pid
    with psycopg.connect(pg_db, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    with pytest.raises(AuditError, match="audit store"):
        log.append(event(1))
    assert log.append(event(2)) == 1  # a new connection; the failed record left no trace
    log.close()
    reader = PostgresStore(pg_db, origin, readonly=True)
    verify_log(reader, load_public_key(keys.public), strict=True)
    reader.close()


def test_unreachable_server() -> None:
    with pytest.raises(AuditError, match="cannot open"):
        PostgresStore("postgresql://postgres@127.0.0.1:1/none?connect_timeout=2", "o")


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_hostile_strings_are_stored(
    kind: str, request: pytest.FixtureRequest, tmp_path: object, keys: KeyPaths, origin: str
) -> None:
    location = str(tmp_path) + "/a.db" if kind == "sqlite" else request.getfixturevalue("pg_db")
    log = open_log(make_store(kind, location, origin), keys)
    ev = event(0, session="s\x00\ud800")
    ev.args = {"path": "\x00\ud800\U0001f600", "n": float("nan")}
    assert log.append(ev) == 0
    log.close()
    reader = make_store(kind, location, origin)
    rec = next(iter(reader.query(Query(session="s\ufffd\ufffd")))).parsed()
    assert rec["args"] == {"path": "\ufffd\ufffd\U0001f600", "n": "nan"}
    verify_log(reader, load_public_key(keys.public), strict=True)
    reader.close()
