"""Each layer alone: with the other layer off (through stockade.hazmat), one still holds.

- network: the network namespace without seccomp and Landlock; seccomp without
  the namespace and Landlock; Landlock without the namespace and seccomp;
- runaway CPU: the CPU rlimit without the timeout; the timeout without rlimits.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from stockade.hazmat.sandbox import weakened_sandbox
from stockade.tools.sandbox import Limits, SandboxConfig

CANARY = "stk-layer-canary-51d2"
PY = "/usr/bin/python3"
CONNECT = """
import socket
try:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(3)
    s.connect(("127.0.0.1", {port}))
    print("CONNECTED", s.recv(100).decode())
except OSError as exc:
    print("refused", exc.errno, exc.strerror)
"""


@pytest.fixture
def service() -> Iterator[int]:
    srv = socket.create_server(("127.0.0.1", 0))
    srv.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except OSError:
                continue
            with conn:
                conn.sendall(CANARY.encode())

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    yield srv.getsockname()[1]
    stop.set()
    t.join(timeout=2)
    srv.close()


def _config(ws: Path, **limits: float) -> SandboxConfig:
    return SandboxConfig(workspace=ws, limits=Limits(**limits))  # type: ignore[arg-type]


def test_all_layers_off_reaches_the_service(workspace: Path, service: int) -> None:
    """The control: with the namespace, seccomp and Landlock off, the canary comes back."""
    sb = weakened_sandbox(_config(workspace), net_namespace=False, seccomp=False, landlock=False)
    out = sb.run([PY, "-c", CONNECT.format(port=service)]).stdout.decode()
    assert f"CONNECTED {CANARY}" in out


def test_network_namespace_alone_blocks_the_service(workspace: Path, service: int) -> None:
    sb = weakened_sandbox(_config(workspace), seccomp=False, landlock=False)
    out = sb.run([PY, "-c", CONNECT.format(port=service)]).stdout.decode()
    assert CANARY not in out
    assert "refused 111" in out  # ECONNREFUSED: the sandbox's own, empty loopback


def test_seccomp_alone_blocks_the_service(workspace: Path, service: int) -> None:
    sb = weakened_sandbox(_config(workspace), net_namespace=False, landlock=False)
    out = sb.run([PY, "-c", CONNECT.format(port=service)]).stdout.decode()
    assert CANARY not in out
    assert "refused 97" in out  # EAFNOSUPPORT from the socket family filter


def test_landlock_alone_blocks_the_service(workspace: Path, service: int) -> None:
    sb = weakened_sandbox(_config(workspace), net_namespace=False, seccomp=False)
    if sb.layers["landlock"] < 4:
        pytest.fail("the kernel's Landlock has no TCP rules (ABI < 4)")
    out = sb.run([PY, "-c", CONNECT.format(port=service)]).stdout.decode()
    assert CANARY not in out
    assert "refused 13" in out  # EACCES from Landlock's connect rule


def test_cpu_rlimit_alone_stops_a_runaway(workspace: Path) -> None:
    sb = weakened_sandbox(_config(workspace, cpu=1, timeout=30), timeout=False)
    result = sb.run(["/bin/sh", "-c", "while :; do :; done"])
    assert result.signal == "SIGXCPU"
    assert result.killed == ""


def test_timeout_alone_stops_a_runaway(workspace: Path) -> None:
    sb = weakened_sandbox(_config(workspace, cpu=1, timeout=1.5), rlimits=False)
    result = sb.run(["/bin/sh", "-c", "while :; do :; done"])
    assert result.killed == "timeout"
    assert result.timed_out
    assert result.exit_code is None


def test_weakened_layers_are_reported(workspace: Path) -> None:
    sb = weakened_sandbox(_config(workspace), net_namespace=False, seccomp=False, landlock=False)
    assert sb.layers["seccomp"] is False
    assert sb.layers["landlock"] == 0
    assert "net" not in sb.layers["namespaces"]


def test_read_only_mounts_alone_block_writes_outside(workspace: Path) -> None:
    """Without Landlock, the mount namespace still refuses writes outside the workspace."""
    sb = weakened_sandbox(_config(workspace), landlock=False)
    script = (
        "for p in /x /dev/x /usr/x /etc/x /run/stockade/x; do echo 1 > $p || echo refused $p; done"
    )
    result = sb.run(["/bin/sh", "-c", script])
    out = result.stdout.decode()
    for path in ("/x", "/dev/x", "/usr/x", "/etc/x", "/run/stockade/x"):
        assert f"refused {path}" in out
    assert b"Read-only file system" in result.stderr


def test_landlock_alone_blocks_reads_of_unlisted_paths(workspace: Path) -> None:
    """With every mount in place, Landlock still refuses to list `/` and `/run`."""
    sb = weakened_sandbox(_config(workspace), seccomp=False, net_namespace=False)
    result = sb.run(["/bin/sh", "-c", "ls / ; ls /run"])
    assert result.stderr.count(b"Permission denied") == 2
