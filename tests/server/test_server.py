"""The decision server, over a real uvicorn server on loopback."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

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


@pytest.mark.parametrize(
    ("endpoint", "body", "key"),
    [
        (
            "/v1/decide",
            {"tool": "fs", "action": "read", "session": "s", "principl": "x"},
            "principl",
        ),
        ("/v1/decide", {"tool": "fs", "action": "read", "session": "s", "argz": {}}, "argz"),
        ("/v1/observe", {"session": "s", "tool": "web", "action": "get", "extra": 1}, "extra"),
        ("/v1/user-said", {"session": "s", "text": "hi", "trusted": True}, "trusted"),
    ],
)
def test_unknown_keys_are_refused(
    server: tuple[str, MemoryAuditSink], endpoint: str, body: dict[str, object], key: str
) -> None:
    url, sink = server
    r = httpx.post(f"{url}{endpoint}", headers=AUTH, json=body)
    assert r.status_code == 400
    assert f"unknown key `{key}`" in r.json()["error"]
    assert sink.events == []  # refused before anything was decided


@pytest.mark.parametrize("query", ["limit=-1", "limit=0", "limit=abc", "limit=1.5", "limt=3"])
def test_bad_decision_limits_are_refused(server: tuple[str, MemoryAuditSink], query: str) -> None:
    url, _ = server
    r = httpx.get(f"{url}/v1/decisions?{query}", headers=AUTH)
    assert r.status_code == 400
    assert "limit" in r.json()["error"]


def test_decision_limits_that_are_fine(server: tuple[str, MemoryAuditSink]) -> None:
    url, _ = server
    with httpx.Client(base_url=url, headers=AUTH) as c:
        for i in range(3):
            c.post("/v1/decide", json={"tool": "fs", "action": "read", "session": f"s{i}"})
        assert len(c.get("/v1/decisions?limit=2").json()) == 2
        assert len(c.get("/v1/decisions?limit=100000").json()) == 3
        assert len(c.get("/v1/decisions").json()) == 3


NO_AUDIT = "version: 1\nrules: [{id: t, tool: t, effect: allow}]\n"


@pytest.mark.parametrize("listen", ["127.0.0.1:99999", "127.0.0.1:0", "127.0.0.1:x", "nocolon"])
def test_serve_refuses_a_bad_listen_address(
    listen: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from stockade.cli import main

    policy = tmp_path / "p.yaml"
    policy.write_text(NO_AUDIT, encoding="utf-8")
    assert main(["serve", "--policy", str(policy), "--listen", listen]) == 2
    err = capsys.readouterr().err
    assert f"bad --listen `{listen}`" in err and "port 1-65535" in err


def test_serve_says_when_the_port_is_taken_and_warns_without_audit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from stockade.cli import main

    policy = tmp_path / "p.yaml"
    policy.write_text(NO_AUDIT, encoding="utf-8")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["serve", "--policy", str(policy), "--listen", f"127.0.0.1:{port}"]) == 2
    err = capsys.readouterr().err
    assert f"stockade: cannot listen on `127.0.0.1:{port}`: address already in use" in err
    assert "warning: the policy has no `audit:` section" in err
    assert "Traceback" not in err


def test_serve_does_not_warn_with_an_audit_section(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from stockade.cli import main

    policy = tmp_path / "p.yaml"
    policy.write_text(NO_AUDIT + f"audit: {{path: {tmp_path / 'audit.db'}}}\n", encoding="utf-8")
    assert main(["audit", "init", "--policy", str(policy)]) == 0
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["serve", "--policy", str(policy), "--listen", f"127.0.0.1:{port}"]) == 2
    err = capsys.readouterr().err
    assert "cannot listen" in err and "warning" not in err
