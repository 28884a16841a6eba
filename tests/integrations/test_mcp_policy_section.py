"""The MCP example's policy, `mcp.accept`, the scan warning and start failures, on real servers."""

from __future__ import annotations

import io
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from stockade import Guard, MemoryAuditSink
from stockade.errors import IntegrationError, PolicyError
from stockade.integrations.mcp import MCPProxy, pin_server

pytest.importorskip("mcp")  # the [mcp] extra is part of the test environment

pytestmark = pytest.mark.anyio

HERE = Path(__file__).resolve().parent
EXAMPLE = HERE.parents[1] / "examples" / "mcp_proxy.md"
TEST_SERVER = str(HERE / "mcp_test_server.py")
FS_SERVER = (
    HERE / "node_modules" / "@modelcontextprotocol" / "server-filesystem" / "dist" / "index.js"
)
SECRET = "ghp_Zx9aB7cD3eF1gH5iJ2kL8mN4oP6qR0sT2uV4"  # GitHub-token shaped, not a real one


def yaml_blocks(markdown: str) -> list[str]:
    """The ```yaml blocks of a markdown file, dedented (they may sit in a list item)."""
    blocks = re.findall(r"^([ \t]*)```yaml\n(.*?)^\1```", markdown, re.S | re.M)
    return [textwrap.dedent(body) for _, body in blocks]


def example_policy() -> str:
    return yaml_blocks(EXAMPLE.read_text(encoding="utf-8"))[0]


def test_the_example_policy_loads_as_written(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(example_policy(), encoding="utf-8")
    policy = Guard.from_file(path, audit=MemoryAuditSink()).policy
    cfg = policy.section("mcp")
    assert cfg.name == "files" and cfg.env == ()
    assert cfg.pin_file == tmp_path / ".stockade" / "mcp-pins.json"
    assert policy.section("scan") is not None, "the example's results must be scanned"


def test_the_example_accept_block_loads() -> None:
    accept = yaml_blocks(EXAMPLE.read_text(encoding="utf-8"))[1]
    cfg = Guard.from_text("version: 1\n" + accept, audit=MemoryAuditSink()).policy.section("mcp")
    assert cfg.accept == {"read_file": frozenset({"tool-reference"})}


@pytest.mark.parametrize(
    "section",
    [
        "mcp: {env: []}",
        "mcp: {external: []}",
        "mcp: {sandbox_read: []}",
        "scan: {links: {allow: []}}",
    ],
)
def test_documented_empty_defaults_load(section: str) -> None:
    Guard.from_text(f"version: 1\n{section}\n", audit=MemoryAuditSink())


@pytest.mark.parametrize(
    ("section", "where"),
    [
        ("mcp: {accept: {add: [bogus]}}", "2:22: mcp.accept.add[0]: unknown value `bogus`"),
        ("mcp: {accept: {add: []}}", "mcp.accept.add: expected at least one finding kind"),
        ("mcp: {accept: [add]}", "mcp.accept: expected a mapping"),
        ("mcp: {path_args: []}", "mcp.path_args: expected at least one value"),
    ],
)
def test_bad_accept_values_are_located(section: str, where: str) -> None:
    with pytest.raises(PolicyError) as err:
        Guard.from_text(f"version: 1\n{section}\n", audit=MemoryAuditSink())
    assert where in str(err.value)


async def test_the_example_policy_scans_results_of_the_reference_server(
    workspace: Path, tmp_path: Path
) -> None:
    if shutil.which("node") is None or not FS_SERVER.exists():
        pytest.fail("the reference server is missing: npm ci --prefix tests/integrations")
    (workspace / "notes").mkdir(parents=True, exist_ok=True)
    (workspace / "notes" / "deploy.md").write_text(f"deploy key: {SECRET}\n", encoding="utf-8")
    # the example as written, with its folder moved to the test's workspace
    path = tmp_path / "policy.yaml"
    path.write_text(example_policy().replace("/srv/agent", str(workspace)), encoding="utf-8")
    guard = Guard.from_file(path, audit=MemoryAuditSink())
    errlog = io.StringIO()
    async with MCPProxy(guard, ["node", str(FS_SERVER), str(workspace)], errlog=errlog) as proxy:
        listed = {t.name: t for t in await proxy.list_tools()}
        blocked = sorted(n for n, t in listed.items() if t.description.startswith("[blocked"))
        assert blocked == [], blocked  # all 14 tools of the reference server pass the scan
        result = await proxy.call_tool("read_text_file", {"path": f"{workspace}/notes/deploy.md"})
    text = result.content[0].text  # type: ignore[union-attr]
    assert not result.is_error and "deploy key:" in text
    assert SECRET not in text
    assert "no `scan:` section" not in errlog.getvalue()


def scenario_policy(scenario: dict[str, Any], tmp_path: Path, extra: str = "") -> str:
    return scenario["policy"] + f"mcp:\n    pin_file: {tmp_path / 'pins.json'}\n{extra}"


async def test_the_proxy_warns_when_results_are_not_scanned(
    scenario: dict[str, Any], workspace: Path, tmp_path: Path
) -> None:
    guard = Guard.from_text(scenario_policy(scenario, tmp_path), audit=MemoryAuditSink())
    assert guard.policy.section("scan") is None
    errlog = io.StringIO()
    async with MCPProxy(guard, [sys.executable, TEST_SERVER, str(workspace)], errlog=errlog):
        pass
    assert "the policy has no `scan:` section: tool results reach the client unscanned" in (
        errlog.getvalue()
    )


async def test_accept_lets_named_finding_kinds_through_for_a_named_tool(
    scenario: dict[str, Any], workspace: Path, tmp_path: Path
) -> None:
    server = [sys.executable, TEST_SERVER, str(workspace), "poison"]
    # `add` hides instructions behind an invisible character: accepting one kind is not enough
    partial = "    accept: {add: [hidden-instruction, secret-path]}\n"
    guard = Guard.from_text(scenario_policy(scenario, tmp_path, partial), audit=MemoryAuditSink())
    async with MCPProxy(guard, server) as proxy:
        add = {t.name: t for t in await proxy.list_tools()}["add"]
    assert add.description.startswith("[blocked by stockade]")
    assert "invisible-text" in add.description and "hidden-instruction" not in add.description

    every = "    accept: {add: [hidden-instruction, secret-path, invisible-text], echo: [secret-path]}\n"
    audit = MemoryAuditSink()
    guard = Guard.from_text(scenario_policy(scenario, tmp_path, every), audit=audit)
    errlog = io.StringIO()
    async with MCPProxy(guard, server, errlog=errlog) as proxy:
        listed = {t.name: t for t in await proxy.list_tools()}
    assert listed["add"].description.startswith("Adds two numbers.")
    accepted = [e for e in audit.events if e.decision and e.decision.rule == "mcp:accept"]
    assert accepted and accepted[0].tool == "add"
    assert "hidden-instruction" in accepted[0].decision.reason  # type: ignore[union-attr]
    assert "passes with accepted findings" in errlog.getvalue()

    review = await pin_server(guard, server, write=False)
    assert "add" in review.accepted and "add" not in review.findings


async def test_an_accepted_tool_is_still_pinned(
    scenario: dict[str, Any], workspace: Path, tmp_path: Path
) -> None:
    extra = "    accept: {upload: [hidden-instruction, secret-path, tool-reference]}\n"
    guard = Guard.from_text(scenario_policy(scenario, tmp_path, extra), audit=MemoryAuditSink())
    async with MCPProxy(guard, [sys.executable, TEST_SERVER, str(workspace), "rugpull"]) as proxy:
        upload = {t.name: t for t in await proxy.list_tools()}["upload"]
    # the second listing carries the new text: the pin blocks it, whatever accept says
    assert upload.description.startswith("[blocked by stockade]")
    assert "changed since it was pinned" in upload.description


async def test_a_server_that_exits_at_once_is_explained(tmp_path: Path) -> None:
    policy = f"version: 1\nmcp: {{pin_file: {tmp_path / 'pins.json'}}}\n"
    guard = Guard.from_text(policy, audit=MemoryAuditSink())
    script = "import sys; print('cannot open /srv/data', file=sys.stderr); sys.exit(3)"
    with pytest.raises(IntegrationError) as err:
        async with MCPProxy(guard, [sys.executable, "-c", script]):
            pass
    text = str(err.value)
    assert "closed the connection before the MCP handshake" in text
    assert "`cannot open /srv/data`" in text and "ExceptionGroup" not in text


def test_cli_start_failure_says_what_happened(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(f"version: 1\nscan: {{}}\nmcp: {{pin_file: {tmp_path / 'p.json'}}}\n")
    false = shutil.which("false") or "false"
    out = subprocess.run(
        [sys.executable, "-m", "stockade.cli", "mcp-proxy", "--policy", str(policy), "--", false],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode != 0
    assert "ExceptionGroup" not in out.stderr
    assert "closed the connection before the MCP handshake; it wrote nothing on stderr" in (
        out.stderr
    )
