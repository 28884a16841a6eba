"""The decision server, over a real uvicorn server on loopback."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
import uvicorn

from stockade import Guard, MemoryAuditSink
from stockade.server.app import create_app
from stockade.server.cli import register  # noqa: F401 - the command exists

POLICY = """
version: 1
rules:
  - {id: read-notes, tool: fs, action: read, effect: allow, when: {path: {glob: "notes/**"}}}
  - {id: pay-ask, tool: pay, action: send, effect: ask}
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def server() -> Iterator[tuple[str, MemoryAuditSink]]:
    sink = MemoryAuditSink()
    guard = Guard.from_text(POLICY, audit=sink)
    port = _free_port()
    config = uvicorn.Config(
        create_app(guard, token="s3cret"),
        host="127.0.0.1",
        port=port,
        log_level="error",
        lifespan="off",
    )
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not srv.started:
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}", sink
    srv.should_exit = True
    thread.join(timeout=10)


AUTH = {"Authorization": "Bearer s3cret"}


def test_decide_allow_deny_ask(server: tuple[str, MemoryAuditSink]) -> None:
    url, sink = server
    with httpx.Client(base_url=url, headers=AUTH) as c:
        r = c.post(
            "/v1/decide",
            json={"tool": "fs", "action": "read", "args": {"path": "notes/a"}, "session": "s1"},
        )
        assert r.status_code == 200
        assert r.json()["effect"] == "allow" and r.json()["rule"] == "read-notes"
        r = c.post(
            "/v1/decide",
            json={"tool": "fs", "action": "read", "args": {"path": ".env"}, "session": "s1"},
        )
        assert r.json()["effect"] == "deny" and r.json()["rule"] == "default-deny"
        r = c.post("/v1/decide", json={"tool": "pay", "action": "send", "session": "s1"})
        assert r.json()["effect"] == "ask"
        recent = c.get("/v1/decisions").json()
        assert [d["effect"] for d in recent] == ["ask", "deny", "allow"]
        page = c.get("/")
        assert page.status_code == 200 and "read-notes" in page.text
    assert [e.decision.effect.value for e in sink.events] == ["allow", "deny", "ask"]


def test_token_is_required(server: tuple[str, MemoryAuditSink]) -> None:
    url, sink = server
    r = httpx.post(f"{url}/v1/decide", json={"tool": "fs", "action": "read", "session": "s"})
    assert r.status_code == 401
    r = httpx.post(
        f"{url}/v1/decide",
        headers={"Authorization": "Bearer wrong"},
        json={"tool": "fs", "action": "read", "session": "s"},
    )
    assert r.status_code == 401
    assert sink.events == []


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"not json", "not JSON"),
        (b"[1, 2]", "must be a JSON object"),
        (b'{"action": "read", "session": "s"}', "missing `tool`"),
        (b'{"tool": "fs", "action": "read", "session": "s", "args": [1]}', "`args` must be"),
        (b'{"tool": 7, "action": "read", "session": "s"}', "`tool` must be"),
    ],
)
def test_bad_requests_are_clear(
    server: tuple[str, MemoryAuditSink], body: bytes, message: str
) -> None:
    url, _ = server
    r = httpx.post(f"{url}/v1/decide", headers=AUTH, content=body)
    assert r.status_code == 400
    assert message in r.json()["error"]


def test_observe_and_user_said(server: tuple[str, MemoryAuditSink]) -> None:
    url, _ = server
    with httpx.Client(base_url=url, headers=AUTH) as c:
        r = c.post("/v1/user-said", json={"session": "s", "text": "pay the accountant"})
        assert r.json() == {"ok": True}
        r = c.post(
            "/v1/observe",
            json={
                "session": "s",
                "tool": "web",
                "action": "get",
                "value": "page text",
                "labels": [{"source": "http:https://example.com", "integrity": "untrusted"}],
            },
        )
        assert r.json() == {"ok": True}
        r = c.post(
            "/v1/observe",
            json={
                "session": "s",
                "tool": "web",
                "action": "get",
                "labels": [{"integrity": "untrusted"}],
            },
        )
        assert r.status_code == 400
    assert httpx.get(f"{url}/healthz").json()["ok"] is True


def test_serve_refuses_public_listen_without_token(
    monkeypatch: pytest.MonkeyPatch, tmp_path: object
) -> None:
    from stockade.cli import main

    monkeypatch.delenv("STOCKADE_SERVER_TOKEN", raising=False)
    assert main(["serve", "--policy", "x.yaml", "--listen", "0.0.0.0:8470"]) == 2
