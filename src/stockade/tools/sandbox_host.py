"""The host side of the sandbox: what it probes and prepares before a command starts.

- :func:`probe`: bubblewrap, user namespaces, Landlock, the seccomp table;
- :class:`_PidsCgroup`: the per-run pids cgroup used when stockade runs as
  root (the kernel never applies RLIMIT_NPROC to host uid 0);
- the launchers: the C launcher compiled on the fly, the Python one compiled
  to a ``.pyc``, their configuration formats, the ``/etc`` copy, all in a
  private folder (mode 0700) removed at exit;
- :class:`ProxyBridge`: the Unix socket that carries the proxy network's
  connections to stockade's forward proxy.

:mod:`stockade.tools.sandbox` builds on these; nothing here runs a command.
"""

from __future__ import annotations

import contextlib
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stockade.errors import SandboxUnavailable
from stockade.tools import sandbox_seccomp
from stockade.tools.sandbox_launcher import landlock_abi

__all__ = ["Probe", "ProxyBridge", "probe"]

_RUN = "/run/stockade"
_PYTHON_IN = f"{_RUN}/python"
_DATA = Path(__file__).with_name("sandbox_data")
_RLIMITS = {
    "cpu": resource.RLIMIT_CPU,
    "memory": resource.RLIMIT_AS,
    "processes": resource.RLIMIT_NPROC,
    "file_size": resource.RLIMIT_FSIZE,
    "open_files": resource.RLIMIT_NOFILE,
    "core": resource.RLIMIT_CORE,
}

# -- probing -------------------------------------------------------------------


@dataclass(frozen=True)
class Probe:
    """What this machine offers: bubblewrap, user namespaces, Landlock, seccomp."""

    bwrap: str | None
    bwrap_version: tuple[int, ...]
    userns: bool
    userns_error: str
    landlock: int
    seccomp_arch: str | None


_probe_lock = threading.Lock()
_probes: dict[str, Probe] = {}


def probe(bwrap: str | None = None) -> Probe:
    """Find out (once per process) what sandboxing the machine offers."""
    path = bwrap or shutil.which("bwrap") or ""
    with _probe_lock:
        cached = _probes.get(path)
        if cached is not None:
            return cached
        result = _probe(path or None)
        _probes[path] = result
        return result


def _probe(bwrap: str | None) -> Probe:
    arch = sandbox_seccomp.current_arch()
    arch_name = arch.name if arch else None
    if bwrap is None:
        return Probe(None, (), False, "bubblewrap is not installed", landlock_abi(), arch_name)
    version: tuple[int, ...] = ()
    userns, error = False, ""
    try:
        out = subprocess.run(  # noqa: S603 - bwrap found on PATH, fixed arguments
            [bwrap, "--version"], capture_output=True, timeout=10, env={}, check=False
        )
        m = re.search(rb"(\d+)\.(\d+)\.(\d+)", out.stdout)
        version = tuple(int(x) for x in m.groups()) if m else ()
        true = shutil.which("true") or "/bin/true"
        run = subprocess.run(  # noqa: S603 - bwrap found on PATH, fixed arguments
            [bwrap, *_NAMESPACES, "--ro-bind", "/", "/", "--proc", "/proc", "--dev", "/dev", true],
            capture_output=True,
            timeout=10,
            env={},
            check=False,
        )
        userns = run.returncode == 0
        if not userns:
            lines = run.stderr.decode("utf-8", "replace").strip().splitlines()
            error = lines[0] if lines else f"bwrap exited with status {run.returncode}"
    except (OSError, subprocess.SubprocessError) as exc:
        error = f"bwrap could not run: {type(exc).__name__}"
    return Probe(bwrap, version, userns, error, landlock_abi(), arch_name)


_NAMESPACES = (
    "--unshare-user",
    "--unshare-pid",
    "--unshare-ipc",
    "--unshare-uts",
    "--unshare-cgroup",
)


# -- the pids cgroup (root only) -------------------------------------------------


class _PidsCgroup:
    """A pids cgroup for one run, for root, where RLIMIT_NPROC does not hold.

    The kernel never applies the process limit to processes of host uid 0,
    and a sandbox started by root maps its user to host uid 0. A pids cgroup
    bounds the number of processes whatever the uid.
    """

    _V1 = Path("/sys/fs/cgroup/pids")
    _V2 = Path("/sys/fs/cgroup")

    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def base(cls) -> Path | None:
        """Where run cgroups can be made, or ``None``."""
        if (cls._V1 / "pids.max").exists() or (cls._V1 / "cgroup.procs").exists():
            return cls._V1 / "stockade" if os.access(cls._V1, os.W_OK) else None
        controllers = cls._V2 / "cgroup.controllers"
        try:
            if "pids" not in controllers.read_text().split():
                return None
            own = Path("/proc/self/cgroup").read_text()
        except OSError:
            return None
        if "0::/\n" not in own or not os.access(cls._V2, os.W_OK):
            return None
        return cls._V2 / "stockade"

    @classmethod
    def create(cls, base: Path, limit: int) -> _PidsCgroup:
        """Make a fresh cgroup with ``pids.max = limit``."""
        try:
            if not base.exists():
                base.mkdir(exist_ok=True)
                if base.parent == cls._V2:
                    (cls._V2 / "cgroup.subtree_control").write_text("+pids")
                    (base / "cgroup.subtree_control").write_text("+pids")
            path = base / uuid.uuid4().hex
            path.mkdir()
            (path / "pids.max").write_text(str(limit))
            group = cls(path)
        except OSError as exc:
            raise SandboxUnavailable(
                f"cannot make a pids cgroup under `{base}`: {(exc.strerror or '').lower()}"
            ) from exc
        return group

    def procs_fd(self) -> int:
        """A new inheritable descriptor on ``cgroup.procs``: writing ``0`` joins the cgroup.

        The launcher writes it before anything else, so the command and all
        it starts are counted (``fork`` of the parent stays the fast path).
        """
        fd = os.open(self.path / "cgroup.procs", os.O_WRONLY)
        os.set_inheritable(fd, True)
        return fd

    def kill_all(self) -> None:
        """SIGKILL every process in the cgroup."""
        kill_file = self.path / "cgroup.kill"
        if kill_file.exists():
            with contextlib.suppress(OSError):
                kill_file.write_text("1")
                return
        for _ in range(50):
            try:
                pids = [int(p) for p in (self.path / "cgroup.procs").read_text().split()]
            except OSError:
                return
            if not pids:
                return
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.01)

    def remove(self) -> None:
        """Kill what is left and remove the cgroup."""
        for _ in range(100):
            try:
                self.path.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError:
                self.kill_all()
                time.sleep(0.01)


# -- the interpreter for the launcher ---------------------------------------------


@dataclass(frozen=True)
class _Interpreter:
    host_exe: str
    inside_exe: str
    bind: str | None  # host prefix to bind at _PYTHON_IN
    env: Mapping[str, str]


def _interpreter(system_paths: Sequence[str]) -> _Interpreter:
    exe = os.path.realpath(sys.executable) if sys.executable else ""
    base = os.path.realpath(sys.base_prefix)
    if exe and exe.startswith(base + "/"):
        if any(base == p or base.startswith(p + "/") for p in system_paths):
            return _Interpreter(exe, exe, None, {})
        rel = os.path.relpath(exe, base)
        return _Interpreter(
            exe, f"{_PYTHON_IN}/{rel}", base, {"LD_LIBRARY_PATH": f"{_PYTHON_IN}/lib"}
        )
    for candidate in ("/usr/bin/python3", "/usr/local/bin/python3"):
        if os.path.exists(candidate):
            real = os.path.realpath(candidate)
            return _Interpreter(real, real, None, {})
    raise SandboxUnavailable("no Python interpreter found to start the sandbox launcher")


_launcher_lock = threading.Lock()
_launcher_cache: dict[str, str] = {}
_private_dir: list[str] = []


def _private_folder() -> str:
    """A folder (mode 0700) for the compiled launchers, removed at exit."""
    if not _private_dir:
        import atexit
        import tempfile

        folder = tempfile.mkdtemp(prefix="stockade-launcher-")
        atexit.register(shutil.rmtree, folder, True)
        _private_dir.append(folder)
    return _private_dir[0]


def _launcher_file(interp: _Interpreter) -> str:
    """The Python launcher as the interpreter will run it: compiled once per process.

    Python never caches the bytecode of a script it runs by path, and
    compiling the launcher at every start costs more than everything else it
    does; a ``.pyc`` file runs directly. Another interpreter than ours gets
    the source.
    """
    source = str(Path(__file__).with_name("sandbox_launcher.py"))
    if interp.host_exe != os.path.realpath(sys.executable):
        return source
    with _launcher_lock:
        cached = _launcher_cache.get(source)
        if cached is not None and os.path.exists(cached):
            return cached
        import py_compile

        target = os.path.join(_private_folder(), "launcher.pyc")
        try:
            py_compile.compile(source, cfile=target, doraise=True)
        except (py_compile.PyCompileError, OSError):
            return source
        _launcher_cache[source] = target
        return target


def _etc_snapshot(files: Sequence[str]) -> str:
    """A copy of the listed ``/etc`` files (and our passwd/group), made once per process.

    One bind of this folder at ``/etc`` instead of one bind per file: bubblewrap
    re-reads the mount table for every read-only bind, so twenty binds cost
    more than the copy. The copy is as fresh as the process (a package
    installed later changes nothing inside until stockade restarts).
    """
    key = "etc:" + "\0".join(files)
    with _launcher_lock:
        cached = _launcher_cache.get(key)
        if cached is not None and os.path.isdir(cached):
            return cached
        import tempfile

        folder = tempfile.mkdtemp(prefix="etc-", dir=_private_folder())
        os.chmod(folder, 0o755)  # noqa: S103 - inside a 0700 folder; readable in the sandbox
        for path in files:
            if not path.startswith("/etc/") or not os.path.lexists(path):
                continue
            dest = os.path.join(folder, os.path.relpath(path, "/etc"))
            try:
                os.makedirs(os.path.dirname(dest), exist_ok=True)
                if os.path.islink(path):
                    os.symlink(os.readlink(path), dest)
                elif os.path.isdir(path):
                    shutil.copytree(path, dest, symlinks=True)
                else:
                    shutil.copy2(path, dest)
            except OSError:
                continue  # unreadable here: the sandbox goes without it
        for name in ("passwd", "group"):
            shutil.copy2(_DATA / name, os.path.join(folder, name))
        _launcher_cache[key] = folder
        return folder


def _c_launcher() -> str | None:
    """The C launcher, compiled once per process when a C compiler is there, else ``None``.

    It does what the Python launcher does without starting an interpreter
    for every command (most of the sandbox's added start-up time).
    """
    source = str(Path(__file__).with_name("sandbox_launcher.c"))
    with _launcher_lock:
        if source in _launcher_cache:
            cached = _launcher_cache[source]
            return cached if cached and os.path.exists(cached) else None
        cc = next((c for c in map(shutil.which, ("cc", "gcc", "clang")) if c), None)
        target = os.path.join(_private_folder(), "launcher-c")
        built = ""
        if cc is not None:
            try:
                done = subprocess.run(  # noqa: S603 - the compiler found on PATH
                    [cc, "-O2", "-o", target, source],
                    capture_output=True,
                    timeout=120,
                    check=False,
                )
                # It must also run from there (a noexec /tmp would stop it):
                # without arguments it prints its usage and exits 126.
                if done.returncode == 0 and os.access(target, os.X_OK):
                    probe_run = subprocess.run(  # noqa: S603 - the file just built
                        [target], capture_output=True, timeout=30, check=False, env={}
                    )
                    if probe_run.returncode == 126 and b"usage" in probe_run.stderr:
                        built = target
            except (OSError, subprocess.SubprocessError):
                built = ""
        _launcher_cache[source] = built
        return built or None


def _c_config(cfg: Mapping[str, Any]) -> str:
    """The launcher configuration in the C launcher's line format."""

    def enc(text: str) -> str:
        return text.replace("%", "%25").replace("\n", "%0A").replace("\r", "%0D")

    lines = [f"status_fd {cfg['status_fd']}"]
    if "cgroup_fd" in cfg:
        lines.append(f"cgroup_fd {cfg['cgroup_fd']}")
    for name, value in dict(cfg.get("limits") or {}).items():
        hard = value + 1 if name == "cpu" else value
        lines.append(f"rlimit {_RLIMITS[name]} {value} {hard}")
    landlock = cfg.get("landlock")
    if landlock is not None:
        lines.append("landlock 1")
        for path, access in landlock["paths"]:
            lines.append(f"path {access} {enc(path)}")
        lines += [f"connect {int(port)}" for port in landlock["connect_tcp"]]
    for key, value in dict(cfg.get("env") or {}).items():
        lines.append("env " + enc(f"{key}={value}"))
    relay = cfg.get("relay")
    if relay:
        lines.append(f"relay {int(relay[0])} {enc(str(relay[1]))}")
    return "\n".join(lines)


# -- the proxy bridge (network: proxy) ----------------------------------------------


class ProxyBridge:
    """Carries connections from a Unix socket to stockade's forward proxy.

    How the proxy gets into a sandbox whose network namespace has nothing but
    its own loopback: the bridge listens on a Unix socket in a private
    folder on the host; the socket is bound into the sandbox at
    ``/run/stockade/proxy.sock``; inside, the launcher's relay listens on
    ``127.0.0.1:3128`` and carries each connection to that socket; here,
    each connection is carried on to the proxy's TCP address. The command
    gets ``HTTP_PROXY``/``HTTPS_PROXY`` pointing at the relay; seccomp lets it
    make IPv4/IPv6 sockets and Landlock lets it connect to port 3128 only.
    So every request is decided and audited by the proxy, with the ``http:``
    rules.
    """

    def __init__(self, address: tuple[str, int]) -> None:
        import socket
        import tempfile

        self.address = address
        self._dir = tempfile.mkdtemp(prefix="stockade-bridge-")
        self.path = os.path.join(self._dir, "proxy.sock")
        self._server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._server.bind(self.path)
        self._server.listen(64)
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="stockade-bridge", daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        import socket

        while not self._closed.is_set():
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.address, timeout=10)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=_pump, args=(src, dst), daemon=True).start()

    def close(self) -> None:
        """Stop accepting and remove the socket."""
        self._closed.set()
        with contextlib.suppress(OSError):
            self._server.shutdown(2)
        self._server.close()
        self._thread.join(timeout=5)
        shutil.rmtree(self._dir, ignore_errors=True)


def _pump(src: Any, dst: Any) -> None:
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for sock in (src, dst):
            with contextlib.suppress(OSError):
                sock.shutdown(2)
        src.close()
