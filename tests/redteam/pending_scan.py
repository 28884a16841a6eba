"""Red team: masking and pseudonyms across the scan part's seams.

Each test asserts the secure behaviour and FAILS today (see tests/redteam/README.md).
"""

from __future__ import annotations

import json
from pathlib import Path

from stockade import Guard
from stockade.stages import MemoryAuditSink

GH = "ghp_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8"  # GitHub token shape (fake)
EMAIL = "ada.lovelace@example.com"

POLICY = """
version: 1
rules:
  - {id: any, tool: [lookup, echo, rows], effect: allow}
scan: {model: false}
"""


def _guard(extra: str = "", audit: MemoryAuditSink | None = None) -> Guard:
    return Guard.from_text(POLICY + extra, audit=audit or MemoryAuditSink())


def test_restored_value_does_not_reach_the_audit_through_meta_or_labels(tmp_path: Path) -> None:
    # The audit keeps the pseudonym view of the arguments, but the outcome
    # record's `extra` is the tool's meta (fs: the real canonical path) and its
    # labels name the real path (`fs:notes/ada.lovelace@example.com.txt`).
    (tmp_path / "root" / "notes").mkdir(parents=True)
    audit = MemoryAuditSink()
    guard = Guard.from_text(
        POLICY
        + f"fs:\n  root: {tmp_path / 'root'}\n"
        + "  allow: {read: ['**'], write: ['notes/**']}\n"
        + f"  journal: {{path: {tmp_path / 'journal'}}}\n",
        audit=audit,
    )

    @guard.tool("lookup")
    def lookup() -> str:
        return f"customer: {EMAIL}"

    session = guard.session("s1")
    token = guard.call("lookup", "call", {}, session=session).value.split(": ", 1)[1]
    guard.call(
        "fs", "write", {"path": f"notes/{token}.txt", "content": f"mail {token}"}, session=session
    )
    outcome = audit.events[-1]
    assert outcome.kind == "outcome"
    assert EMAIL not in json.dumps(outcome.args)  # control: the arguments are masked
    assert EMAIL not in json.dumps(outcome.extra, default=str)
    assert all(EMAIL not in label.source for label in outcome.labels)
