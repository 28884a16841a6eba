"""Network `proxy`: the only way out of the sandbox is stockade's forward proxy."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from stockade import Guard
from stockade.errors import ExecError
from stockade.tools.sandbox import RELAY_PORT, Limits, Sandbox, SandboxConfig


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


@pytest.mark.parametrize("launcher", [None, "python"], ids=["default-launcher", "python-launcher"])
def test_relay_of_each_launcher(workspace: Path, origin: int, launcher: Any) -> None:
    """Both launchers start the relay; the command's own children never wait for it."""
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
        config = SandboxConfig(workspace=workspace, network="proxy", proxy_address=proxy.address)
        with Sandbox(config, _launcher=launcher) as sb:
            url = f"http://api.internal.test:{origin}/r"
            script = f"curl -sS -m 10 {url} & curl -sS -m 10 {url} & wait; echo done"
            result = sb.run(["/bin/sh", "-c", script], limits=Limits(timeout=30))
    assert result.stdout.decode().count("origin-ok") == 2
    assert result.stdout.decode().endswith("done\n")
    assert not result.killed


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


@pytest.fixture
def tls_origin(tmp_path: Path) -> Iterator[int]:
    """An HTTPS origin with a self-signed certificate for api.internal.test."""
    import datetime
    import ssl

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "api.internal.test")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("api.internal.test")]), False)
        .sign(key, hashes.SHA256())
    )
    cert_file = tmp_path / "cert.pem"
    key_file = tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert_file, key_file)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_https_goes_through_a_connect_tunnel(workspace: Path, tls_origin: int) -> None:
    text = f"""
version: 1
http:
  hosts: {{api.internal.test: 127.0.0.1}}
  allow:
    - {{id: tls, host: api.internal.test, scheme: https, port: {tls_origin},
       addresses: [127.0.0.1], tunnel: true}}
exec:
  workspace: {workspace}
  network: proxy
  commands: [curl]
"""
    url = f"https://api.internal.test:{tls_origin}/secure"
    with Guard.from_text(text) as guard:
        ok = _run(guard, "curl", "-sSk", "-m", "10", url)
        other = _run(guard, "curl", "-sSk", "-m", "10", f"https://evil.test:{tls_origin}/")
    assert ok["stdout"] == "origin-ok\n"
    assert other["exit_code"] != 0
    assert "origin-ok" not in str(other["stdout"])
