"""Red team R16 (fixed): the built-in deny list also covers MCP tools' path arguments."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from stockade import Guard, MemoryAuditSink
from stockade.integrations.mcp import MCPProxy

pytest.importorskip("mcp")
from mcp import Client

pytestmark = pytest.mark.anyio
SERVER = str(Path(__file__).resolve().parents[1] / "integrations" / "mcp_test_server.py")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_mcp_read_of_a_secret_file_is_denied(tmp_path: Path) -> None:
    # R7 made the exec tool apply the fs deny lists to paths in argv; a
    # filesystem-like MCP server gets canonical `path` arguments
    # (mcp.path_args) but no deny list: with a rule allowing `read_file`
    # on any path, `.env` and `.ssh/id_rsa` are read.
    root = tmp_path / "root"
    root.mkdir()
    (root / ".env").write_text("API_KEY=hunter2-redteam\n")
    (root / "notes.md").write_text("hello\n")
    guard = Guard.from_text(
        "version: 1\nrules:\n  - {id: read, tool: read_file, effect: allow}\n"
        f"mcp:\n  name: rt-fs\n  pin_file: {tmp_path / 'pins.json'}\n",
        audit=MemoryAuditSink(),
    )
    async with (
        MCPProxy(guard, [sys.executable, SERVER, str(root)]) as proxy,
        Client(proxy.server(), cache=None) as client,
    ):
        ok = await client.call_tool("read_file", {"path": "notes.md"})
        assert "hello" in ok.content[0].text  # type: ignore[union-attr]  # control
        res = await client.call_tool("read_file", {"path": ".env"})
        assert "hunter2-redteam" not in res.content[0].text  # type: ignore[union-attr]
