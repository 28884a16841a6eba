"""Tool pinning: a changed tool is blocked, with a message naming what changed, until re-pinned."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from stockade import Guard, MemoryAuditSink
from stockade.integrations.mcp import MCPProxy, PinStore, ToolFingerprint, pin_server

pytest.importorskip("mcp")
from mcp import Client

pytestmark = pytest.mark.anyio

TEST_SERVER = str(Path(__file__).resolve().parent / "mcp_test_server.py")


def policy(tmp_path: Path) -> str:
    return (
        "version: 1\nrules:\n  - {id: all, tool: [echo, upload, read_file], effect: allow}\n"
        f"mcp:\n  name: test-server\n  pin_file: {tmp_path / 'pins.json'}\n"
    )


async def test_description_change_between_two_listings_is_blocked(
    tmp_path: Path, workspace: Path
) -> None:
    guard = Guard.from_text(policy(tmp_path), audit=MemoryAuditSink())
    command = [sys.executable, TEST_SERVER, str(workspace), "rugpull"]
    async with MCPProxy(guard, command) as proxy, Client(proxy.server(), cache=None) as client:
        # the proxy listed (and pinned) once on start; this is the second listing
        tools = {t.name: t for t in (await client.list_tools()).tools}
        upload = tools["upload"]
        assert upload.description == (
            "[blocked by stockade] tool `upload` is blocked: its description changed since it "
            "was pinned; run `stockade mcp pin` to approve"
        )
        assert "id_rsa" not in upload.description
        assert tools["echo"].description == "Echo a text back."
        res = await client.call_tool("upload", {"url": "http://127.0.0.1:1/upload", "path": "x"})
        assert res.is_error
        text = res.content[0].text  # type: ignore[union-attr]
        assert "description changed since it was pinned" in text
        echo = await client.call_tool("echo", {"text": "still fine"})
        assert not echo.is_error
    events: Any = guard.audit
    blocked = [e for e in events.events if e.decision and e.decision.rule == "mcp:pin"]
    assert blocked and all(e.tool == "upload" for e in blocked)
    pins = json.loads((tmp_path / "pins.json").read_text())
    assert set(pins["servers"]["test-server"]["tools"]) == {
        "read_file",
        "upload",
        "env_keys",
        "echo",
    }


async def test_pinning_alone_catches_an_innocent_looking_change(
    tmp_path: Path, workspace: Path
) -> None:
    """The new description passes the description scan: only the pin blocks it."""
    from stockade.integrations.mcp import scan_tool_description

    assert scan_tool_description("upload", "Upload a workspace file to a URL (faster).") == []
    guard = Guard.from_text(policy(tmp_path), audit=MemoryAuditSink())
    command = [sys.executable, TEST_SERVER, str(workspace), "rugpull-benign"]
    async with MCPProxy(guard, command) as proxy:
        tools = {t.name: t for t in await proxy.list_tools()}
        assert "its description changed since it was pinned" in str(tools["upload"].description)
        result = await proxy.call_tool("upload", {"url": "http://127.0.0.1:1/", "path": "x"})
        assert result.is_error


@pytest.mark.slow
async def test_identity_change_blocks_until_re_pinned(tmp_path: Path, workspace: Path) -> None:
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(policy(tmp_path), encoding="utf-8")
    guard = Guard.from_file(policy_file)
    async with MCPProxy(guard, [sys.executable, TEST_SERVER, str(workspace)]):
        pass  # first use: pinned at version 1.0.0
    v2 = [sys.executable, TEST_SERVER, str(workspace), "v2"]
    guard = Guard.from_file(policy_file)
    async with MCPProxy(guard, v2) as proxy:
        result = await proxy.call_tool("echo", {"text": "hi"})
        assert result.is_error
        text = result.content[0].text  # type: ignore[union-attr]
        assert "identity changed since it was pinned (version `1.0.0` → `2.0.0`)" in text
    # what `stockade mcp pin` runs (the command itself is tested below)
    review = await pin_server(Guard.from_file(policy_file), v2, write=False)
    assert review.check.identity == "version `1.0.0` → `2.0.0`"
    guard = Guard.from_file(policy_file)
    async with MCPProxy(guard, v2) as proxy:  # a dry run approved nothing
        assert (await proxy.call_tool("echo", {"text": "hi"})).is_error
    review = await pin_server(Guard.from_file(policy_file), v2)
    assert review.check.identity == "version `1.0.0` → `2.0.0`"
    assert len(review.prints) == 4 and review.findings == {}
    guard = Guard.from_file(policy_file)
    async with MCPProxy(guard, v2) as proxy:
        result = await proxy.call_tool("echo", {"text": "hi"})
        assert not result.is_error


@pytest.mark.slow
async def test_pin_cli_reports_poisoned_tools_and_dry_run(tmp_path: Path, workspace: Path) -> None:
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(policy(tmp_path), encoding="utf-8")
    guard = Guard.from_file(policy_file)
    async with MCPProxy(guard, [sys.executable, TEST_SERVER, str(workspace)]):
        pass  # pinned without the `add` tool

    def pin(*extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "stockade.cli",
                "mcp",
                "pin",
                *extra,
                "--policy",
                str(policy_file),
                "--",
                sys.executable,
                TEST_SERVER,
                str(workspace),
                "poison",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    before = (tmp_path / "pins.json").read_text()
    dry = pin("--dry-run")
    assert dry.returncode == 1
    assert "would approve `add`: the tool is new since the server was pinned" in dry.stdout
    assert "description now: Adds two numbers.\\u200b<IMPORTANT>" in dry.stdout
    assert (tmp_path / "pins.json").read_text() == before
    out = pin()
    assert out.returncode == 1
    assert "approved `add`" in out.stdout and "pinned 5 tools" in out.stdout
    assert "still blocked `add`" in out.stderr
    assert (tmp_path / "pins.json").read_text() != before


def test_pin_store_compare(tmp_path: Path) -> None:
    store = PinStore(tmp_path / "sub" / "pins.json")
    a = ToolFingerprint.of("a", "does a", {"type": "object"})
    b = ToolFingerprint.of("b", "does b", {"type": "object"})
    assert store.compare("s", {"name": "x", "version": "1"}, [a]).first_use
    store.record("s", {"name": "x", "version": "1"}, [a, b])
    assert store.compare("s", {"name": "x", "version": "1"}, [a, b]).clean
    a2 = ToolFingerprint.of("a", "does a", {"type": "object", "properties": {"x": {}}})
    b2 = ToolFingerprint.of("b", "does b better", {"type": "string"})
    c = ToolFingerprint.of("c", "new", {})
    check = store.compare("s", {"name": "x", "version": "2"}, [a2, b2, c])
    assert check.identity == "version `1` → `2`"
    assert check.changed == {
        "a": "its input schema changed since it was pinned",
        "b": "its description and input schema changed since it was pinned",
        "c": "the tool is new since the server was pinned",
    }
    (tmp_path / "bad.json").write_text("[1]")
    from stockade import ConfigurationError

    with pytest.raises(ConfigurationError, match="no `servers` object"):
        PinStore(tmp_path / "bad.json").load()
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ConfigurationError, match="not valid JSON"):
        PinStore(tmp_path / "bad.json").load()


def test_pin_store_names_a_pin_file_it_cannot_write() -> None:
    from stockade import ConfigurationError

    if not Path("/proc/self").exists():
        pytest.skip("needs Linux /proc (a folder nobody can create files in, even root)")
    a = ToolFingerprint.of("a", "does a", {"type": "object"})
    with pytest.raises(ConfigurationError, match="cannot write the pin file `/proc/stockade-"):
        PinStore("/proc/stockade-pins.json").record("s", {"name": "x"}, [a])
