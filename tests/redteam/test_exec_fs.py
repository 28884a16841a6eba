"""Red team regression: the exec tool and the fs tool on the same folder (R7, fixed in a2c2fee)."""

from __future__ import annotations

from pathlib import Path

import pytest

from stockade import Guard
from stockade.errors import Denied, StockadeError
from stockade.model import Confidentiality


def _guard(root: Path) -> Guard:
    return Guard.from_text(
        f"""
version: 1
fs:
  root: {root}
  allow: {{read: ["**"]}}
  labels: {{confidential: ["hr/**"]}}
exec:
  workspace: {root}
  commands: [cat]
"""
    )


def test_exec_does_not_read_what_fs_denies(tmp_path: Path) -> None:
    # The fs tool's built-in deny list (.env, keys, cloud credentials) is not
    # applied to the exec tool's arguments, and the sandbox binds the same
    # folder: `cat .env` reads what `fs.read .env` refuses.
    (tmp_path / ".env").write_text("API_KEY=hunter2\n")
    guard = _guard(tmp_path)
    with pytest.raises(Denied):
        guard.call("fs", "read", {"path": ".env"})  # control
    try:
        result = guard.call("exec", "run", {"argv": ["cat", ".env"]})
    except StockadeError:
        return
    assert "hunter2" not in result.value["stdout"]


def test_exec_output_keeps_fs_confidential_label(tmp_path: Path) -> None:
    # hr/** is confidential for fs.read; the same bytes through exec are
    # labelled `exec:/usr/bin/cat` with confidentiality internal, so flow
    # rules on confidential data and the trifecta never see them.
    (tmp_path / "hr").mkdir()
    (tmp_path / "hr" / "pay.csv").write_text("ada,120000\n")
    guard = _guard(tmp_path)
    via_fs = guard.call("fs", "read", {"path": "hr/pay.csv"})
    assert any(lb.confidentiality is Confidentiality.SECRET for lb in via_fs.labels)  # control
    try:
        via_exec = guard.call("exec", "run", {"argv": ["cat", "hr/pay.csv"]})
    except StockadeError:
        return
    assert any(lb.confidentiality is Confidentiality.SECRET for lb in via_exec.labels)
