"""The sandbox as an ordinary user: RLIMIT_NPROC holds inside the user namespace.

The tests run as root (CI); stockade's usual user is not. A forked child drops
to `nobody` and runs real sandboxes: the process limit, the workspace, the
missing secrets, and both launchers.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

import stockade.tools.sandbox_host as host
from stockade.tools.sandbox import Limits, Sandbox, SandboxConfig

NOBODY = 65534
FORKS = (
    "import os, time\n"
    "n = 0\n"
    "try:\n"
    "    while n < 100:\n"
    "        if os.fork() == 0:\n"
    "            time.sleep(5)\n"
    "            os._exit(0)\n"
    "        n += 1\n"
    "except OSError:\n"
    "    pass\n"
    "print(n)\n"
)


def _system_python_matches() -> bool:
    """Whether /usr/bin/python3 has our minor version (it then runs our launcher's .pyc)."""
    import subprocess

    if not os.path.exists("/usr/bin/python3"):
        return False
    out = subprocess.run(
        ["/usr/bin/python3", "-c", "import sys; print(sys.version_info[:2])"],
        capture_output=True,
        check=False,
    ).stdout.decode()
    return out.strip() == str(sys.version_info[:2])


def _as_nobody(workspace: Path, launchers: tuple[str | None, ...]) -> dict[str, Any]:
    """Run the checks in a child that is `nobody`; return what it found."""
    import atexit  # noqa: F401 - loaded now: the child cannot read the stdlib as nobody
    import py_compile  # noqa: F401

    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        os.close(read)
        out: dict[str, Any] = {}
        try:
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            host._probes.clear()
            host._launcher_cache.clear()
            host._private_dir.clear()
            # Our interpreter may live in root's home, which nobody cannot read;
            # the Python launcher then runs on the system's (same minor version).
            if not os.access(sys.executable, os.X_OK) and "python" in launchers:
                sys.executable = "/usr/bin/python3"
                sys.base_prefix = "/usr"
            for launcher in launchers:
                config = SandboxConfig(workspace=workspace, limits=Limits(processes=8, timeout=20))
                sb = Sandbox(config, _launcher=launcher)
                forks = sb.run(["/usr/bin/python3", "-c", FORKS])
                files = sb.run(["/bin/sh", "-c", "id -u; echo hi > /workspace/f; cat /etc/shadow"])
                out[str(launcher)] = {
                    "layers": dict(sb.layers),
                    "forks": int(forks.stdout.decode().strip() or -1),
                    "files": files.stdout.decode(),
                    "shadow_err": files.stderr.decode(),
                }
        except BaseException as exc:
            out["error"] = f"{type(exc).__name__}: {exc}"
        os.write(write, json.dumps(out).encode())
        os._exit(0)
    os.close(write)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        time.sleep(0.05)
    else:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        pytest.fail("the child running as nobody did not finish")
    data = b""
    while chunk := os.read(read, 65536):
        data += chunk
    os.close(read)
    result: dict[str, Any] = json.loads(data)
    return result


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to become nobody")
def test_sandbox_as_an_ordinary_user() -> None:
    # pytest's tmp_path is private to root: nobody needs a path it can reach.
    with tempfile.TemporaryDirectory(prefix="stockade-nobody-") as tmp:
        ws = Path(tmp) / "ws"
        ws.mkdir()
        Path(tmp).chmod(0o755)
        os.chown(ws, NOBODY, NOBODY)
        with_python = ("python",) if _system_python_matches() else ()
        found = _as_nobody(ws, (None, *with_python))
        written = (ws / "f").read_text(), (ws / "f").stat().st_uid
    assert "error" not in found, found.get("error")
    for launcher in [k for k in found if k in ("None", "python")]:
        got = found[launcher]
        assert got["layers"]["pids_cgroup"] is False  # not root: RLIMIT_NPROC does the job
        assert got["layers"]["seccomp"] is True
        assert 0 < got["forks"] < 8
        assert got["files"] == "1000\n"
        assert "No such file" in got["shadow_err"]
    assert written == ("hi\n", NOBODY)
