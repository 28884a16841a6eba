"""The fs tool's engine layer: every operation on descriptors beneath the root.

Nothing here re-resolves a path string after it was checked: a file is
opened by the resolver (``O_PATH``), checked with ``fstat`` on that
descriptor, and reopened for I/O through the same descriptor; changes act on
a name relative to an open parent-folder descriptor (``*at`` calls, temp file
+ ``renameat2``). Used only by :class:`stockade.tools.fs.FSTool`.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import stat
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import re2

from stockade.errors import FSError, StockadeError
from stockade.hazmat.fs_resolver import RENAME_NOREPLACE, renameat2
from stockade.policy.matchers import PatternError, compile_glob

if TYPE_CHECKING:
    from stockade.model import ToolCall
    from stockade.tools.base import Context
    from stockade.tools.fs import FSTool

__all__ = ["FSEngine", "check_file", "kind_of"]

_CHANGES = frozenset({"write", "append", "edit", "mkdir", "move", "delete"})
_RD = os.O_RDONLY | os.O_NOCTTY | os.O_NONBLOCK | os.O_CLOEXEC
_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False
_RE2_OPTIONS.max_mem = 8 << 20

Result = tuple[Any, dict[str, Any], list[str]]


def kind_of(mode: int) -> str:
    """``file``, ``dir``, ``symlink``, ``fifo``, ``socket``, ``device`` or ``other``."""
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISDIR(mode):
        return "dir"
    if stat.S_ISLNK(mode):
        return "symlink"
    if stat.S_ISFIFO(mode):
        return "fifo"
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device"
    return "other"  # pragma: no cover - no other file types on Linux


def check_file(st: os.stat_result, path: str, allow_hardlinks: bool) -> None:
    """Refuse anything but a regular file with one link (unless hard links are allowed)."""
    kind = kind_of(st.st_mode)
    if kind == "dir":
        raise FSError(f"path `{path}` is a folder")
    if kind != "file":
        raise FSError(f"path `{path}` is a {kind}; only regular files are read or written")
    if st.st_nlink > 1 and not allow_hardlinks:
        raise FSError(f"path `{path}` has other hard links; they are refused")


def _join(base: str, name: str) -> str:
    return name if base in ("", ".") else f"{base}/{name}"


def _lexical(path: str) -> str | None:
    """``path`` with ``.``, empty parts and ``..`` resolved as text (``None`` if it climbs out)."""
    canonical = (
        path
        and "//" not in path
        and "/." not in path
        and not path.startswith(("/", "./", "../"))
        and not path.endswith("/")
        and path not in (".", "..")
    )
    if canonical:
        return path  # the common case
    parts: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not parts:
                return None
            parts.pop()
        else:
            parts.append(part)
    return "/".join(parts) or "."


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _read_all(fd: int, size: int) -> bytes:
    chunks: list[bytes] = []
    offset = 0
    while True:
        chunk = os.pread(fd, max(size - offset, 0) + 65536, offset)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        offset += len(chunk)


def _int(call: ToolCall, key: str, default: int | None) -> int | None:
    value = call.args.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise FSError(f"`{key}` must be a non-negative integer")
    return value


def _str(call: ToolCall, key: str) -> str:
    value = call.args.get(key)
    if not isinstance(value, str):
        raise FSError(f"`{key}` must be a string")
    return value


def _not_found(exc: FSError) -> bool:
    return isinstance(exc.__cause__, (FileNotFoundError, NotADirectoryError))


class FSEngine:
    """The operations of :class:`~stockade.tools.fs.FSTool`, one ``op_<action>`` each.

    Each returns ``(value, meta, paths)``: what the model gets, facts for the
    audit record, and the paths whose labels the result carries.
    """

    def __init__(
        self, tool: FSTool, resolver: Any, check: Callable[[os.stat_result, str, bool], None]
    ) -> None:
        self.tool = tool
        self.r = resolver
        self._check = check
        self.limits = tool.limits
        self.hardlinks = tool.config.hardlinks
        self.durable = tool.config.durable
        self._nofollow = os.O_NOFOLLOW if resolver.symlinks == "refuse" else 0

    # -- opening by descriptor ------------------------------------------------

    def _confirm(self, fd: int, path: str, call: ToolCall, name: str | None = None) -> str:
        """Check what the descriptor really is: beneath the root, not on a deny
        list, and (after an in-root symlink) allowed for this call.

        With symlinks refused the kernel resolved exactly the lexical path;
        with in-root symlinks this asks the kernel (``/proc/self/fd``) where the
        descriptor is. Either way it holds for a path string the rule layer
        never saw canonicalised.
        """
        if self.r.mode == "naive":
            return path
        if self.r.symlinks == "refuse":
            # No symlink was followed and `..` cannot climb out, so the kernel
            # resolved exactly the lexical path: no need to ask /proc.
            real: str | None = _lexical(path)
        else:
            real = self.r.fd_path(fd)
            if real is not None and name is not None:
                real = _join(real, name)
        if real is None:
            raise FSError(f"path `{path[:120]}` leaves the root")
        if self.tool.section_denied(real, write=call.action in _CHANGES):
            raise FSError(f"path `{path[:120]}` is denied")
        if (
            self.r.symlinks == "in-root"
            and real != path
            and not self.tool.target_allowed(real, call)
        ):
            raise FSError(f"path `{path}` leads by symlink to `{real}`, which is not allowed")
        return real

    def _open_file(self, path: str, flags: int, call: ToolCall) -> tuple[int, os.stat_result, str]:
        """Open an existing regular file for I/O; checked on the descriptor before I/O.

        Also returns the real path beneath the root (the target of an in-root
        symlink), whose labels the content carries.
        """
        pfd = self.r.open(path, os.O_PATH | self._nofollow)
        try:
            st = os.fstat(pfd)
            self._check(st, path, self.hardlinks)
            real = self._confirm(pfd, path, call)
            try:
                fd = os.open(f"/proc/self/fd/{pfd}", flags | os.O_NOCTTY | os.O_NONBLOCK)
            except FileNotFoundError:  # pragma: no cover - no /proc: open the checked name
                fd = self.r.open(path, flags | os.O_NOCTTY | os.O_NONBLOCK | self._nofollow)
                if (os.fstat(fd).st_ino, os.fstat(fd).st_dev) != (st.st_ino, st.st_dev):
                    os.close(fd)
                    raise FSError(f"path `{path}` changed while it was opened") from None
            return fd, st, real
        finally:
            os.close(pfd)

    def _open_dir(self, path: str, call: ToolCall) -> int:
        fd: int = self.r.open(path, _DIR | self._nofollow)
        try:
            self._confirm(fd, path, call)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _parent(self, path: str, call: ToolCall) -> tuple[int, str]:
        if path in ("", "."):
            raise FSError("this operation needs a path below the root, not the root itself")
        dfd, name = self.r.open_parent(path)
        try:
            self._confirm(dfd, path, call, name)
        except BaseException:
            os.close(dfd)
            raise
        return dfd, name

    def _walk(self, fd: int, base: str) -> Iterator[tuple[int, str, str, os.stat_result]]:
        """Entries under the folder ``fd`` (path ``base``), depth first, never
        following symlinks; yields ``(parent fd, name, path, lstat)``."""
        seen = 0
        stack: list[tuple[int, str]] = [(os.dup(fd), base)]
        try:
            while stack:
                dfd, prefix = stack.pop()
                try:
                    with os.scandir(dfd) as it:
                        names = sorted(e.name for e in it)
                    for name in names:
                        seen += 1
                        if seen > self.limits.walk_entries:
                            raise FSError(
                                f"more than {self.limits.walk_entries} entries under `{base}`"
                            )
                        path = _join(prefix, name)
                        try:
                            st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
                        except FileNotFoundError:
                            continue
                        yield dfd, name, path, st
                        if stat.S_ISDIR(st.st_mode) and not self.tool.section_denied(path):
                            try:
                                sub = os.open(name, _DIR | os.O_NOFOLLOW, dir_fd=dfd)
                            except OSError:
                                continue
                            stack.append((sub, path))
                finally:
                    os.close(dfd)
        finally:
            for dfd, _ in stack:
                os.close(dfd)

    # -- journal ----------------------------------------------------------------

    def _record(
        self, call: ToolCall, target: str, before: dict[str, Any], blob: bytes | None = None
    ) -> int | None:
        journal = self.tool.journal
        if journal is None:
            return None
        return journal.record(
            call_id=call.call_id,
            session=call.session,
            tool="fs",
            kind=call.action,
            target=target,
            before=before,
            blob=blob,
        )

    def _finish(self, entry: int | None, after: dict[str, Any]) -> None:
        if entry is not None and self.tool.journal is not None:
            self.tool.journal.finish(entry, after)

    def _discard(self, entry: int | None) -> None:
        if entry is not None and self.tool.journal is not None:
            with contextlib.suppress(StockadeError):
                self.tool.journal.discard(entry)

    # -- reading ----------------------------------------------------------------

    def op_read(self, call: ToolCall, ctx: Context) -> Result:
        """Read a byte range of a file (capped per call and per session) as text."""
        path = _str(call, "path")
        offset = _int(call, "offset", 0) or 0
        length = _int(call, "length", None)
        n = self.limits.read_bytes if length is None else min(length, self.limits.read_bytes)
        left = self.tool.remaining(ctx, "read", self.limits.session_read_bytes)
        if left is not None:
            if left <= 0:
                raise FSError("the session's fs read budget is spent")
            n = min(n, left)
        fd, st, real = self._open_file(path, os.O_RDONLY, call)
        try:
            # Never ask for more than the file holds: pread allocates what it is asked for.
            data = os.pread(fd, max(0, min(n, st.st_size - offset)), offset)
        finally:
            os.close(fd)
        self.tool._spend(ctx, "read", len(data), self.limits.session_read_bytes, "read bytes")
        try:
            text = data.decode("utf-8")
            binary = False
        except UnicodeDecodeError:
            text = data.decode("utf-8", "replace")
            binary = True
        meta = {
            "bytes": len(data),
            "size": st.st_size,
            "offset": offset,
            "truncated": offset + len(data) < st.st_size,
            "binary": binary,
        }
        # Through an in-root symlink the content is the target's: its labels count.
        return text, meta, [path] if real == path else [path, real]

    def op_list(self, call: ToolCall, ctx: Context) -> Result:
        """The entries of a folder (denied names left out), capped."""
        path = _str(call, "path")
        fd = self._open_dir(path, call)
        entries: list[dict[str, Any]] = []
        truncated = False
        try:
            with os.scandir(fd) as it:
                found = sorted(it, key=lambda e: e.name)
            for entry in found:
                if self.tool.section_denied(_join(path, entry.name)):
                    continue
                if len(entries) >= self.limits.list_entries:
                    truncated = True
                    break
                # The directory entry's type needs no system call; only files get a stat.
                try:
                    if entry.is_symlink():
                        kind, size = "symlink", None
                    elif entry.is_dir(follow_symlinks=False):
                        kind, size = "dir", None
                    else:
                        st = entry.stat(follow_symlinks=False)
                        kind = kind_of(st.st_mode)
                        size = st.st_size if kind == "file" else None
                except FileNotFoundError:
                    continue
                entries.append({"name": entry.name, "type": kind, "size": size})
        finally:
            os.close(fd)
        named = [_join(path, e["name"]) for e in entries]
        return entries, {"entries": len(entries), "truncated": truncated}, [path, *named]

    def op_glob(self, call: ToolCall, ctx: Context) -> Result:
        """Paths under a folder that match a glob (relative to that folder), capped."""
        path = _str(call, "path")
        pattern = _str(call, "pattern")
        try:
            match = compile_glob([pattern])
        except PatternError as exc:
            raise FSError(f"bad glob `{pattern[:120]}`: {exc}") from None
        fd = self._open_dir(path, call)
        found: list[str] = []
        truncated = False
        try:
            for _, _, rel_full, _ in self._walk(fd, path):
                rel = rel_full if path == "." else rel_full[len(path) + 1 :]
                if match(rel) and not self.tool.section_denied(rel_full):
                    if len(found) >= self.limits.glob_results:
                        truncated = True
                        break
                    found.append(rel_full)
        finally:
            os.close(fd)
        # Names are content too: an attacker who can put a file in an untrusted
        # folder chooses its name, so every match lends its label to the result.
        return found, {"matches": len(found), "truncated": truncated}, [path, *found]

    def op_search(self, call: ToolCall, ctx: Context) -> Result:
        """Lines matching an RE2 pattern in the readable text files under a path."""
        path = _str(call, "path")
        try:
            rx = re2.compile(_str(call, "pattern"), options=_RE2_OPTIONS)
        except re2.error:
            raise FSError("bad search pattern (RE2 syntax)") from None
        glob = call.args.get("glob")
        only = compile_glob([glob]) if isinstance(glob, str) else None
        results: list[dict[str, Any]] = []
        sources: list[str] = []
        scanned = files = 0
        truncated = False
        pfd = self.r.open(path, os.O_PATH | self._nofollow)
        try:
            is_dir = stat.S_ISDIR(os.fstat(pfd).st_mode)
        finally:
            os.close(pfd)
        if is_dir:
            fd = self._open_dir(path, call)
            candidates: Iterator[tuple[int, str, str, os.stat_result]] = self._walk(fd, path)
        else:
            fd, name = self._parent(path, call)
            candidates = iter([(fd, name, path, os.stat(name, dir_fd=fd, follow_symlinks=False))])
        try:
            for dfd, name, full, st in candidates:
                if not stat.S_ISREG(st.st_mode):
                    continue
                rel = full if path == "." else full[len(path) + 1 :] or name
                if only is not None and not only(rel):
                    continue
                if (st.st_nlink > 1 and not self.hardlinks) or st.st_size > self.limits.file_bytes:
                    continue
                if not self.tool.may_read(full, call):
                    continue
                if files >= self.limits.search_files or scanned + st.st_size > (
                    self.limits.search_bytes
                ):
                    truncated = True
                    break
                data = self._read_at(dfd, name, st)
                if data is None or b"\0" in data[:8192]:
                    continue
                files += 1
                scanned += len(data)
                hit = False
                for lineno, line in enumerate(data.decode("utf-8", "replace").splitlines(), 1):
                    if rx.search(line) is None:
                        continue
                    if len(results) >= self.limits.search_results:
                        truncated = True
                        break
                    results.append({"path": full, "line": lineno, "text": line[:300]})
                    hit = True
                if hit:
                    sources.append(full)
                if truncated:
                    break
        finally:
            os.close(fd)
        returned = sum(len(r["text"]) for r in results)
        self.tool._spend(ctx, "read", returned, self.limits.session_read_bytes, "read bytes")
        meta = {"results": len(results), "files": files, "truncated": truncated}
        return results, meta, sources or [path]

    def _read_at(self, dfd: int, name: str, st: os.stat_result) -> bytes | None:
        try:
            fd = os.open(name, _RD | os.O_NOFOLLOW, dir_fd=dfd)
        except OSError:
            return None
        try:
            fst = os.fstat(fd)
            if (fst.st_ino, fst.st_dev) != (st.st_ino, st.st_dev) or not stat.S_ISREG(fst.st_mode):
                return None
            return _read_all(fd, fst.st_size)[: self.limits.file_bytes]
        finally:
            os.close(fd)

    def op_stat(self, call: ToolCall, ctx: Context) -> Result:
        """Type, size, mode, link count and modification time (symlinks not followed)."""
        path = _str(call, "path")
        if path in ("", "."):
            st = os.fstat(self.r.root_fd)
        else:
            dfd, name = self._parent(path, call)
            try:
                st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
            except OSError as exc:
                raise FSError(f"path `{path}` does not exist") from exc
            finally:
                os.close(dfd)
        info = {
            "path": path,
            "type": kind_of(st.st_mode),
            "size": st.st_size,
            "mode": oct(stat.S_IMODE(st.st_mode)),
            "links": st.st_nlink,
            "modified": st.st_mtime,
        }
        return info, {}, [path]

    # -- changing ---------------------------------------------------------------

    def _prior(
        self, dfd: int, name: str, path: str, *, content: bool = True
    ) -> tuple[dict[str, Any], bytes | None, int]:
        """What is at ``name`` now: state, content, mode; refuses what may not be replaced.

        Without ``content`` (no journal, and the operation does not need the old
        bytes) the file is only looked at, not read.
        """
        try:
            st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
        except FileNotFoundError:
            return {"exists": False}, None, 0o644
        kind = kind_of(st.st_mode)
        if kind == "symlink":
            raise FSError(f"path `{path}` is a symlink; it is not replaced")
        self._check(st, path, self.hardlinks)
        mode = stat.S_IMODE(st.st_mode)
        if not content:
            return {"exists": True, "type": "file", "size": st.st_size, "mode": mode}, None, mode
        if st.st_size > self.limits.file_bytes:
            raise FSError(f"path `{path}` is larger than {self.limits.file_bytes} bytes")
        fd = os.open(name, _RD | os.O_NOFOLLOW, dir_fd=dfd)
        try:
            fst = os.fstat(fd)
            if (fst.st_ino, fst.st_dev) != (st.st_ino, st.st_dev):
                raise FSError(f"path `{path}` changed while it was read")
            data = _read_all(fd, fst.st_size)
        finally:
            os.close(fd)
        state = {
            "exists": True,
            "type": "file",
            "digest": _digest(data),
            "size": len(data),
            "mode": stat.S_IMODE(st.st_mode),
        }
        return state, data, stat.S_IMODE(st.st_mode)

    def _replace(
        self,
        call: ToolCall,
        ctx: Context,
        produce: Callable[[bytes | None], bytes],
        *,
        overwrite: bool = True,
        added: int,
        needs_old: bool = True,
    ) -> Result:
        """Write a file atomically: temp file in the same folder, then rename."""
        path = _str(call, "path")
        if added > self.limits.write_bytes:
            raise FSError(f"content is larger than {self.limits.write_bytes} bytes")
        left = self.tool.remaining(ctx, "write", self.limits.session_write_bytes)
        if left is not None and added > left:
            raise FSError("the session's fs write budget is spent")
        dfd, name = self._parent(path, call)
        try:
            keep = needs_old or self.tool.journal is not None
            before, content, mode = self._prior(dfd, name, path, content=keep)
            if before["exists"] and not overwrite:
                raise FSError(f"path `{path}` already exists")
            new = produce(content)
            if len(new) > self.limits.file_bytes:
                raise FSError(f"the result would be larger than {self.limits.file_bytes} bytes")
            entry = self._record(call, path, before, content)
            tmp = f".{name[:64]}.{secrets.token_hex(6)}.stockade-tmp"
            try:
                fd = os.open(
                    tmp,
                    os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                    0o600,
                    dir_fd=dfd,
                )
                try:
                    view = memoryview(new)
                    while view:
                        view = view[os.write(fd, view) :]
                    os.fchmod(fd, mode)
                    if self.durable:
                        os.fsync(fd)
                finally:
                    os.close(fd)
                renameat2(dfd, tmp, dfd, name, 0 if overwrite else RENAME_NOREPLACE)
                if self.durable:
                    os.fsync(dfd)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp, dir_fd=dfd)
                self._discard(entry)
                raise
            after = {
                "exists": True,
                "type": "file",
                "digest": _digest(new),
                "size": len(new),
                "mode": mode,
            }
            self._finish(entry, after)
        finally:
            os.close(dfd)
        self.tool._spend(ctx, "write", added, self.limits.session_write_bytes, "write bytes")
        value = {"path": path, "bytes": len(new), "journal": [entry] if entry else []}
        return value, {"bytes": len(new), "created": not before["exists"]}, [path]

    def op_write(self, call: ToolCall, ctx: Context) -> Result:
        """Create or replace a file atomically."""
        data = _str(call, "content").encode("utf-8")
        overwrite = call.args.get("overwrite", True)
        return self._replace(
            call, ctx, lambda _: data, overwrite=overwrite is True, added=len(data), needs_old=False
        )

    def op_append(self, call: ToolCall, ctx: Context) -> Result:
        """Add text at the end of a file (created when missing); atomic like write."""
        data = _str(call, "content").encode("utf-8")
        return self._replace(call, ctx, lambda old: (old or b"") + data, added=len(data))

    def op_edit(self, call: ToolCall, ctx: Context) -> Result:
        """Replace one substring that occurs exactly once in a UTF-8 text file."""
        path = _str(call, "path")
        old, new = _str(call, "old"), _str(call, "new")
        if not old:
            raise FSError("`old` must not be empty")

        def produce(content: bytes | None) -> bytes:
            if content is None:
                raise FSError(f"path `{path}` does not exist")
            try:
                text = content.decode("utf-8")
            except UnicodeDecodeError:
                raise FSError(f"path `{path}` is not UTF-8 text") from None
            count = text.count(old)
            if count != 1:
                raise FSError(f"`old` occurs {count} times in `{path}`; it must occur exactly once")
            return text.replace(old, new).encode("utf-8")

        return self._replace(call, ctx, produce, added=len(new.encode("utf-8")))

    def op_mkdir(self, call: ToolCall, ctx: Context) -> Result:
        """Make a folder (and its missing parents with ``parents``)."""
        path = _str(call, "path")
        parents = call.args.get("parents", False) is True
        parts = path.split("/")
        targets = ["/".join(parts[: i + 1]) for i in range(len(parts))] if parents else [path]
        made: list[int] = []
        created = 0
        for target in targets:
            dfd, name = self._parent(target, call)
            try:
                try:
                    st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
                except FileNotFoundError:
                    st = None
                if st is not None:
                    if parents and stat.S_ISDIR(st.st_mode):
                        continue
                    raise FSError(f"path `{target}` already exists")
                entry = self._record(call, target, {"exists": False})
                try:
                    os.mkdir(name, 0o755, dir_fd=dfd)
                except BaseException:
                    self._discard(entry)
                    raise
                self._finish(entry, {"exists": True, "type": "dir"})
                created += 1
                if entry:
                    made.append(entry)
            finally:
                os.close(dfd)
        return {"path": path, "created": created, "journal": made}, {"created": created}, [path]

    def _tree(self, dfd: int, name: str, path: str) -> list[tuple[str, os.stat_result]]:
        """Everything under the folder ``name``, deepest first, after checking that
        none of it is denied, special or too much."""
        fd = os.open(name, _DIR | os.O_NOFOLLOW, dir_fd=dfd)
        out: list[tuple[str, os.stat_result]] = []
        try:
            for _, _, full, st in self._walk(fd, path):
                if self.tool.section_denied(full, write=True):
                    raise FSError(f"`{path}` holds `{full}`, which is denied; refusing the whole")
                kind = kind_of(st.st_mode)
                if kind in ("fifo", "socket", "device"):
                    raise FSError(f"`{path}` holds a {kind} at `{full}`; refusing the whole")
                if kind == "file" and st.st_nlink > 1 and not self.hardlinks:
                    raise FSError(f"`{path}` holds `{full}`, which has other hard links")
                out.append((full, st))
                if len(out) > self.limits.delete_entries:
                    raise FSError(f"`{path}` holds more than {self.limits.delete_entries} entries")
        finally:
            os.close(fd)
        out.sort(key=lambda item: item[0].count("/"), reverse=True)
        return out

    def op_move(self, call: ToolCall, ctx: Context) -> Result:
        """Move or rename inside the root; never over an existing destination."""
        src, dst = _str(call, "path"), _str(call, "dest")
        if dst == src or dst.startswith(src + "/"):
            raise FSError(f"cannot move `{src}` into itself")
        sdfd, sname = self._parent(src, call)
        try:
            ddfd, dname = self._parent(dst, call)
            try:
                try:
                    st = os.stat(sname, dir_fd=sdfd, follow_symlinks=False)
                except FileNotFoundError:
                    raise FSError(f"path `{src}` does not exist") from None
                kind = kind_of(st.st_mode)
                state: dict[str, Any] = {"exists": True, "type": kind}
                if kind == "dir":
                    self._tree(sdfd, sname, src)
                elif kind == "symlink":
                    raise FSError(f"path `{src}` is a symlink; symlinks are not moved")
                else:
                    self._check(st, src, self.hardlinks)
                    keep = self.tool.journal is not None
                    state, _, _ = self._prior(sdfd, sname, src, content=keep)
                entry = self._record(call, src, state)
                try:
                    renameat2(sdfd, sname, ddfd, dname, RENAME_NOREPLACE)
                except OSError as exc:
                    self._discard(entry)
                    if isinstance(exc, FileExistsError):
                        raise FSError(f"path `{dst}` already exists") from exc
                    raise FSError(f"cannot move `{src}` to `{dst}`") from exc
                self._finish(entry, {**state, "dest": dst})
            finally:
                os.close(ddfd)
        finally:
            os.close(sdfd)
        value = {"path": src, "dest": dst, "journal": [entry] if entry else []}
        return value, {"dest": dst}, [dst]

    def op_delete(self, call: ToolCall, ctx: Context) -> Result:
        """Delete a file, symlink or folder (a non-empty folder needs ``recursive``)."""
        path = _str(call, "path")
        recursive = call.args.get("recursive", False) is True
        dfd, name = self._parent(path, call)
        try:
            try:
                st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
            except FileNotFoundError:
                raise FSError(f"path `{path}` does not exist") from None
            plan: list[tuple[str, os.stat_result]] = []
            if stat.S_ISDIR(st.st_mode):
                plan = self._tree(dfd, name, path)
                if plan and not recursive:
                    raise FSError(f"path `{path}` is a folder that is not empty; pass recursive")
                journal = self.tool.journal
                need = sum(s.st_size for _, s in plan if stat.S_ISREG(s.st_mode))
                if journal is not None and journal.blob_bytes() + need > journal.blob_budget:
                    raise FSError(
                        f"deleting `{path}` needs {need} bytes of journal; the budget is spent"
                    )
        finally:
            os.close(dfd)
        plan.append((path, st))
        entries = [self._delete_one(call, p, s) for p, s in plan]
        ids = [e for e in entries if e]
        return {"path": path, "deleted": len(plan), "journal": ids}, {"deleted": len(plan)}, [path]

    def _delete_one(self, call: ToolCall, path: str, expect: os.stat_result) -> int | None:
        dfd, name = self._parent(path, call)
        try:
            try:
                st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
            except FileNotFoundError:
                raise FSError(f"path `{path}` disappeared during the delete") from None
            if (st.st_ino, st.st_dev) != (expect.st_ino, expect.st_dev):
                raise FSError(f"path `{path}` changed during the delete")
            kind = kind_of(st.st_mode)
            blob: bytes | None = None
            if kind == "symlink":
                before: dict[str, Any] = {
                    "exists": True,
                    "type": "symlink",
                    "link": os.readlink(name, dir_fd=dfd),
                }
            elif kind == "dir":
                before = {"exists": True, "type": "dir", "mode": stat.S_IMODE(st.st_mode)}
            else:
                keep = self.tool.journal is not None
                before, blob, _ = self._prior(dfd, name, path, content=keep)
            entry = self._record(call, path, before, blob)
            try:
                if kind == "dir":
                    os.rmdir(name, dir_fd=dfd)
                else:
                    os.unlink(name, dir_fd=dfd)
            except OSError as exc:
                self._discard(entry)
                raise FSError(f"cannot delete `{path}`") from exc
            self._finish(entry, {"exists": False})
            return entry
        finally:
            os.close(dfd)
