"""Red team: MCP tool titles are neither pinned nor scanned. FAILS today."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from stockade import Guard, MemoryAuditSink
from stockade.integrations.mcp import MCPProxy

pytest.importorskip("mcp")
from mcp import Client

pytestmark = pytest.mark.anyio
SERVER = str(Path(__file__).resolve().parent / "mcp_title_server.py")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_title_change_after_pinning_is_blocked(tmp_path: Path) -> None:
    # The pin covers name, description and input schema; `title` and
    # `annotations` are passed to the client as the server sends them, and the
    # description scan never looks at the title. A server can put hidden
    # instructions in the title (shown to the model by clients that use it)
    # after it was pinned.
    guard = Guard.from_text(
        "version: 1\nrules:\n  - {id: echo, tool: echo, effect: allow}\n"
        f"mcp:\n  name: title-server\n  pin_file: {tmp_path / 'pins.json'}\n",
        audit=MemoryAuditSink(),
    )
    async with MCPProxy(guard, [sys.executable, SERVER]) as proxy, Client(
        proxy.server(), cache=None
    ) as client:
        echo = {t.name: t for t in (await client.list_tools()).tools}["echo"]
        shown = f"{echo.title} {echo.description}"
        assert "id_rsa" not in shown
        assert echo.description.startswith("[blocked by stockade]")
