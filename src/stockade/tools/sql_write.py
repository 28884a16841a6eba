"""The SQL tool's write mode (placeholder until write mode lands)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from stockade.errors import SQLError
from stockade.model import Output, ToolCall

if TYPE_CHECKING:
    from stockade.tools.sql import DatabaseConfig, SQLTool
    from stockade.tools.sql_check import Analysis

__all__ = ["run_write"]


def run_write(tool: SQLTool, db: DatabaseConfig, analysis: Analysis, call: ToolCall) -> Output:
    """Run one checked write."""
    raise SQLError("write mode is not available yet")
