"""Red team regression: SSRF spellings that the http tool's checks refuse (no network needed)."""

from __future__ import annotations

import pytest

from stockade import Guard, MemoryAuditSink
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
