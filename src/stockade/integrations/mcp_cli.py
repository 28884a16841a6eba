"""``stockade mcp-proxy`` and ``stockade mcp pin``.

The MCP SDK is imported only when a command runs, so ``stockade --help``
works without the ``mcp`` extra.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from stockade.errors import ConfigurationError

__all__ = ["register"]


def _command(args: argparse.Namespace) -> list[str]:
    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        raise ConfigurationError("give the server's command after `--`")
    return command


def _guard(args: argparse.Namespace) -> Any:
    from stockade.guard import Guard

    return Guard.from_file(args.policy)


def _listen(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise ConfigurationError(f"expected HOST:PORT, got `{text}`")
    return host.strip("[]") or "127.0.0.1", int(port)


def _proxy(args: argparse.Namespace) -> int:
    import anyio

    from stockade.integrations.mcp import MCPProxy

    command = _command(args)
    guard = _guard(args)
    session = guard.session(args.session, principal=args.principal)

    async def run() -> None:
        async with MCPProxy(guard, command, session=session) as proxy:
            if args.http is None:
                await proxy.serve_stdio()
            else:
                host, port = _listen(args.http) if args.http else (None, None)
                await proxy.serve_http(host, port)

    try:
        anyio.run(run)
    finally:
        guard.close()
    return 0


def _pin(args: argparse.Namespace) -> int:
    import anyio

    from stockade.integrations.mcp import pin_server, printable

    command = _command(args)
    guard = _guard(args)
    try:
        review = anyio.run(lambda: pin_server(guard, command, write=not args.dry_run))
    finally:
        guard.close()
    check, prints, findings = review.check, review.prints, review.findings
    verb = "would approve" if args.dry_run else "approved"
    if check.first_use:
        print(f"{'would pin' if args.dry_run else 'pinned'} {len(prints)} tools (first use)")
    elif check.clean:
        print(f"nothing changed; {len(prints)} tools pinned")
    else:
        if check.identity:
            print(f"{verb} server identity change: {check.identity}")
        for name, what in sorted(check.changed.items()):
            print(f"{verb} `{name}`: {what}")
            print(f"    description now: {printable(review.descriptions.get(name, ''))}")
            if name in review.titles:
                print(f"    title now: {printable(review.titles[name])}")
            if name in review.annotations:
                print(
                    f"    annotations now: {json.dumps(review.annotations[name], sort_keys=True)}"
                )
        if not args.dry_run:
            print(f"pinned {len(prints)} tools")
    for name in sorted(review.accepted):
        print(f"accepted `{name}`: {review.accepted[name]} (mcp.accept)")
    for name in sorted(findings):
        print(f"still blocked `{name}`: {review.blocked[name]}", file=sys.stderr)
    if args.dry_run:
        return 0 if check.clean and not check.first_use and not findings else 1
    return 1 if findings else 0


def register(subparsers: Any) -> None:
    """Add ``mcp-proxy`` and ``mcp pin`` to the ``stockade`` command."""
    proxy = subparsers.add_parser(
        "mcp-proxy",
        help="run an MCP server behind the policy and serve its tools",
        description=(
            "Start COMMAND as an MCP server over stdio (scrubbed environment; inside the exec "
            "sandbox when the policy's mcp section says so) and serve the same tools to the "
            "client on stdin/stdout, or over streamable HTTP with --http. Every tools/call is "
            "decided by the policy; results are labelled and audited, and scanned only when "
            "the policy has a `scan:` section (`scan: {}` for the defaults; without one the "
            "proxy warns at start). Tools are pinned on first use; a changed tool is blocked "
            "until `stockade mcp pin`. A tool whose description has findings is blocked; "
            "`mcp: {accept: {TOOL: [KIND]}}` lets named finding kinds through for one tool."
        ),
        epilog="example: stockade mcp-proxy --policy policy.yaml -- npx "
        "@modelcontextprotocol/server-filesystem /srv/data",
    )
    proxy.add_argument("--policy", required=True, metavar="FILE", help="policy YAML file")
    proxy.add_argument(
        "--http",
        nargs="?",
        const="",
        metavar="HOST:PORT",
        help="serve streamable HTTP instead of stdio (default address: mcp.http_listen)",
    )
    proxy.add_argument("--session", metavar="ID", help="session id for limits and audit")
    proxy.add_argument("--principal", default="mcp-proxy", metavar="NAME", help="acting principal")
    proxy.add_argument(
        "command", nargs=argparse.REMAINDER, metavar="-- COMMAND ARGS", help="the MCP server"
    )
    proxy.set_defaults(func=_proxy)

    mcp = subparsers.add_parser(
        "mcp",
        help="manage MCP tool pins",
        description="Manage the pins that block MCP tools changed since they were approved.",
    )
    msub = mcp.add_subparsers(dest="mcp_command", metavar="SUBCOMMAND")
    pin = msub.add_parser(
        "pin",
        help="approve a server's current tools",
        description=(
            "Start COMMAND, list its tools, print what changed since the last pins and record "
            "the current name, description and input schema digests and the server identity "
            "in the pin file (mcp.pin_file). Running it is the approval. Exit 1 when some "
            "description has findings that mcp.accept does not accept: those tools stay "
            "blocked."
        ),
    )
    pin.add_argument("--policy", required=True, metavar="FILE", help="policy YAML file")
    pin.add_argument(
        "--dry-run",
        action="store_true",
        help="show what changed (with the new descriptions) and write nothing; exit 1 when "
        "something would change",
    )
    pin.add_argument(
        "command", nargs=argparse.REMAINDER, metavar="-- COMMAND ARGS", help="the MCP server"
    )
    pin.set_defaults(func=_pin)

    def _mcp_help(args: argparse.Namespace) -> int:
        mcp.print_help()
        return 2

    mcp.set_defaults(func=_mcp_help)
