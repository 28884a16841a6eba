"""``stockade serve``: run the decision server."""

from __future__ import annotations

import argparse
import ipaddress
import os
import socket
import sys
from typing import Any

__all__ = ["register"]


def _parse_listen(listen: str) -> tuple[str, int] | None:
    """``HOST:PORT`` as a host and a port in 1..65535, or ``None``."""
    host, _, port_text = listen.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    if not port_text.isascii() or not port_text.isdigit():
        return None
    port = int(port_text)
    return (host, port) if 0 < port < 65536 else None


def _bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port``; :class:`OSError` when it cannot be had."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError:
        sock.close()
        raise
    return sock


def _serve(args: argparse.Namespace) -> int:
    from stockade.guard import Guard

    parsed = _parse_listen(args.listen)
    if parsed is None:
        print(
            f"stockade: bad --listen `{args.listen}`; expected HOST:PORT with a port 1-65535",
            file=sys.stderr,
        )
        return 2
    host, port = parsed
    token = os.environ.get(args.token_env) or None
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if not loopback and token is None:
        print(
            f"stockade: refusing to listen on `{host}` without a token; set ${args.token_env}",
            file=sys.stderr,
        )
        return 2
    guard = Guard.from_file(args.policy)
    with guard:
        if guard.policy.section("audit") is None:
            print(
                "stockade: warning: the policy has no `audit:` section; decisions are kept "
                "in memory only and are lost when the server stops",
                file=sys.stderr,
            )
        # Bound here rather than by uvicorn, so that a port in use or an
        # address that is not ours is a one-line message and exit 2, not a
        # log line and uvicorn's own exit status.
        try:
            sock = _bind(host, port)
        except OSError as exc:
            reason = (exc.strerror or type(exc).__name__).lower()
            print(f"stockade: cannot listen on `{args.listen}`: {reason}", file=sys.stderr)
            return 2
        with sock:
            import uvicorn

            from stockade.server.app import create_app

            app = create_app(guard, token=token)
            print(f"stockade decision server on http://{args.listen} (policy {args.policy})")
            uvicorn.Server(uvicorn.Config(app, log_level="warning")).run(sockets=[sock])
    return 0


def register(subparsers: Any) -> None:
    """Add ``stockade serve``."""
    p = subparsers.add_parser(
        "serve",
        help="serve policy decisions over HTTP for agents in other processes or languages",
        description=(
            "Serve the policy's decisions over HTTP: POST /v1/decide before running a tool, "
            "POST /v1/observe with what a tool returned, POST /v1/user-said with the user's "
            "words; GET / shows recent decisions. Every decision is audited like in-process "
            "ones. Needs the server extra."
        ),
    )
    p.add_argument("--policy", required=True, metavar="FILE", help="policy YAML file")
    p.add_argument(
        "--listen",
        default="127.0.0.1:8470",
        metavar="HOST:PORT",
        help="address to listen on (default 127.0.0.1:8470)",
    )
    p.add_argument(
        "--token-env",
        default="STOCKADE_SERVER_TOKEN",
        metavar="NAME",
        help="environment variable holding the bearer token clients must send "
        "(required to listen beyond loopback)",
    )
    p.set_defaults(func=_serve)
