"""Signed checkpoints, mirrors, and the timer that signs even when idle."""

from __future__ import annotations

import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
from audit_helpers import event, open_log
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from stockade.audit.checkpoint import Checkpoint, Mirror, read_mirror
from stockade.audit.keys import KeyPaths
from stockade.audit.store_sqlite import SQLiteStore
from stockade.errors import AuditError, AuditIntegrityError


def _cp(key: Ed25519PrivateKey, size: int = 5) -> Checkpoint:
    return Checkpoint.sign(key, origin="o", size=size, root=b"r" * 32, time=1700000000.5)


def test_sign_and_verify() -> None:
    key = Ed25519PrivateKey.generate()
    cp = _cp(key)
    cp.verify(key.public_key())
    assert cp.body().startswith(b"stockade-audit-checkpoint/v1\n")
    for forged in (
        replace(cp, size=6),
        replace(cp, root=b"x" * 32),
        replace(cp, origin="p"),
        replace(cp, time=cp.time + 1),
    ):
        with pytest.raises(AuditIntegrityError) as info:
            forged.verify(key.public_key())
        assert info.value.kind == "invalid"
    with pytest.raises(AuditIntegrityError):
        cp.verify(Ed25519PrivateKey.generate().public_key())


def test_line_round_trip_and_malformed() -> None:
    cp = _cp(Ed25519PrivateKey.generate())
    assert Checkpoint.from_dict(json.loads(cp.to_line())) == cp
    with pytest.raises(AuditIntegrityError, match="malformed"):
        Checkpoint.from_dict({"size": 1})


def test_mirror_file_and_torn_last_line(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    target = tmp_path / "mirror.jsonl"
    m = Mirror(file=target)
    m.write(_cp(key, 1))
    m.write(_cp(key, 2))
    with target.open("a") as f:
        f.write('{"v":1,"origin":"o","si')  # a crash in the middle of a write
    assert [c.size for c in read_mirror(target)] == [1, 2]
    target.write_text("garbage\n" + _cp(key, 1).to_line() + "\n")
    with pytest.raises(AuditIntegrityError, match="line 1"):
        read_mirror(target)
    with pytest.raises(AuditError):
        read_mirror(tmp_path / "none.jsonl")
    with pytest.raises(AuditError, match="cannot write"):
        Mirror(file=tmp_path / "no" / "such" / "dir.jsonl").write(_cp(key))


def test_mirror_command(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    out = tmp_path / "copied.jsonl"
    script = f"import sys; open({str(out)!r}, 'a').write(sys.stdin.read())"
    Mirror(command=[sys.executable, "-c", script]).write(_cp(key, 3))
    assert read_mirror(out)[0].size == 3
    with pytest.raises(AuditError, match="exited with 3"):
        Mirror(command=[sys.executable, "-c", "raise SystemExit(3)"]).write(_cp(key))
    with pytest.raises(AuditError, match="command failed"):
        Mirror(command=[str(tmp_path / "no-such-program")]).write(_cp(key))
    with pytest.raises(AuditError, match="exactly one"):
        Mirror()


def _wait_for(predicate: object, limit: float = 20.0) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.02)
    raise AssertionError("condition not reached")


def test_timer_signs_when_idle_and_stops_on_close(tmp_path: Path, keys: KeyPaths) -> None:
    store = SQLiteStore(tmp_path / "a.db", "o")
    mirror = tmp_path / "m.jsonl"
    log = open_log(store, keys, checkpoint_interval=0.05, mirror=Mirror(file=mirror))
    log.append(event(0))
    reader = SQLiteStore(tmp_path / "a.db", "o", readonly=True)
    _wait_for(lambda: mirror.exists() and len(read_mirror(mirror)) >= 3)  # idle meanwhile
    mirrored = read_mirror(mirror)
    assert {c.size for c in mirrored} == {1}
    assert len({c.time for c in mirrored}) == len(mirrored)  # each a fresh statement
    # the store keeps only the newest restatement of an unchanged log
    assert len(reader.checkpoints()) == 1
    assert reader.checkpoints()[0].time >= mirrored[1].time
    assert log._timer is not None and log._timer.is_alive()
    log.close()
    assert not log._timer.is_alive()
    settled = len(read_mirror(mirror))
    time.sleep(0.15)
    assert len(read_mirror(mirror)) == settled  # no checkpoint after close
    assert reader.checkpoints()[-1].time == read_mirror(mirror)[-1].time
    with pytest.raises(AuditError, match="closed"):
        log.append(event(1))
    log.close()  # twice is fine
    reader.close()


def test_every_n_entries(tmp_path: Path, keys: KeyPaths) -> None:
    log = open_log(SQLiteStore(tmp_path / "a.db", "o"), keys, checkpoint_every=4)
    for i in range(10):
        log.append(event(i))
    sizes = [c.size for c in log.store.checkpoints()]
    assert sizes == [4, 8]
    log.close()
    reader = SQLiteStore(tmp_path / "a.db", "o", readonly=True)
    assert [c.size for c in reader.checkpoints()] == [4, 8, 10]  # close signs the tail
    reader.close()


def test_failing_mirror_does_not_stop_the_log(tmp_path: Path, keys: KeyPaths) -> None:
    bad = Mirror(command=[sys.executable, "-c", "raise SystemExit(1)"])
    log = open_log(SQLiteStore(tmp_path / "a.db", "o"), keys, checkpoint_every=1, mirror=bad)
    assert log.append(event(0)) == 0
    log.close()
