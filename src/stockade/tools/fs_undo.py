"""Undo for the fs tool: puts journal entries back, by descriptor beneath the root.

Used by ``stockade undo`` through :meth:`stockade.tools.fs.FSTool.restorers`.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from typing import Any

from stockade.errors import FSError
from stockade.hazmat.fs_resolver import RENAME_NOREPLACE, renameat2
from stockade.tools.fs_engine import _DIR, _RD, _digest, _not_found, _read_all, kind_of
from stockade.tools.journal import Journal, JournalEntry

__all__ = ["FSRestorer"]

State = dict[str, Any] | None


def _under(path: str, prefix: str) -> str | None:
    if path == prefix:
        return ""
    if path.startswith(prefix + "/"):
        return path[len(prefix) :]
    return None


class FSRestorer:
    """Puts fs journal entries back (see :class:`stockade.tools.journal.Restorer`).

    Checks run newest first before any restore; the restorer keeps an overlay
    of the states its checks promised (and of moves it will undo), so a
    sequence of changes to one path, or a move followed by changes inside,
    checks as a whole. Make a new one for each undo.
    """

    def __init__(self, resolver: Any, journal: Journal | None, file_bytes: int = 64 << 20):
        self.r = resolver
        self.journal = journal
        self.file_bytes = file_bytes
        self._overlay: dict[str, State] = {}
        self._moves: list[tuple[str, str]] = []

    # -- state ------------------------------------------------------------------

    def _real(self, path: str) -> str | None:
        """The real path that holds what ``path`` will hold once the checked entries
        are undone (``None``: nothing will be there)."""
        for src, dest in reversed(self._moves):
            rest = _under(path, src)
            if rest is not None:
                path = dest + rest
                continue
            if _under(path, dest) is not None:
                return None
        return path

    def _state(self, path: str) -> State:
        if path in self._overlay:
            return self._overlay[path]
        real = self._real(path)
        if real is None:
            return None
        return self._disk(real)

    def _disk(self, path: str) -> State:
        if path == ".":
            return {"exists": True, "type": "dir"}
        try:
            dfd, name = self.r.open_parent(path)
        except FSError as exc:
            if _not_found(exc):
                return None
            raise
        try:
            try:
                st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
            except FileNotFoundError:
                return None
            kind = kind_of(st.st_mode)
            if kind == "symlink":
                return {"exists": True, "type": kind, "link": os.readlink(name, dir_fd=dfd)}
            if kind != "file":
                return {"exists": True, "type": kind}
            digest = None
            if st.st_size <= self.file_bytes:
                fd = os.open(name, _RD | os.O_NOFOLLOW, dir_fd=dfd)
                try:
                    digest = _digest(_read_all(fd, st.st_size))
                finally:
                    os.close(fd)
            return {"exists": True, "type": "file", "digest": digest, "size": st.st_size}
        finally:
            os.close(dfd)

    @staticmethod
    def _same(expected: Any, actual: State) -> bool:
        if not expected or not expected.get("exists"):
            return actual is None
        if actual is None or expected.get("type") != actual.get("type"):
            return False
        if expected["type"] == "file":
            if expected.get("digest") and actual.get("digest"):
                return bool(expected["digest"] == actual["digest"])
            return bool(expected.get("size") == actual.get("size"))
        if expected["type"] == "symlink":
            return bool(expected.get("link") == actual.get("link"))
        return True

    # -- the protocol -----------------------------------------------------------

    def check(self, entry: JournalEntry) -> None:
        """Raise :class:`FSError` when undoing ``entry`` would lose a later change."""
        target = entry.target
        what = f"entry #{entry.id} ({entry.kind} `{target}`)"
        if entry.after is None:
            raise FSError(f"cannot undo {what}: the change was interrupted; check it by hand")
        if entry.kind == "move":
            dest = str(entry.after.get("dest", ""))
            if not self._same(entry.after, self._state(dest)):
                raise FSError(f"cannot undo {what}: `{dest}` was changed after the move")
            if self._state(target) is not None:
                raise FSError(f"cannot undo {what}: something new is at `{target}`")
            # What the overlay says is at `dest` will be at `target` once undone.
            moved = {}
            for key in list(self._overlay):
                rest = _under(key, dest)
                if rest is not None:
                    moved[target + rest] = self._overlay.pop(key)
                elif _under(key, target) is not None:
                    del self._overlay[key]
            self._overlay.update(moved)
            self._overlay[dest] = None
            self._moves.append((target, dest))
            return
        if not self._same(entry.after, self._state(target)):
            raise FSError(
                f"cannot undo {what}: `{target}` was changed later; "
                "undo that change first or restore it by hand"
            )
        if entry.after.get("type") == "dir" and not entry.before.get("exists"):
            real = self._real(target)
            for name in self._children(real) if real is not None else []:
                child = f"{target}/{name}"
                if self._overlay.get(child, {"exists": True}) is not None:
                    raise FSError(f"cannot undo {what}: `{child}` was added to it later")
        self._overlay[target] = dict(entry.before) if entry.before.get("exists") else None

    def _children(self, path: str) -> list[str]:
        try:
            fd = self.r.open(path, _DIR | os.O_NOFOLLOW)
        except FSError:
            return []
        try:
            with os.scandir(fd) as it:
                return [e.name for e in it]
        finally:
            os.close(fd)

    def restore(self, entry: JournalEntry) -> None:
        """Put back what was there before ``entry``'s change."""
        target = entry.target
        if entry.kind == "move":
            dest = str((entry.after or {}).get("dest", ""))
            sdfd, sname = self.r.open_parent(target)
            try:
                ddfd, dname = self.r.open_parent(dest)
                try:
                    renameat2(ddfd, dname, sdfd, sname, RENAME_NOREPLACE)
                except OSError as exc:
                    raise FSError(f"cannot move `{dest}` back to `{target}`") from exc
                finally:
                    os.close(ddfd)
            finally:
                os.close(sdfd)
            return
        before = entry.before
        dfd, name = self.r.open_parent(target)
        try:
            if not before.get("exists"):
                self._remove(dfd, name, target)
            elif before.get("type") == "file":
                if self.journal is None or entry.blob_digest is None:
                    raise FSError(f"the journal holds no content for `{target}`")
                self._put(dfd, name, self.journal.blob(entry.blob_digest), before)
            elif before.get("type") == "dir":
                mode = int(before.get("mode", 0o755))
                with contextlib.suppress(FileExistsError):
                    os.mkdir(name, 0o700, dir_fd=dfd)
                # The mode goes on through a descriptor (umask and symlinks cannot bend it).
                fd = os.open(name, _DIR | os.O_NOFOLLOW, dir_fd=dfd)
                try:
                    os.fchmod(fd, mode)
                finally:
                    os.close(fd)
            elif before.get("type") == "symlink":
                os.symlink(str(before["link"]), name, dir_fd=dfd)
        except OSError as exc:
            raise FSError(f"cannot restore `{target}`") from exc
        finally:
            os.close(dfd)

    @staticmethod
    def _remove(dfd: int, name: str, target: str) -> None:
        try:
            st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
        except FileNotFoundError:
            return
        if stat.S_ISDIR(st.st_mode):
            os.rmdir(name, dir_fd=dfd)
        else:
            os.unlink(name, dir_fd=dfd)

    @staticmethod
    def _put(dfd: int, name: str, data: bytes, before: Any) -> None:
        tmp = f".{name[:64]}.{secrets.token_hex(6)}.stockade-tmp"
        fd = os.open(
            tmp,
            os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
            0o600,
            dir_fd=dfd,
        )
        try:
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fchmod(fd, int(before.get("mode", 0o644)))
            finally:
                os.close(fd)
            os.rename(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=dfd)
            raise
