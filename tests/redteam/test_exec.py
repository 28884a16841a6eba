"""Red team regression: the exec sandbox keeps stockade's environment and the host out."""

from __future__ import annotations

from pathlib import Path

import pytest

from stockade import Guard, MemoryAuditSink


@pytest.fixture
def guard(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Guard:
    monkeypatch.setenv("REDTEAM_BROKERED_KEY", "sekrit-123")
    return Guard.from_text(
        f"version: 1\nexec:\n  workspace: {tmp_path}\n  commands: [env, cat, ls]\n",
        audit=MemoryAuditSink(),
    )


def test_environment_is_scrubbed(guard: Guard) -> None:
    out = guard.call("exec", "run", {"argv": ["env"]}).value
    assert out["exit_code"] == 0 and "sekrit-123" not in out["stdout"]


@pytest.mark.parametrize(
    "argv",
    [["cat", "/proc/1/environ"], ["ls", "/"], ["cat", "/etc/shadow"], ["ls", "/root"]],
)
def test_host_and_init_are_out_of_reach(guard: Guard, argv: list[str]) -> None:
    out = guard.call("exec", "run", {"argv": argv}).value
    assert out["exit_code"] != 0
    assert "sekrit-123" not in out["stdout"]
