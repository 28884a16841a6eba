"""The seccomp filter of the sandbox: a classic BPF program built here.

Why not libseccomp: its Python binding is not on PyPI as a maintained
package (Debian ships it for the system interpreter only), and the filter we
need is small enough to write and test directly. bubblewrap loads the program
(``--seccomp FD``) right before it executes the command.

The program:

1. kills the process when the system call comes from another architecture
   (an i386 ``int 0x80`` call would otherwise use other numbers) and, on
   x86-64, answers ``ENOSYS`` to the x32 ABI;
2. answers ``EPERM`` to the denied calls: ptrace and cross-process memory
   access, mount and the new mount API, kernel modules and kexec, bpf,
   perf events, keyrings, userfaultfd, io_uring, namespace changes
   (``unshare``, ``setns``, ``clone`` with namespace flags), and a few
   administrative calls;
3. answers ``ENOSYS`` to ``clone3`` (its flags sit behind a pointer the
   filter cannot read; the C library falls back to ``clone``);
4. denies ``ioctl(TIOCSTI)`` and ``ioctl(TIOCLINUX)`` (typing into a terminal);
5. when the network is off, answers ``EAFNOSUPPORT`` to ``socket`` for any
   family but ``AF_UNIX``; with the proxy network, ``AF_INET`` and
   ``AF_INET6`` are allowed too (the network namespace and Landlock then keep
   them to the relay).

>>> prog = build_filter(allow_inet=False)
>>> len(prog) % 8
0
"""

from __future__ import annotations

import errno
import platform
import struct
from dataclasses import dataclass

__all__ = ["SUPPORTED_ARCHES", "SeccompArch", "build_filter", "current_arch"]

# BPF opcodes
_LD_W_ABS = 0x20
_JEQ_K = 0x15
_JGE_K = 0x35
_JSET_K = 0x45
_RET_K = 0x06

_RET_ALLOW = 0x7FFF0000
_RET_KILL_PROCESS = 0x80000000
_RET_ERRNO = 0x00050000

_OFF_NR = 0
_OFF_ARCH = 4


def _arg_low(i: int) -> int:
    """Offset of the low 32 bits of argument ``i`` in ``struct seccomp_data`` (little endian)."""
    return 16 + 8 * i


_AF_UNIX = 1
_AF_INET = 2
_AF_INET6 = 10
_TIOCSTI = 0x5412
_TIOCLINUX = 0x541C
_CLONE_NS_FLAGS = (
    0x00020000  # CLONE_NEWNS
    | 0x02000000  # CLONE_NEWCGROUP
    | 0x04000000  # CLONE_NEWUTS
    | 0x08000000  # CLONE_NEWIPC
    | 0x10000000  # CLONE_NEWUSER
    | 0x20000000  # CLONE_NEWPID
    | 0x40000000  # CLONE_NEWNET
    | 0x00000080  # CLONE_NEWTIME
)

#: the denied system calls, by name (numbers per architecture below)
DENIED = (
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "process_madvise",
    "kcmp",
    "pidfd_getfd",
    "mount",
    "umount2",
    "pivot_root",
    "chroot",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "move_mount",
    "open_tree",
    "mount_setattr",
    "init_module",
    "finit_module",
    "delete_module",
    "kexec_load",
    "kexec_file_load",
    "bpf",
    "perf_event_open",
    "add_key",
    "request_key",
    "keyctl",
    "userfaultfd",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    "unshare",
    "setns",
    "swapon",
    "swapoff",
    "reboot",
    "sethostname",
    "setdomainname",
    "acct",
    "syslog",
    "quotactl",
    "quotactl_fd",
    "open_by_handle_at",
    "name_to_handle_at",
    "lookup_dcookie",
    "vhangup",
    "nfsservctl",
)


@dataclass(frozen=True)
class SeccompArch:
    """System call numbers of one architecture."""

    name: str
    audit_arch: int
    numbers: dict[str, int]
    x32_bit: int = 0


_X86_64 = SeccompArch(
    name="x86_64",
    audit_arch=0xC000003E,
    x32_bit=0x40000000,
    numbers={
        "ioctl": 16,
        "socket": 41,
        "clone": 56,
        "clone3": 435,
        "ptrace": 101,
        "process_vm_readv": 310,
        "process_vm_writev": 311,
        "process_madvise": 440,
        "kcmp": 312,
        "pidfd_getfd": 438,
        "mount": 165,
        "umount2": 166,
        "pivot_root": 155,
        "chroot": 161,
        "fsopen": 430,
        "fsconfig": 431,
        "fsmount": 432,
        "fspick": 433,
        "move_mount": 429,
        "open_tree": 428,
        "mount_setattr": 442,
        "init_module": 175,
        "finit_module": 313,
        "delete_module": 176,
        "kexec_load": 246,
        "kexec_file_load": 320,
        "bpf": 321,
        "perf_event_open": 298,
        "add_key": 248,
        "request_key": 249,
        "keyctl": 250,
        "userfaultfd": 323,
        "io_uring_setup": 425,
        "io_uring_enter": 426,
        "io_uring_register": 427,
        "unshare": 272,
        "setns": 308,
        "swapon": 167,
        "swapoff": 168,
        "reboot": 169,
        "sethostname": 170,
        "setdomainname": 171,
        "acct": 163,
        "syslog": 103,
        "quotactl": 179,
        "quotactl_fd": 443,
        "open_by_handle_at": 304,
        "name_to_handle_at": 303,
        "lookup_dcookie": 212,
        "vhangup": 153,
        "personality": 135,
        "nfsservctl": 180,
    },
)

# The generic table (arm64); not exercised on the x86-64 test machines.
_AARCH64 = SeccompArch(
    name="aarch64",
    audit_arch=0xC00000B7,
    numbers={
        "ioctl": 29,
        "socket": 198,
        "clone": 220,
        "clone3": 435,
        "ptrace": 117,
        "process_vm_readv": 270,
        "process_vm_writev": 271,
        "process_madvise": 440,
        "kcmp": 272,
        "pidfd_getfd": 438,
        "mount": 40,
        "umount2": 39,
        "pivot_root": 41,
        "chroot": 51,
        "fsopen": 430,
        "fsconfig": 431,
        "fsmount": 432,
        "fspick": 433,
        "move_mount": 429,
        "open_tree": 428,
        "mount_setattr": 442,
        "init_module": 105,
        "finit_module": 273,
        "delete_module": 106,
        "kexec_load": 104,
        "kexec_file_load": 294,
        "bpf": 280,
        "perf_event_open": 241,
        "add_key": 217,
        "request_key": 218,
        "keyctl": 219,
        "userfaultfd": 282,
        "io_uring_setup": 425,
        "io_uring_enter": 426,
        "io_uring_register": 427,
        "unshare": 97,
        "setns": 268,
        "swapon": 224,
        "swapoff": 225,
        "reboot": 142,
        "sethostname": 161,
        "setdomainname": 162,
        "acct": 89,
        "syslog": 116,
        "quotactl": 60,
        "quotactl_fd": 443,
        "open_by_handle_at": 265,
        "name_to_handle_at": 264,
        "lookup_dcookie": 18,
        "vhangup": 58,
        "personality": 92,
        "nfsservctl": 42,
    },
)

SUPPORTED_ARCHES = {"x86_64": _X86_64, "amd64": _X86_64, "aarch64": _AARCH64, "arm64": _AARCH64}


def current_arch() -> SeccompArch | None:
    """The syscall table of the machine we run on, or ``None`` when we have none."""
    return SUPPORTED_ARCHES.get(platform.machine().lower())


class _Program:
    """A BPF program with symbolic jump targets, resolved at the end."""

    def __init__(self) -> None:
        self.code: list[tuple[int, object, object, int]] = []
        self.labels: dict[str, int] = {}

    def ins(self, op: int, k: int, jt: object = 0, jf: object = 0) -> None:
        self.code.append((op, jt, jf, k & 0xFFFFFFFF))

    def label(self, name: str) -> None:
        self.labels[name] = len(self.code)

    def assemble(self) -> bytes:
        out = bytearray()
        for i, (op, jt, jf, k) in enumerate(self.code):
            jumps = []
            for j in (jt, jf):
                if isinstance(j, str):
                    offset = self.labels[j] - i - 1
                else:
                    assert isinstance(j, int)
                    offset = j
                if not 0 <= offset <= 255:
                    raise ValueError(f"seccomp jump out of range at {i}")
                jumps.append(offset)
            out += struct.pack("<HBBI", op, jumps[0], jumps[1], k)
        return bytes(out)


def build_filter(*, allow_inet: bool, arch: SeccompArch | None = None) -> bytes:
    """The filter as ``struct sock_filter`` records, ready for ``bwrap --seccomp``.

    ``allow_inet`` lets ``socket`` create IPv4/IPv6 sockets (the proxy
    network); otherwise only ``AF_UNIX`` sockets can be made.
    """
    table = arch or current_arch()
    if table is None:
        raise ValueError(f"no seccomp syscall table for `{platform.machine()}`")
    nums = table.numbers
    p = _Program()
    p.ins(_LD_W_ABS, _OFF_ARCH)
    p.ins(_JEQ_K, table.audit_arch, 0, "kill")
    p.ins(_LD_W_ABS, _OFF_NR)
    if table.x32_bit:
        p.ins(_JGE_K, table.x32_bit, "enosys", 0)
    for name in DENIED:
        p.ins(_JEQ_K, nums[name], "eperm", 0)
    p.ins(_JEQ_K, nums["clone3"], "enosys", 0)
    p.ins(_JEQ_K, nums["clone"], "clone", 0)
    p.ins(_JEQ_K, nums["socket"], "socket", 0)
    p.ins(_JEQ_K, nums["ioctl"], "ioctl", 0)
    p.ins(_RET_K, _RET_ALLOW)

    p.label("clone")
    p.ins(_LD_W_ABS, _arg_low(0))
    p.ins(_JSET_K, _CLONE_NS_FLAGS, "eperm", "allow")

    p.label("socket")
    # The kernel reads the family as an int: judge the low 32 bits only.
    p.ins(_LD_W_ABS, _arg_low(0))
    p.ins(_JEQ_K, _AF_UNIX, "allow", 0)
    if allow_inet:
        p.ins(_JEQ_K, _AF_INET, "allow", 0)
        p.ins(_JEQ_K, _AF_INET6, "allow", 0)
    p.ins(_RET_K, _RET_ERRNO | errno.EAFNOSUPPORT)

    p.label("ioctl")
    # The request is an unsigned int to the kernel: judge the low 32 bits only.
    p.ins(_LD_W_ABS, _arg_low(1))
    p.ins(_JEQ_K, _TIOCSTI, "eperm", 0)
    p.ins(_JEQ_K, _TIOCLINUX, "eperm", "allow")

    p.label("allow")
    p.ins(_RET_K, _RET_ALLOW)
    p.label("eperm")
    p.ins(_RET_K, _RET_ERRNO | errno.EPERM)
    p.label("enosys")
    p.ins(_RET_K, _RET_ERRNO | errno.ENOSYS)
    p.label("kill")
    p.ins(_RET_K, _RET_KILL_PROCESS)
    return p.assemble()
