"""DANGER: raw descriptor-relative path resolution (hazardous materials).

This module opens paths relative to a root directory descriptor and nothing
else: no policy, no built-in deny list, no size caps, no journal, no audit.
You MUST NOT hand it (or :class:`NaiveResolver`, which is not even confined)
to an agent. Use :class:`stockade.tools.fs.FSTool` through a
:class:`stockade.Guard` instead; it is built on :class:`Resolver`.

:class:`Resolver` resolves every path against an open descriptor of the root:

- with ``openat2(2)`` and ``RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS`` (plus
  ``RESOLVE_NO_SYMLINKS`` unless in-root symlinks are allowed) where the kernel
  has it (Linux 5.6+): the kernel refuses any step out of the root, absolute
  paths, ``..`` above the root, ``/proc/self/fd``-style magic links and
  absolute symlinks, atomically with the open;
- else by walking the path one component at a time with ``O_NOFOLLOW``:
  ``..`` and every symlink are refused (the fallback never follows symlinks).

Either way the caller gets a descriptor and acts on it (``fstat``, ``pread``,
``*at`` calls on a parent descriptor), never on the path string again, so a
path swapped after the check cannot redirect the operation.

:class:`NaiveResolver` joins strings and follows everything, like most agent
file tools do. It exists only so tests and benchmarks can switch the
descriptor layer off and show what the rule layer does alone.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import functools
import os
from typing import TYPE_CHECKING, Any, Literal

from stockade.errors import ConfigurationError, FSError

if TYPE_CHECKING:
    from stockade.tools.fs import FSConfig, FSTool

__all__ = [
    "RENAME_EXCHANGE",
    "RENAME_NOREPLACE",
    "RESOLVE_BENEATH",
    "RESOLVE_IN_ROOT",
    "RESOLVE_NO_MAGICLINKS",
    "RESOLVE_NO_SYMLINKS",
    "RESOLVE_NO_XDEV",
    "NaiveResolver",
    "Resolver",
    "has_openat2",
    "naive_fs_tool",
    "openat2",
    "renameat2",
]

RESOLVE_NO_XDEV = 0x01
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_BENEATH = 0x08
RESOLVE_IN_ROOT = 0x10

RENAME_NOREPLACE = 1 << 0
RENAME_EXCHANGE = 1 << 1

_SYS_OPENAT2 = 437  # the same number on every Linux architecture (new syscall table)

_libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
_renameat2_fn: Any = getattr(_libc, "renameat2", None)
if _renameat2_fn is not None:
    _renameat2_fn.argtypes = [
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_uint,
    ]
    _renameat2_fn.restype = ctypes.c_int


class _OpenHow(ctypes.Structure):
    _fields_ = (
        ("flags", ctypes.c_uint64),
        ("mode", ctypes.c_uint64),
        ("resolve", ctypes.c_uint64),
    )


@functools.lru_cache(maxsize=64)
def _open_how(flags: int, mode: int, resolve: int) -> _OpenHow:
    """One ``open_how`` per combination: the kernel only reads it, so it is shared."""
    return _OpenHow(flags, mode, resolve)


def _encode(path: str | bytes) -> bytes:
    data = os.fsencode(path)
    if b"\0" in data:
        raise OSError(errno.EINVAL, "embedded NUL byte in path")
    return data


def openat2(dirfd: int, path: str | bytes, flags: int, mode: int, resolve: int) -> int:
    """Call ``openat2(2)``; return the new descriptor or raise ``OSError``.

    ``EAGAIN`` (a concurrent rename during a ``..`` lookup) is retried a few
    times before it is raised.
    """
    how = _open_how(flags | os.O_CLOEXEC, mode, resolve)
    raw = _encode(path)
    for _ in range(16):
        fd = _libc.syscall(_SYS_OPENAT2, dirfd, raw, ctypes.byref(how), ctypes.sizeof(how))
        if fd >= 0:
            return int(fd)
        err = ctypes.get_errno()
        if err not in (errno.EAGAIN, errno.EINTR):
            raise OSError(err, os.strerror(err), os.fsdecode(raw))
    raise OSError(errno.EAGAIN, os.strerror(errno.EAGAIN), os.fsdecode(raw))


def renameat2(olddirfd: int, old: str, newdirfd: int, new: str, flags: int = 0) -> None:
    """Call ``renameat2(2)`` on names relative to two directory descriptors."""
    if _renameat2_fn is None:  # pragma: no cover - glibc < 2.28
        if flags:
            raise OSError(errno.ENOSYS, "renameat2 is not available")
        os.rename(old, new, src_dir_fd=olddirfd, dst_dir_fd=newdirfd)
        return
    if _renameat2_fn(olddirfd, _encode(old), newdirfd, _encode(new), flags) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), old)


_HAS_OPENAT2: bool | None = None


def has_openat2() -> bool:
    """Whether this kernel has ``openat2(2)`` with ``RESOLVE_BENEATH``."""
    global _HAS_OPENAT2
    if _HAS_OPENAT2 is None:
        try:
            fd = os.open("/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError:  # pragma: no cover - no root directory?
            _HAS_OPENAT2 = False
            return False
        try:
            os.close(openat2(fd, ".", os.O_PATH, 0, RESOLVE_BENEATH))
            _HAS_OPENAT2 = True
        except OSError:  # pragma: no cover - kernel older than 5.6, or seccomp
            _HAS_OPENAT2 = False
        finally:
            os.close(fd)
    return _HAS_OPENAT2


def _fs_error(exc: OSError, path: str) -> FSError:
    code = exc.errno or 0
    if code in (errno.EXDEV, errno.ELOOP):
        why = "leaves the root or goes through a symlink"
    elif code == errno.ENOENT:
        why = "does not exist"
    elif code == errno.EEXIST:
        why = "already exists"
    elif code == errno.ENOTDIR:
        why = "has a part that is not a folder"
    elif code == errno.EISDIR:
        why = "is a folder"
    elif code == errno.ENOTEMPTY:
        why = "is a folder that is not empty"
    elif code == errno.ENAMETOOLONG:
        why = "is too long"
    elif code in (errno.EACCES, errno.EPERM):
        why = "is not accessible"
    elif code == errno.EINVAL:
        why = "is not a valid path"
    else:
        why = (exc.strerror or type(exc).__name__).lower()
    shown = path if len(path) <= 120 else path[:117] + "..."
    return FSError(f"path `{shown}` {why}")


class Resolver:
    """Opens paths beneath one root directory, by descriptor.

    ``symlinks`` is ``refuse`` (no symlink is ever followed, the default) or
    ``in-root`` (relative symlinks that stay beneath the root are followed;
    needs ``openat2``). ``mode`` is ``auto``, ``openat2`` or ``walk`` (the
    ``O_NOFOLLOW`` component walk, for kernels without ``openat2``).

    >>> r = Resolver("/tmp")
    >>> fd = r.open("../etc/passwd", os.O_RDONLY)
    Traceback (most recent call last):
    ...
    stockade.errors.FSError: path `../etc/passwd` leaves the root or goes through a symlink
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        symlinks: Literal["refuse", "in-root"] = "refuse",
        mode: Literal["auto", "openat2", "walk"] = "auto",
    ) -> None:
        self.root = os.fspath(root)
        if mode == "auto":
            mode = "openat2" if has_openat2() else "walk"
        if mode == "openat2" and not has_openat2():
            raise ConfigurationError("this kernel has no openat2; use the walk resolver")
        if symlinks == "in-root" and mode == "walk":
            raise ConfigurationError("in-root symlinks need openat2; this kernel has none")
        self.mode = mode
        self.symlinks = symlinks
        self.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS
        if symlinks == "refuse":
            self.resolve |= RESOLVE_NO_SYMLINKS
        try:
            self.root_fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as exc:
            raise ConfigurationError(
                f"cannot open the fs root `{self.root}`: {(exc.strerror or '').lower()}"
            ) from exc
        try:
            self._root_real: str | None = os.readlink(f"/proc/self/fd/{self.root_fd}")
        except OSError:  # pragma: no cover - no /proc
            self._root_real = None

    def close(self) -> None:
        """Close the root descriptor."""
        if self.root_fd >= 0:
            os.close(self.root_fd)
            self.root_fd = -1

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # nothing to do at interpreter shutdown
            self.close()

    # -- opening ------------------------------------------------------------

    def open(self, path: str, flags: int, mode: int = 0o644) -> int:
        """Open ``path`` beneath the root; raise :class:`FSError` when it cannot.

        ``path`` is relative (``""`` or ``"."`` is the root). The returned
        descriptor belongs to the caller.
        """
        # O_TMPFILE includes O_DIRECTORY's bit: test for the whole of it.
        if not flags & os.O_CREAT and flags & os.O_TMPFILE != os.O_TMPFILE:
            mode = 0
        try:
            if self.mode == "openat2":
                return openat2(self.root_fd, path or ".", flags, mode, self.resolve)
            return self._walk(path, flags, mode)
        except OSError as exc:
            raise _fs_error(exc, path) from exc
        except ValueError as exc:  # pragma: no cover - NUL is caught by _encode first
            raise FSError(f"path `{path!r}` is not a valid path") from exc

    def _walk(self, path: str, flags: int, mode: int) -> int:
        if path.startswith("/"):
            raise OSError(errno.EXDEV, "absolute path", path)
        parts = [p for p in path.split("/") if p not in ("", ".")]
        if any(p == ".." for p in parts):
            raise OSError(errno.EXDEV, "`..` in path", path)
        for p in parts:
            _encode(p)
        if not parts:
            return os.open(".", flags | os.O_CLOEXEC, mode, dir_fd=self.root_fd)
        cur = self.root_fd
        try:
            for p in parts[:-1]:
                nxt = os.open(
                    p, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=cur
                )
                if cur != self.root_fd:
                    os.close(cur)
                cur = nxt
            return os.open(parts[-1], flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=cur)
        finally:
            if cur != self.root_fd:
                os.close(cur)

    def open_parent(self, path: str) -> tuple[int, str]:
        """Open the folder that holds ``path``; return its descriptor and the last name.

        The name is a single component (never ``.``, ``..`` or empty), for use
        with ``*at`` calls on the descriptor.
        """
        head, _, name = path.rstrip("/").rpartition("/")
        if name in ("", ".", ".."):
            raise FSError(f"path `{path}` has no name to act on")
        return self.open(head, os.O_RDONLY | os.O_DIRECTORY), name

    def fd_path(self, fd: int) -> str | None:
        """The path of an open descriptor relative to the root, or ``None`` if outside.

        Used to check what a descriptor really is (deny lists, in-root symlinks).
        """
        root = self._root_real
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:  # pragma: no cover - no /proc
            return None
        if root is None:  # pragma: no cover - no /proc
            return None
        if target == root:
            return "."
        prefix = root.rstrip("/") + "/"
        if not target.startswith(prefix):
            return None
        return target[len(prefix) :]


class NaiveResolver:
    """String joins, symlinks followed: the descriptor layer switched off. DANGER.

    Same interface as :class:`Resolver`; for tests and benchmarks only.
    """

    mode = "naive"
    symlinks = "follow"

    def __init__(self, root: str | os.PathLike[str], **_: Any) -> None:
        self.root = os.fspath(root)
        self.root_fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)

    def close(self) -> None:
        """Close the root descriptor."""
        if self.root_fd >= 0:
            os.close(self.root_fd)
            self.root_fd = -1

    def open(self, path: str, flags: int, mode: int = 0o644) -> int:
        """``open(root + "/" + path)``, following whatever is there."""
        try:
            return os.open(os.path.join(self.root, path), flags | os.O_CLOEXEC, mode)
        except (OSError, ValueError) as exc:
            raise FSError(f"path `{path[:120]}` cannot be opened") from exc

    def open_parent(self, path: str) -> tuple[int, str]:
        """Open the folder that holds ``path`` by string."""
        head, _, name = path.rstrip("/").rpartition("/")
        return self.open(head or ".", os.O_RDONLY | os.O_DIRECTORY), name

    def fd_path(self, fd: int) -> str | None:
        """Whatever the descriptor points at, relative to nothing in particular."""
        return None


def naive_fs_tool(config: FSConfig) -> FSTool:
    """An :class:`FSTool` whose descriptor layer is switched off. DANGER.

    Paths are joined as strings and symlinks followed; only ``prepare`` and
    ``check`` (the rule layer) stand between an agent and the whole machine.
    For tests that show the rule layer on its own, and for benchmarks.
    """
    from stockade.tools.fs import FSTool

    class _NaiveFSTool(FSTool):
        _resolver_class = NaiveResolver
        _check_file = staticmethod(_no_file_check)

    return _NaiveFSTool(config)


def _no_file_check(st: os.stat_result, path: str, allow_hardlinks: bool) -> None:
    """The naive tool does not look at what it opened."""
    del st, path, allow_hardlinks
