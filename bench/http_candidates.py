"""Evaluate third-party SSRF guards against the http attack corpus (address cases).

Not part of the test suite: the candidates are not dependencies of stockade.
Install them in a throwaway virtualenv and run this file with it::

    python -m venv /tmp/evalvenv
    /tmp/evalvenv/bin/pip install httpx requests pyyaml requests-hardened ssrfguard \\
        drawbridge httpx-secure
    /tmp/evalvenv/bin/python bench/http_candidates.py

A "legit" internal API listens on 127.0.0.2 (each library is configured, as
narrowly as its API allows, to reach it as `127.0.0.2` or `rebind.test`) and
an "internal" server on 127.0.0.1 stands for what SSRF reaches. A case leaks
when the internal server receives a request. The attack URLs are
tests/attacks/http/attacks.yaml with the allowed server moved to 127.0.0.2,
plus: DNS rebinding (`rebind.test` answers 127.0.0.2 and 127.0.0.1 in turn,
through a patched getaddrinfo), and an alias (`alias.test` answers
127.0.0.2: the address allowed for another name). A naive
resolve-check-then-fetch guard runs as the control.
"""

from __future__ import annotations

import contextlib
import os
import sys

# bench/http.py sits next to this file: keep it from shadowing the stdlib `http`.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]

import asyncio  # noqa: E402
import http.server  # noqa: E402
import json  # noqa: E402
import threading  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import yaml  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


class _H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def log_message(self, *a: Any) -> None:
        pass

    def do_GET(self) -> None:
        self.server.hits.append(self.path)  # type: ignore[attr-defined]
        if self.path.startswith("/redirect?to="):
            import urllib.parse

            to = urllib.parse.parse_qs(self.path.split("?", 1)[1])["to"][0]
            code = 307 if "code=307" in self.path else 302
            self.send_response(code)
            self.send_header("Location", to)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = b"ok"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def _server(host: str) -> Any:
    s = http.server.ThreadingHTTPServer((host, 0), _H)
    s.daemon_threads = True
    s.hits = []  # type: ignore[attr-defined]
    threading.Thread(target=s.serve_forever, daemon=True).start()
    return s


def main() -> None:
    legit, internal = _server("127.0.0.2"), _server("127.0.0.1")
    port, iport = legit.server_address[1], internal.server_address[1]
    text = (ROOT / "tests/attacks/http/attacks.yaml").read_text(encoding="utf-8")
    text = text.replace("127.0.0.1:${PORT}", "127.0.0.2:${PORT}")
    text = text.replace("${PORT}", str(port)).replace("${INTERNAL}", str(iport))
    cases = [c for c in yaml.safe_load(text)["cases"] if "address" in c["layers"]]
    twin = http.server.ThreadingHTTPServer(("127.0.0.1", port), _H)  # same port as legit
    twin.daemon_threads = True
    twin.hits = []  # type: ignore[attr-defined]
    threading.Thread(target=twin.serve_forever, daemon=True).start()
    _play_rebinding()
    clients = _clients(port, iport)
    report: dict[str, Any] = {}
    for name, get in clients.items():
        before = len(twin.hits)  # type: ignore[attr-defined]
        for _ in range(4):
            with contextlib.suppress(Exception):
                get(f"http://rebind.test:{port}/rebind")
        rebind_leak = len(twin.hits) > before  # type: ignore[attr-defined]
        # the internal address allowed for one name, reached through another name
        before_alias = len(legit.hits)  # type: ignore[attr-defined]
        with contextlib.suppress(Exception):
            get(f"http://alias.test:{port}/alias")
        alias_leak = len(legit.hits) > before_alias  # type: ignore[attr-defined]
        leaks, errors = [], 0
        for case in cases:
            before = len(internal.hits)
            try:
                get(case["url"])
            except Exception:
                errors += 1
            if len(internal.hits) > before:
                leaks.append(case["id"])
        try:
            get(f"http://127.0.0.2:{port}/legit")
            legit_ok = True
        except Exception:
            legit_ok = False
        report[name] = {
            "cases": len(cases),
            "leaks": leaks
            + (["dns-rebinding"] if rebind_leak else [])
            + (["alias-to-allowed-internal"] if alias_leak else []),
            "legit_reachable": legit_ok,
        }
    print(json.dumps(report, indent=2))
    legit.shutdown()
    internal.shutdown()


def _play_rebinding() -> None:
    """`rebind.test` answers 127.0.0.2 (allowed) and 127.0.0.1 (internal) in turn,
    like a TTL-0 record an attacker flips between the check and the fetch."""
    import socket

    real = socket.getaddrinfo
    turn = {"n": 0}

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(host, bytes):
            host = host.decode()
        if host == "alias.test":
            host = "127.0.0.2"
        if host == "rebind.test":
            turn["n"] += 1
            host = "127.0.0.2" if turn["n"] % 2 else "127.0.0.1"
        return real(host, port, *args, **kwargs)

    socket.getaddrinfo = getaddrinfo


def _clients(port: int, iport: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    import ipaddress

    import httpx

    def naive(u: str) -> None:
        """The control: resolve, check, then let httpx resolve again and fetch."""
        import socket
        import urllib.parse

        host = urllib.parse.urlsplit(u).hostname or ""
        for info in socket.getaddrinfo(host, 80):
            ip = ipaddress.ip_address(info[4][0])
            if not (ip.is_global or str(ip) == "127.0.0.2"):
                raise ValueError("blocked")
        httpx.get(u, timeout=2, follow_redirects=True)

    out["naive check-then-fetch (control)"] = naive
    try:
        from ssrfguard import Policy as SGPolicy
        from ssrfguard.httpx import Client as SGClient

        sg = SGClient(
            policy=SGPolicy(allowed_networks=["127.0.0.2/32"], allowed_ports=(port, iport)),
            follow_redirects=True,
            timeout=2,
        )
        out["ssrfguard"] = lambda u: sg.get(u)
    except ImportError:
        print("ssrfguard not installed", file=sys.stderr)
    try:
        from drawbridge import Policy as DBPolicy
        from drawbridge import SyncClient

        db = SyncClient(
            DBPolicy(
                ip_allowlist=frozenset({ipaddress.ip_network("127.0.0.2/32")}),
                allow_ports=frozenset({port, iport}),
            )
        )
        out["drawbridge"] = lambda u: db.get(u)
    except ImportError:
        print("drawbridge not installed", file=sys.stderr)
    try:
        import httpx
        from httpx_secure import httpx_ssrf_protection

        def validator(host: str, ip: Any, p: int) -> bool:
            return bool(ip.is_global) or str(ip) == "127.0.0.2"

        async def hs_get(u: str) -> None:
            client = httpx_ssrf_protection(
                httpx.AsyncClient(follow_redirects=True, timeout=2),
                check_globally_reachable=False,
                custom_validator=validator,
            )
            async with client:
                await client.get(u)

        out["httpx-secure"] = lambda u: asyncio.run(hs_get(u))
    except ImportError:
        print("httpx-secure not installed", file=sys.stderr)
    try:
        from requests_hardened import Config, Manager

        rh = Manager(
            Config(
                default_timeout=(2, 2),
                never_redirect=False,
                ip_filter_enable=True,
                ip_filter_allow_loopback_ips=False,
            )
        )
        out["requests-hardened"] = lambda u: rh.send_request("GET", u)
    except ImportError:
        print("requests-hardened not installed", file=sys.stderr)
    try:
        import httpx

        sys.path.insert(0, str(ROOT / "src"))
        from stockade.tools.http_transport import AddressAllowance, AddressPolicy, SafeTransport

        st = httpx.Client(
            transport=SafeTransport(
                AddressPolicy(
                    [
                        AddressAllowance(("127.0.0.2",), frozenset({port}), ("127.0.0.2",)),
                        AddressAllowance(("rebind.test",), frozenset({port}), ("127.0.0.2",)),
                    ]
                )
            ),
            follow_redirects=True,
            timeout=2,
        )
        out["stockade SafeTransport"] = lambda u: st.get(u)
    except ImportError:
        print("stockade not importable", file=sys.stderr)
    return out


if __name__ == "__main__":
    main()
