"""Red team: the SQL tool's error messages carry row values past the result stage."""

from __future__ import annotations

import pytest
from tools.sql_support import SQLEnv, pg_env

from stockade.errors import SQLError, StockadeError
from stockade.guard import Guard
from stockade.policy import Policy
from stockade.stages import MemoryAuditSink, NoFlow, NoScanner

__all__ = ["pg_env"]

pytestmark = pytest.mark.postgres


def test_pg_error_message_does_not_echo_row_values(pg_env: SQLEnv) -> None:
    # `customers` is confidential; `name` is an allowed column. A cast that fails
    # makes PostgreSQL quote the value in double quotes, which the literal
    # scrubber (single quotes only) keeps: the value reaches the model in the
    # exception text, past the result scanner, the masking and the labels.
    guard = Guard(Policy.from_text(pg_env.policy_text()), audit=MemoryAuditSink(),
                  scanner=NoScanner(), flow=NoFlow())
    try:
        with pytest.raises(StockadeError) as info:
            guard.call("sql", "query", {"sql": "SELECT CAST(name AS integer) FROM customers WHERE id = 1"})
        assert "Ada" not in str(info.value)
    finally:
        guard.close()
