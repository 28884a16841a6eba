"""The policy's ``mcp:`` section: how ``stockade mcp-proxy`` runs and pins a server.

.. code-block:: yaml

    mcp:
      name: files                 # the server's key in the pin file (default: its command line)
      pin_file: .stockade/mcp-pins.json   # relative to the policy file
      sandbox: false              # run the server inside the exec sandbox
      sandbox_workspace: data     # with sandbox: its only writable folder, at /workspace
      sandbox_read: [/opt/srv]    # with sandbox: more read-only folders (the server's files)
      sandbox_cpu: 3600           # with sandbox: CPU seconds before the server is killed
      sandbox_memory: 4GB         # with sandbox: address space per process (V8 reserves a lot)
      env: [NODE_OPTIONS]         # environment variables the server may see
      http_listen: 127.0.0.1:8765 # address of the streamable HTTP mode
      http_path: /mcp
      http_token_env: MCP_PROXY_TOKEN  # clients must send `Authorization: Bearer <token>`
      tool_prefix: ""             # prefix of tool names (`files.` gives `files.read_file`)
      path_args: [path, paths, source, destination]  # arguments canonicalised as paths
      external: [upload]          # upstream tools that send data out (flow's external sinks)
      max_result: 1MB             # larger tool results are withheld
      accept:                     # description findings accepted for named tools
        read_file: [tool-reference]

This module only parses; the proxy is in :mod:`stockade.integrations.mcp`.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stockade.policy.node import Node

__all__ = ["ACCEPT_KINDS", "DEFAULT_PATH_ARGS", "MCPConfig", "parse_section"]

#: finding kinds of the description scans that ``mcp.accept`` may name
ACCEPT_KINDS = (
    "cross-tool-reference",
    "hidden-instruction",
    "invisible-text",
    "long-description",
    "secret-path",
    "tool-reference",
)

#: argument names treated as file paths when the section does not say
DEFAULT_PATH_ARGS = (
    "path",
    "paths",
    "source",
    "destination",
    "file",
    "filename",
    "directory",
    "dir",
    "root",
    "cwd",
)
_KEYS = (
    "name",
    "pin_file",
    "sandbox",
    "env",
    "http_listen",
    "http_path",
    "http_token_env",
    "tool_prefix",
    "path_args",
    "external",
    "max_result",
    "sandbox_workspace",
    "sandbox_read",
    "sandbox_cpu",
    "sandbox_memory",
    "accept",
)


@dataclass(frozen=True)
class MCPConfig:
    """The parsed ``mcp:`` section (every field has a safe default)."""

    pin_file: Path
    name: str = ""
    sandbox: bool = False
    env: tuple[str, ...] = ()
    http_host: str = "127.0.0.1"
    http_port: int = 8765
    http_path: str = "/mcp"
    http_token_env: str = ""
    tool_prefix: str = ""
    path_args: tuple[str, ...] = DEFAULT_PATH_ARGS
    external: tuple[str, ...] = ()
    max_result: int = 1 << 20
    sandbox_workspace: Path | None = None
    sandbox_read: tuple[str, ...] = ()
    sandbox_cpu: int = 3600
    sandbox_memory: int = 4 << 30
    #: upstream tool name -> description finding kinds that do not block it
    accept: Mapping[str, frozenset[str]] = field(default_factory=dict)

    @classmethod
    def default(cls, base_dir: Path | None = None) -> MCPConfig:
        """The configuration used when a policy has no ``mcp:`` section."""
        return cls(pin_file=(base_dir or Path.cwd()) / ".stockade" / "mcp-pins.json")


def _listen(node: Node) -> tuple[str, int]:
    text = node.string()
    host, sep, port_text = text.rpartition(":")
    if not sep or not port_text.isdigit():
        node.fail(f"expected HOST:PORT, got `{text}`")
    port = int(port_text)
    if not 0 <= port <= 65535:
        node.fail(f"port {port} is out of range")
    host = host.strip("[]")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if host != "localhost":
            node.fail(f"expected an IP address or localhost, got `{host}`")
    return host, port


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _accept(node: Node) -> dict[str, frozenset[str]]:
    out: dict[str, frozenset[str]] = {}
    for tool, kinds in node.mapping().items():
        if not tool:
            node.fail("expected a tool name, got an empty key", key=tool)
        out[tool] = frozenset(k.string(choices=ACCEPT_KINDS) for k in kinds.seq_or_one())
        if not out[tool]:
            kinds.fail("expected at least one finding kind")
    return out


def parse_section(node: Node, ctx: Any) -> MCPConfig:
    """Parse the ``mcp:`` section (``ctx`` is the policy's ``SectionContext``)."""
    m = node.mapping(allowed=_KEYS)
    base: Path = ctx.base_dir
    pin_file = Path(m["pin_file"].string()) if "pin_file" in m else Path(".stockade/mcp-pins.json")
    if not pin_file.is_absolute():
        pin_file = base / pin_file
    host, port = _listen(m["http_listen"]) if "http_listen" in m else ("127.0.0.1", 8765)
    path = m["http_path"].string() if "http_path" in m else "/mcp"
    if not path.startswith("/"):
        m["http_path"].fail(f"expected a path starting with `/`, got `{path}`")
    token_env = m["http_token_env"].string() if "http_token_env" in m else ""
    if not token_env and not _is_loopback(host):
        (m["http_listen"]).fail(
            f"`{host}` is not a loopback address: set `http_token_env` so clients must authenticate"
        )
    env = tuple(m["env"].strings(allow_empty=True)) if "env" in m else ()
    for name in env:
        if not name or "=" in name or "\x00" in name:
            m["env"].fail(f"invalid environment variable name `{name}`")
    prefix = m["tool_prefix"].string(nonempty=False) if "tool_prefix" in m else ""
    sandbox = m["sandbox"].boolean() if "sandbox" in m else False
    workspace: Path | None = None
    if "sandbox_workspace" in m:
        workspace = base / m["sandbox_workspace"].string()
    elif sandbox:
        m["sandbox"].fail("`sandbox: true` needs `sandbox_workspace` (the server's folder)")
    read = (
        tuple(str(base / p) for p in m["sandbox_read"].strings(allow_empty=True))
        if "sandbox_read" in m
        else ()
    )
    return MCPConfig(
        pin_file=pin_file,
        name=m["name"].string() if "name" in m else "",
        sandbox=sandbox,
        env=env,
        http_host=host,
        http_port=port,
        http_path=path,
        http_token_env=token_env,
        tool_prefix=prefix,
        path_args=tuple(m["path_args"].strings()) if "path_args" in m else DEFAULT_PATH_ARGS,
        external=tuple(m["external"].strings(allow_empty=True)) if "external" in m else (),
        max_result=m["max_result"].size() if "max_result" in m else 1 << 20,
        sandbox_workspace=workspace,
        sandbox_read=read,
        sandbox_cpu=m["sandbox_cpu"].integer(minimum=1) if "sandbox_cpu" in m else 3600,
        sandbox_memory=m["sandbox_memory"].size() if "sandbox_memory" in m else 4 << 30,
        accept=_accept(m["accept"]) if "accept" in m else {},
    )
