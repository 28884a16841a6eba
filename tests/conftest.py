"""Shared fixtures: real services, with the CI rule that a missing service fails.

Locally, a test that needs PostgreSQL, MariaDB or Redis skips with the reason
when the server is not there; under CI (``CI`` set) it fails instead, so a
missing service can never pass as a green run.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from stockade_testing import SHARED, require_service


@pytest.fixture
def postgres_url() -> str:
    """The URL of the local PostgreSQL server (trust auth)."""
    require_service("PostgreSQL", "127.0.0.1", 5432)
    return os.environ.get("STOCKADE_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")


@pytest.fixture
def mariadb_url() -> str:
    """The URL of the local MariaDB server (root, no password)."""
    require_service("MariaDB", "127.0.0.1", 3306)
    return os.environ.get("STOCKADE_TEST_MARIADB", "mysql://root@127.0.0.1:3306/test")


@pytest.fixture
def redis_url() -> str:
    """The URL of the local Redis server."""
    require_service("Redis", "127.0.0.1", 6379)
    return os.environ.get("STOCKADE_TEST_REDIS", "redis://127.0.0.1:6379/15")


@pytest.fixture
def shared_data() -> Path:
    """../shared/data (evaluation data with sources and licences)."""
    path = SHARED / "data"
    if not path.is_dir():
        pytest.fail(f"shared data not found at {path}")
    return path


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    """An empty workspace folder for tools to work in."""
    ws = tmp_path / "workspace"
    ws.mkdir()
    return ws
