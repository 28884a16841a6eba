"""Journal and undo for every changing fs operation, alone and in sequences."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from fs_support import Arena, arena, fs, make_guard, policy_text

from stockade import FSError, Guard
from stockade.cli import main
from stockade.errors import JournalError

__all__ = ["arena"]


def tree(root: Path) -> dict[str, Any]:
    """Every entry under root with its content (files), link (symlinks) or `dir`."""
    out: dict[str, Any] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            rel = str(p.relative_to(root))
            if p.is_symlink():
                out[rel] = ("link", os.readlink(p))
            elif p.is_dir():
                out[rel] = ("dir", oct(p.stat().st_mode & 0o7777))
            else:
                out[rel] = (p.read_bytes(), oct(p.stat().st_mode & 0o7777))
    return out


@pytest.fixture
def guard(arena: Arena) -> Any:
    g = make_guard(policy_text(arena.root, arena.state))
    yield g
    g.close()


def undo(guard: Guard, **which: str) -> list[Any]:
    tool = fs(guard)
    assert tool.journal is not None
    return tool.journal.undo(restorers=tool.restorers(), **which)


OPS = [
    ("write-new", "write", {"path": "notes/new.md", "content": "fresh"}),
    ("write-over", "write", {"path": "notes/a.txt", "content": "replaced"}),
    ("append", "append", {"path": "notes/a.txt", "content": "more\n"}),
    ("append-new", "append", {"path": "notes/c.txt", "content": "first\n"}),
    ("edit", "edit", {"path": "notes/a.txt", "old": "world", "new": "there"}),
    ("mkdir", "mkdir", {"path": "notes/d"}),
    ("mkdir-parents", "mkdir", {"path": "notes/p/q/r", "parents": True}),
    ("move-file", "move", {"path": "notes/a.txt", "dest": "notes/sub/moved.txt"}),
    ("move-dir", "move", {"path": "notes/sub", "dest": "notes/sub2"}),
    ("delete-file", "delete", {"path": "notes/a.txt"}),
    ("delete-dir", "delete", {"path": "notes/sub", "recursive": True}),
    ("delete-tree", "delete", {"path": "notes", "recursive": True}),
]


@pytest.mark.parametrize(("action", "args"), [o[1:] for o in OPS], ids=[o[0] for o in OPS])
def test_each_change_is_undone_exactly(arena: Arena, guard: Guard, action: str, args: Any) -> None:
    os.chmod(arena.root / "notes" / "a.txt", 0o640)
    os.chmod(arena.root / "notes" / "sub", 0o777)
    os.symlink("a.txt", arena.root / "notes" / "sub" / "link")  # a symlink inside a tree
    before = tree(arena.root)
    result = guard.call("fs", action, args, session="s")
    assert result.value["journal"]
    assert tree(arena.root) != before
    done = undo(guard, call_id=result.call.call_id)
    assert done
    assert tree(arena.root) == before
    assert undo(guard, call_id=result.call.call_id) == []  # undone entries stay undone


def test_a_session_sequence_is_undone_newest_first(arena: Arena, guard: Guard) -> None:
    before = tree(arena.root)
    steps = [
        ("write", {"path": "notes/a.txt", "content": "one\n"}),
        ("append", {"path": "notes/a.txt", "content": "two\n"}),
        ("edit", {"path": "notes/a.txt", "old": "two", "new": "deux"}),
        ("mkdir", {"path": "notes/x/y", "parents": True}),
        ("move", {"path": "notes/a.txt", "dest": "notes/x/a.txt"}),
        ("edit", {"path": "notes/x/a.txt", "old": "one", "new": "un"}),
        ("move", {"path": "notes/x", "dest": "notes/z"}),
        ("write", {"path": "notes/z/new.txt", "content": "new"}),
        ("delete", {"path": "notes/sub", "recursive": True}),
        ("delete", {"path": "notes", "recursive": True}),
    ]
    for action, args in steps:
        guard.call("fs", action, args, session="seq")
    assert not (arena.root / "notes").exists()
    done = undo(guard, session="seq")
    assert [e.id for e in done] == sorted((e.id for e in done), reverse=True)
    assert tree(arena.root) == before


def test_undo_refuses_to_overwrite_a_later_change(arena: Arena, guard: Guard) -> None:
    r = guard.call("fs", "write", {"path": "notes/a.txt", "content": "agent\n"})
    (arena.root / "notes" / "a.txt").write_text("the user's own edit\n")
    with pytest.raises(FSError, match=r"was changed later"):
        undo(guard, call_id=r.call.call_id)
    assert (arena.root / "notes" / "a.txt").read_text() == "the user's own edit\n"


def test_undoing_an_older_call_alone_is_refused_when_a_newer_one_changed_it(
    arena: Arena, guard: Guard
) -> None:
    first = guard.call("fs", "write", {"path": "notes/a.txt", "content": "1\n"}, session="s")
    guard.call("fs", "write", {"path": "notes/a.txt", "content": "2\n"}, session="s")
    with pytest.raises(FSError, match="changed later"):
        undo(guard, call_id=first.call.call_id)
    assert (arena.root / "notes" / "a.txt").read_text() == "2\n"
    undo(guard, session="s")
    assert (arena.root / "notes" / "a.txt").read_text() == "hello\nworld\n"


def test_nothing_is_restored_when_any_check_fails(arena: Arena, guard: Guard) -> None:
    guard.call("fs", "write", {"path": "notes/one.txt", "content": "1"}, session="s")
    guard.call("fs", "write", {"path": "notes/two.txt", "content": "2"}, session="s")
    (arena.root / "notes" / "one.txt").write_text("changed by someone else")
    with pytest.raises(FSError):
        undo(guard, session="s")
    assert (arena.root / "notes" / "two.txt").exists()  # the newer one was not undone either


def test_undo_of_mkdir_refuses_when_the_folder_got_content(arena: Arena, guard: Guard) -> None:
    r = guard.call("fs", "mkdir", {"path": "notes/d"})
    (arena.root / "notes" / "d" / "user.txt").write_text("mine")
    with pytest.raises(FSError, match="added to it later"):
        undo(guard, call_id=r.call.call_id)


def test_undo_of_move_refuses_when_the_source_is_taken(arena: Arena, guard: Guard) -> None:
    r = guard.call("fs", "move", {"path": "notes/a.txt", "dest": "notes/b.txt"})
    (arena.root / "notes" / "a.txt").write_text("new file at the old name")
    with pytest.raises(FSError, match="something new"):
        undo(guard, call_id=r.call.call_id)


def test_dry_run_checks_and_changes_nothing(arena: Arena, guard: Guard) -> None:
    r = guard.call("fs", "delete", {"path": "notes/a.txt"})
    tool = fs(guard)
    assert tool.journal is not None
    planned = tool.journal.undo(call_id=r.call.call_id, restorers=tool.restorers(), dry_run=True)
    assert [e.kind for e in planned] == ["delete"]
    assert not (arena.root / "notes" / "a.txt").exists()


def test_a_change_that_does_not_fit_the_journal_is_not_made(arena: Arena) -> None:
    text = policy_text(arena.root).replace("version: 1\n", "version: 1\n") + (
        f"  journal: {{path: '{arena.state}', blob_budget: 8}}\n"
    )
    with make_guard(text) as guard:
        with pytest.raises(JournalError, match="budget"):
            guard.call("fs", "write", {"path": "notes/a.txt", "content": "x"})
        assert (arena.root / "notes" / "a.txt").read_text() == "hello\nworld\n"
        with pytest.raises(FSError, match="budget"):
            guard.call("fs", "delete", {"path": "notes", "recursive": True})
        assert (arena.root / "notes" / "a.txt").exists()
        assert fs(guard).journal.entries() == []  # type: ignore[union-attr]


def test_failed_change_leaves_no_journal_entry(arena: Arena, guard: Guard) -> None:
    with pytest.raises(FSError):
        guard.call("fs", "write", {"path": "notes/a.txt", "content": "x", "overwrite": False})
    with pytest.raises(FSError):
        guard.call("fs", "move", {"path": "notes/a.txt", "dest": "notes/sub/b.md"})
    assert fs(guard).journal.entries() == []  # type: ignore[union-attr]


def test_interrupted_entry_is_not_undone_blindly(arena: Arena, guard: Guard) -> None:
    tool = fs(guard)
    assert tool.journal is not None
    tool.journal.record(
        call_id="c",
        session="s",
        tool="fs",
        kind="write",
        target="notes/a.txt",
        before={"exists": False},
    )
    with pytest.raises(FSError, match="interrupted"):
        undo(guard, call_id="c")


def _cli_policy(arena: Arena) -> Path:
    path = arena.base / "policy.yaml"
    path.write_text(policy_text(arena.root, arena.state))
    return path


def test_cli_undo_call_and_session(arena: Arena, guard: Guard, capsys: Any) -> None:
    before = tree(arena.root)
    r = guard.call("fs", "delete", {"path": "notes", "recursive": True}, session="cli")
    policy = str(_cli_policy(arena))
    assert main(["undo", "--policy", policy, "--call", r.call.call_id, "--dry-run"]) == 0
    assert "would undo" in capsys.readouterr().out
    assert not (arena.root / "notes").exists()
    assert main(["undo", "--policy", policy, "--session", "cli"]) == 0
    assert "fs delete notes" in capsys.readouterr().out
    assert tree(arena.root) == before
    assert main(["undo", "--policy", policy, "--session", "cli"]) == 1
    assert "nothing to undo" in capsys.readouterr().err


def test_cli_undo_without_a_journal_is_an_error(arena: Arena, capsys: Any) -> None:
    path = arena.base / "nojournal.yaml"
    path.write_text(f"version: 1\nfs: {{root: '{arena.root}'}}\n")
    assert main(["undo", "--policy", str(path), "--session", "s"]) == 2
    assert "no tool in this policy keeps a journal" in capsys.readouterr().err


def test_cli_undo_conflict_exits_2_in_a_real_process(arena: Arena, guard: Guard) -> None:
    r = guard.call("fs", "write", {"path": "notes/a.txt", "content": "agent"}, session="p")
    (arena.root / "notes" / "a.txt").write_text("user")
    exe = Path(sys.executable).with_name("stockade")
    proc = subprocess.run(
        [str(exe), "undo", "--policy", str(_cli_policy(arena)), "--call", r.call.call_id],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert proc.returncode == 2, proc.stderr
    assert "was changed later" in proc.stderr
    assert (arena.root / "notes" / "a.txt").read_text() == "user"


def test_cli_undo_help_names_the_options() -> None:
    with pytest.raises(SystemExit):
        main(["undo", "--help"])


def test_undo_a_chain_of_moves_with_changes_between(arena: Arena, guard: Guard) -> None:
    before = tree(arena.root)
    steps = [
        ("move", {"path": "notes/a.txt", "dest": "notes/b.txt"}),
        ("move", {"path": "notes/b.txt", "dest": "notes/sub/c.txt"}),
        ("write", {"path": "notes/b.txt", "content": "a new file at the middle name"}),
        ("move", {"path": "notes/sub", "dest": "notes/moved-sub"}),
        ("edit", {"path": "notes/moved-sub/c.txt", "old": "world", "new": "there"}),
        ("mkdir", {"path": "notes/m/n", "parents": True}),
        ("write", {"path": "notes/m/n/x.txt", "content": "x"}),
        ("delete", {"path": "notes/m/n/x.txt"}),
    ]
    for action, args in steps:
        guard.call("fs", action, args, session="chain")
    done = undo(guard, session="chain")
    assert len(done) == 9  # mkdir with parents made two entries
    assert tree(arena.root) == before


def test_undo_of_a_move_refuses_when_the_moved_file_changed(arena: Arena, guard: Guard) -> None:
    r = guard.call("fs", "move", {"path": "notes/a.txt", "dest": "notes/b.txt"})
    (arena.root / "notes" / "b.txt").write_text("edited after the move")
    with pytest.raises(FSError, match="was changed after the move"):
        undo(guard, call_id=r.call.call_id)
    assert not (arena.root / "notes" / "a.txt").exists()


def test_undo_of_a_symlink_delete_refuses_when_a_new_link_is_there(
    arena: Arena, guard: Guard
) -> None:
    os.symlink("a.txt", arena.root / "notes" / "ln")
    r = guard.call("fs", "delete", {"path": "notes/sub", "recursive": True}, session="l")
    os.symlink("sub", arena.root / "notes" / "ln2")
    done = undo(guard, call_id=r.call.call_id)
    assert (arena.root / "notes" / "sub" / "b.md").exists() and done
    os.symlink("elsewhere", arena.root / "notes" / "sub" / "ln3")
    r2 = guard.call("fs", "delete", {"path": "notes/sub/ln3"}, session="l")
    os.symlink("somewhere-else", arena.root / "notes" / "sub" / "ln3")
    with pytest.raises(FSError, match="changed later"):
        undo(guard, call_id=r2.call.call_id)
    assert os.readlink(arena.root / "notes" / "sub" / "ln3") == "somewhere-else"
