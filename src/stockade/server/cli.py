"""``stockade serve``: run the decision server."""

from __future__ import annotations

import argparse
import ipaddress
import os
import sys
from typing import Any

__all__ = ["register"]


def _serve(args: argparse.Namespace) -> int:
    from stockade.guard import Guard

    host, _, port_text = args.listen.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    try:
        port = int(port_text)
    except ValueError:
        print(f"stockade: bad --listen `{args.listen}`; expected HOST:PORT", file=sys.stderr)
        return 2
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
    import uvicorn

    from stockade.server.app import create_app

    app = create_app(guard, token=token)
    print(f"stockade decision server on http://{args.listen} (policy {args.policy})")
    uvicorn.run(app, host=host, port=port, log_level="warning")
    guard.close()
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
