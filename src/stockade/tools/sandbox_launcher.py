"""The last step before a sandboxed command: resource limits, Landlock, exec.

``sandbox_launcher.c`` beside this file does the same without starting an
interpreter; stockade compiles and uses it where a C compiler is found, and
this one otherwise.

This file runs *inside* the sandbox (``python -I -S sandbox_launcher.py
CONFIG -- ARGV...``, CONFIG a hex-encoded :mod:`marshal` dict), after
bubblewrap has built the namespaces and loaded the seccomp filter, and right
before the command itself. It MUST NOT import
anything from stockade or from outside the standard library: the sandbox only
holds the interpreter's own prefix.

What it does, in order:

0. with the proxy network, start the relay: a process listening on
   ``127.0.0.1:PORT`` inside the sandbox's network namespace that carries
   each connection to the Unix socket of stockade's proxy bridge (bound into
   the sandbox); the relay confines itself with Landlock to nothing at all;
1. set the resource limits (CPU seconds, address space, processes, file size,
   open files, no core dumps);
2. where the kernel has Landlock, restrict the process (and so the command
   and everything it starts) to the file hierarchies and TCP ports in the
   configuration, and scope signals and abstract Unix sockets to the sandbox;
3. report what it applied on the status descriptor (``ok landlock=N`` or
   ``error MESSAGE``, one line) (close-on-exec, so the
   parent sees end-of-file when the command has started) and ``execve`` the
   command with exactly the environment in the configuration.

Any failure before ``execve`` is written to the status descriptor and the
launcher exits with status 126: the command never runs half-confined.

The module is importable too: :func:`landlock_abi` is the parent's probe.
"""

from __future__ import annotations

import _ctypes
import _signal  # type: ignore[import-not-found]
import marshal
import os
import resource
import sys

__all__ = ["landlock_abi", "main"]

# Landlock system calls have the same numbers on every architecture.
_SYS_CREATE_RULESET = 444
_SYS_ADD_RULE = 445
_SYS_RESTRICT_SELF = 446
_CREATE_RULESET_VERSION = 1
_RULE_PATH_BENEATH = 1
_RULE_NET_PORT = 2
_PR_SET_NO_NEW_PRIVS = 38

# Filesystem rights, by the ABI version that introduced them.
FS_EXECUTE = 1 << 0
FS_WRITE_FILE = 1 << 1
FS_READ_FILE = 1 << 2
FS_READ_DIR = 1 << 3
FS_REMOVE_DIR = 1 << 4
FS_REMOVE_FILE = 1 << 5
FS_MAKE_CHAR = 1 << 6
FS_MAKE_DIR = 1 << 7
FS_MAKE_REG = 1 << 8
FS_MAKE_SOCK = 1 << 9
FS_MAKE_FIFO = 1 << 10
FS_MAKE_BLOCK = 1 << 11
FS_MAKE_SYM = 1 << 12
FS_REFER = 1 << 13  # ABI 2
FS_TRUNCATE = 1 << 14  # ABI 3
FS_IOCTL_DEV = 1 << 15  # ABI 5
NET_BIND_TCP = 1 << 0  # ABI 4
NET_CONNECT_TCP = 1 << 1  # ABI 4
SCOPE_ABSTRACT_UNIX = 1 << 0  # ABI 6
SCOPE_SIGNAL = 1 << 1  # ABI 6

_FS_BY_ABI = {1: (1 << 13) - 1, 2: (1 << 14) - 1, 3: (1 << 15) - 1, 5: (1 << 16) - 1}
#: the rights that make sense on a file that is not a directory
_FILE_RIGHTS = FS_EXECUTE | FS_WRITE_FILE | FS_READ_FILE | FS_TRUNCATE | FS_IOCTL_DEV

#: named access sets the parent uses in the configuration
ACCESS = {
    "ro": FS_EXECUTE | FS_READ_FILE | FS_READ_DIR,
    "rw": (1 << 16) - 1,
    "dev": FS_READ_FILE | FS_WRITE_FILE | FS_READ_DIR,
}

_LIMITS = {
    "cpu": resource.RLIMIT_CPU,
    "memory": resource.RLIMIT_AS,
    "processes": resource.RLIMIT_NPROC,
    "file_size": resource.RLIMIT_FSIZE,
    "open_files": resource.RLIMIT_NOFILE,
    "core": resource.RLIMIT_CORE,
}


# The launcher talks to the kernel through ``_ctypes`` directly: importing the
# ``ctypes`` package (and ``json``) would double the launcher's start-up time,
# which every sandboxed command pays.


# (``typing`` is not imported either: it costs as much as the rest.)


class _Long(_ctypes._SimpleCData):  # type: ignore[type-arg]
    _type_ = "l"


class _Func(_ctypes.CFuncPtr):
    _flags_ = _ctypes.FUNCFLAG_CDECL | _ctypes.FUNCFLAG_USE_ERRNO
    _restype_ = _Long


class _Libc:
    def __init__(self) -> None:
        self._handle = _ctypes.dlopen(None, 0)  # type: ignore[arg-type]
        self._syscall = _Func(("syscall", self))  # type: ignore[arg-type]
        self._prctl = _Func(("prctl", self))  # type: ignore[arg-type]

    def syscall(self, *args: object) -> int:
        """Call ``syscall(2)``; every argument is passed as a C long (bytes as a pointer)."""
        conv = [a if isinstance(a, bytes) else _Long(int(a)) for a in args]  # type: ignore[call-overload]
        return int(self._syscall(*conv))

    def prctl(self, *args: int) -> int:
        return int(self._prctl(*[_Long(a) for a in args]))


def _errno() -> int:
    return int(_ctypes.get_errno())


def landlock_abi() -> int:
    """The Landlock ABI version the kernel offers (0 when it has none)."""
    try:
        abi = _Libc().syscall(_SYS_CREATE_RULESET, 0, 0, _CREATE_RULESET_VERSION)
    except (OSError, AttributeError):
        return 0
    return abi if abi > 0 else 0


def _u64(*values: int) -> bytes:
    return b"".join(v.to_bytes(8, "little") for v in values)


def _fs_mask(abi: int) -> int:
    mask = 0
    for version, rights in _FS_BY_ABI.items():
        if abi >= version:
            mask = rights
    return mask


class _Fail(Exception):
    pass


def _check(result: int, what: str) -> int:
    if result < 0:
        raise _Fail(f"{what} failed: {os.strerror(_errno()).lower()}")
    return result


def _landlock(cfg: dict[str, object]) -> int:
    """Apply the Landlock ruleset; return the ABI used (0 when none)."""
    abi = landlock_abi()
    if abi <= 0:
        if cfg.get("require"):
            raise _Fail("the kernel has no landlock and the sandbox requires it")
        return 0
    libc = _Libc()
    fs = _fs_mask(abi)
    net = (NET_BIND_TCP | NET_CONNECT_TCP) if abi >= 4 else 0
    scoped = (SCOPE_ABSTRACT_UNIX | SCOPE_SIGNAL) if abi >= 6 else 0
    if abi >= 6:
        attr = _u64(fs, net, scoped)
    elif abi >= 4:
        attr = _u64(fs, net)
    else:
        attr = _u64(fs)
    ruleset = _check(
        libc.syscall(_SYS_CREATE_RULESET, attr, len(attr), 0), "landlock_create_ruleset"
    )
    paths = cfg.get("paths") or []
    assert isinstance(paths, list)
    for path, access in paths:
        try:
            fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
        except OSError:
            continue  # not in this sandbox: nothing to allow
        try:
            rights = ACCESS[access] & fs
            if not os.path.isdir(f"/proc/self/fd/{fd}"):
                rights &= _FILE_RIGHTS
            # struct landlock_path_beneath_attr is packed: u64 access, s32 fd
            rule = rights.to_bytes(8, "little") + fd.to_bytes(4, "little", signed=True)
            _check(
                libc.syscall(_SYS_ADD_RULE, ruleset, _RULE_PATH_BENEATH, rule, 0),
                f"landlock rule for {path}",
            )
        finally:
            os.close(fd)
    ports = cfg.get("connect_tcp") or []
    assert isinstance(ports, list)
    if net:
        for port in ports:
            prule = _u64(NET_CONNECT_TCP, int(port))
            _check(
                libc.syscall(_SYS_ADD_RULE, ruleset, _RULE_NET_PORT, prule, 0),
                f"landlock rule for port {port}",
            )
    _check(libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(no_new_privs)")
    _check(libc.syscall(_SYS_RESTRICT_SELF, ruleset, 0), "landlock_restrict_self")
    os.close(ruleset)
    return abi


def _rlimits(limits: dict[str, int]) -> None:
    for name, value in limits.items():
        which = _LIMITS[name]
        hard = value + 1 if name == "cpu" else value  # SIGXCPU first, SIGKILL a second later
        try:
            resource.setrlimit(which, (value, hard))
        except (ValueError, OSError) as exc:
            raise _Fail(f"cannot set the {name} limit: {exc}") from None


def _relay(listen_port: int, socket_path: str) -> None:
    """Start the proxy relay in a detached grandchild (reparented to the sandbox's init)."""
    import select
    import socket

    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", listen_port))
    server.listen(64)
    pid = os.fork()
    if pid:
        server.close()
        os.waitpid(pid, 0)
        return
    # child: fork again so the command never sees the relay as its child
    if os.fork():
        os._exit(0)
    try:
        os.setsid()
        devnull = os.open("/dev/null", os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
        _landlock({"paths": [], "connect_tcp": []})
        pairs: dict[socket.socket, socket.socket] = {}
        while True:
            ready, _, _ = select.select([server, *pairs], [], [])
            for sock in ready:
                if sock is server:
                    client, _ = server.accept()
                    upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                    try:
                        upstream.connect(socket_path)
                    except OSError:
                        client.close()
                        upstream.close()
                        continue
                    pairs[client] = upstream
                    pairs[upstream] = client
                    continue
                other = pairs.get(sock)
                if other is None:
                    continue
                try:
                    data = sock.recv(65536)
                    if data:
                        other.sendall(data)
                        continue
                except OSError:
                    pass
                for s in (sock, other):
                    pairs.pop(s, None)
                    s.close()
    finally:
        os._exit(0)


def main(argv: list[str]) -> int:
    """Apply the configuration in ``argv[1]`` and exec the command after ``--``."""
    if len(argv) < 4 or argv[2] != "--":
        sys.stderr.write("stockade launcher: usage: launcher CONFIG -- PROGRAM [ARGS...]\n")
        return 126
    cfg = marshal.loads(bytes.fromhex(argv[1]))  # noqa: S302 - written by our parent
    status_fd = int(cfg.get("status_fd", -1))
    report: dict[str, object] = {"landlock": 0}
    try:
        if status_fd >= 0:
            os.set_inheritable(status_fd, False)  # closes on exec: EOF means "started"
        cgroup_fd = int(cfg.get("cgroup_fd", -1))
        if cgroup_fd >= 0:  # join the run's pids cgroup (root only) before anything else
            os.write(cgroup_fd, b"0")
            os.close(cgroup_fd)
        _rlimits(dict(cfg.get("limits") or {}))
        relay = cfg.get("relay")
        if relay:
            _relay(int(relay[0]), str(relay[1]))
        if cfg.get("landlock") is not None:
            report["landlock"] = _landlock(dict(cfg["landlock"]))
        # Python ignores SIGPIPE and SIGXFSZ, and ignored signals stay ignored
        # across exec: give the command the default actions back.
        for sig in (_signal.SIGPIPE, _signal.SIGXFSZ):
            _signal.signal(sig, _signal.SIG_DFL)
        cwd = cfg.get("cwd")
        if cwd:
            os.chdir(str(cwd))
        env = {str(k): str(v) for k, v in dict(cfg.get("env") or {}).items()}
        if status_fd >= 0:
            os.write(status_fd, f"ok landlock={report['landlock']}\n".encode())
        os.execve(argv[3], argv[3:], env)  # noqa: S606 - the command is the point
    except (_Fail, OSError) as exc:
        message = str(exc) if isinstance(exc, _Fail) else f"cannot start `{argv[3]}`: "
        if isinstance(exc, OSError):
            message += (exc.strerror or type(exc).__name__).lower()
        if status_fd >= 0:
            try:  # noqa: SIM105 - contextlib costs milliseconds at every start
                os.write(status_fd, f"error {message}\n".encode())
            except OSError:
                pass
        sys.stderr.write(f"stockade launcher: {message}\n")
        return 126
    return 126  # pragma: no cover - execve does not return


if __name__ == "__main__":
    sys.exit(main(sys.argv))
