"""A journal of prior states, and ``stockade undo``.

Before a tool changes something (a file written or deleted, rows updated),
it records what was there: a small JSON description (``before``), the prior
content as a content-addressed blob, and, once the change is done, what it
left (``after``). ``undo`` walks the entries of a call or a session newest
first and asks the tool's :class:`Restorer` to put each one back.

>>> import tempfile
>>> journal = Journal(tempfile.mkdtemp(), blob_budget=10_000_000)
>>> journal.record(call_id="c1", session="s1", tool="fs", kind="write",
...                target="notes/a.md", before={"exists": False},
...                after={"exists": True, "type": "file", "digest": "..."})
1
>>> [e.describe() for e in journal.entries(session="s1")]
['#1 fs write notes/a.md (call c1)']
>>> done = journal.undo(call_id="c1", restorers=fs_tool.restorers())  # doctest: +SKIP

Storage: ``<path>/journal.db`` (SQLite) and ``<path>/blobs/ab/abcdef...``
(SHA-256 named, verified on read); blobs up to 64 KiB are kept in the
database itself. Blobs count against ``blob_budget`` bytes;
a record that would go over it is refused, and a tool MUST refuse the change
it could not journal.

Permissions: the journal keeps whole prior states (rows with their masked and
confidential columns, file contents), so it is the operator's alone. A folder
it creates is ``0700``; ``journal.db`` is created ``0600`` before SQLite opens
it (SQLite gives its ``-wal`` and ``-shm`` files the database file's mode),
and journal files found looser are set back to ``0600``. A folder that
already exists is left as the operator made it: when it is group- or
world-accessible the journal logs a warning (``stockade.journal``), since
the names inside show but nothing else does. (Tightening it instead could
change a folder others rely on, and fails on one the operator does not own.)

Undo runs every check before any restore, so a conflict anywhere stops the
whole undo before anything is touched. Checks run newest first and a
restorer MUST judge each entry as if the newer ones in the same undo were
already undone (the fs tool keeps an overlay of the states its checks have
promised).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import secrets
import sqlite3
import stat
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from stockade.errors import JournalError, StockadeError

__all__ = ["INLINE_BLOB", "Journal", "JournalEntry", "Restorer", "register"]

#: blobs up to this size live in the database (one file create less per change)
INLINE_BLOB = 64 * 1024

log = logging.getLogger("stockade.journal")

#: the files SQLite keeps for the journal's database
_DB_FILES = ("journal.db", "journal.db-wal", "journal.db-shm")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    call_id TEXT NOT NULL,
    session TEXT NOT NULL,
    tool TEXT NOT NULL,
    kind TEXT NOT NULL,
    target TEXT NOT NULL,
    before TEXT NOT NULL,
    after TEXT,
    blob TEXT,
    time REAL NOT NULL,
    undone INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS entries_call ON entries (call_id);
CREATE INDEX IF NOT EXISTS entries_session ON entries (session);
CREATE TABLE IF NOT EXISTS blobs (digest TEXT PRIMARY KEY, size INTEGER NOT NULL, data BLOB);
"""


@dataclass(frozen=True)
class JournalEntry:
    """One recorded change: what was there (``before``, ``blob_digest``) and what
    it left (``after``; ``None`` while the change is under way or when it
    was interrupted)."""

    id: int
    call_id: str
    session: str
    tool: str
    kind: str
    target: str
    before: Mapping[str, Any]
    after: Mapping[str, Any] | None
    blob_digest: str | None
    time: float
    undone: bool

    def describe(self) -> str:
        """One line for people: ``#12 fs delete notes/a.md (call 3f2a...)``."""
        return f"#{self.id} {self.tool} {self.kind} {self.target} (call {self.call_id})"


@runtime_checkable
class Restorer(Protocol):
    """Puts one tool's journal entries back.

    ``check`` raises a :class:`~stockade.errors.ToolError` subclass with a
    clear message when restoring the entry would overwrite a later change;
    ``restore`` does it. ``check`` is called for every entry of an undo,
    newest first, before any ``restore``.
    """

    def check(self, entry: JournalEntry) -> None:
        """Raise when the entry cannot be restored without losing a later change."""
        ...

    def restore(self, entry: JournalEntry) -> None:
        """Put the state before the entry's change back."""
        ...


def _private_folder(path: Path) -> None:
    """Create ``path`` as ``0700`` (whatever the umask), or warn when the folder
    that is there lets its group or others in (see the module docs)."""
    try:
        path.mkdir(mode=0o700)
    except FileExistsError:
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            log.warning(
                "the journal folder %s is %s (open to its group or others): the journal "
                "keeps whole prior states, so make it 0700 (chmod 700 %s)",
                path,
                oct(mode),
                path,
            )
        return
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.mkdir(mode=0o700)
    os.chmod(path, 0o700)


def _tighten(path: Path, mode: int) -> None:
    """Take away group and other bits from a file or folder the journal owns."""
    current = stat.S_IMODE(path.stat().st_mode)
    if current & 0o077:
        os.chmod(path, mode)


def _json(value: Mapping[str, Any] | None) -> str | None:
    if value is None:
        return None
    return json.dumps(dict(value), sort_keys=True, separators=(",", ":"), default=str)


class Journal:
    """Prior states and blobs in ``path`` (a folder, created when missing).

    ``blob_budget`` is the most blob bytes the journal keeps; a record that
    would go over it raises :class:`~stockade.errors.JournalError`.
    ``durable`` (the default) syncs every blob and entry to disk before
    ``record`` returns, so the journal survives a power cut; without it the
    journal survives a crash of the process but not of the machine, and a
    record costs microseconds instead of milliseconds.
    """

    def __init__(
        self, path: str | os.PathLike[str], *, blob_budget: int, durable: bool = True
    ) -> None:
        if blob_budget < 0:
            raise JournalError("the blob budget must not be negative")
        self.path = Path(path)
        self.blob_budget = blob_budget
        self.durable = durable
        self._blobs = self.path / "blobs"
        try:
            _private_folder(self.path)
            self._blobs.mkdir(exist_ok=True, mode=0o700)
            _tighten(self._blobs, 0o700)
            db_path = self.path / "journal.db"
            # Created 0600 whatever the umask, before SQLite opens it; SQLite
            # then makes its -wal and -shm files with the same mode.
            os.close(os.open(db_path, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o600))
            _tighten(db_path, 0o600)
            self._db = sqlite3.connect(str(db_path), check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA busy_timeout = 5000")
            self._db.execute("PRAGMA journal_mode = WAL")
            for name in _DB_FILES[1:]:  # left looser by an older version
                if (self.path / name).exists():
                    _tighten(self.path / name, 0o600)
            self._db.execute(f"PRAGMA synchronous = {'FULL' if durable else 'NORMAL'}")
            self._db.executescript(_SCHEMA)
            columns = {row[1] for row in self._db.execute("PRAGMA table_info(blobs)")}
            if "data" not in columns:  # a journal made before blobs could be inline
                self._db.execute("ALTER TABLE blobs ADD COLUMN data BLOB")
        except (OSError, sqlite3.Error) as exc:
            raise JournalError(
                f"cannot open the journal in `{path}`: {type(exc).__name__}"
            ) from exc
        self._lock = threading.Lock()

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()

    # -- blobs ----------------------------------------------------------------

    def _blob_path(self, digest: str) -> Path:
        return self._blobs / digest[:2] / digest

    def blob_bytes(self) -> int:
        """How many blob bytes the journal holds now."""
        with self._lock:
            return self._blob_bytes()

    def _blob_bytes(self) -> int:
        row = self._db.execute("SELECT COALESCE(SUM(size), 0) FROM blobs").fetchone()
        return int(row[0])

    def _put_blob(self, data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        if self._db.execute("SELECT 1 FROM blobs WHERE digest = ?", (digest,)).fetchone():
            return digest
        if self._blob_bytes() + len(data) > self.blob_budget:
            raise JournalError(
                f"the journal's blob budget ({self.blob_budget} bytes) is spent; "
                "the change was not made"
            )
        if len(data) <= INLINE_BLOB:
            self._db.execute(
                "INSERT INTO blobs (digest, size, data) VALUES (?, ?, ?)", (digest, len(data), data)
            )
            return digest
        final = self._blob_path(digest)
        final.parent.mkdir(exist_ok=True, mode=0o700)
        tmp = final.with_name(f".{digest}.{secrets.token_hex(4)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                if self.durable:
                    os.fsync(fh.fileno())
            os.replace(tmp, final)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        self._db.execute("INSERT INTO blobs (digest, size) VALUES (?, ?)", (digest, len(data)))
        return digest

    def blob(self, digest: str) -> bytes:
        """The blob with this SHA-256 digest; raise :class:`JournalError` when it is
        missing or does not match its digest."""
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise JournalError(f"`{digest[:80]}` is not a blob digest")
        with self._lock:
            row = self._db.execute("SELECT data FROM blobs WHERE digest = ?", (digest,)).fetchone()
        if row is not None and row[0] is not None:
            data = bytes(row[0])
        else:
            try:
                data = self._blob_path(digest).read_bytes()
            except OSError as exc:
                raise JournalError(f"blob `{digest}` is missing from the journal") from exc
        if hashlib.sha256(data).hexdigest() != digest:
            raise JournalError(f"blob `{digest}` is damaged (its digest does not match)")
        return data

    # -- entries --------------------------------------------------------------

    def record(
        self,
        *,
        call_id: str,
        session: str,
        tool: str,
        kind: str,
        target: str,
        before: Mapping[str, Any],
        blob: bytes | None = None,
        after: Mapping[str, Any] | None = None,
    ) -> int:
        """Record a change about to happen (or done, with ``after``); return its id.

        Raise :class:`JournalError` when the blob does not fit the budget or
        the store fails: the caller MUST then not make the change.
        """
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    digest = self._put_blob(blob) if blob is not None else None
                    cur = self._db.execute(
                        "INSERT INTO entries (call_id, session, tool, kind, target, before, "
                        "after, blob, time) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (
                            call_id,
                            session,
                            tool,
                            kind,
                            target,
                            _json(before),
                            _json(after),
                            digest,
                            time.time(),
                        ),
                    )
                    self._db.execute("COMMIT")
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
            except JournalError:
                raise
            except (OSError, sqlite3.Error, TypeError, ValueError) as exc:
                raise JournalError(f"the journal could not record: {type(exc).__name__}") from exc
            return int(cur.lastrowid or 0)

    def finish(self, entry_id: int, after: Mapping[str, Any]) -> None:
        """Set what a recorded change left, once it is done."""
        self._write("UPDATE entries SET after = ? WHERE id = ?", (_json(after), entry_id))

    def discard(self, entry_id: int) -> None:
        """Forget an entry whose change did not happen after all."""
        self._write("DELETE FROM entries WHERE id = ?", (entry_id,))

    def _write(self, sql: str, params: tuple[Any, ...]) -> None:
        with self._lock:
            try:
                self._db.execute(sql, params)
            except sqlite3.Error as exc:
                raise JournalError(f"the journal could not update: {type(exc).__name__}") from exc

    def entries(
        self, *, call_id: str | None = None, session: str | None = None
    ) -> list[JournalEntry]:
        """Entries of a call and/or a session (all when neither is given), newest first."""
        where, params = [], []
        if call_id is not None:
            where.append("call_id = ?")
            params.append(call_id)
        if session is not None:
            where.append("session = ?")
            params.append(session)
        sql = (
            "SELECT id, call_id, session, tool, kind, target, before, after, blob, time, undone "
            "FROM entries"
        )
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY id DESC"
        with self._lock:
            try:
                rows = self._db.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise JournalError(f"the journal could not be read: {type(exc).__name__}") from exc
        return [
            JournalEntry(
                id=r[0],
                call_id=r[1],
                session=r[2],
                tool=r[3],
                kind=r[4],
                target=r[5],
                before=json.loads(r[6]),
                after=json.loads(r[7]) if r[7] is not None else None,
                blob_digest=r[8],
                time=r[9],
                undone=bool(r[10]),
            )
            for r in rows
        ]

    def undo(
        self,
        *,
        call_id: str | None = None,
        session: str | None = None,
        restorers: Mapping[str, Restorer],
        dry_run: bool = False,
    ) -> list[JournalEntry]:
        """Undo the changes of a call or a session, newest first; return the entries undone.

        Every entry is checked before anything is restored: a conflict (a later
        change that would be overwritten) raises before any change. With
        ``dry_run`` only the checks run and the entries are returned.
        """
        if call_id is None and session is None:
            raise JournalError("undo needs a call id or a session id")
        todo = [e for e in self.entries(call_id=call_id, session=session) if not e.undone]
        for entry in todo:
            if entry.tool not in restorers:
                raise JournalError(
                    f"no tool here can undo entry #{entry.id} of tool `{entry.tool}`; "
                    "nothing was undone"
                )
        for entry in todo:
            restorers[entry.tool].check(entry)
        if dry_run:
            return todo
        done: list[JournalEntry] = []
        for entry in todo:
            try:
                restorers[entry.tool].restore(entry)
            except StockadeError as exc:
                raise JournalError(
                    f"undo stopped at entry #{entry.id} ({exc}); "
                    f"{len(done)} newer entries were undone"
                ) from exc
            self._write("UPDATE entries SET undone = 1 WHERE id = ?", (entry.id,))
            done.append(entry)
        return done


# -- stockade undo ------------------------------------------------------------------


def register(subparsers: Any) -> None:
    """Add ``stockade undo`` to the command line."""
    p = subparsers.add_parser(
        "undo",
        help="undo the journaled changes of a call or a session",
        description=(
            "Restore what the tools of a policy changed (files written, edited, moved or "
            "deleted; rows changed by SQL writes) for one call or one whole session, newest "
            "first. Every change is checked first: if a later change would be overwritten, "
            "nothing is undone and the conflict is printed. Exit 0 when undone, 1 when there "
            "was nothing to undo, 2 on a conflict or error."
        ),
    )
    p.add_argument("--policy", required=True, metavar="FILE", help="the agent's policy file")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--call", metavar="ID", help="undo the changes of this call id")
    which.add_argument("--session", metavar="ID", help="undo every change of this session")
    p.add_argument(
        "--dry-run", action="store_true", help="only check and list what would be undone"
    )
    p.set_defaults(func=_undo_command)


def _undo_command(args: argparse.Namespace) -> int:
    from stockade.policy import Policy
    from stockade.tools import capabilities_from_policy

    policy = Policy.from_file(args.policy)
    caps = capabilities_from_policy(policy)
    try:
        groups: dict[Path, tuple[Journal, dict[str, Restorer]]] = {}
        for cap in caps:
            journal: Journal | None = getattr(cap, "journal", None)
            if journal is None:
                continue
            key = journal.path.resolve()
            _, restorers = groups.setdefault(key, (journal, {}))
            restorers.update(cap.restorers())  # type: ignore[attr-defined]
        if not groups:
            print("no tool in this policy keeps a journal", file=sys.stderr)
            return 2  # an error, not "nothing to undo"
        total = 0
        for journal, restorers in groups.values():
            done = journal.undo(
                call_id=args.call, session=args.session, restorers=restorers, dry_run=args.dry_run
            )
            verb = "would undo" if args.dry_run else "undone"
            for entry in done:
                print(f"{verb} {entry.describe()}")
            total += len(done)
        if total == 0:
            print("nothing to undo", file=sys.stderr)
            return 1
        return 0
    finally:
        for cap in caps:
            cap.close()
