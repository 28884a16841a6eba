"""The forward proxy: plain HTTP and CONNECT, decided and audited by the guard."""

from __future__ import annotations

import os
import signal
import socket
import socketserver
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from http_support import LoopbackServer, policy_text

from stockade import Guard, MemoryAuditSink, Policy
from stockade.errors import ConfigurationError
from stockade.tools.http import HTTPTool
from stockade.tools.http_proxy import start_proxy
from stockade.tools.http_transport import StaticResolver


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        self.server.hits += 1  # type: ignore[attr-defined]
        while data := self.request.recv(4096):
            self.request.sendall(data)


class EchoServer:
    """A raw TCP echo server: what a TLS server looks like to a CONNECT tunnel."""

    def __init__(self) -> None:
        self._server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Echo)
        self._server.daemon_threads = True
        self._server.hits = 0  # type: ignore[attr-defined]
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    @property
    def hits(self) -> int:
        return int(self._server.hits)  # type: ignore[attr-defined]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture(scope="module")
def env() -> Iterator[dict[str, Any]]:
    allowed, internal, echo = LoopbackServer(), LoopbackServer(), EchoServer()
    extra = f"""    - id: echo-tunnel
      host: 127.0.0.1
      scheme: https
      port: {echo.port}
      tunnel: true
    - id: named-tunnel
      host: tunnel.legit.test
      scheme: https
      port: {echo.port}
      tunnel: true
"""
    audit = MemoryAuditSink()
    guard = Guard.from_text(policy_text(allowed.port, internal.port, extra), audit=audit)
    tool = guard.capability("http")
    assert isinstance(tool, HTTPTool)
    tool.use_resolver(StaticResolver({"tunnel.legit.test": ["127.0.0.1"]}))
    handle = start_proxy(guard, "127.0.0.1", 0)
    client = httpx.Client(proxy=handle.url, trust_env=False, timeout=5)
    yield {
        "guard": guard,
        "audit": audit,
        "proxy": handle,
        "client": client,
        "allowed": allowed,
        "internal": internal,
        "echo": echo,
    }
    client.close()
    handle.close()
    guard.close()
    for s in (allowed, internal, echo):
        s.close()


def _connect(env: dict[str, Any], target: str) -> tuple[bytes, socket.socket]:
    host, port = env["proxy"].address
    sock = socket.create_connection((host, port), timeout=5)
    sock.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        if not chunk:
            break
        head += chunk
    return head, sock


def test_plain_http_is_forwarded_and_audited(env: dict[str, Any]) -> None:
    r = env["client"].get(env["allowed"].url("/via-proxy?x=1"))
    assert r.status_code == 200
    assert r.json()["path"] == "/via-proxy?x=1"
    decision, outcome = env["audit"].events[-2:]
    assert (decision.kind, decision.tool, decision.action) == ("decision", "http", "request")
    assert decision.decision.rule == "http:test-server"
    assert decision.session == "proxy"
    assert decision.args["url"] == env["allowed"].url("/via-proxy?x=1")
    assert (outcome.kind, outcome.call_id) == ("outcome", decision.call_id)
    assert outcome.extra["http_status"] == 200
    assert outcome.result_size == len(r.content)


def test_post_body_is_forwarded(env: dict[str, Any]) -> None:
    r = env["client"].post(env["allowed"].url("/items"), content=b'{"a": 1}')
    assert r.status_code == 200
    assert env["allowed"].hits[-1]["body"] == '{"a": 1}'


def test_expect_100_continue(env: dict[str, Any]) -> None:
    """curl sends `Expect: 100-continue` with larger bodies and waits for the go-ahead."""
    host, port = env["proxy"].address
    body = b"x" * 2000
    head = (
        f"POST {env['allowed'].url('/upload')} HTTP/1.1\r\nHost: x\r\n"
        f"Content-Length: {len(body)}\r\nExpect: 100-continue\r\n\r\n"
    ).encode()
    with socket.create_connection((host, port), timeout=5) as sock:
        sock.sendall(head)
        assert sock.recv(100).startswith(b"HTTP/1.1 100 Continue")
        sock.sendall(body)
        reply = b""
        while chunk := sock.recv(4096):
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 200")
    assert env["allowed"].hits[-1]["body"] == body.decode()


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:{internal}/",
        "http://localhost:{internal}/",
        "http://169.254.169.254/latest/meta-data/",
        "http://2130706433:{internal}/",
        "http://evil.test/",
    ],
)
def test_denied_requests_get_403_and_an_audit_record(env: dict[str, Any], url: str) -> None:
    env["internal"].hits.clear()
    before = len(env["audit"].events)
    r = env["client"].get(url.format(internal=env["internal"].port))
    assert r.status_code == 403
    assert "stockade: denied by" in r.text
    assert env["internal"].hits == []
    assert env["audit"].events[before].decision.effect.value == "deny"


def test_redirects_come_back_through_the_proxy(env: dict[str, Any]) -> None:
    env["internal"].hits.clear()
    target = f"http://127.0.0.1:{env['internal'].port}/"
    client = httpx.Client(proxy=env["proxy"].url, trust_env=False, follow_redirects=True, timeout=5)
    r = client.get(env["allowed"].url(f"/redirect?to={target}"))
    client.close()
    assert r.status_code == 403
    assert env["internal"].hits == []


def test_connect_tunnel_relays_bytes(env: dict[str, Any]) -> None:
    head, sock = _connect(env, f"127.0.0.1:{env['echo'].port}")
    assert head.startswith(b"HTTP/1.1 200")
    sock.sendall(b"ping")
    assert sock.recv(4) == b"ping"
    sock.close()
    events = env["audit"].events
    for _ in range(100):  # the outcome is written when the tunnel has closed
        if events[-1].kind == "outcome":
            break
        time.sleep(0.05)
    decision, outcome = events[-2:]
    assert (decision.kind, decision.action) == ("decision", "connect")
    assert decision.decision.rule == "http:echo-tunnel:tunnel"
    assert (outcome.kind, outcome.call_id) == ("outcome", decision.call_id)
    assert outcome.extra["bytes_up"] == outcome.extra["bytes_down"] == 4


@pytest.mark.parametrize(
    "target",
    [
        "127.0.0.1:{allowed}",  # allowed for requests, but no `tunnel: true`
        "127.0.0.1:{internal}",
        "localhost:{echo}",
        "169.254.169.254:443",
        "[::ffff:127.0.0.1]:{echo}",
        "0x7f.1:{echo}",
    ],
)
def test_connect_refused(env: dict[str, Any], target: str) -> None:
    ports = {k: env[k].port for k in ("allowed", "internal", "echo")}
    hits = env["echo"].hits
    head, sock = _connect(env, target.format(**ports))
    sock.close()
    assert head.startswith(b"HTTP/1.1 403")
    assert env["echo"].hits == hits


def test_connect_checks_the_resolved_address(env: dict[str, Any]) -> None:
    """A tunnel rule for a name does not open the internal address the name resolves to."""
    hits = env["echo"].hits
    head, sock = _connect(env, f"tunnel.legit.test:{env['echo'].port}")
    sock.close()
    assert head.startswith(b"HTTP/1.1 403")
    assert b"loopback address" in head
    assert env["echo"].hits == hits


def test_bad_requests(env: dict[str, Any]) -> None:
    host, port = env["proxy"].address
    for raw, status in (
        (b"GARBAGE\r\n\r\n", b"400"),
        (b"GET /relative HTTP/1.1\r\nHost: x\r\n\r\n", b"400"),
        (
            f"POST {env['allowed'].url('/')} HTTP/1.1\r\nContent-Length: 999999999\r\n\r\n".encode(),
            b"413",
        ),
        (
            f"POST {env['allowed'].url('/')} HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n".encode(),
            b"411",
        ),
    ):
        with socket.create_connection((host, port), timeout=5) as sock:
            sock.sendall(raw)
            assert sock.recv(100).split(b" ")[1] == status


def test_proxy_needs_an_http_section() -> None:
    with pytest.raises(ConfigurationError, match="`http` section"):
        start_proxy(Policy.from_text("version: 1"))


def test_proxy_command(tmp_path: Path) -> None:
    server = LoopbackServer()
    policy = tmp_path / "policy.yaml"
    policy.write_text(policy_text(server.port, 1))
    exe = Path(sys.executable).parent / "stockade"
    proc = subprocess.Popen(
        [str(exe), "proxy", "--policy", str(policy), "--listen", "127.0.0.1:0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={k: v for k, v in os.environ.items() if "proxy" not in k.lower()},
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("stockade proxy listening on http://127.0.0.1:")
        url = line.rsplit(" ", 1)[1].strip()
        with httpx.Client(proxy=url, trust_env=False, timeout=5) as client:
            assert client.get(server.url("/cli")).status_code == 200
            assert client.get("http://169.254.169.254/").status_code == 403
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=10)
        assert proc.returncode == 0
        # no `audit:` section: said once, on stderr, at start
        assert err.count("no audit: section: the proxy's decisions are kept in memory only") == 1
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
        server.close()


def _run_proxy(policy: Path, *extra: str) -> tuple[str, str, int]:
    """Start `stockade proxy`, wait for its first line, stop it; (stdout line, stderr, rc)."""
    exe = Path(sys.executable).parent / "stockade"
    proc = subprocess.Popen(
        [str(exe), "proxy", "--policy", str(policy), *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if line:
            proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
        return line, err, proc.returncode
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


@pytest.mark.parametrize("listen", ["0.0.0.0:0", "[::]:0", "192.0.2.1:3128", "proxy.example:0"])
def test_proxy_command_refuses_a_remote_address(tmp_path: Path, listen: str) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(policy_text(1, 1))
    line, err, rc = _run_proxy(policy, "--listen", listen)
    assert rc == 2 and line == ""
    host = listen.rpartition(":")[0].strip("[]")
    assert f"refusing to listen on `{host}`" in err
    assert "--allow-remote" in err


def test_proxy_command_allow_remote_listens_and_warns(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(policy_text(1, 1))
    line, err, rc = _run_proxy(policy, "--listen", "0.0.0.0:0", "--allow-remote")
    assert line.startswith("stockade proxy listening on http://0.0.0.0:")
    assert rc == 0
    assert "listening on `0.0.0.0` (--allow-remote)" in err


@pytest.mark.parametrize("listen", ["127.0.0.1:0", "localhost:0"])
def test_proxy_command_loopback_needs_no_flag(tmp_path: Path, listen: str) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(policy_text(1, 1))
    line, err, rc = _run_proxy(policy, "--listen", listen)
    assert line.startswith("stockade proxy listening on http://") and rc == 0
    assert "allow-remote" not in err


def test_proxy_command_with_an_audit_section_does_not_warn(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        policy_text(1, 1) + f"audit:\n  path: {tmp_path / 'audit.db'}\n  keys: {tmp_path / 'k'}\n"
    )
    exe = Path(sys.executable).parent / "stockade"
    subprocess.run(
        [str(exe), "audit", "init", "--policy", str(policy)], check=True, capture_output=True
    )
    line, err, rc = _run_proxy(policy, "--listen", "127.0.0.1:0")
    assert line.startswith("stockade proxy listening on") and rc == 0
    assert "audit" not in err


def test_proxy_command_bad_policy(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text("version: 1\nhttp: {allow: [{host: a.test, port: 0}]}\n")
    exe = Path(sys.executable).parent / "stockade"
    done = subprocess.run(
        [str(exe), "proxy", "--policy", str(policy)], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 2
    assert "policy.yaml:2" in done.stderr


def test_listen_error_is_a_configuration_error(env: dict[str, Any]) -> None:
    host, port = env["proxy"].address
    with pytest.raises(ConfigurationError, match="cannot listen"):
        start_proxy(env["guard"], host, port)


def test_proxy_from_a_policy_owns_its_guard(env: dict[str, Any]) -> None:
    policy = Policy.from_text(policy_text(env["allowed"].port, env["internal"].port))
    handle = start_proxy(policy)
    with handle, httpx.Client(proxy=handle.url, trust_env=False, timeout=5) as client:
        assert client.get(env["allowed"].url("/owned")).status_code == 200
    assert handle._owned is None
