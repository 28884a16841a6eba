"""Threads and processes on one log keep one gap-free sequence; kill -9 loses nothing committed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from audit_helpers import HERE, event, make_store, open_log

from stockade.audit.keys import KeyPaths, load_public_key
from stockade.audit.store import Query
from stockade.audit.verify import verify_log

APPENDER = str(HERE / "audit_helpers.py")


def _spawn(
    kind: str,
    location: str,
    origin: str,
    keys: KeyPaths,
    count: int,
    tag: str,
    threads: int = 1,
    go: Path | None = None,
) -> subprocess.Popen[str]:
    env = dict(os.environ)
    if go is not None:
        env["STOCKADE_TEST_GO"] = str(go)
    return subprocess.Popen(
        [
            sys.executable,
            APPENDER,
            kind,
            location,
            origin,
            str(keys.signing.parent),
            str(count),
            tag,
            str(threads),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def _location(kind: str, tmp_path: Path, pg_url: str | None) -> str:
    return str(tmp_path / "audit.db") if kind == "sqlite" else str(pg_url)


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str]:
    if request.param == "postgres":
        return "postgres", request.getfixturevalue("pg_db")
    return "sqlite", str(tmp_path / "audit.db")


def test_eight_threads_and_two_processes(
    backend: tuple[str, str], keys: KeyPaths, origin: str, tmp_path: Path
) -> None:
    kind, location = backend
    log = open_log(make_store(kind, location, origin), keys, checkpoint_every=25)
    go = tmp_path / "go"
    procs = [_spawn(kind, location, origin, keys, 60, f"p{p}", go=go) for p in range(2)]
    for p in procs:  # every writer is ready: all of them start at once
        assert p.stdout is not None
        assert p.stdout.readline() == "ready\n"
    seen: list[int] = []
    lock = threading.Lock()

    def work(t: int) -> None:
        for i in range(30):
            seq = log.append(event(i, call_id=f"t{t}-{i}"))
            with lock:
                seen.append(seq)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    go.touch()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        seen.extend(int(line.split()[0]) for line in out.splitlines())
    log.close()
    total = 8 * 30 + 2 * 60
    assert sorted(seen) == list(range(total))  # one sequence, no gap, no duplicate
    reader = make_store(kind, location, origin)
    report = verify_log(reader, load_public_key(keys.public), strict=True)
    assert report.records == total
    ids = {r.parsed()["call_id"] for r in reader.query(Query())}
    assert len(ids) == total
    reader.close()


def test_kill_9_loses_nothing_committed(
    backend: tuple[str, str], keys: KeyPaths, origin: str
) -> None:
    # Twelve writers, each killed with SIGKILL while appending from two
    # threads, after a different number of reported commits (so the kill
    # lands in a different phase each time: encoding, committing, signing a
    # checkpoint); every record a writer reported as stored must be there.
    kind, location = backend
    committed: dict[int, str] = {}
    for round_ in range(12):
        proc = _spawn(kind, location, origin, keys, 0, f"r{round_}", threads=2)
        assert proc.stdout is not None
        target = 7 + 13 * round_ % 47
        got = 0
        while got < target:
            line = proc.stdout.readline()
            assert line, proc.stderr.read() if proc.stderr else ""
            seq, cid = line.split()
            committed[int(seq)] = cid
            got += 1
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        if proc.stderr is not None:
            proc.stderr.close()
    reader = make_store(kind, location, origin)
    report = verify_log(reader, load_public_key(keys.public))  # an unsigned tail is allowed
    stored = {r.seq: r.parsed()["call_id"] for r in reader.query(Query())}
    for seq, cid in committed.items():
        assert stored[seq] == cid
    assert report.records == len(stored) >= len(committed)
    reader.close()
    # a new writer goes on from there, and its close signs everything
    log = open_log(make_store(kind, location, origin), keys)
    assert log.append(event(0)) == report.records
    log.close()
    reader = make_store(kind, location, origin)
    verify_log(reader, load_public_key(keys.public), strict=True)
    reader.close()


def test_a_process_that_never_closes_still_signs_its_tail(
    tmp_path: Path, keys: KeyPaths, origin: str
) -> None:
    location = str(tmp_path / "audit.db")
    done = subprocess.run(
        [sys.executable, APPENDER, "sqlite", location, origin, str(keys.signing.parent), "5", "x"],
        capture_output=True,
        text=True,
        env={**os.environ, "STOCKADE_TEST_NO_CLOSE": "1"},
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    reader = make_store("sqlite", location, origin)
    assert verify_log(reader, load_public_key(keys.public), strict=True).records == 5
    reader.close()
