"""Tampering straight in the database: verify catches each case with the right kind and seq.

The cases are data: ``tests/attacks/audit/tamper.yaml``. Each runs against
SQLite and against PostgreSQL.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
import yaml
from audit_helpers import chain_of, crash, event, make_store, open_log

from stockade.audit.checkpoint import Mirror, read_mirror
from stockade.audit.keys import KeyPaths, load_public_key
from stockade.audit.verify import verify_log
from stockade.errors import AuditIntegrityError

CASES = yaml.safe_load(
    (Path(__file__).resolve().parents[1] / "attacks" / "audit" / "tamper.yaml").read_text()
)


class Tamperer:
    """Direct database access, the way an insider would edit the log."""

    def __init__(self, kind: str, location: str, origin: str) -> None:
        self.kind = kind
        self.origin = origin
        if kind == "sqlite":
            self.db: Any = sqlite3.connect(location, isolation_level=None)
            self.r, self.c, self.h = "records", "checkpoints", "head"
            self.o, self.ho = "", ""
        else:
            import psycopg

            self.db = psycopg.connect(location, autocommit=True)
            self.r, self.c, self.h = (
                "stockade_audit_records",
                "stockade_audit_checkpoints",
                "stockade_audit_heads",
            )
            self.o = " AND origin = ?"
            self.ho = " WHERE origin = ?"

    def q(self, sql: str, *params: Any) -> list[Any]:
        if self.kind == "sqlite":
            sql = sql.replace(" AND origin = ?", "").replace(" WHERE origin = ?", "")
            params = tuple(p for p in params if p is not _ORIGIN)
            cur = self.db.execute(sql, params)
        else:
            params = tuple(self.origin if p is _ORIGIN else p for p in params)
            cur = self.db.execute(sql.replace("?", "%s"), params)
        try:
            return list(cur.fetchall())
        except Exception:
            return []

    def record(self, seq: int) -> tuple[str, bytes]:
        rows = self.q(f"SELECT record, chain FROM {self.r} WHERE seq = ?{self.o}", seq, _ORIGIN)
        return str(rows[0][0]), bytes(rows[0][1])

    def apply(self, step: dict[str, Any]) -> None:
        ((op, a),) = step.items()
        r, o = self.r, self.o
        if op == "change":
            text, _ = self.record(a["seq"])
            assert a["find"] in text
            self.q(
                f"UPDATE {r} SET record = ? WHERE seq = ?{o}",
                text.replace(a["find"], a["replace"]),
                a["seq"],
                _ORIGIN,
            )
        elif op == "delete":
            self.q(f"DELETE FROM {r} WHERE seq = ?{o}", a["seq"], _ORIGIN)
        elif op == "delete_from":
            self.q(f"DELETE FROM {r} WHERE seq >= ?{o}", a["seq"], _ORIGIN)
        elif op == "swap":
            x, y = self.record(a["seq"]), self.record(a["with"])
            for seq, (text, chain) in ((a["seq"], y), (a["with"], x)):
                self.q(
                    f"UPDATE {r} SET record = ?, chain = ? WHERE seq = ?{o}",
                    text,
                    chain,
                    seq,
                    _ORIGIN,
                )
        elif op == "shift_up":
            self.q(f"UPDATE {r} SET seq = -(seq + 1) WHERE seq >= ?{o}", a["seq"], _ORIGIN)
            self.q(f"UPDATE {r} SET seq = -seq WHERE seq < 0{o}", _ORIGIN)
        elif op == "insert":
            text, chain = self.record(a["copy_of"])
            text = text.replace(a["find"], a["replace"])
            if self.kind == "sqlite":
                self.q(
                    f"INSERT INTO {r} (seq, record, chain) VALUES (?, ?, ?)", a["seq"], text, chain
                )
            else:
                self.q(
                    f"INSERT INTO {r} (origin, seq, record, chain) VALUES (?, ?, ?, ?)",
                    self.origin,
                    a["seq"],
                    text,
                    chain,
                )
        elif op == "rechain":
            rows = self.q(f"SELECT seq, record FROM {r} WHERE 1 = 1{o} ORDER BY seq", _ORIGIN)
            chains = chain_of([str(t).encode() for _, t in rows])
            for (seq, _), chain in zip(rows, chains, strict=False):
                self.q(f"UPDATE {r} SET chain = ? WHERE seq = ?{o}", chain, seq, _ORIGIN)
        elif op == "set_head":
            self.q(f"UPDATE {self.h} SET size = ?{self.ho}", a["size"], _ORIGIN)
        elif op == "drop_checkpoints_above":
            self.q(f"DELETE FROM {self.c} WHERE size > ?{o}", a["size"], _ORIGIN)
        elif op == "change_checkpoint_root":
            self.q(
                f"UPDATE {self.c} SET root = ? WHERE size = ?{o}", b"\x07" * 32, a["size"], _ORIGIN
            )
        else:  # pragma: no cover - a typo in the corpus
            raise AssertionError(f"unknown step {op}")

    def close(self) -> None:
        self.db.close()


_ORIGIN = object()


@pytest.fixture(params=["sqlite", "postgres"])
def signed_log(
    request: pytest.FixtureRequest, tmp_path: Path, keys: KeyPaths, origin: str
) -> tuple[str, str, str, Path]:
    kind = request.param
    location = str(tmp_path / "audit.db") if kind == "sqlite" else request.getfixturevalue("pg_db")
    mirror = tmp_path / "mirror.jsonl"
    log = open_log(
        make_store(kind, location, origin), keys, checkpoint_every=10, mirror=Mirror(file=mirror)
    )
    for i in range(40):
        log.append(event(i))
    log.close()  # closing signs size 40 again (same root)
    return kind, location, origin, mirror


def _verify(
    kind: str, location: str, origin: str, keys: KeyPaths, mirror: Path | None, strict: bool = False
) -> None:
    store = make_store(kind, location, origin)
    try:
        verify_log(
            store,
            load_public_key(keys.public),
            mirror=read_mirror(mirror) if mirror else (),
            strict=strict,
        )
    finally:
        store.close()


def test_untouched_log_verifies(signed_log: tuple[str, str, str, Path], keys: KeyPaths) -> None:
    kind, location, origin, mirror = signed_log
    _verify(kind, location, origin, keys, mirror, strict=True)


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_tamper_is_caught(
    case: dict[str, Any], signed_log: tuple[str, str, str, Path], keys: KeyPaths
) -> None:
    kind, location, origin, mirror = signed_log
    t = Tamperer(kind, location, origin)
    try:
        for step in case["steps"]:
            t.apply(step)
    finally:
        t.close()
    with pytest.raises(AuditIntegrityError) as info:
        _verify(
            kind,
            location,
            origin,
            keys,
            mirror if case.get("mirror") else None,
            strict=bool(case.get("strict")),
        )
    assert (info.value.kind, info.value.seq) == (case["expect"]["kind"], case["expect"]["seq"]), (
        str(info.value)
    )


def test_cut_with_its_checkpoints_needs_the_mirror(
    signed_log: tuple[str, str, str, Path], keys: KeyPaths
) -> None:
    """Without the mirror, a log cut back together with its checkpoints and head looks whole:
    that is what the mirror is for (documented in docs/audit.md)."""
    kind, location, origin, mirror = signed_log
    t = Tamperer(kind, location, origin)
    for step in (
        {"delete_from": {"seq": 20}},
        {"set_head": {"size": 20}},
        {"drop_checkpoints_above": {"size": 20}},
    ):
        t.apply(step)
    t.close()
    _verify(kind, location, origin, keys, None)
    with pytest.raises(AuditIntegrityError) as info:
        _verify(kind, location, origin, keys, mirror)
    assert info.value.kind == "missing"


def test_another_origin_is_untouched_by_tampering(pg_db: str, keys: KeyPaths, origin: str) -> None:
    """PostgreSQL: origins are separate logs in the same tables."""
    other = origin + "-b"
    for o in (origin, other):
        log = open_log(make_store("postgres", pg_db, o), keys, checkpoint_every=5)
        for i in range(12):
            log.append(event(i))
        log.close()
    t = Tamperer("postgres", pg_db, origin)
    t.apply({"delete": {"seq": 3}})
    t.close()
    with pytest.raises(AuditIntegrityError):
        _verify("postgres", pg_db, origin, keys, None)
    _verify("postgres", pg_db, other, keys, None, strict=True)


LEGIT = yaml.safe_load(
    (Path(__file__).resolve().parents[1] / "attacks" / "audit" / "legit.yaml").read_text()
)


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
@pytest.mark.parametrize("case", LEGIT, ids=[c["name"] for c in LEGIT])
def test_legitimate_history_verifies(
    case: dict[str, Any],
    kind: str,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    keys: KeyPaths,
    origin: str,
) -> None:
    location = str(tmp_path / "audit.db") if kind == "sqlite" else request.getfixturevalue("pg_db")
    mirror = tmp_path / "mirror.jsonl"
    log = None
    n = 0
    for step in case["steps"]:
        ((op, arg),) = step.items()
        if op == "open":
            log = open_log(
                make_store(kind, location, origin),
                keys,
                checkpoint_every=10,
                mirror=Mirror(file=mirror),
            )
        elif op == "append":
            assert log is not None
            for _ in range(arg):
                assert log.append(event(n)) == n
                n += 1
        elif op == "checkpoint":
            assert log is not None
            log.checkpoint()
        elif op == "crash":
            assert log is not None
            crash(log)  # the process is gone: no closing checkpoint
            log = None
        elif op == "close":
            assert log is not None
            log.close()
            log = None
        elif op == "torn_mirror":
            with mirror.open("a") as f:
                f.write('{"v":1,"origin":"')
    _verify(
        kind,
        location,
        origin,
        keys,
        mirror if mirror.exists() else None,
        strict=bool(case.get("strict")),
    )


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_each_layer_alone(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path, keys: KeyPaths, origin: str
) -> None:
    """The chain hash alone guards the unsigned tail; the signed root alone guards the rest
    once a forger rewrites the chain (the `-and-rechain` cases above)."""
    location = str(tmp_path / "audit.db") if kind == "sqlite" else request.getfixturevalue("pg_db")
    log = open_log(make_store(kind, location, origin), keys, checkpoint_every=10)
    for i in range(25):
        log.append(event(i))
    crash(log)  # the writer dies: records 20..24 are not signed yet
    t = Tamperer(kind, location, origin)
    t.apply({"change": {"seq": 22, "find": "notes/22.md", "replace": "notes/ok.md"}})
    with pytest.raises(AuditIntegrityError) as info:
        _verify(kind, location, origin, keys, None)
    assert (info.value.kind, info.value.seq) == ("invalid", 22)  # the chain, no signature yet
    t.apply({"rechain": {}})
    t.close()
    _verify(kind, location, origin, keys, None)  # nothing signed covers it: only a warning
    with pytest.raises(AuditIntegrityError) as info:
        _verify(kind, location, origin, keys, None, strict=True)
    assert (info.value.kind, info.value.seq) == ("missing", 20)
