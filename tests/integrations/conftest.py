"""Fixtures for the integration tests: the exfiltration scenario on a real upload server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from exfil_scenario import Sink, load, run_sink, write_files


@pytest.fixture
def sink() -> Iterator[Sink]:
    """A real local HTTP server that records uploads."""
    with run_sink() as s:
        yield s


@pytest.fixture
def scenario(sink: Sink, workspace: Path) -> dict[str, Any]:
    """The scenario data, its files written into the workspace."""
    data = load(sink.url)
    write_files(workspace, data["files"])
    return data


@pytest.fixture
def anyio_backend() -> str:
    """Async tests run on asyncio (the anyio pytest plugin)."""
    return "asyncio"
