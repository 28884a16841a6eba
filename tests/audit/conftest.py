"""Audit test fixtures: keys, SQLite logs, and a throwaway PostgreSQL database."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from audit_helpers import keys_in

from stockade.audit.keys import KeyPaths


@pytest.fixture
def keys(tmp_path: Path) -> KeyPaths:
    """Fresh signing and hmac keys."""
    return keys_in(tmp_path / "keys")


def _pg_available() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=0.5):
            return True
    except OSError:
        return False


@pytest.fixture(scope="module")
def pg_db() -> Iterator[str]:
    """The URL of a new, empty PostgreSQL database, dropped afterwards."""
    if not _pg_available():
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL is not running on 127.0.0.1:5432 (required under CI)")
        pytest.skip("PostgreSQL is not running on 127.0.0.1:5432")
    import psycopg

    admin_url = os.environ.get(
        "STOCKADE_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres"
    )
    name = f"stockade_audit_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    base = admin_url.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def origin() -> str:
    """A unique origin name."""
    return f"host-{uuid.uuid4().hex[:8]}"
