"""Real HTTP servers on loopback for the http tool's tests, and a recording backend.

``LoopbackServer`` is a threaded ``http.server`` on 127.0.0.1 with routes
that play a well-behaved API and a hostile one (redirects to internal
addresses, redirect loops, oversized and slow responses). Each server keeps
the requests it received, so a test can prove an internal server got none.
"""

from __future__ import annotations

import gzip
import http.server
import json
import threading
import time
import urllib.parse
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import httpcore
import yaml

ATTACKS = Path(__file__).resolve().parents[1] / "attacks" / "http"


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _record(self, body: bytes) -> None:
        self.server.hits.append(
            {
                "method": self.command,
                "path": self.path,
                "headers": {k.lower(): v for k, v in self.headers.items()},
                "body": body.decode("utf-8", "replace"),
            }
        )

    def _send(self, status: int, body: bytes, ctype: str = "text/plain", **headers: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in headers.items():
            self.send_header(k.replace("_", "-"), v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        self._record(body)
        url = urllib.parse.urlsplit(self.path)
        q = dict(urllib.parse.parse_qsl(url.query))
        path = url.path
        if path == "/redirect":
            code = int(q.get("code", "302"))
            self._send(code, b"", Location=q["to"])
        elif path.startswith("/loop/"):
            n = int(path.rsplit("/", 1)[1])
            self._send(302, b"", Location=f"/loop/{n + 1}")
        elif path.startswith("/hops/"):
            n = int(path.rsplit("/", 1)[1])
            if n > 0:
                self._send(302, b"", Location=f"/hops/{n - 1}")
            else:
                self._send(200, b'{"landed": true}', "application/json")
        elif path == "/big":
            self._send(200, b"x" * int(q.get("n", "1000")))
        elif path == "/big-chunked":
            n = int(q.get("n", "1000"))
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Connection", "close")
            self.end_headers()
            self.close_connection = True
            sent = 0
            while sent < n and not self.server.stopping:
                self.wfile.write(b"y" * 4096)
                sent += 4096
        elif path == "/slow":
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", "100")
            self.end_headers()
            for _ in range(100):
                if self.server.stopping:
                    break
                self.wfile.write(b"z")
                self.wfile.flush()
                time.sleep(0.05)
        elif path == "/stall":
            for _ in range(100):
                if self.server.stopping:
                    break
                time.sleep(0.05)
            self._send(200, b"late")
        elif path == "/binary":
            self._send(200, b"\x89PNG\r\n\x1a\n" + b"\0" * 100, "image/png")
        elif path == "/gzip":
            self._send(200, gzip.compress(b"a" * 10000), "text/plain", Content_Encoding="gzip")
        elif path == "/echo":
            echo = {
                "method": self.command,
                "path": self.path,
                "authorization": self.headers.get("Authorization"),
                "x-api-key": self.headers.get("X-Api-Key"),
                "body": body.decode("utf-8", "replace"),
            }
            secret = self.headers.get("Authorization") or self.headers.get("X-Api-Key") or ""
            self._send(
                200,
                json.dumps(echo).encode(),
                "application/json",
                X_Echo=secret,
            )
        elif path == "/echo-redirect":
            self._send(302, b"", Location="/echo?seen=" + urllib.parse.quote(self.path))
        else:
            payload = json.dumps({"ok": True, "method": self.command, "path": self.path})
            self._send(200, payload.encode(), "application/json")

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _handle


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    hits: list[dict[str, Any]]
    stopping: bool

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients hanging up on slow or oversized responses is the point


class LoopbackServer:
    """A real HTTP server on 127.0.0.1 (a free port) in a thread."""

    def __init__(self) -> None:
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.hits = []
        self._server.stopping = False
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def hits(self) -> list[dict[str, Any]]:
        """Requests received so far."""
        return self._server.hits

    def url(self, path: str = "/") -> str:
        """A URL on this server."""
        return f"http://127.0.0.1:{self.port}{path}"

    def close(self) -> None:
        """Stop the server (slow handlers notice and end)."""
        self._server.stopping = True
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


class RecordingBackend(httpcore.NetworkBackend):
    """Records every address a connection is opened to; only loopback is really dialled.

    Public addresses (from a resolver playing rebinding) are recorded and
    refused with ``ConnectError`` so no test touches the network.
    """

    def __init__(self) -> None:
        self.connects: list[tuple[str, int]] = []
        self._inner = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        self.connects.append((host, port))
        if not host.startswith("127."):
            raise httpcore.ConnectError("not dialled in tests")
        return self._inner.connect_tcp(host, port, timeout, local_address, socket_options)

    def connect_unix_socket(self, *args: Any, **kwargs: Any) -> httpcore.NetworkStream:
        raise httpcore.ConnectError("no unix sockets")

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


def load_cases(name: str, **ports: int) -> list[dict[str, Any]]:
    """Read an attack or legitimate corpus, with ``${NAME}`` replaced by ports."""
    text = (ATTACKS / name).read_text(encoding="utf-8")
    for key, value in ports.items():
        text = text.replace("${" + key + "}", str(value))
    data = yaml.safe_load(text)
    return list(data["cases"])


def policy_text(port: int, internal: int, extra: str = "") -> str:
    """The policy the http tests run on: the one test server address, and nothing else."""
    return f"""
version: 1
http:
  timeout: 1s
  connect_timeout: 1s
  max_redirects: 3
  max_response_bytes: 64KB
  allow:
    - id: test-server
      host: 127.0.0.1
      scheme: http
      port: {port}
      methods: [GET, HEAD, POST]
    - id: legit-name
      host: api.legit.test
      scheme: http
      port: {port}
      addresses: [127.0.0.1]
      reason: a named API that lives on the test server's address
{extra}
"""
