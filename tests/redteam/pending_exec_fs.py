"""Red team: R7 fixed for named paths; recursion and git objects still read `.env`. FAILS today."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from stockade import Guard, MemoryAuditSink
from stockade.errors import StockadeError

SECRET = "hunter2-redteam"


@pytest.fixture
def guard(tmp_path: Path) -> Guard:
    (tmp_path / "notes").mkdir()
    (tmp_path / ".env").write_text(f"API_KEY={SECRET}\n")
    (tmp_path / "notes" / "a.md").write_text("hello\n")
    git = ["git", "-c", "user.email=r@t", "-c", "user.name=rt"]
    subprocess.run([*git, "init", "-q", str(tmp_path)], check=True)
    subprocess.run([*git, "-C", str(tmp_path), "add", "-f", ".env", "notes/a.md"], check=True)
    subprocess.run([*git, "-C", str(tmp_path), "commit", "-qm", "init"], check=True)
    return Guard.from_text(
        f"""
version: 1
fs:
  root: {tmp_path}
  allow: {{read: ["**"]}}
exec:
  workspace: {tmp_path}
  commands: [cat, grep, git, tar]
""",
        audit=MemoryAuditSink(),
    )


@pytest.mark.parametrize(
    "argv",
    [
        ["grep", "-r", "API", "."],  # a folder holding a denied file
        ["grep", "-r", "API"],  # no path at all: the working directory
        ["tar", "cf", "-", "."],
        ["git", "show", "HEAD:.env"],  # a path inside a revision
        ["git", "cat-file", "-p", "HEAD:.env"],
        ["git", "grep", "API"],
        ["git", "log", "-p"],
    ],
)
def test_exec_cannot_read_a_denied_file_indirectly(guard: Guard, argv: list[str]) -> None:
    with pytest.raises(StockadeError):
        guard.call("exec", "run", {"argv": ["cat", ".env"]})  # control: named, denied
    try:
        out = guard.call("exec", "run", {"argv": argv}).value
    except StockadeError:
        return
    assert SECRET not in out["stdout"]


@pytest.mark.parametrize("argv", [["grep", "-r", "ada", "."], ["grep", "-r", "ada"]])
def test_recursive_read_keeps_the_confidential_label(tmp_path: Path, argv: list[str]) -> None:
    from stockade.model import Confidentiality

    (tmp_path / "hr").mkdir()
    (tmp_path / "hr" / "pay.csv").write_text("ada,120000\n")
    guard = Guard.from_text(
        f"""
version: 1
fs:
  root: {tmp_path}
  allow: {{read: ["**"], list: ["**"]}}
  labels: {{confidential: ["hr/**"]}}
exec:
  workspace: {tmp_path}
  commands: [grep]
""",
        audit=MemoryAuditSink(),
    )
    try:
        result = guard.call("exec", "run", {"argv": argv})
    except StockadeError:
        return
    assert "120000" in result.value["stdout"]
    assert any(lb.confidentiality is Confidentiality.SECRET for lb in result.labels)
