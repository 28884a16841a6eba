"""The generic journal: records, blobs, budget, undo order and all-checks-first."""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from stockade.errors import JournalError, ToolError
from stockade.tools.journal import INLINE_BLOB, Journal, JournalEntry, Restorer


class KVRestorer:
    """Restores a plain dict, the way a real tool restores files or rows."""

    def __init__(self, store: dict[str, Any], journal: Journal) -> None:
        self.store = store
        self.journal = journal
        self.seen: dict[str, Any] = {}
        self.restored: list[int] = []

    def check(self, entry: JournalEntry) -> None:
        current = self.seen.get(entry.target, self.store.get(entry.target))
        assert entry.after is not None
        if current != entry.after.get("value"):
            raise ToolError(f"`{entry.target}` changed later")
        self.seen[entry.target] = entry.before.get("value")

    def restore(self, entry: JournalEntry) -> None:
        if entry.blob_digest is not None:
            self.store[entry.target] = self.journal.blob(entry.blob_digest).decode()
        else:
            self.store.pop(entry.target, None)
        self.restored.append(entry.id)


def _set(j: Journal, store: dict[str, Any], key: str, value: str, call: str, session: str) -> int:
    old = store.get(key)
    eid = j.record(
        call_id=call,
        session=session,
        tool="kv",
        kind="set",
        target=key,
        before={"value": old},
        blob=old.encode() if old is not None else None,
        after={"value": value},
    )
    store[key] = value
    return eid


def test_record_entries_and_blobs(tmp_path: Path) -> None:
    j = Journal(tmp_path / "j", blob_budget=1000)
    a = j.record(
        call_id="c1", session="s", tool="t", kind="k", target="x", before={"n": 1}, blob=b"hello"
    )
    b = j.record(
        call_id="c2", session="s", tool="t", kind="k", target="y", before={}, blob=b"hello"
    )
    assert [e.id for e in j.entries(session="s")] == [b, a]
    assert [e.id for e in j.entries(call_id="c1")] == [a]
    e = j.entries(call_id="c1")[0]
    assert e.before == {"n": 1} and e.after is None and not e.undone
    assert j.blob(e.blob_digest or "") == b"hello"
    assert j.blob_bytes() == 5  # content-addressed: stored once
    j.finish(a, {"n": 2})
    assert j.entries(call_id="c1")[0].after == {"n": 2}
    j.discard(b)
    assert [x.id for x in j.entries()] == [a]
    j.close()


def test_budget_is_enforced_and_nothing_is_recorded(tmp_path: Path) -> None:
    j = Journal(tmp_path, blob_budget=4)
    with pytest.raises(JournalError, match="budget"):
        j.record(call_id="c", session="s", tool="t", kind="k", target="x", before={}, blob=b"12345")
    assert j.entries() == []
    with pytest.raises(JournalError):
        Journal(tmp_path / "x", blob_budget=-1)


def test_large_blobs_live_in_files_small_ones_in_the_database(tmp_path: Path) -> None:
    j = Journal(tmp_path, blob_budget=1 << 20)
    big, small = b"b" * (INLINE_BLOB + 1), b"small"
    for blob in (big, small):
        j.record(call_id="c", session="s", tool="t", kind="k", target="x", before={}, blob=blob)
    files = [p for p in (tmp_path / "blobs").rglob("*") if p.is_file()]
    assert [p.read_bytes() for p in files] == [big]
    digests = [e.blob_digest or "" for e in j.entries()]
    assert [j.blob(d) for d in digests] == [small, big]


def test_damaged_or_missing_blobs_are_reported(tmp_path: Path) -> None:
    j = Journal(tmp_path, blob_budget=1 << 20)
    data = b"a" * (INLINE_BLOB + 10)
    j.record(call_id="c", session="s", tool="t", kind="k", target="x", before={}, blob=data)
    digest = j.entries()[0].blob_digest or ""
    (tmp_path / "blobs" / digest[:2] / digest).write_bytes(data[:-1] + b"b")
    with pytest.raises(JournalError, match="damaged"):
        j.blob(digest)
    with pytest.raises(JournalError, match="missing"):
        j.blob("0" * 64)
    with pytest.raises(JournalError, match="not a blob digest"):
        j.blob("../../etc/passwd")


def test_undo_newest_first_with_checks_before_restores(tmp_path: Path) -> None:
    j = Journal(tmp_path, blob_budget=1000)
    store: dict[str, Any] = {}
    _set(j, store, "k", "1", "c1", "s")
    _set(j, store, "k", "2", "c2", "s")
    _set(j, store, "other", "x", "c3", "s2")
    restorer = KVRestorer(store, j)
    assert isinstance(restorer, Restorer)
    done = j.undo(session="s", restorers={"kv": restorer})
    assert [e.call_id for e in done] == ["c2", "c1"]
    assert store == {"other": "x"}
    assert all(e.undone for e in j.entries(session="s"))
    assert j.undo(session="s", restorers={"kv": KVRestorer(store, j)}) == []


def test_a_conflict_stops_everything_before_any_restore(tmp_path: Path) -> None:
    j = Journal(tmp_path, blob_budget=1000)
    store: dict[str, Any] = {}
    _set(j, store, "a", "1", "c1", "s")
    _set(j, store, "b", "1", "c2", "s")
    store["a"] = "changed by someone else"
    restorer = KVRestorer(store, j)
    with pytest.raises(ToolError, match="changed later"):
        j.undo(session="s", restorers={"kv": restorer})
    assert restorer.restored == []
    assert store["b"] == "1"


def test_undo_needs_a_selector_and_a_restorer_for_every_tool(tmp_path: Path) -> None:
    j = Journal(tmp_path, blob_budget=1000)
    store: dict[str, Any] = {}
    _set(j, store, "a", "1", "c1", "s")
    with pytest.raises(JournalError, match="call id or a session"):
        j.undo(restorers={})
    with pytest.raises(JournalError, match="no tool here can undo"):
        j.undo(session="s", restorers={})


class _Broken:
    def check(self, entry: JournalEntry) -> None:
        pass

    def restore(self, entry: JournalEntry) -> None:
        raise ToolError("disk on fire")


def test_a_failing_restore_is_reported_with_progress(tmp_path: Path) -> None:
    j = Journal(tmp_path, blob_budget=1000)
    store: dict[str, Any] = {}
    _set(j, store, "a", "1", "c1", "s")
    restorers: Mapping[str, Restorer] = {"kv": _Broken()}
    with pytest.raises(JournalError, match="undo stopped at entry #1"):
        j.undo(session="s", restorers=restorers)
    assert not j.entries()[0].undone


def test_the_journal_survives_reopening(tmp_path: Path) -> None:
    j = Journal(tmp_path, blob_budget=1000)
    j.record(call_id="c", session="s", tool="t", kind="k", target="x", before={}, blob=b"z")
    j.close()
    j2 = Journal(tmp_path, blob_budget=1000)
    assert len(j2.entries()) == 1
    assert j2.entries()[0].describe().startswith("#1 t k x")


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def open_umask() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def test_a_new_journal_is_readable_only_by_its_owner(tmp_path: Path, open_umask: None) -> None:
    j = Journal(tmp_path / "state" / "j", blob_budget=10 * INLINE_BLOB)
    big = b"x" * (INLINE_BLOB + 1)  # goes to a blob file
    j.record(call_id="c", session="s", tool="t", kind="k", target="x", before={}, blob=big)
    folder = tmp_path / "state" / "j"
    assert _mode(folder) == 0o700
    assert _mode(folder / "blobs") == 0o700
    files = ["journal.db", "journal.db-wal", "journal.db-shm"]
    for name in files:
        assert (folder / name).exists(), name
        assert _mode(folder / name) == 0o600, name
    for blob in (folder / "blobs").rglob("*"):
        assert _mode(blob) == (0o700 if blob.is_dir() else 0o600), blob
    j.close()


def test_journal_files_left_open_are_tightened(tmp_path: Path, open_umask: None) -> None:
    folder = tmp_path / "j"
    Journal(folder, blob_budget=100).close()
    for name in ("journal.db", "blobs"):
        os.chmod(folder / name, 0o755 if name == "blobs" else 0o644)
    Journal(folder, blob_budget=100).close()
    assert _mode(folder / "journal.db") == 0o600
    assert _mode(folder / "blobs") == 0o700


def test_an_existing_folder_is_kept_and_an_open_one_warned_about(
    tmp_path: Path, open_umask: None, caplog: pytest.LogCaptureFixture
) -> None:
    tight = tmp_path / "tight"
    tight.mkdir()
    os.chmod(tight, 0o700)  # made private by the operator: kept, nothing to say
    with caplog.at_level(logging.WARNING, logger="stockade.journal"):
        Journal(tight, blob_budget=100).close()
    assert _mode(tight) == 0o700
    assert not caplog.records
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o755)
    with caplog.at_level(logging.WARNING, logger="stockade.journal"):
        Journal(shared, blob_budget=100).close()
    assert _mode(shared) == 0o755  # not changed behind the operator's back
    assert _mode(shared / "journal.db") == 0o600
    assert [r.levelname for r in caplog.records] == ["WARNING"]
    assert "0o755" in caplog.text and "chmod 700" in caplog.text
