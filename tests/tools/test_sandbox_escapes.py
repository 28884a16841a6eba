"""The escape corpus (tests/attacks/exec/escapes.yaml): every attack is contained.

Each entry runs in a fresh sandbox with every layer on; the test checks the
entry's expectations and prints one line saying how it was contained.
"""

from __future__ import annotations

import contextlib
import os
import pty
import socket
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from stockade.tools.sandbox import Limits, RunResult, Sandbox, SandboxConfig

CORPUS = Path(__file__).resolve().parents[1] / "attacks" / "exec" / "escapes.yaml"
ENTRIES: list[dict[str, Any]] = yaml.safe_load(CORPUS.read_text(encoding="utf-8"))
CANARY = "stk-canary-7f3a9c1e5b"
PY = "/usr/bin/python3"


@pytest.fixture(scope="module")
def loopback() -> Iterator[int]:
    """A TCP service on the host's loopback that answers with the canary."""
    srv = socket.create_server(("127.0.0.1", 0))
    srv.settimeout(0.2)
    port = srv.getsockname()[1]
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except OSError:
                continue
            with conn:
                conn.sendall(f"HTTP/1.0 200 OK\r\n\r\n{CANARY}\n".encode())

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    yield port
    stop.set()
    t.join(timeout=2)
    srv.close()


@pytest.fixture
def scene(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """A workspace, a folder outside it and a fake home, each with a canary."""
    ws = tmp_path / "workspace"
    ws.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "canary.txt").write_text(CANARY)
    home = tmp_path / "home"
    home.mkdir()
    (home / "secret.txt").write_text(CANARY)
    monkeypatch.setenv("STOCKADE_TEST_SECRET", CANARY)
    monkeypatch.setenv("HOME", str(home))
    return {"workspace": ws, "outside": outside, "home": home}


def _fill(text: str, scene: dict[str, Path], port: int) -> str:
    return (
        text.replace("{outside}", str(scene["outside"]))
        .replace("{home}", str(scene["home"]))
        .replace("{canary}", CANARY)
        .replace("{port}", str(port))
        .replace("{pid}", str(os.getpid()))
    )


def _argv(entry: dict[str, Any], scene: dict[str, Path], port: int) -> list[str]:
    if "sh" in entry:
        return ["/bin/sh", "-c", _fill(entry["sh"], scene, port)]
    return [PY, "-c", _fill(entry["py"], scene, port)]


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _leftovers(marker: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError):
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ")
            if marker.encode() in cmdline and b"-c" not in cmdline:
                found.append(int(entry))
    return found


def _run_tty(sandbox: Sandbox, argv: list[str]) -> tuple[RunResult, bool]:
    """Run with a pseudo-terminal as stdin; return the result and whether the tty stayed clean."""
    master, slave = pty.openpty()
    try:
        with sandbox.popen(argv, stdin=slave, stderr=-1) as proc:
            assert proc.stdout is not None and proc.stderr is not None
            out = proc.stdout.read()
            err = proc.stderr.read()
            code = proc.wait(30)
        os.set_blocking(slave, False)
        try:
            pending = os.read(slave, 1024)
        except BlockingIOError:
            pending = b""
    finally:
        os.close(master)
        os.close(slave)
    result = RunResult(tuple(argv), code, None, out, err, False, "", 0.0, proc.layers)
    return result, pending == b""


@pytest.mark.parametrize("launcher", [None, "python"], ids=["default-launcher", "python-launcher"])
@pytest.mark.parametrize("entry", ENTRIES, ids=[e["id"] for e in ENTRIES])
def test_escape_is_contained(
    entry: dict[str, Any],
    launcher: Any,
    scene: dict[str, Path],
    loopback: int,
    capsys: pytest.CaptureFixture[str],
) -> None:
    limits = replace(Limits(timeout=15, cpu=5), **(entry.get("limits") or {}))
    config = SandboxConfig(workspace=scene["workspace"], limits=limits)
    sandbox = Sandbox(config, _launcher=launcher)
    before_outside = _snapshot(scene["outside"])
    before_home = _snapshot(scene["home"])
    argv = _argv(entry, scene, loopback)
    tty_clean = True
    if entry.get("tty"):
        result, tty_clean = _run_tty(sandbox, argv)
    else:
        result = sandbox.run(argv)
    out = result.stdout.decode("utf-8", "replace")
    err = result.stderr.decode("utf-8", "replace")
    both = out + err
    exp = entry["expect"]
    why = f"{entry['id']}: {result.describe()}\nstdout: {out[-800:]}\nstderr: {err[-800:]}"

    if exp.get("lacks_canary"):
        assert CANARY not in both, why
    if exp.get("lacks_shadow"):
        host_shadow = Path("/etc/shadow").read_text(encoding="utf-8", errors="replace").splitlines()
        leaked = [line for line in host_shadow if line.strip() and line in both]
        assert not leaked, why
    if exp.get("host_intact"):
        assert _snapshot(scene["outside"]) == before_outside, why
        assert _snapshot(scene["home"]) == before_home, why
    if "stdout_has" in exp:
        assert exp["stdout_has"] in out, why
    if "stdout_lacks" in exp:
        assert exp["stdout_lacks"] not in out, why
    if "stderr_has" in exp:
        assert exp["stderr_has"] in err, why
    if "killed" in exp:
        assert result.killed == exp["killed"], why
    if "signal" in exp:
        assert result.signal == exp["signal"], why
    if "disk_exceeded" in exp:
        assert result.disk_exceeded is exp["disk_exceeded"], why
    if "workspace_lacks" in exp:
        assert not (scene["workspace"] / exp["workspace_lacks"]).exists(), why
    if exp.get("stopped"):
        assert result.killed or result.signal or result.exit_code != 0, why
    if exp.get("exit_nonzero"):
        assert result.exit_code not in (0, None) or result.signal, why
    if "max_stdout" in exp:
        assert len(result.stdout) + len(result.stderr) <= exp["max_stdout"], why
        assert result.truncated, why
    if "workspace_file_max" in exp:
        name, size = exp["workspace_file_max"]
        assert (scene["workspace"] / name).stat().st_size <= size, why
        assert result.signal == "SIGXFSZ", why
    if "fork_count_max" in exp:
        count = int(out.split("forked", 1)[1].split()[0])
        assert count <= exp["fork_count_max"], why
    if "no_leftover" in exp:
        assert _leftovers(exp["no_leftover"]) == [], why
    if exp.get("parent_alive"):
        os.kill(os.getpid(), 0)  # still here
    if exp.get("tty_clean"):
        assert tty_clean, why
    assert result.layers["bwrap"] and result.layers["seccomp"], why
    with capsys.disabled():
        first = next((line for line in both.splitlines() if line.strip()), "")[:100]
        print(
            f"\n  contained {entry['id']} [{result.layers['launcher']} launcher] "
            f"({result.describe()}) by {entry['layer']}: {first}"
        )
