"""Red team R17: restored (real) values must not reach the audit record through
what a tool echoes of its arguments (meta, label sources)."""

from __future__ import annotations

import json
from pathlib import Path

from stockade import Guard
from stockade.stages import MemoryAuditSink

EMAIL = "ada.lovelace@example.com"

POLICY = """
version: 1
rules:
  - {id: any, tool: [lookup, echo, rows], effect: allow}
scan: {model: false}
"""


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
    # the pseudonym takes the real value's place, so the record still says where
    assert outcome.extra["path"] == f"notes/{token}.txt"
    assert [label.source for label in outcome.labels] == [f"fs:notes/{token}.txt"]
    # and the file really was written under the real name
    assert (tmp_path / "root" / "notes" / f"{EMAIL}.txt").read_text() == f"mail {EMAIL}"
