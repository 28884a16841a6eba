"""Service checks and helpers shared by the tests (import as ``stockade_testing``).

Locally, a test that needs PostgreSQL, MariaDB or Redis skips with the reason
when the server is not there; under CI (``CI`` set) it fails instead, so a
missing service can never pass as a green run.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

IN_CI = bool(os.environ.get("CI"))
SHARED = Path(__file__).resolve().parents[2] / "shared"


def service_available(host: str, port: int, timeout: float = 0.5) -> bool:
    """Whether something listens on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def require_service(name: str, host: str, port: int) -> None:
    """Skip (locally) or fail (under CI) when a service is not reachable."""
    if service_available(host, port):
        return
    message = f"{name} is not running on {host}:{port}"
    if IN_CI:
        pytest.fail(f"{message} (required under CI)")
    pytest.skip(message)


def to_closed_pipe(*argv: str) -> subprocess.CompletedProcess[str]:
    """Run ``stockade ARGV`` with stdout a pipe whose reader is already gone
    (what `| head` leaves once it has its lines)."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        return subprocess.run(
            [sys.executable, "-m", "stockade.cli", *argv],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
            check=False,
        )
    finally:
        os.close(write_end)
