"""Audit scene: the demo checks its own log, shows a forged edit being caught, writes a report."""

from __future__ import annotations

import sqlite3
import tempfile
from pathlib import Path

from stockade.audit import AuditConfig, AuditLog, open_store
from stockade.audit.checkpoint import read_mirror
from stockade.audit.keys import load_public_key
from stockade.audit.report import render_report
from stockade.audit.store import Query
from stockade.audit.store_sqlite import SQLiteStore
from stockade.audit.verify import VerifyReport, verify_log
from stockade.demo import Demo


def _forge_copy(config: AuditConfig, target: Path) -> int:
    """Copy the log and turn its first denial into an allow, as an insider with SQL access would."""
    assert config.path is not None
    src = sqlite3.connect(config.path)
    dst = sqlite3.connect(target)
    try:
        src.backup(dst)
        row = dst.execute(
            "SELECT seq, record FROM records WHERE decision = 'deny' ORDER BY seq LIMIT 1"
        ).fetchone()
        seq, record = int(row[0]), str(row[1])
        dst.execute(
            "UPDATE records SET record = ? WHERE seq = ?",
            (record.replace('"decision":"deny"', '"decision":"allow"'), seq),
        )
        dst.commit()
    finally:
        src.close()
        dst.close()
    return seq


def run(demo: Demo) -> None:
    """Play the scene."""
    sink = demo.guard.audit
    config = demo.guard.policy.section("audit")
    if not isinstance(sink, AuditLog) or not isinstance(config, AuditConfig):
        return
    demo.scene("audit: every decision above is in a signed, verifiable log")
    sink.checkpoint()  # sign everything so far (the log also signs every 50 records and 5s)
    public = load_public_key(config.key_paths.public)
    demo.say(f"log: {config.path} (origin `{config.origin}`), public key {config.key_paths.public}")

    def verify() -> VerifyReport:
        store = open_store(config, readonly=True)
        try:
            mirror = read_mirror(config.mirror_file) if config.mirror_file else []
            return verify_log(store, public, mirror=mirror)
        finally:
            store.close()

    report = demo.attempt("stockade audit verify", verify, expect="allow", show=_describe)
    with tempfile.TemporaryDirectory(prefix="stockade-forged-") as tmp:
        forged = Path(tmp) / "forged.db"
        seq = _forge_copy(config, forged)
        demo.injected(f"an insider edits record {seq} in a copy of the log: deny -> allow")

        def verify_forged() -> VerifyReport:
            store = SQLiteStore(forged, config.origin, readonly=True)
            try:
                return verify_log(store, public)
            finally:
                store.close()

        demo.attempt("stockade audit verify (the edited copy)", verify_forged, expect="error")
    html = demo.state["root"] / "state" / "audit-report.html"
    store = open_store(config, readonly=True)
    try:
        verified = f"verified: {report.records} records" if report else "not verified"
        page = render_report(
            store.query(Query()),
            origin=store.origin,
            location=str(config.path),
            verified=verified,
            verified_ok=report is not None,
        )
    finally:
        store.close()
    html.write_text(page, encoding="utf-8")
    demo.say(f"HTML report: {html}")
    demo.say("(the demo folder is removed at the end; keep it with `stockade demo --keep DIR`)")


def _describe(report: VerifyReport) -> str:
    return (
        f"ok: {report.records} records, {report.checkpoints} signed checkpoints, "
        f"root {report.root.hex()[:16]}"
    )
