"""The MCP proxy writes to the real audit log: pins, blocks, decisions and outcomes, verifiable."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("mcp")
pytest.importorskip("stockade.audit")

from stockade import Guard
from stockade.integrations.mcp import MCPProxy

TEST_SERVER = str(Path(__file__).resolve().parent / "mcp_test_server.py")


@pytest.mark.anyio
async def test_everything_in_the_verifiable_audit_log(
    scenario: dict[str, Any], workspace: Path, tmp_path: Path
) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        scenario["policy"]
        + f"""audit:
  path: {tmp_path}/audit.db
  origin: mcp-test
  keys: {tmp_path}/keys
  create_keys: true
mcp:
  pin_file: {tmp_path}/pins.json
""",
        encoding="utf-8",
    )
    guard = Guard.from_file(policy)
    try:
        async with MCPProxy(guard, [sys.executable, TEST_SERVER, str(workspace), "poison"]) as p:
            assert not (await p.call_tool("read_file", {"path": "report.md"})).is_error
            assert (await p.call_tool("read_file", {"path": "secrets/api_key.txt"})).is_error
            assert (await p.call_tool("add", {"a": 1})).is_error
    finally:
        guard.close()

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "stockade.cli", "audit", *args, "--policy", str(policy)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    verified = cli("verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    rows = [json.loads(line) for line in cli("query", "--json").stdout.splitlines() if line]
    seen = [(r.get("tool"), r.get("action"), r.get("kind")) for r in rows]
    assert ("mcp", "pin", "decision") in seen
    assert ("add", "list", "decision") in seen
    assert ("read_file", "call", "outcome") in seen
    denied = [r for r in rows if r.get("tool") == "read_file" and "deny" in json.dumps(r)]
    assert denied
