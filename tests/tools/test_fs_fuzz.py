"""Generated paths built from the pieces attacks are made of: whatever the mix,
neither the full stack nor the descriptor layer alone ever reaches outside."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fs_support import SECRET, everything_policy, execute_raw, make_guard
from hypothesis import given, settings
from hypothesis import strategies as st

from stockade import Denied, FSError, Guard

PIECES = [
    "..", ".", "", "notes", "out", "link", "hard.txt", "secret.txt", "a.txt", "\\", "\u2215",
    "\uff0e\uff0e", "%2e%2e", "\0", "/", "proc", "self", "root", "fd", "etc", "passwd", ".env",
    "~", "\u202e", "x" * 300,
]  # fmt: skip


def _build(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Guard, Path]]:
    base = tmp_path_factory.mktemp("fuzz")
    root, outside = base / "root", base / "outside"
    (root / "notes").mkdir(parents=True)
    (root / "notes" / "a.txt").write_text("inside\n")
    outside.mkdir()
    (outside / "secret.txt").write_text(SECRET + "\n")
    os.symlink(outside, root / "notes" / "out")
    os.symlink("../..", root / "notes" / "link")
    os.symlink("/proc/self/root", root / "proc")
    os.link(outside / "secret.txt", root / "notes" / "hard.txt")
    with make_guard(everything_policy(root)) as guard:
        yield guard, outside


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Guard, Path]]:
    """Read-only fuzzing shares one arena."""
    yield from _build(tmp_path_factory)


@pytest.fixture(scope="module")
def write_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Guard, Path]]:
    """Writes and deletes get their own arena (they may remove the symlinks)."""
    yield from _build(tmp_path_factory)


def _leaks(action: str, value: Any) -> bool:
    text = repr(value)
    if SECRET in text or "root:x:0" in text:
        return True
    return action in ("list", "glob") and "secret.txt" in text


@settings(max_examples=150, deadline=None)
@given(
    parts=st.lists(st.sampled_from(PIECES), max_size=7),
    absolute=st.booleans(),
    action=st.sampled_from(["read", "list", "stat", "glob", "search"]),
)
def test_generated_paths_stay_inside(
    world: tuple[Guard, Path], parts: list[str], absolute: bool, action: str
) -> None:
    guard, outside = world
    path = ("/" if absolute else "") + "/".join(parts)
    args: dict[str, Any] = {"path": path}
    if action == "glob":
        args["pattern"] = "**"
    if action == "search":
        args["pattern"] = "OUTSIDE"
    try:
        value = guard.call("fs", action, args).value
    except (Denied, FSError):
        value = None
    assert not _leaks(action, value), path
    try:
        value = execute_raw(guard, action, args)
    except FSError:
        value = None
    assert not _leaks(action, value), path


@settings(max_examples=60, deadline=None)
@given(parts=st.lists(st.sampled_from(PIECES), min_size=1, max_size=6))
def test_generated_writes_never_change_the_outside(
    write_world: tuple[Guard, Path], parts: list[str]
) -> None:
    guard, outside = write_world
    path = "/".join(parts)
    for call in (
        lambda: guard.call("fs", "write", {"path": path, "content": "FUZZ"}),
        lambda: execute_raw(guard, "write", {"path": path, "content": "FUZZ"}),
        lambda: execute_raw(guard, "delete", {"path": path, "recursive": True}),
    ):
        with contextlib.suppress(Denied, FSError):
            call()
        assert sorted(p.name for p in outside.iterdir()) == ["secret.txt"]
        assert (outside / "secret.txt").read_text() == SECRET + "\n"
