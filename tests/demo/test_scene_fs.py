"""The fs demo scene plays as scripted: two denials, a deletion, then its undo; the
undo command it prints runs in a kept demo folder."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from stockade.cli import main
from stockade.demo import run_demo


def test_fs_scene() -> None:
    out = io.StringIO()
    assert run_demo(out, scenes=("fs",), color=False) == 0
    text = out.getvalue()
    assert "[fs:invalid] path `../../etc/passwd` climbs out of the root" in text
    assert "[fs:builtin-deny] `.env` is on the built-in deny list" in text
    assert "[fs:allow-delete]" in text
    assert "undone #1 fs delete notes/2026/ideas.md" in text
    assert "| Design review moved to Thursday 14:00." in text
    assert "unexpected" not in text


def test_the_printed_undo_command_runs_in_a_kept_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["demo", "--keep", "kept", "--scene", "fs", "--no-color"]) == 0
    assert "$ stockade undo --policy policy.yaml --session demo-fs" in capsys.readouterr().out
    monkeypatch.chdir(tmp_path / "kept")
    # the demo undid its session already: the policy loads and its journal is found
    # (no policy exits 2, a policy without a journal says so)
    assert main(["undo", "--policy", "policy.yaml", "--session", "demo-fs", "--dry-run"]) == 1
    assert capsys.readouterr().err == "nothing to undo\n"


def test_a_kept_folder_is_not_reused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    kept = tmp_path / "kept"
    assert main(["demo", "--keep", str(kept), "--scene", "fs", "--no-color"]) == 0
    capsys.readouterr()
    assert main(["demo", "--keep", str(kept), "--scene", "fs", "--no-color"]) == 2
    assert "is not empty" in capsys.readouterr().err
