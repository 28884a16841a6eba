"""Red team regression: SSRF spellings that the http tool's checks refuse (no network needed)."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator

import pytest

from stockade import Guard, MemoryAuditSink
from stockade.errors import StockadeError
from stockade.model import Effect


@pytest.fixture(scope="module")
def guard() -> Guard:
    return Guard.from_text(
        """
version: 1
http:
  allow:
    - {id: api, host: api.example.com, methods: [GET, POST]}
    - {id: anyweb, host: "*", methods: [GET]}
""",
        audit=MemoryAuditSink(),
    )


@pytest.mark.parametrize(
    "url",
    [
        "http://2130706433/",
        "http://0177.0.0.1/",
        "http://0x7f.1/",
        "http://127.1/",
        "http://127.0.0.1/",
        "http://localhost/",
        "http://LOCALHOST./",
        "http://[::1]/",
        "http://[::ffff:127.0.0.1]/",
        "http://[::ffff:7f00:1]/",
        "http://[0:0:0:0:0:ffff:127.0.0.1]/",
        "http://169.254.169.254/latest/meta-data/",
        "http://metadata.google.internal/",
        "http://api.example.com@127.0.0.1/",
        "http://api.example.com:80@127.0.0.1/",
        "http://api.example.com\\@127.0.0.1/",
        "http://127.0.0.1%2f@api.example.com/",
        "http://%31%32%37.0.0.1/",
        "http://[fe80::1%25eth0]/",
        "http://0.0.0.0/",
        "http://[::]/",
        "gopher://api.example.com/",
        "file:///etc/passwd",
        "http://api.example.com /",
        "http://api.example.com\t/",
    ],
)
def test_internal_and_ambiguous_urls_are_denied(guard: Guard, url: str) -> None:
    assert guard.decide("http", "request", {"url": url}).effect is Effect.DENY


@pytest.mark.parametrize(
    "url",
    [
        "https://API.Example.com./x",
        "https://ａｐｉ．example。com/x",
        "https://api.example.com/a/../x",
    ],
)
def test_spellings_of_the_allowed_host_are_allowed(guard: Guard, url: str) -> None:
    decision = guard.decide("http", "request", {"url": url, "method": "POST"})
    assert decision.effect is Effect.ALLOW and decision.rule == "http:api"


def test_write_method_to_any_host_is_still_denied(guard: Guard) -> None:
    decision = guard.decide("http", "request", {"url": "https://evil.example/", "method": "POST"})
    assert decision.effect is Effect.DENY


class _Redirector(http.server.BaseHTTPRequestHandler):
    target = ""
    hits: list[str] = []

    def do_GET(self) -> None:
        _Redirector.hits.append(self.path)
        if self.path.startswith("/go"):
            self.send_response(302)
            self.send_header("location", _Redirector.target)
            self.send_header("content-length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("content-type", "text/plain")
        self.send_header("content-length", "6")
        self.end_headers()
        self.wfile.write(b"inside")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def servers() -> Iterator[tuple[int, int]]:
    made = []
    for _ in range(2):
        s = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Redirector)
        t = threading.Thread(target=s.serve_forever, daemon=True)
        t.start()
        made.append((s, t))
    yield made[0][0].server_address[1], made[1][0].server_address[1]
    for s, t in made:
        s.shutdown()
        s.server_close()
        t.join()


@pytest.mark.parametrize("kind", ["other-port", "localhost-name", "metadata"])
def test_redirect_to_an_internal_target_is_not_followed(
    servers: tuple[int, int], kind: str
) -> None:
    allowed, internal = servers
    _Redirector.target = {
        "other-port": f"http://127.0.0.1:{internal}/secret",
        "localhost-name": f"http://localhost:{allowed}/secret",
        "metadata": "http://169.254.169.254/latest/meta-data/",
    }[kind]
    _Redirector.hits = []
    guard = Guard.from_text(
        f"version: 1\nhttp:\n  allow:\n"
        f"    - {{id: local, host: 127.0.0.1, scheme: http, port: {allowed}}}\n",
        audit=MemoryAuditSink(),
    )
    try:
        result = guard.call("http", "request", {"url": f"http://127.0.0.1:{allowed}/go"})
    except StockadeError:
        result = None
    finally:
        guard.close()
    assert _Redirector.hits[:1] == ["/go"]  # the allowed request was sent
    assert "/secret" not in _Redirector.hits
    assert result is None or "inside" not in str(result.value)
