"""Network `proxy`: the only way out of the sandbox is stockade's forward proxy."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from stockade import Guard
from stockade.errors import ExecError
from stockade.tools.sandbox import RELAY_PORT, Sandbox, SandboxConfig


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.end_headers()
        self.wfile.write(b"origin-ok\n")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def origin() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


@pytest.fixture
def guard(workspace: Path, origin: int) -> Iterator[Guard]:
    text = f"""
version: 1
http:
  hosts: {{api.internal.test: 127.0.0.1}}
  allow:
    - {{id: api, host: api.internal.test, scheme: http, port: {origin}, addresses: [127.0.0.1]}}
exec:
  workspace: {workspace}
  network: proxy
  commands: [curl, /usr/bin/python3]
"""
    with Guard.from_text(text) as g:
        yield g


def _run(guard: Guard, *argv: str) -> dict[str, object]:
    value: dict[str, object] = guard.call("exec", "run", {"argv": list(argv)}).value
    return value


def test_allowed_host_is_reached_through_the_proxy(guard: Guard, origin: int) -> None:
    out = _run(guard, "curl", "-sS", "-m", "10", f"http://api.internal.test:{origin}/ok")
    assert out["stdout"] == "origin-ok\n"
    assert out["exit_code"] == 0


def test_other_hosts_are_refused_by_the_proxy(guard: Guard, origin: int) -> None:
    out = _run(
        guard, "curl", "-sS", "-m", "10", "-w", "%{http_code}", f"http://evil.test:{origin}/"
    )
    assert str(out["stdout"]).endswith("403")
    assert "origin-ok" not in str(out["stdout"])


def test_bypassing_the_proxy_fails(guard: Guard, origin: int) -> None:
    out = _run(guard, "curl", "-sS", "-m", "5", "--noproxy", "*", f"http://127.0.0.1:{origin}/")
    assert out["exit_code"] != 0
    assert "origin-ok" not in str(out["stdout"])


def test_landlock_allows_only_the_relay_port(guard: Guard, origin: int) -> None:
    code = (
        "import socket\n"
        f"for port in ({RELAY_PORT}, {origin}, 80):\n"
        "    s = socket.socket()\n"
        "    try:\n"
        "        s.connect(('127.0.0.1', port)); print(port, 'connected')\n"
        "    except OSError as exc:\n"
        "        print(port, exc.errno)\n"
    )
    out = str(_run(guard, "/usr/bin/python3", "-c", code)["stdout"])
    assert f"{RELAY_PORT} connected" in out
    assert f"{origin} 13" in out  # EACCES: Landlock
    assert "80 13" in out


def test_proxy_mode_is_reported(guard: Guard, origin: int) -> None:
    result = guard.call("exec", "run", {"argv": ["curl", "--version"]})
    assert result.meta["sandbox"]["network"] == "proxy"


def test_proxy_mode_needs_an_address(workspace: Path) -> None:
    with pytest.raises(ExecError, match="proxy"):
        Sandbox(SandboxConfig(workspace=workspace, network="proxy"))


def test_proxy_env_points_at_the_relay(workspace: Path, origin: int) -> None:
    config = SandboxConfig(workspace=workspace, network="proxy", proxy_address=("127.0.0.1", 9))
    with Sandbox(config) as sb:
        out = sb.run(["/usr/bin/env"]).stdout.decode()
    assert f"HTTPS_PROXY=http://127.0.0.1:{RELAY_PORT}" in out


def test_named_proxy_address_is_used(workspace: Path, origin: int) -> None:
    """`proxy: host:port` points the sandbox at a proxy that is already running."""
    from stockade.policy import Policy
    from stockade.tools.http_proxy import start_proxy

    http = f"""
version: 1
http:
  hosts: {{api.internal.test: 127.0.0.1}}
  allow:
    - {{id: api, host: api.internal.test, scheme: http, port: {origin}, addresses: [127.0.0.1]}}
"""
    with start_proxy(Policy.from_text(http)) as proxy:
        host, port = proxy.address
        text = f"""
version: 1
exec:
  workspace: {workspace}
  network: proxy
  proxy: "{host}:{port}"
  commands: [curl]
"""
        with Guard.from_text(text) as guard:
            out = _run(guard, "curl", "-sS", "-m", "10", f"http://api.internal.test:{origin}/x")
    assert out["stdout"] == "origin-ok\n"
