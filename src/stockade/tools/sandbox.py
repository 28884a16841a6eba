"""The OS sandbox for commands and third-party tool servers.

One :class:`Sandbox` is configured once (a :class:`SandboxConfig`: the
workspace, the network mode, the resource limits) and then runs many
commands, each in a fresh sandbox:

- **bubblewrap**: new user, pid, ipc, uts, cgroup and network namespaces; the
  system read-only (``/usr`` and friends, a short list of harmless ``/etc``
  files: never ``/etc/shadow``, never a home directory); the workspace the
  only writable bind (at ``/workspace``); private, size-capped ``/tmp`` and
  ``/dev/shm``; a new ``/proc`` and a minimal ``/dev``; the sandbox's own root
  and ``/dev`` read-only; all capabilities dropped;
  ``--die-with-parent`` and ``--new-session``; an environment built from an
  allow-list, never the parent's;
- **seccomp** (:mod:`stockade.tools.sandbox_seccomp`): ptrace, mount, modules,
  bpf, perf, keyrings, userfaultfd, io_uring, namespace changes, TIOCSTI and,
  with the network off, every socket family but ``AF_UNIX`` are denied;
- **Landlock** where the kernel has it, applied by the launcher that starts the
  command (``sandbox_launcher.c`` compiled on the fly, or
  :mod:`stockade.tools.sandbox_launcher` without a C compiler):
  reads limited to the bound system paths, writes to the workspace and
  ``/tmp``, TCP connect to nothing (or the proxy relay), signals and abstract
  Unix sockets scoped to the sandbox;
- **resource limits**: CPU seconds, address space, processes (plus a pids
  cgroup when running as root, where the kernel does not apply the process
  limit), file size, open files; a wall-clock timeout that kills the whole
  process tree; output captured up to a cap.

Where bubblewrap or user namespaces are missing, :class:`Sandbox` raises
:class:`~stockade.errors.SandboxUnavailable` saying what is missing and how to
install it. Only ``SandboxConfig(mode="none")`` (``sandbox: none`` in a
policy) runs without one, with the resource limits alone, and says so in
every result's :attr:`RunResult.layers`.

Running a command to completion::

    sandbox = Sandbox(SandboxConfig(workspace=Path("/srv/agent")))
    result = sandbox.run(["/usr/bin/ls", "-l"], cwd="src")
    result.exit_code, result.stdout, result.describe()

Running a long-lived child with stdio pipes (a third-party MCP server)::

    proc = sandbox.popen(["/usr/bin/node", "server.js"], limits=Limits(cpu=3600))
    proc.stdin.write(b"...")          # a subprocess.Popen-like handle
    ...
    proc.kill()                       # kills the whole tree, always call it (or use ``with``)

``popen`` applies the limits but no wall-clock timeout and no output cap:
the caller owns the child's lifetime and its pipes.
"""

from __future__ import annotations

import contextlib
import logging
import marshal
import os
import posixpath
import re
import resource
import selectors
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Any, Literal

from stockade.errors import ExecError, SandboxUnavailable
from stockade.tools import sandbox_seccomp
from stockade.tools.sandbox_launcher import landlock_abi

__all__ = [
    "DEFAULT_ETC",
    "DEFAULT_SYSTEM_PATHS",
    "RELAY_PORT",
    "WORKSPACE",
    "Layers",
    "Limits",
    "ProxyBridge",
    "RunResult",
    "Sandbox",
    "SandboxConfig",
    "SandboxedProcess",
    "probe",
]

log = logging.getLogger("stockade.exec")

#: where the workspace appears inside the sandbox
WORKSPACE = "/workspace"
_RUN = "/run/stockade"
_LAUNCHER_IN = f"{_RUN}/launcher"
_PYTHON_IN = f"{_RUN}/python"
_PROXY_SOCKET_IN = f"{_RUN}/proxy.sock"
#: the port of the proxy relay on the sandbox's own loopback (network ``proxy``)
RELAY_PORT = 3128
_SANDBOX_UID = 1000

#: read-only system hierarchies (a symlink on the host stays a symlink inside)
DEFAULT_SYSTEM_PATHS = (
    "/usr",
    "/bin",
    "/sbin",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
)

#: the ``/etc`` files a command may need; nothing secret (no shadow, no keys)
DEFAULT_ETC = (
    "/etc/alternatives",
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/localtime",
    "/etc/timezone",
    "/etc/nsswitch.conf",
    "/etc/host.conf",
    "/etc/protocols",
    "/etc/services",
    "/etc/mime.types",
    "/etc/magic",
    "/etc/os-release",
    "/etc/debian_version",
    "/etc/ssl/certs",
    "/etc/ca-certificates.conf",
    "/etc/ssl/openssl.cnf",
)

_DATA = Path(__file__).with_name("sandbox_data")
_RLIMITS = {
    "cpu": resource.RLIMIT_CPU,
    "memory": resource.RLIMIT_AS,
    "processes": resource.RLIMIT_NPROC,
    "file_size": resource.RLIMIT_FSIZE,
    "open_files": resource.RLIMIT_NOFILE,
    "core": resource.RLIMIT_CORE,
}
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

_INSTALL_HINT = (
    "install it with `apt-get install bubblewrap` (Debian, Ubuntu), "
    "`dnf install bubblewrap` (Fedora) or `apk add bubblewrap` (Alpine)"
)


@dataclass(frozen=True)
class Limits:
    """Resource limits of one sandboxed command.

    ``cpu`` seconds of CPU (SIGXCPU, then SIGKILL a second later),
    ``memory`` bytes of address space per process, ``processes`` at once,
    ``file_size`` bytes per written file (SIGXFSZ), ``open_files`` descriptors,
    ``timeout`` seconds of wall-clock time before the whole tree is killed,
    ``output`` bytes of stdout and stderr kept (past it the tree is killed and
    the result says truncated), ``tmp_size`` bytes of the private ``/tmp``
    (and of ``/dev/shm``).
    """

    timeout: float = 30.0
    cpu: int = 10
    memory: int = 1024 * 1024 * 1024
    processes: int = 64
    file_size: int = 64 * 1024 * 1024
    open_files: int = 256
    output: int = 1024 * 1024
    tmp_size: int = 64 * 1024 * 1024

    def rlimits(self) -> dict[str, int]:
        """The limits the launcher sets with ``setrlimit``."""
        return {
            "cpu": max(1, int(self.cpu)),
            "memory": self.memory,
            "processes": self.processes,
            "file_size": self.file_size,
            "open_files": self.open_files,
            "core": 0,
        }


@dataclass(frozen=True)
class SandboxConfig:
    """How commands are confined. Configure once; run many commands.

    ``workspace`` is the only writable place (``/workspace`` inside);
    ``mode`` is ``bwrap`` (the default) or ``none`` (resource limits only,
    no isolation: only for a policy that says ``sandbox: none``);
    ``network`` is ``none`` or ``proxy`` (only stockade's forward proxy at
    ``proxy_address`` is reachable, through a relay: see :class:`ProxyBridge`);
    ``env`` holds the variables the command gets on top of a fixed base
    (``PATH``, ``HOME``, ``LANG``, ``TMPDIR``, ``USER``); ``pass_env`` names
    variables copied from the parent's environment when set (an allow-list:
    nothing else of the parent's environment is ever passed).
    """

    workspace: Path
    mode: Literal["bwrap", "none"] = "bwrap"
    network: Literal["none", "proxy"] = "none"
    proxy_address: tuple[str, int] | None = None
    limits: Limits = field(default_factory=Limits)
    system_paths: tuple[str, ...] = DEFAULT_SYSTEM_PATHS
    etc_files: tuple[str, ...] = DEFAULT_ETC
    env: Mapping[str, str] = field(default_factory=dict)
    pass_env: tuple[str, ...] = ()


@dataclass(frozen=True)
class Layers:
    """Which protections a sandbox turns on. All of them, always, from the safe API.

    Only :mod:`stockade.hazmat.sandbox` builds a sandbox with some of them off
    (to show in tests that each layer holds on its own).
    """

    net_namespace: bool = True
    seccomp: bool = True
    landlock: bool = True
    rlimits: bool = True
    timeout: bool = True


@dataclass(frozen=True)
class RunResult:
    """How a sandboxed command ended.

    ``exit_code`` is the command's status (``None`` when it was killed from
    outside); ``signal`` the name of the signal that ended it, if any;
    ``killed`` says why stockade killed it (``timeout`` or ``output``);
    ``truncated`` whether output was cut at the cap; ``layers`` which
    protections were active (this goes to the audit record).
    """

    argv: tuple[str, ...]
    exit_code: int | None
    signal: str | None
    stdout: bytes
    stderr: bytes
    truncated: bool
    killed: str
    duration_ms: float
    layers: Mapping[str, Any]

    @property
    def timed_out(self) -> bool:
        """Whether the wall-clock timeout ended the command."""
        return self.killed == "timeout"

    @property
    def ok(self) -> bool:
        """Whether the command exited by itself with status 0."""
        return self.exit_code == 0 and not self.killed and self.signal is None

    def describe(self) -> str:
        """One line saying how the command ended, e.g. ``killed: timeout after 2s``."""
        if self.killed == "timeout":
            text = "killed: wall-clock timeout"
        elif self.killed == "output":
            text = "killed: output limit reached"
        elif self.signal is not None:
            why = _SIGNAL_REASONS.get(self.signal, "")
            text = f"ended by {self.signal}" + (f" ({why})" if why else "")
        else:
            text = f"exit status {self.exit_code}"
        return text + (" (output truncated)" if self.truncated else "")

    def as_dict(self) -> dict[str, Any]:
        """The result as JSON-able data (output decoded as UTF-8 with replacement)."""
        return {
            "exit_code": self.exit_code,
            "signal": self.signal,
            "killed": self.killed or None,
            "truncated": self.truncated,
            "stdout": self.stdout.decode("utf-8", "replace"),
            "stderr": self.stderr.decode("utf-8", "replace"),
            "status": self.describe(),
        }


_SIGNAL_REASONS = {
    "SIGXCPU": "cpu time limit",
    "SIGXFSZ": "file size limit",
    "SIGKILL": "killed",
    "SIGSEGV": "segmentation fault",
    "SIGSYS": "forbidden system call",
}


def _signal_name(num: int) -> str:
    try:
        return signal.Signals(num).name
    except ValueError:
        return f"signal {num}"


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
                if done.returncode == 0 and os.access(target, os.X_OK):
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


# -- the sandbox -------------------------------------------------------------------


class Sandbox:
    """Runs commands confined as its :class:`SandboxConfig` says.

    Raise :class:`SandboxUnavailable` when the machine cannot confine them
    (bubblewrap or user namespaces missing, root without a pids cgroup) and
    the configuration does not say ``mode="none"``.
    """

    def __init__(
        self,
        config: SandboxConfig,
        *,
        _layers: Layers | None = None,
        _launcher: Literal["c", "python"] | None = None,
    ) -> None:
        self.config = config
        self._layers_on = _layers or Layers()
        workspace = Path(os.path.realpath(config.workspace))
        if not workspace.is_dir():
            raise ExecError(f"the workspace `{config.workspace}` is not a directory")
        self.workspace = workspace
        if config.network == "proxy" and config.proxy_address is None:
            raise ExecError("network `proxy` needs the proxy's address (`proxy_address`)")
        self._interp = _interpreter(config.system_paths)
        self._cgroup_base: Path | None = None
        self.probe = probe()
        self._bridge: ProxyBridge | None = None
        if config.mode == "bwrap":
            self._check_available()
        if os.geteuid() == 0 and self._layers_on.rlimits:
            self._cgroup_base = _PidsCgroup.base()
            if self._cgroup_base is None and config.mode == "bwrap":
                raise SandboxUnavailable(
                    "running as root, the process limit needs a writable pids cgroup "
                    "(/sys/fs/cgroup/pids or a cgroup2 root with the pids controller); "
                    "run stockade as an ordinary user instead"
                )
        # The C launcher where it can be built, else the Python one.
        c_launcher = _c_launcher() if _launcher != "python" else None
        if _launcher == "c" and c_launcher is None:
            raise SandboxUnavailable("the C launcher cannot be built (no C compiler?)")
        self._launcher_kind = "c" if c_launcher else "python"
        self._launcher = c_launcher or _launcher_file(self._interp)
        if config.mode == "bwrap":
            if config.network == "proxy" and config.proxy_address is not None:
                self._bridge = ProxyBridge(config.proxy_address)
            self._seccomp = (
                sandbox_seccomp.build_filter(allow_inet=config.network == "proxy")
                if self._layers_on.seccomp
                else b""
            )
            self._prefix = self._bwrap_prefix()
        else:
            self._seccomp = b""
            self._prefix = []
        self.layers = self._layer_facts()
        if config.mode == "none":
            log.warning("sandbox: none: commands run without isolation (resource limits only)")

    @classmethod
    def from_policy(cls, policy: Any) -> Sandbox:
        """The sandbox a policy's ``exec:`` section configures.

        >>> # sandbox = Sandbox.from_policy(Policy.from_file("policy.yaml"))
        """
        from stockade.tools.exec import ExecConfig

        section = policy.section("exec")
        if not isinstance(section, ExecConfig):
            raise ExecError("the policy has no `exec` section")
        return cls(section.sandbox)

    # -- set-up ---------------------------------------------------------------

    def _check_available(self) -> None:
        p = self.probe
        if p.bwrap is None:
            raise SandboxUnavailable(f"bubblewrap (bwrap) is not installed; {_INSTALL_HINT}")
        if not p.userns:
            raise SandboxUnavailable(
                f"user namespaces do not work here ({p.userns_error}); enable them "
                "(sysctl kernel.unprivileged_userns_clone=1, or on Ubuntu "
                "kernel.apparmor_restrict_unprivileged_userns=0) or use `sandbox: none`"
            )
        if self._layers_on.seccomp and p.seccomp_arch is None:
            raise SandboxUnavailable(
                "the seccomp filter has no system call table for this architecture"
            )

    def _bwrap_prefix(self) -> list[str]:
        cfg = self.config
        assert self.probe.bwrap is not None
        args = [self.probe.bwrap, *_NAMESPACES]
        if self._layers_on.net_namespace:
            args.append("--unshare-net")
        if self.probe.bwrap_version >= (0, 8, 0):
            args.append("--disable-userns")
        args += [
            "--uid",
            str(_SANDBOX_UID),
            "--gid",
            str(_SANDBOX_UID),
            "--hostname",
            "sandbox",
            "--die-with-parent",
            "--new-session",
            "--cap-drop",
            "ALL",
        ]
        # /tmp first: binds below it (a server's own files) must not be hidden by it
        args += ["--proc", "/proc", "--dev", "/dev"]
        # --size needs bubblewrap 0.7; older ones get unsized tmpfs (reported in the layers)
        size = ["--size", str(cfg.limits.tmp_size)] if self._sized_tmpfs() else []
        args += [*size, "--tmpfs", "/tmp"]  # noqa: S108 - private
        for path in cfg.system_paths:
            if os.path.islink(path):
                args += ["--symlink", os.readlink(path), path]
            elif os.path.exists(path):
                args += ["--ro-bind", path, path]
        args += ["--ro-bind", _etc_snapshot(cfg.etc_files), "/etc"]
        args += ["--ro-bind", self._launcher, _LAUNCHER_IN]
        if self._interp.bind is not None and self._launcher_kind == "python":
            args += ["--ro-bind", self._interp.bind, _PYTHON_IN]
        if self._bridge is not None:
            args += ["--bind", self._bridge.path, _PROXY_SOCKET_IN]
        args += ["--bind", str(self.workspace), WORKSPACE]
        # bwrap's root and /dev are memory-backed and have no size: make them
        # read-only (a sized /dev/shm stays writable), so that even without
        # Landlock they cannot be used to fill the machine's memory.
        args += [*size, "--tmpfs", "/dev/shm"]  # noqa: S108
        args += ["--remount-ro", "/dev", "--remount-ro", "/"]
        return args

    def _sized_tmpfs(self) -> bool:
        return self.probe.bwrap_version >= (0, 7, 0)

    def _landlock_config(self) -> dict[str, Any]:
        cfg = self.config
        paths: list[tuple[str, str]] = []
        for path in cfg.system_paths:
            if os.path.exists(path) and not os.path.islink(path):
                paths.append((path, "ro"))
        paths += [("/etc", "ro"), (_RUN, "ro"), ("/proc", "ro")]
        paths += [("/dev", "dev"), ("/dev/shm", "rw"), ("/tmp", "rw"), (WORKSPACE, "rw")]  # noqa: S108 - private tmpfs
        ports = [RELAY_PORT] if self._bridge is not None else []
        return {"paths": paths, "connect_tcp": ports, "require": False}

    def _layer_facts(self) -> dict[str, Any]:
        cfg = self.config
        lim = cfg.limits
        limits = {
            "cpu_s": lim.cpu,
            "memory": lim.memory,
            "processes": lim.processes,
            "file_size": lim.file_size,
            "open_files": lim.open_files,
            "timeout_s": lim.timeout,
            "output": lim.output,
        }
        if cfg.mode == "none":
            return {
                "backend": "none",
                "bwrap": False,
                "seccomp": False,
                "landlock": 0,
                "network": "host",
                "rlimits": self._layers_on.rlimits,
                "pids_cgroup": self._cgroup_base is not None,
                "launcher": self._launcher_kind,
                "limits": limits,
                "warning": "sandbox: none: no isolation, resource limits only",
            }
        on = self._layers_on
        namespaces = ["user", "pid", "ipc", "uts", "cgroup", "mount"]
        if on.net_namespace:
            namespaces.append("net")
        return {
            "backend": "bwrap",
            "bwrap": True,
            "bwrap_version": ".".join(str(x) for x in self.probe.bwrap_version),
            "namespaces": namespaces,
            "seccomp": on.seccomp,
            "landlock": self.probe.landlock if on.landlock else 0,
            "network": cfg.network,
            "rlimits": on.rlimits,
            "pids_cgroup": self._cgroup_base is not None,
            "launcher": self._launcher_kind,
            "tmp_size_enforced": self._sized_tmpfs(),
            "limits": limits,
        }

    # -- running ----------------------------------------------------------------

    def _target_env(self) -> dict[str, str]:
        home = WORKSPACE if self.config.mode == "bwrap" else str(self.workspace)
        env = {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "HOME": home,
            "LANG": "C.UTF-8",
            "TMPDIR": "/tmp",  # noqa: S108 - the sandbox's private tmpfs
            "USER": "agent",
        }
        if self._bridge is not None:
            url = f"http://127.0.0.1:{RELAY_PORT}"
            for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
                env[name] = url
        for key in self.config.pass_env:
            if key in os.environ:
                env[key] = os.environ[key]
        for key, value in self.config.env.items():
            env[key] = value
        for key in env:
            if not _ENV_NAME.match(key):
                raise ExecError(f"invalid environment variable name `{key}`")
        return env

    def _resolve_cwd(self, cwd: str) -> tuple[str, str]:
        """The working directory inside the sandbox and on the host."""
        rel = posixpath.normpath(cwd or ".")
        if rel == ".." or rel.startswith(("/", "../")):
            raise ExecError(f"the working directory `{cwd}` is outside the workspace")
        host = os.path.realpath(self.workspace / rel)
        if host != str(self.workspace) and not host.startswith(str(self.workspace) + "/"):
            raise ExecError(f"the working directory `{cwd}` is outside the workspace")
        if not os.path.isdir(host):
            raise ExecError(f"the working directory `{cwd}` does not exist")
        inside = WORKSPACE if rel == "." else f"{WORKSPACE}/{rel}"
        return inside, host

    def _spawn(
        self,
        argv: Sequence[str],
        *,
        cwd: str,
        limits: Limits,
        stdin: int | IO[Any] | None,
        stdout: int | IO[Any] | None,
        stderr: int | IO[Any] | None,
    ) -> SandboxedProcess:
        if not argv or not argv[0].startswith("/"):
            raise ExecError("the program must be given by absolute path")
        inside_cwd, host_cwd = self._resolve_cwd(cwd)
        bwrap = self.config.mode == "bwrap"
        status_r, status_w = os.pipe()
        os.set_inheritable(status_w, True)
        fds = [status_w]
        launcher_cfg: dict[str, Any] = {
            "status_fd": status_w,
            "env": self._target_env(),
            "limits": limits.rlimits() if self._layers_on.rlimits else {},
        }
        cmd: list[str]
        if bwrap:
            if self._layers_on.landlock and self.probe.landlock > 0:
                launcher_cfg["landlock"] = self._landlock_config()
            if self._bridge is not None:
                launcher_cfg["relay"] = [RELAY_PORT, _PROXY_SOCKET_IN]
            cmd = [*self._prefix]
            if self._seccomp:
                seccomp_fd = os.memfd_create("stockade-seccomp", 0)
                os.write(seccomp_fd, self._seccomp)
                os.lseek(seccomp_fd, 0, os.SEEK_SET)
                fds.append(seccomp_fd)
                cmd += ["--seccomp", str(seccomp_fd)]
            cmd += ["--chdir", inside_cwd, "--"]
            if self._launcher_kind == "c":
                cmd.append(_LAUNCHER_IN)
                launcher_env: dict[str, str] = {}
            else:
                cmd += [self._interp.inside_exe, "-I", "-S", _LAUNCHER_IN]
                launcher_env = dict(self._interp.env)
            popen_cwd = "/"
        else:
            if self._launcher_kind == "c":
                cmd = [self._launcher]
            else:
                cmd = [self._interp.host_exe, "-I", "-S", self._launcher]
            launcher_env = {}
            popen_cwd = host_cwd
        group = (
            _PidsCgroup.create(self._cgroup_base, limits.processes + 2)
            if self._cgroup_base is not None
            else None
        )
        if group is not None:
            try:
                launcher_cfg["cgroup_fd"] = group.procs_fd()
            except OSError as exc:
                group.remove()
                os.close(status_r)
                for fd in fds:
                    os.close(fd)
                raise SandboxUnavailable("cannot join the pids cgroup") from exc
            fds.append(launcher_cfg["cgroup_fd"])
        if self._launcher_kind == "c":
            cmd += [_c_config(launcher_cfg), "--", *argv]
        else:
            cmd += [marshal.dumps(launcher_cfg).hex(), "--", *argv]
        try:
            proc = subprocess.Popen(  # noqa: S603 - argv built here, never through a shell
                cmd,
                stdin=stdin,
                stdout=stdout,
                stderr=stderr,
                pass_fds=fds,
                env=launcher_env,
                cwd=popen_cwd,
                start_new_session=True,
            )
        except OSError as exc:
            os.close(status_r)
            if group is not None:
                group.remove()
            raise ExecError(f"cannot start the sandbox: {(exc.strerror or '').lower()}") from exc
        finally:
            for fd in fds:
                os.close(fd)
        handle = SandboxedProcess(proc, group, dict(self.layers))
        try:
            status = _read_status(status_r, time.monotonic() + max(limits.timeout, 10.0))
        finally:
            os.close(status_r)
        if status is None or "error" in status:
            detail = _first_error_line(proc) if status is None else ""
            handle.kill()
            if status is None:
                code = proc.returncode
                why = f": {detail}" if detail else ""
                raise ExecError(f"the sandbox did not start the command (status {code}){why}")
            raise ExecError(f"the sandbox did not start the command: {status['error']}")
        applied = status.get("ok") or {}
        handle.layers["landlock"] = int(applied.get("landlock", 0))
        return handle

    def popen(
        self,
        argv: Sequence[str],
        *,
        cwd: str = ".",
        limits: Limits | None = None,
        stdin: int | IO[Any] | None = subprocess.PIPE,
        stdout: int | IO[Any] | None = subprocess.PIPE,
        stderr: int | IO[Any] | None = subprocess.DEVNULL,
    ) -> SandboxedProcess:
        """Start a long-lived sandboxed child with pipes; the caller owns its lifetime.

        The limits apply (``limits`` replaces the configured ones, e.g. more CPU
        seconds for a server); the wall-clock timeout and the output cap do not.
        Call :meth:`SandboxedProcess.kill` (or use the handle with ``with``)
        to end it and everything it started.
        """
        return self._spawn(
            argv,
            cwd=cwd,
            limits=limits or self.config.limits,
            stdin=stdin,
            stdout=stdout,
            stderr=stderr,
        )

    def run(
        self,
        argv: Sequence[str],
        *,
        cwd: str = ".",
        stdin: bytes | None = None,
        limits: Limits | None = None,
    ) -> RunResult:
        """Run a command to its end (or its limits) and return how it ended."""
        lim = limits or self.config.limits
        started = time.perf_counter()
        deadline = time.monotonic() + lim.timeout if self._layers_on.timeout else None
        handle = self._spawn(
            argv,
            cwd=cwd,
            limits=lim,
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            out, err, truncated, killed = _collect(handle, stdin or b"", deadline, lim.output)
        finally:
            handle.kill()
        code = handle.returncode
        exit_code: int | None
        sig: str | None = None
        if killed:
            exit_code, sig = None, "SIGKILL"
        elif code is not None and code < 0:
            exit_code, sig = None, _signal_name(-code)
        elif code is not None and self.config.mode == "bwrap" and 128 < code < 128 + 65:
            # bubblewrap reports a command killed by signal N as status 128+N
            exit_code, sig = code, _signal_name(code - 128)
        else:
            exit_code = code
        return RunResult(
            argv=tuple(argv),
            exit_code=exit_code,
            signal=sig,
            stdout=out,
            stderr=err,
            truncated=truncated,
            killed=killed,
            duration_ms=(time.perf_counter() - started) * 1000.0,
            layers=handle.layers,
        )

    def close(self) -> None:
        """Release what the sandbox holds (the proxy bridge); runs already started go on."""
        if self._bridge is not None:
            self._bridge.close()
            self._bridge = None

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def with_limits(self, limits: Limits) -> Sandbox:
        """A sandbox like this one with other limits."""
        return Sandbox(
            replace(self.config, limits=limits),
            _layers=self._layers_on,
            _launcher=self._launcher_kind,  # type: ignore[arg-type]
        )


class SandboxedProcess:
    """A running sandboxed command: a :class:`subprocess.Popen`-like handle.

    ``stdin``, ``stdout``, ``stderr``, ``pid``, ``returncode``, ``poll()``,
    ``wait()`` behave as on ``Popen``; :meth:`kill` and :meth:`terminate` end
    the whole process tree, not just the first process; ``layers`` says which
    protections are active.
    """

    def __init__(
        self, proc: subprocess.Popen[bytes], group: _PidsCgroup | None, layers: dict[str, Any]
    ) -> None:
        self._proc = proc
        self._group = group
        self.layers = layers
        self.stdin = proc.stdin
        self.stdout = proc.stdout
        self.stderr = proc.stderr
        self.pid = proc.pid

    @property
    def returncode(self) -> int | None:
        """The exit status once the process has ended, as on ``Popen``."""
        return self._proc.returncode

    def poll(self) -> int | None:
        """Whether the process ended (its status) or not (``None``)."""
        return self._proc.poll()

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the process to end; raise :class:`ExecError` on timeout."""
        try:
            return self._proc.wait(timeout)
        except subprocess.TimeoutExpired as exc:
            raise ExecError(f"the sandboxed process did not end within {timeout}s") from exc

    def terminate(self) -> None:
        """End the process tree (the sandbox has no graceful stop: same as :meth:`kill`)."""
        self.kill()

    def kill(self) -> None:
        """Kill the whole process tree and release its cgroup; safe to call twice."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._proc.pid, signal.SIGKILL)
        if self._group is not None:
            self._group.kill_all()
        with contextlib.suppress(ProcessLookupError):
            self._proc.kill()
        self._proc.wait()
        for pipe in (self._proc.stdin, self._proc.stdout, self._proc.stderr):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()
        if self._group is not None:
            self._group.remove()
            self._group = None

    def __enter__(self) -> SandboxedProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()


def _first_error_line(proc: subprocess.Popen[bytes]) -> str:
    """bubblewrap's complaint, when it failed before the launcher ran (stderr piped)."""
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(5)
    if proc.stderr is None:
        return ""
    fd = proc.stderr.fileno()
    os.set_blocking(fd, False)
    try:
        text = os.read(fd, 4096).decode("utf-8", "replace")
    except OSError:
        return ""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0][:200] if lines else ""


def _read_status(fd: int, deadline: float) -> dict[str, Any] | None:
    """Read the launcher's status lines until EOF (it closes on exec).

    ``ok landlock=N`` means the command was started with the layers applied;
    ``error MESSAGE`` that it was not; nothing at all that the sandbox itself
    failed before the launcher ran.
    """
    data = b""
    with selectors.DefaultSelector() as sel:
        sel.register(fd, selectors.EVENT_READ)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not sel.select(remaining):
                return {"error": "the launcher did not report in time"}
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            data += chunk
    status: dict[str, Any] | None = None
    for line in data.decode("utf-8", "replace").splitlines():
        kind, _, rest = line.partition(" ")
        if kind == "error":
            status = {"error": rest}
        elif kind == "ok":
            facts = dict(item.partition("=")[::2] for item in rest.split())
            status = {"ok": facts}
    return status


def _wait_exit(proc: subprocess.Popen[bytes], deadline: float | None) -> bool:
    """Wait for the process to end by the deadline; return whether it did.

    ``Popen.wait(timeout)`` polls with sleeps that grow to 50 ms; a pidfd
    wakes up the moment the process ends.
    """
    if deadline is None:
        proc.wait()
        return True
    try:
        pidfd = os.pidfd_open(proc.pid)
    except (AttributeError, OSError):  # an old kernel, or the process is already reaped
        try:
            proc.wait(max(deadline - time.monotonic(), 0.0))
        except subprocess.TimeoutExpired:
            return False
        return True
    try:
        with selectors.DefaultSelector() as sel:
            sel.register(pidfd, selectors.EVENT_READ)
            if not sel.select(max(deadline - time.monotonic(), 0.0)):
                return False
    finally:
        os.close(pidfd)
    proc.wait()
    return True


def _collect(
    handle: SandboxedProcess, stdin: bytes, deadline: float | None, cap: int
) -> tuple[bytes, bytes, bool, str]:
    """Feed stdin, read stdout and stderr up to ``cap`` bytes in all, until exit or a limit."""
    bufs: dict[int, bytearray] = {}
    total = 0
    truncated = False
    killed = ""
    pending = memoryview(stdin)
    with selectors.DefaultSelector() as sel:
        for name, pipe in (("out", handle.stdout), ("err", handle.stderr)):
            if pipe is not None:
                os.set_blocking(pipe.fileno(), False)
                sel.register(pipe.fileno(), selectors.EVENT_READ, name)
                bufs[pipe.fileno()] = bytearray()
        if handle.stdin is not None:
            os.set_blocking(handle.stdin.fileno(), False)
            sel.register(handle.stdin.fileno(), selectors.EVENT_WRITE, "in")
        while sel.get_map():
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                killed = "timeout"
                break
            for key, _ in sel.select(remaining):
                fd = key.fd
                if key.data == "in":
                    try:
                        n = os.write(fd, pending[:65536])
                    except BlockingIOError:
                        continue
                    except BrokenPipeError:
                        n = len(pending)  # the command does not read its input
                    pending = pending[n:]
                    if not pending:
                        sel.unregister(fd)
                        assert handle.stdin is not None
                        handle.stdin.close()
                    continue
                try:
                    chunk = os.read(fd, 65536)
                except BlockingIOError:
                    continue
                if not chunk:
                    sel.unregister(fd)
                    continue
                room = cap - total
                if len(chunk) > room:
                    bufs[fd] += chunk[: max(room, 0)]
                    total = cap
                    truncated = True
                    killed = "output"
                    break
                bufs[fd] += chunk
                total += len(chunk)
            if killed:
                break
    if not killed and not _wait_exit(handle._proc, deadline):
        killed = "timeout"
    out = bytes(bufs.get(handle.stdout.fileno(), b"")) if handle.stdout else b""
    err = bytes(bufs.get(handle.stderr.fileno(), b"")) if handle.stderr else b""
    return out, err, truncated, killed
