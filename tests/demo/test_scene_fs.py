"""The fs demo scene plays as scripted: two denials, a deletion, then its undo."""

from __future__ import annotations

import io

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
