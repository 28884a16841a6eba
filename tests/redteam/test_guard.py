"""Red team regression: the guard pipeline after the tool ran (R12, fixed in b4cb8e1)."""

from __future__ import annotations

import pytest

from stockade import Guard, MemoryAuditSink
from stockade.errors import StockadeError
from stockade.session import MemorySessionStore


class _StoreDownAfterRun(MemorySessionStore):
    """A session store (Redis in production) that fails when the byte budget is counted."""

    def add(self, key: str, amount: int) -> int:
        if key.startswith("bytes:"):
            raise ConnectionError("store down")
        return super().add(key, amount)


def test_store_failure_after_the_tool_ran_is_a_stockade_error_and_audited() -> None:
    # Guard._finish counts the byte budget (`self.sessions.add`) outside any
    # stage: a store error there escapes as a foreign exception (the
    # integrations catch only Denied/ApprovalRequired/ToolError, so a batch of
    # tool calls dies half done) and the outcome record of a call that did run
    # is never written.
    audit = MemoryAuditSink()
    guard = Guard.from_text(
        "version: 1\nbudgets: {bytes: 1MB}\nrules:\n  - {id: t, tool: t, effect: allow}\n",
        sessions=_StoreDownAfterRun(),
        audit=audit,
    )
    ran: list[int] = []

    @guard.tool("t")
    def t() -> str:
        ran.append(1)
        return "x"

    with pytest.raises(StockadeError):
        guard.call("t", "call", {})
    assert ran == [1]
    assert [e.kind for e in audit.events] == ["decision", "outcome"]
