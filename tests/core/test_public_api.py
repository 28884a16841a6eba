"""The public namespace is small and pinned: a change here is a deliberate API change."""

from __future__ import annotations

import stockade

EXPECTED = [
    "Approval",
    "ApprovalError",
    "ApprovalRequest",
    "ApprovalRequired",
    "AuditError",
    "AuditIntegrityError",
    "Capability",
    "Confidentiality",
    "ConfigurationError",
    "Context",
    "Decision",
    "Denied",
    "Effect",
    "ExecError",
    "FSError",
    "Finding",
    "Guard",
    "GuardedTool",
    "HTTPError",
    "IntegrationError",
    "Integrity",
    "JournalError",
    "Label",
    "MemoryAuditSink",
    "MemorySessionStore",
    "Output",
    "Policy",
    "PolicyError",
    "PolicyProblem",
    "RateLimited",
    "RedisSessionStore",
    "Result",
    "SQLError",
    "SandboxUnavailable",
    "ScanError",
    "Session",
    "SessionStore",
    "StockadeError",
    "ToolCall",
    "ToolError",
    "__version__",
]


def test_all_is_pinned_and_sorted() -> None:
    assert stockade.__all__ == EXPECTED
    assert sorted(stockade.__all__, key=str.lower) == sorted(EXPECTED, key=str.lower)


def test_every_public_name_exists_and_has_a_docstring() -> None:
    for name in stockade.__all__:
        obj = getattr(stockade, name)
        if name != "__version__":
            assert obj.__doc__, name


def test_every_error_derives_from_the_root() -> None:
    for name in stockade.__all__:
        obj = getattr(stockade, name)
        if isinstance(obj, type) and issubclass(obj, Exception):
            assert issubclass(obj, stockade.StockadeError), name
