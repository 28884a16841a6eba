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
  process tree; output captured up to a cap; a cap on how much the workspace
  may grow during one run (watched from the host: a ``statvfs`` every 50 ms,
  a walk of the workspace only when the filesystem's free space fell by more
  than the cap), past which the tree is killed.

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

``popen`` applies the limits and the workspace growth cap (a daemon thread
per child looks every 200 ms and kills the tree past the cap; the handle then
says ``killed == "disk"``) but no wall-clock timeout and no output cap: the
caller owns the child's lifetime and its pipes.
"""

from __future__ import annotations

import contextlib
import logging
import marshal
import os
import posixpath
import re
import selectors
import signal
import stat
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Any, Literal

from stockade.errors import ExecError, SandboxUnavailable
from stockade.tools import sandbox_seccomp
from stockade.tools.sandbox_host import (
    _NAMESPACES,
    _PYTHON_IN,
    Probe,
    ProxyBridge,
    _c_config,
    _c_launcher,
    _etc_snapshot,
    _interpreter,
    _launcher_file,
    _PidsCgroup,
    _private_folder,
    probe,
)

__all__ = [
    "DEFAULT_ETC",
    "DEFAULT_SYSTEM_PATHS",
    "RELAY_PORT",
    "WORKSPACE",
    "Layers",
    "Limits",
    "Probe",
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
    (and of ``/dev/shm``), ``disk_growth`` bytes the workspace may grow by
    during one :meth:`Sandbox.run` (past it the tree is killed and the result
    says ``killed: disk``; see :class:`_DiskWatch`) or during the life of a
    :meth:`Sandbox.popen` child (past it the tree is killed and the handle
    says ``killed == "disk"``).
    """

    timeout: float = 30.0
    cpu: int = 10
    memory: int = 1024 * 1024 * 1024
    processes: int = 64
    file_size: int = 64 * 1024 * 1024
    open_files: int = 256
    output: int = 1024 * 1024
    tmp_size: int = 64 * 1024 * 1024
    disk_growth: int = 1024 * 1024 * 1024

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
    ``killed`` says why stockade killed it (``timeout``, ``output`` or
    ``disk``); ``truncated`` whether output was cut at the cap; ``layers`` which
    protections were active (this goes to the audit record);
    ``disk_exceeded`` whether the workspace grew by more than ``disk_limit``
    bytes (killed while running, or found when the command had already ended:
    then its exit status is kept and the files it wrote stay).
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
    disk_exceeded: bool = False
    disk_limit: int = 0

    @property
    def timed_out(self) -> bool:
        """Whether the wall-clock timeout ended the command."""
        return self.killed == "timeout"

    @property
    def ok(self) -> bool:
        """Whether the command exited by itself with status 0."""
        return (
            self.exit_code == 0
            and not self.killed
            and self.signal is None
            and not self.disk_exceeded
        )

    def describe(self) -> str:
        """One line saying how the command ended, e.g. ``killed: timeout after 2s``."""
        if self.killed == "timeout":
            text = "killed: wall-clock timeout"
        elif self.killed == "output":
            text = "killed: output limit reached"
        elif self.killed == "disk":
            text = f"killed: workspace disk limit (it grew by more than {_size(self.disk_limit)})"
        elif self.signal is not None:
            why = _SIGNAL_REASONS.get(self.signal, "")
            text = f"ended by {self.signal}" + (f" ({why})" if why else "")
        else:
            text = f"exit status {self.exit_code}"
        if self.disk_exceeded and self.killed != "disk":
            text += f" (workspace disk limit: it grew by more than {_size(self.disk_limit)})"
        return text + (" (output truncated)" if self.truncated else "")

    def as_dict(self) -> dict[str, Any]:
        """The result as JSON-able data (output decoded as UTF-8 with replacement)."""
        return {
            "exit_code": self.exit_code,
            "signal": self.signal,
            "killed": self.killed or None,
            "truncated": self.truncated,
            "disk_exceeded": self.disk_exceeded,
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


def _size(n: int) -> str:
    """A byte count for people: ``8 MiB``, ``1 GiB``, ``1.5 KiB``, ``100 bytes``."""
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.4g} {unit}"
    return f"{n} bytes"


def _signal_name(num: int) -> str:
    try:
        return signal.Signals(num).name
    except ValueError:
        return f"signal {num}"


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
            "tmp_size": lim.tmp_size,
            "disk_growth": lim.disk_growth,
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
        hide: Sequence[tuple[str, bool]] = (),
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
            cmd = [*self._prefix, *_hide_args(hide)]
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
        The workspace growth cap (``disk_growth``) holds for the child's whole
        life: a daemon thread looks every :data:`_DISK_POLL_POPEN` seconds
        and, past the cap, kills the tree, sets :attr:`SandboxedProcess.killed`
        to ``disk`` and logs a warning on ``stockade.exec``; the pipes stay
        open for the caller (they read end-of-file).
        Call :meth:`SandboxedProcess.kill` (or use the handle with ``with``)
        to end it and everything it started.
        """
        lim = limits or self.config.limits
        # the reference is taken before the child starts, as in run()
        watch = _DiskWatch(str(self.workspace), lim.disk_growth, poll=_DISK_POLL_POPEN)
        handle = self._spawn(
            argv,
            cwd=cwd,
            limits=lim,
            stdin=stdin,
            stdout=stdout,
            stderr=stderr,
        )
        handle._start_disk_watch(watch)
        return handle

    def run(
        self,
        argv: Sequence[str],
        *,
        cwd: str = ".",
        stdin: bytes | None = None,
        limits: Limits | None = None,
        hide: Sequence[tuple[str, bool]] = (),
    ) -> RunResult:
        """Run a command to its end (or its limits) and return how it ended.

        ``hide`` lists ``(path, is_dir)`` pairs relative to the workspace that
        the command must not see (bubblewrap only): a file is covered by an
        empty read-only file, a folder by an empty read-only tmpfs. With
        ``sandbox: none`` nothing can be hidden and a non-empty ``hide``
        raises :class:`ExecError` (fail closed).
        """
        if hide and self.config.mode != "bwrap":
            raise ExecError("the workspace holds denied files and `sandbox: none` cannot hide them")
        lim = limits or self.config.limits
        started = time.perf_counter()
        deadline = time.monotonic() + lim.timeout if self._layers_on.timeout else None
        # The reference (a clock reading and one statvfs) is taken before the
        # command starts; the looking starts once it runs, in the wait loop.
        watch = _DiskWatch(str(self.workspace), lim.disk_growth)
        handle = self._spawn(
            argv,
            cwd=cwd,
            limits=lim,
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            hide=hide,
        )
        try:
            out, err, truncated, killed = _collect(
                handle, stdin or b"", deadline, lim.output, watch
            )
        finally:
            handle.kill()
        watch.check()  # once more, after the tree is gone
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
            disk_exceeded=watch.over,
            disk_limit=lim.disk_growth,
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
    protections are active; ``killed`` is ``disk`` once the workspace growth
    watch of :meth:`Sandbox.popen` killed the tree (``disk_limit`` bytes), else
    empty.
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
        self.killed = ""
        self.disk_limit = 0
        self._lock = threading.Lock()
        self._tree_killed = False
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None

    def _start_disk_watch(self, watch: _DiskWatch) -> None:
        self.disk_limit = watch.limit
        self._watcher = threading.Thread(
            target=self._watch_disk,
            args=(watch,),
            name=f"stockade-disk-watch-{self.pid}",
            daemon=True,
        )
        self._watcher.start()

    def _watch_disk(self, watch: _DiskWatch) -> None:
        """The watcher thread: look every ``watch.poll`` seconds until the child
        ends, the handle is killed, or the workspace grew past the cap."""
        while not self._stop.wait(watch.poll):
            if self._ended():
                return
            if watch.check():
                self.killed = "disk"
                log.warning(
                    "sandbox: the workspace `%s` grew by more than %s: "
                    "killed the sandboxed process %d and everything it started",
                    watch.workspace,
                    _size(watch.limit),
                    self.pid,
                )
                self._kill_tree(close_pipes=False)
                return

    def _ended(self) -> bool:
        """Whether the first process ended, without reaping it (``WNOWAIT``): the
        zombie keeps its pid, and so its process group id, from being reused
        before :meth:`kill` signals the group."""
        if self._proc.returncode is not None:
            return True
        try:
            state = os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:  # reaped meanwhile (wait() in another thread)
            return True
        return state is not None

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
        """Kill the whole process tree and release its cgroup; safe to call twice.
        Stops the workspace watch thread too."""
        self._stop.set()
        self._kill_tree(close_pipes=True)
        watcher = self._watcher
        if watcher is not None and watcher is not threading.current_thread():
            watcher.join()
            self._watcher = None

    def _kill_tree(self, *, close_pipes: bool) -> None:
        # One thread at a time (the caller's kill() and the watcher's), and the
        # group is signalled only once: after the first process is reaped its
        # pid may be reused, and a second killpg could hit a stranger's group.
        with self._lock:
            if not self._tree_killed:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(self._proc.pid, signal.SIGKILL)
                if self._group is not None:
                    self._group.kill_all()
                with contextlib.suppress(ProcessLookupError):
                    self._proc.kill()
                self._proc.wait()
                self._tree_killed = True
            if close_pipes:
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


def _hide_args(hide: Sequence[tuple[str, bool]]) -> list[str]:
    """bubblewrap arguments that cover workspace paths: files by an empty
    read-only file, folders by an empty read-only tmpfs."""
    args: list[str] = []
    for rel, is_dir in hide:
        norm = posixpath.normpath(rel)
        if norm in (".", "") or norm.startswith(("/", "../")) or norm == "..":
            raise ExecError(f"cannot hide `{rel}`: not beneath the workspace")
        inside = f"{WORKSPACE}/{norm}"
        if is_dir:
            args += ["--perms", "0555", "--tmpfs", inside, "--remount-ro", inside]
        else:
            args += ["--ro-bind", _empty_file(), inside]
    return args


_empty_lock = threading.Lock()
_empty_path: list[str] = []


def _empty_file() -> str:
    """An empty read-only file (made once per process) to bind over hidden files.

    Not ``/dev/null``: the workspace is mounted ``nodev``, where opening a
    device fails, and a tool such as git must read an empty file, not fail.
    """
    with _empty_lock:
        if _empty_path and os.path.isfile(_empty_path[0]):
            return _empty_path[0]
        path = os.path.join(_private_folder(), "empty")
        with open(path, "wb"):
            pass
        os.chmod(path, 0o444)
        _empty_path[:] = [path]
        return path


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


def _wait_exit(
    proc: subprocess.Popen[bytes], deadline: float | None, watch: _DiskWatch | None = None
) -> str:
    """Wait for the process to end; return ``""`` when it did, else why it was
    not waited for: ``timeout`` (the deadline passed) or ``disk`` (``watch``
    found the workspace grown past its limit).

    ``Popen.wait(timeout)`` polls with sleeps that grow to 50 ms; a pidfd
    wakes up the moment the process ends.
    """
    try:
        pidfd = os.pidfd_open(proc.pid)
    except (AttributeError, OSError):  # an old kernel, or the process is already reaped
        pidfd = -1
    sel = selectors.DefaultSelector()
    try:
        if pidfd >= 0:
            sel.register(pidfd, selectors.EVENT_READ)
        while True:
            if deadline is not None and time.monotonic() >= deadline:
                return "timeout"
            wait = _until(deadline, watch)
            if pidfd < 0:
                try:
                    proc.wait(wait)
                    return ""
                except subprocess.TimeoutExpired:
                    pass
            elif sel.select(wait):
                proc.wait()
                return ""
            if watch is not None and watch.due() and watch.check():
                return "disk"
    finally:
        sel.close()
        if pidfd >= 0:
            os.close(pidfd)


def _until(deadline: float | None, watch: _DiskWatch | None) -> float | None:
    """Seconds to wait for the next event: the deadline or the watch's next look."""
    now = time.monotonic()
    times = (deadline, watch.next if watch is not None else None)
    waits = [t - now for t in times if t is not None]
    return max(min(waits), 0.0) if waits else None


def _collect(
    handle: SandboxedProcess,
    stdin: bytes,
    deadline: float | None,
    cap: int,
    watch: _DiskWatch | None = None,
) -> tuple[bytes, bytes, bool, str]:
    """Feed stdin, read stdout and stderr up to ``cap`` bytes in all, until exit or
    a limit (the deadline, the output cap, the workspace growth ``watch`` checks)."""
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
            if deadline is not None and deadline - time.monotonic() <= 0:
                killed = "timeout"
                break
            if watch is not None and watch.due() and watch.check():
                killed = "disk"
                break
            for key, _ in sel.select(_until(deadline, watch)):
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
    if not killed:
        killed = _wait_exit(handle._proc, deadline, watch)
    out = bytes(bufs.get(handle.stdout.fileno(), b"")) if handle.stdout else b""
    err = bytes(bufs.get(handle.stderr.fileno(), b"")) if handle.stderr else b""
    return out, err, truncated, killed


#: how often a run looks at the free space of the workspace's filesystem (seconds)
_DISK_POLL = 0.05
#: how often the watch thread of a popen'd child looks (seconds): a long-lived
#: server is watched less tightly than a one-shot command, for a fifth of the cost
_DISK_POLL_POPEN = 0.2
#: entries one measurement of the workspace walks at most; past that it counts as over
_DISK_WALK_MAX = 200_000
#: how long before the run a change still counts as the run's (the kernel's
#: file times come from a coarse clock that may lag ``time.time()`` by a tick)
_DISK_SLACK_NS = 20_000_000


class _DiskWatch:
    """Whether the workspace grew by more than ``limit`` bytes since the run
    (or the popen'd child) began.

    Cheap while nothing happens: every ``poll`` seconds (:data:`_DISK_POLL`
    in :meth:`Sandbox.run`'s wait loop, :data:`_DISK_POLL_POPEN` in the
    watch thread of a :meth:`Sandbox.popen` child) one
    ``statvfs`` of the workspace's filesystem. Only when its free space fell
    by more than the limit (the workspace cannot grow by more than the
    filesystem lost, unless something else frees space at the same time) is
    the workspace walked: the blocks (``st_blocks``, so sparse files count
    what they use) of every entry changed since the run began (its ``ctime``,
    which no unprivileged process can set back), each inode once (hard
    links), add up to an upper bound of the growth. The walk stops as soon as
    the sum passes the limit, or after :data:`_DISK_WALK_MAX` entries, and a
    folder it cannot read counts as over the limit (fail closed: a command
    may ``chmod 000`` what it wrote). A walk that finds less than the limit
    moves the reference: the next walk comes when the filesystem lost more
    than what was left of the limit.
    """

    def __init__(self, workspace: str, limit: int, *, poll: float | None = None) -> None:
        self.workspace = workspace
        self.limit = limit
        self.poll = _DISK_POLL if poll is None else poll
        # whole seconds: some filesystems keep file times to the second
        self.since_ns = (time.time_ns() - _DISK_SLACK_NS) // 10**9 * 10**9
        self.next = time.monotonic() + self.poll
        self.over = False
        self._budget = limit
        self._free = self._free_bytes()

    def _free_bytes(self) -> int | None:
        try:
            st = os.statvfs(self.workspace)
        except OSError:
            return None
        return st.f_bfree * st.f_frsize

    def due(self) -> bool:
        """Whether it is time to look again."""
        return time.monotonic() >= self.next

    def check(self) -> bool:
        """Look now; return whether the workspace grew past the limit."""
        self.next = time.monotonic() + self.poll
        if self.over:
            return True
        free = self._free_bytes()
        if free is not None and self._free is not None and self._free - free <= self._budget:
            return False
        # The filesystem lost more than what is left of the limit, or its free
        # space cannot be read (then every look walks: slower, never blind).
        growth = self.measure()
        if growth is None or growth > self.limit:
            self.over = True
            return True
        self._free = free
        self._budget = self.limit - growth
        return False

    def measure(self) -> int | None:
        """Bytes of the entries changed since the run began (stopping past the
        limit); ``None`` when the workspace cannot be measured."""
        total = 0
        seen: set[tuple[int, int]] = set()
        count = 0
        stack = [self.workspace]
        while stack:
            folder = stack.pop()
            try:
                it = os.scandir(folder)
            except (FileNotFoundError, NotADirectoryError):
                continue  # removed while walking
            except OSError:
                return None
            with it:
                for entry in it:
                    count += 1
                    if count > _DISK_WALK_MAX:
                        return None
                    try:
                        st = entry.stat(follow_symlinks=False)
                    except FileNotFoundError:
                        continue
                    except OSError:
                        return None
                    if stat.S_ISDIR(st.st_mode):
                        stack.append(entry.path)
                    if st.st_ctime_ns < self.since_ns or (st.st_dev, st.st_ino) in seen:
                        continue
                    seen.add((st.st_dev, st.st_ino))
                    total += st.st_blocks * 512
                    if total > self.limit:
                        return total
        return total
