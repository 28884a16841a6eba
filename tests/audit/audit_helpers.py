"""Helpers shared by the audit tests (and run as a script by the process tests)."""

from __future__ import annotations

import hashlib
import sys
import time
from pathlib import Path
from typing import Any

from stockade.audit.keys import KeyPaths, create_keys, load_hmac_key, load_signing_key
from stockade.audit.log import AuditLog
from stockade.audit.store import Store
from stockade.model import AuditEvent, Decision, Effect, Finding, Label

HERE = Path(__file__).resolve().parent


def event(i: int, *, session: str = "s1", tool: str = "fs", call_id: str = "") -> AuditEvent:
    """A realistic decision event; every fifth is a deny."""
    deny = i % 5 == 4
    decision = (
        Decision.deny("fs-secrets", "secrets are off limits")
        if deny
        else Decision(Effect.ALLOW, "notes-read", "the assistant may read notes")
    )
    return AuditEvent(
        kind="decision",
        time=time.time(),
        session=session,
        principal="agent-1",
        call_id=call_id or f"call-{i}",
        tool=tool,
        action="read",
        args={"path": f"notes/{i}.md", "token": "<SECRET:1>"},
        decision=decision,
        labels=(Label("fs:notes"),),
        findings=(Finding("secrets", "api-key", 0, 10, masked=True, where="args"),),
        duration_ms=0.4,
        raw_args={"path": f"notes/{i}.md", "token": "sk-live-RAWSECRET"},
    )


def keys_in(folder: Path) -> KeyPaths:
    """Create (or reuse) keys in ``folder``."""
    paths = KeyPaths.in_dir(folder)
    create_keys(paths)
    return paths


def open_log(store: Store, keys: KeyPaths, **kwargs: Any) -> AuditLog:
    """An AuditLog over ``store`` with the keys in ``keys``; no timer unless asked."""
    kwargs.setdefault("checkpoint_interval", 0)
    return AuditLog(
        store,
        signing_key=load_signing_key(keys.signing),
        hmac_key=load_hmac_key(keys.hmac),
        **kwargs,
    )


def crash(log: AuditLog) -> None:
    """The writer's process dies: no closing checkpoint, now or at exit."""
    import atexit

    atexit.unregister(log.close)
    log._closed = True
    log.store.close()


def make_store(kind: str, location: str, origin: str) -> Store:
    """A writable store of either kind."""
    if kind == "sqlite":
        from stockade.audit.store_sqlite import SQLiteStore

        return SQLiteStore(Path(location), origin)
    from stockade.audit.store_postgres import PostgresStore

    return PostgresStore(location, origin)


def chain_of(records: list[bytes]) -> list[bytes]:
    """The chain hashes of a list of records (what a forger would recompute)."""
    from stockade.audit.merkle import leaf_hash

    out, chain = [], bytes(32)
    for r in records:
        chain = hashlib.sha256(chain + leaf_hash(r)).digest()
        out.append(chain)
    return out


def _main(argv: list[str]) -> None:
    """``appender KIND LOCATION ORIGIN KEYS COUNT TAG [THREADS]``: append and print each seq.

    COUNT 0 means forever (until killed). Each committed append prints
    ``seq call_id`` and flushes, so the parent knows what was committed.
    """
    kind, location, origin, keys_dir, count, tag = argv[:6]
    threads = int(argv[6]) if len(argv) > 6 else 1
    log = open_log(
        make_store(kind, location, origin), KeyPaths.in_dir(Path(keys_dir)), checkpoint_every=7
    )
    n = int(count)
    import os
    import threading

    go = os.environ.get("STOCKADE_TEST_GO")
    if go:  # a start line for several processes: say ready, wait for the file
        sys.stdout.write("ready\n")
        sys.stdout.flush()
        while not os.path.exists(go):
            time.sleep(0.005)

    out_lock = threading.Lock()

    def work(t: int) -> None:
        i = 0
        while n == 0 or i < n:
            cid = f"{tag}-{t}-{i}"
            seq = log.append(event(i, call_id=cid))
            with out_lock:
                sys.stdout.write(f"{seq} {cid}\n")
                sys.stdout.flush()
            i += 1

    workers = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    if not os.environ.get("STOCKADE_TEST_NO_CLOSE"):
        log.close()


if __name__ == "__main__":
    _main(sys.argv[1:])
