"""The seccomp BPF program: its shape, and what it does to real system calls."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from stockade.hazmat.sandbox import weakened_sandbox
from stockade.tools import sandbox_seccomp as sc
from stockade.tools.sandbox import Sandbox, SandboxConfig

PY = "/usr/bin/python3"


def _records(prog: bytes) -> list[tuple[int, int, int, int]]:
    return [struct.unpack("<HBBI", prog[i : i + 8]) for i in range(0, len(prog), 8)]


@pytest.mark.parametrize("arch", ["x86_64", "aarch64"])
@pytest.mark.parametrize("inet", [False, True])
def test_program_shape(arch: str, inet: bool) -> None:
    table = sc.SUPPORTED_ARCHES[arch]
    recs = _records(sc.build_filter(allow_inet=inet, arch=table))
    assert recs[0] == (0x20, 0, 0, 4)  # load the architecture first
    assert recs[1][3] == table.audit_arch
    assert recs[-1] == (0x06, 0, 0, 0x80000000)  # foreign architecture: kill
    assert all(r[0] != 0x06 or r[3] in _RETURNS for r in recs)
    denied = {r[3] for r in recs if r[0] == 0x15}
    assert {table.numbers[name] for name in sc.DENIED} <= denied
    assert len(recs) < 4096


_RETURNS = {0x7FFF0000, 0x80000000, 0x00050000 | 1, 0x00050000 | 38, 0x00050000 | 97}


def test_every_denied_call_has_a_number_on_every_arch() -> None:
    for table in sc.SUPPORTED_ARCHES.values():
        assert set(sc.DENIED) <= set(table.numbers)
        assert len(set(table.numbers.values())) == len(table.numbers)


def test_unknown_arch_has_no_filter(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sc.platform, "machine", lambda: "sparc64")
    assert sc.current_arch() is None
    with pytest.raises(ValueError, match="no seccomp syscall table"):
        sc.build_filter(allow_inet=False)


SYSCALLS = r"""
import ctypes, os, socket
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
def call(name, nr, *args):
    r = libc.syscall(ctypes.c_long(nr), *[ctypes.c_long(a) for a in args])
    print(name, r, ctypes.get_errno() if r < 0 else 0)
def sock(name, family):
    try:
        socket.socket(family, socket.SOCK_STREAM).close(); print(name, "ok")
    except OSError as exc:
        print(name, "errno", exc.errno)
sock("unix", socket.AF_UNIX)
sock("inet", socket.AF_INET)
sock("inet6", socket.AF_INET6)
call("socket-unix-highbits", 41, (1 << 32) | socket.AF_UNIX, socket.SOCK_STREAM, 0)
call("socket-inet-highbits", 41, (1 << 32) | socket.AF_INET, socket.SOCK_STREAM, 0)
call("clone-newuser", 56, 0x10000000 | 17, 0, 0, 0, 0)
call("clone-newnet", 56, 0x40000000 | 17, 0, 0, 0, 0)
call("clone3", 435, 0, 0)
call("x32-getpid", 0x40000000 | 39)
call("ptrace", 101, 0, 0, 0, 0)
call("keyctl", 250, 0, 0, 0, 0)
call("perf", 298, 0, 0, 0, 0, 0)
call("getpid", 39)
pid = os.fork()
if pid == 0:
    os._exit(7)
print("fork-status", os.waitpid(pid, 0)[1] >> 8)
"""


def _results(sandbox: Sandbox) -> dict[str, list[str]]:
    out = sandbox.run([PY, "-c", SYSCALLS]).stdout.decode()
    return {line.split()[0]: line.split()[1:] for line in out.splitlines()}


@pytest.mark.skipif(sc.current_arch() is not sc.SUPPORTED_ARCHES["x86_64"], reason="x86-64 numbers")
def test_filter_on_real_system_calls(workspace: Path) -> None:
    r = _results(Sandbox(SandboxConfig(workspace=workspace)))
    assert r["unix"] == ["ok"]
    assert r["inet"] == ["errno", "97"]
    assert r["inet6"] == ["errno", "97"]
    assert r["socket-unix-highbits"][0] != "-1"  # the kernel reads an int: AF_UNIX
    assert r["socket-inet-highbits"] == ["-1", "97"]
    assert r["clone-newuser"] == ["-1", "1"]
    assert r["clone-newnet"] == ["-1", "1"]
    assert r["clone3"] == ["-1", "38"]
    assert r["x32-getpid"] == ["-1", "38"]
    assert r["ptrace"] == ["-1", "1"]
    assert r["keyctl"] == ["-1", "1"]
    assert r["perf"] == ["-1", "1"]
    assert r["getpid"][0] != "-1"
    assert r["fork-status"] == ["7"]  # plain fork (clone without namespace flags) works


CONTROL = r"""
import ctypes, socket
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
socket.socket(socket.AF_INET, socket.SOCK_STREAM).close()
print("inet ok")
r = libc.syscall(ctypes.c_long(435), ctypes.c_long(0), ctypes.c_long(0))
print("clone3", r, ctypes.get_errno())
"""


@pytest.mark.skipif(sc.current_arch() is not sc.SUPPORTED_ARCHES["x86_64"], reason="x86-64 numbers")
def test_without_the_filter_the_same_calls_get_further(workspace: Path) -> None:
    """The control: with seccomp off, inet sockets open and clone3 reaches the kernel."""
    sandbox = weakened_sandbox(SandboxConfig(workspace=workspace), seccomp=False)
    out = sandbox.run([PY, "-c", CONTROL]).stdout.decode()
    assert "inet ok" in out
    assert "clone3 -1 22" in out  # EINVAL from the kernel (a null argument), not ENOSYS
