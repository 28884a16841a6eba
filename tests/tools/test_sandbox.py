"""The sandbox: legitimate commands run, results are reported, the machine's gaps are refused."""

from __future__ import annotations

import logging
import os
import stat
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

import stockade.tools.sandbox as sandbox_mod
import stockade.tools.sandbox_host as host
from stockade.errors import ExecError, SandboxUnavailable
from stockade.tools.sandbox import Limits, Sandbox, SandboxConfig

LEGIT = Path(__file__).resolve().parents[1] / "attacks" / "exec" / "legit.yaml"
ENTRIES: list[dict[str, Any]] = yaml.safe_load(LEGIT.read_text(encoding="utf-8"))
PY = "/usr/bin/python3"


@pytest.fixture
def sandbox(workspace: Path) -> Sandbox:
    return Sandbox(SandboxConfig(workspace=workspace, limits=Limits(timeout=20)))


@pytest.fixture
def fresh_probe(monkeypatch: pytest.MonkeyPatch) -> None:
    """Forget the cached probe so a changed PATH is seen."""
    monkeypatch.setattr(host, "_probes", {})


@pytest.mark.parametrize("launcher", [None, "python"], ids=["default-launcher", "python-launcher"])
@pytest.mark.parametrize("entry", ENTRIES, ids=[e["id"] for e in ENTRIES])
def test_legitimate_command_runs(entry: dict[str, Any], launcher: Any, workspace: Path) -> None:
    limits = replace(Limits(timeout=20), **(entry.get("limits") or {}))
    sandbox = Sandbox(SandboxConfig(workspace=workspace, limits=limits), _launcher=launcher)
    argv = ["/bin/sh", "-c", entry["sh"]] if "sh" in entry else [PY, "-c", entry["py"]]
    stdin = entry.get("stdin")
    result = sandbox.run(argv, stdin=stdin.encode() if stdin else None)
    exp = entry["expect"]
    why = f"{result.describe()}: {result.stdout!r} {result.stderr!r}"
    assert result.exit_code == exp["exit"], why
    assert not result.killed and not result.truncated and not result.disk_exceeded, why
    if "stdout_has" in exp:
        assert exp["stdout_has"] in result.stdout.decode(), why
    if "workspace_file" in exp:
        name, content = exp["workspace_file"]
        assert (workspace / name).read_text() == content


def test_layers_are_reported(sandbox: Sandbox) -> None:
    result = sandbox.run(["/bin/true"])
    layers = result.layers
    assert layers["backend"] == "bwrap"
    assert layers["seccomp"] is True
    assert layers["network"] == "none"
    assert {"user", "pid", "ipc", "uts", "cgroup", "net", "mount"} <= set(layers["namespaces"])
    assert layers["landlock"] == sandbox.probe.landlock
    assert result.ok
    assert result.describe() == "exit status 0"


def test_kernel_sees_seccomp_and_no_capabilities(sandbox: Sandbox) -> None:
    out = sandbox.run(["/bin/cat", "/proc/self/status"]).stdout.decode()
    fields = dict(line.split(":\t", 1) for line in out.splitlines() if ":\t" in line)
    assert fields["Seccomp"].strip() == "2"
    assert fields["NoNewPrivs"].strip() == "1"
    assert int(fields["CapEff"], 16) == 0
    assert int(fields["CapBnd"], 16) == 0


def test_cwd_inside_the_workspace(sandbox: Sandbox, workspace: Path) -> None:
    (workspace / "sub").mkdir()
    assert sandbox.run(["/bin/pwd"], cwd="sub").stdout == b"/workspace/sub\n"


@pytest.mark.parametrize("cwd", ["..", "../x", "/etc", "sub/../../x", "missing"])
def test_cwd_outside_or_missing_is_refused(sandbox: Sandbox, cwd: str) -> None:
    with pytest.raises(ExecError):
        sandbox.run(["/bin/pwd"], cwd=cwd)


def test_cwd_symlink_out_of_the_workspace_is_refused(sandbox: Sandbox, workspace: Path) -> None:
    (workspace / "link").symlink_to("/etc")
    with pytest.raises(ExecError, match="outside the workspace"):
        sandbox.run(["/bin/pwd"], cwd="link")


def test_c_launcher_is_used_where_a_compiler_is(sandbox: Sandbox) -> None:
    expected = "c" if host._c_launcher() else "python"
    assert sandbox.layers["launcher"] == expected


@pytest.mark.parametrize("launcher", [None, "python"])
def test_launcher_reports_a_missing_program(workspace: Path, launcher: Any) -> None:
    sb = Sandbox(SandboxConfig(workspace=workspace), _launcher=launcher)
    with pytest.raises(ExecError, match="cannot start `/usr/bin/No-Such`: no such file"):
        sb.run(["/usr/bin/No-Such"])


@pytest.mark.parametrize("launcher", [None, "python"])
def test_env_values_survive_the_config_encoding(workspace: Path, launcher: Any) -> None:
    env = {"ODD": "50% off\nnext line", "SPACE": "a b"}
    sb = Sandbox(SandboxConfig(workspace=workspace, env=env), _launcher=launcher)
    out = sb.run(["/bin/sh", "-c", 'printf "%s|%s" "$ODD" "$SPACE"']).stdout.decode()
    assert out == "50% off\nnext line|a b"


def test_relative_program_is_refused(sandbox: Sandbox) -> None:
    with pytest.raises(ExecError, match="absolute path"):
        sandbox.run(["ls"])


def test_missing_program_is_an_error_not_a_run(sandbox: Sandbox) -> None:
    with pytest.raises(ExecError, match="did not start the command: cannot start"):
        sandbox.run(["/usr/bin/no-such-program-here"])


def test_workspace_must_exist(tmp_path: Path) -> None:
    with pytest.raises(ExecError, match="not a directory"):
        Sandbox(SandboxConfig(workspace=tmp_path / "nope"))


def test_missing_bubblewrap_refuses_with_install_hint(
    workspace: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh_probe: None
) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    with pytest.raises(SandboxUnavailable, match="apt-get install bubblewrap"):
        Sandbox(SandboxConfig(workspace=workspace))


def test_broken_user_namespaces_refuse(
    workspace: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh_probe: None
) -> None:
    """A bwrap that cannot make namespaces (as on a kernel that forbids them) is refused."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    fake = bindir / "bwrap"
    fake.write_text(
        "#!/bin/sh\n"
        'if [ "$1" = --version ]; then echo "bubblewrap 0.8.0"; exit 0; fi\n'
        'echo "bwrap: No permissions to creating new namespace" >&2; exit 1\n'
    )
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bindir}:/usr/bin:/bin")
    with pytest.raises(SandboxUnavailable, match="user namespaces do not work here"):
        Sandbox(SandboxConfig(workspace=workspace))


def test_sandbox_none_runs_with_limits_only_and_says_so(workspace: Path) -> None:
    sb = Sandbox(SandboxConfig(workspace=workspace, mode="none", limits=Limits(cpu=1)))
    assert "warning" in sb.layers
    assert sb.layers["backend"] == "none"
    result = sb.run(["/bin/sh", "-c", "pwd; while :; do :; done"])
    assert result.stdout.decode().strip() == str(workspace.resolve())
    assert result.signal == "SIGXCPU"
    assert result.layers["seccomp"] is False


def test_sandbox_none_environment_is_not_the_parents(
    workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STOCKADE_TEST_SECRET", "s3cr3t-none-mode")
    sb = Sandbox(SandboxConfig(workspace=workspace, mode="none"))
    assert b"s3cr3t" not in sb.run(["/usr/bin/env"]).stdout


def test_configured_env_is_passed(workspace: Path) -> None:
    sb = Sandbox(SandboxConfig(workspace=workspace, env={"GREETING": "hi"}))
    assert b"GREETING=hi" in sb.run(["/usr/bin/env"]).stdout


def test_popen_long_lived_child_with_pipes(sandbox: Sandbox) -> None:
    code = "import sys\nfor line in sys.stdin:\n    print(line.strip().upper(), flush=True)\n"
    with sandbox.popen([PY, "-u", "-c", code], limits=Limits(cpu=60)) as proc:
        assert proc.stdin is not None and proc.stdout is not None
        for word in (b"alpha", b"beta"):
            proc.stdin.write(word + b"\n")
            proc.stdin.flush()
            assert proc.stdout.readline() == word.upper() + b"\n"
        assert proc.poll() is None
        assert proc.layers["seccomp"] is True
    assert proc.returncode is not None


def test_popen_kill_ends_the_whole_tree(sandbox: Sandbox) -> None:
    proc = sandbox.popen(["/bin/sh", "-c", "sleep 4711 & sleep 4712 & wait"])
    proc.kill()
    proc.kill()  # twice is fine
    assert proc.returncode is not None
    assert _leftovers("sleep 471") == []


@pytest.mark.skipif(os.geteuid() != 0, reason="the pids cgroup is only used by root")
def test_root_runs_leave_no_cgroups(sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[Path] = []
    real_create = host._PidsCgroup.create

    def create(base: Path, limit: int) -> Any:
        group = real_create(base, limit)
        made.append(group.path)
        return group

    monkeypatch.setattr(host._PidsCgroup, "create", staticmethod(create))
    sandbox.run(["/bin/true"])
    sandbox.run(["/bin/sh", "-c", "sleep 30"], limits=Limits(timeout=0.5))
    assert len(made) == 2
    assert not any(p.exists() for p in made)


def _leftovers(marker: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ")
            except OSError:
                continue
            if marker.encode() in cmdline and b"-c" not in cmdline:
                found.append(int(entry))
    return found


def test_extra_read_only_paths(workspace: Path, tmp_path: Path) -> None:
    """A server's own files (folder or single file) can be added read-only."""
    srv = tmp_path / "srv"
    srv.mkdir()
    (srv / "index.txt").write_text("server code")
    single = tmp_path / "config.json"
    single.write_text("{}")
    config = SandboxConfig(
        workspace=workspace,
        system_paths=(*sandbox_mod.DEFAULT_SYSTEM_PATHS, str(srv), str(single)),
    )
    result = Sandbox(config).run(
        ["/bin/sh", "-c", f"cat {srv}/index.txt {single}; echo x > {srv}/new || echo refused"]
    )
    assert result.stdout.decode() == "server code{}refused\n"


def test_describe_and_as_dict(sandbox: Sandbox) -> None:
    result = sandbox.run(["/bin/sh", "-c", "echo out; echo err >&2; exit 4"])
    data = result.as_dict()
    assert data == {
        "exit_code": 4,
        "signal": None,
        "killed": None,
        "truncated": False,
        "disk_exceeded": False,
        "stdout": "out\n",
        "stderr": "err\n",
        "status": "exit status 4",
    }
    assert not result.ok and not result.timed_out
    slow = sandbox.run(["/bin/sleep", "30"], limits=Limits(timeout=0.5))
    assert slow.describe() == "killed: wall-clock timeout"
    assert slow.timed_out


def test_popen_wait_timeout_is_an_exec_error(sandbox: Sandbox) -> None:
    with sandbox.popen(["/bin/sleep", "30"]) as proc:
        with pytest.raises(ExecError, match="did not end within"):
            proc.wait(0.2)
        proc.terminate()
        assert proc.returncode is not None


def test_with_limits_and_context_manager(workspace: Path) -> None:
    with Sandbox(SandboxConfig(workspace=workspace)) as sb:
        tight = sb.with_limits(Limits(cpu=1, timeout=20))
        assert tight.config.limits.cpu == 1
        assert tight.layers["launcher"] == sb.layers["launcher"]
        assert tight.run(["/bin/sh", "-c", "while :; do :; done"]).signal == "SIGXCPU"


def test_from_policy(workspace: Path) -> None:
    from stockade.policy import Policy

    sb = Sandbox.from_policy(Policy.from_text(f"version: 1\nexec: {{workspace: {workspace}}}\n"))
    assert sb.workspace == workspace.resolve()
    with pytest.raises(ExecError, match="no `exec` section"):
        Sandbox.from_policy(Policy.from_text("version: 1\n"))


def test_bad_env_name_is_refused(workspace: Path) -> None:
    sb = Sandbox(SandboxConfig(workspace=workspace, env={"BAD NAME": "x"}))
    with pytest.raises(ExecError, match="invalid environment variable name"):
        sb.run(["/bin/true"])


@pytest.mark.parametrize("launcher", [None, "python"])
def test_sandbox_none_with_both_launchers(workspace: Path, launcher: Any) -> None:
    sb = Sandbox(SandboxConfig(workspace=workspace, mode="none"), _launcher=launcher)
    assert sb.run(["/bin/echo", "hi"]).stdout == b"hi\n"


def test_stdin_larger_than_a_pipe_buffer(sandbox: Sandbox) -> None:
    data = b"x" * (1 << 20)
    result = sandbox.run(["/usr/bin/wc", "-c"], stdin=data)
    assert result.stdout.strip() == str(len(data)).encode()


def test_stdin_not_read_by_the_command(sandbox: Sandbox) -> None:
    result = sandbox.run(["/bin/true"], stdin=b"y" * (1 << 20))
    assert result.ok


def test_pass_env_is_an_allow_list(workspace: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "Europe/Zurich")
    monkeypatch.setenv("STOCKADE_TEST_SECRET", "s3cr3t-pass-env")
    sb = Sandbox(SandboxConfig(workspace=workspace, pass_env=("TZ", "NOT_SET_ANYWHERE")))
    out = sb.run(["/usr/bin/env"]).stdout.decode()
    assert "TZ=Europe/Zurich" in out
    assert "s3cr3t" not in out
    assert "NOT_SET_ANYWHERE" not in out


def test_hidden_paths_read_as_empty_and_cannot_be_written(
    sandbox: Sandbox, workspace: Path
) -> None:
    (workspace / "key.txt").write_text("hunter2\n")
    (workspace / "vault").mkdir()
    (workspace / "vault" / "a.txt").write_text("hunter2\n")
    hide = [("key.txt", False), ("vault", True)]
    read = sandbox.run(["/bin/cat", "key.txt"], hide=hide)
    listed = sandbox.run(["/bin/ls", "-A", "vault"], hide=hide)
    write = sandbox.run(["/usr/bin/touch", "vault/new"], hide=hide)
    assert read.exit_code == 0 and read.stdout == b""
    assert listed.exit_code == 0 and listed.stdout == b""
    assert write.exit_code != 0
    assert (workspace / "key.txt").read_text() == "hunter2\n"


def test_hide_outside_the_workspace_is_refused(sandbox: Sandbox) -> None:
    with pytest.raises(ExecError, match="not beneath"):
        sandbox.run(["/bin/true"], hide=[("../etc", True)])


def test_hide_without_bubblewrap_fails_closed(workspace: Path) -> None:
    bare = Sandbox(SandboxConfig(workspace=workspace, mode="none"))
    with pytest.raises(ExecError, match="cannot hide"):
        bare.run(["/bin/true"], hide=[("key.txt", False)])


def _write(path: Path, mib: int) -> None:
    with path.open("wb") as f:
        f.write(b"x" * (mib << 20))
        f.flush()
        os.fsync(f.fileno())


def test_disk_watch_counts_only_what_changed_in_the_workspace(tmp_path: Path) -> None:
    """Free space lost elsewhere on the filesystem makes the watch measure,
    not judge; what the workspace gained is what counts."""
    ws = tmp_path / "ws"
    ws.mkdir()
    _write(ws / "old", 12)  # there before the run: not the run's growth
    os.utime(ws / "old", ns=(0, 0))
    watch = sandbox_mod._DiskWatch(str(ws), 8 << 20)
    watch.since_ns = os.stat(ws / "old").st_ctime_ns + 1
    _write(tmp_path / "elsewhere", 12)  # the filesystem lost more than the limit
    _write(ws / "new", 2)
    assert watch.check() is False
    assert watch.over is False
    _write(ws / "new2", 7)  # 9 MiB in the workspace now
    assert watch.check() is True
    assert watch.over is True


def test_disk_watch_measures_when_free_space_cannot_be_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    watch = sandbox_mod._DiskWatch(str(ws), 8 << 20)

    def broken(path: str) -> os.statvfs_result:
        raise OSError("statvfs failed")

    monkeypatch.setattr(sandbox_mod.os, "statvfs", broken)
    _write(ws / "small", 2)
    assert watch.check() is False
    _write(ws / "big", 7)  # 9 MiB: over, found by the walk alone
    assert watch.check() is True


def test_disk_watch_counts_hard_links_once(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    watch = sandbox_mod._DiskWatch(str(ws), 8 << 20)
    _write(ws / "a", 3)
    for i in range(4):
        os.link(ws / "a", ws / f"link{i}")
    growth = watch.measure()
    assert growth is not None and 3 << 20 <= growth < 4 << 20


def test_growth_found_after_the_exit_is_reported(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A command that wrote past the limit and ended before the watch looked
    keeps its exit status; the look after the run still finds the growth."""
    monkeypatch.setattr(sandbox_mod, "_DISK_POLL", 3600.0)  # no look while it runs
    limits = replace(sandbox.config.limits, disk_growth=1 << 20)
    result = sandbox.run(["/bin/sh", "-c", "head -c 3M /dev/zero > big"], limits=limits)
    assert result.exit_code == 0
    assert result.killed == ""
    assert result.disk_exceeded
    assert not result.ok
    assert result.describe() == "exit status 0 (workspace disk limit: it grew by more than 1 MiB)"


def test_timeout_holds_when_the_command_closes_its_output(workspace: Path) -> None:
    """With stdout and stderr closed the run waits on the process itself; the
    deadline (and the disk watch) still end it."""
    sandbox = Sandbox(SandboxConfig(workspace=workspace, limits=Limits(timeout=1)))
    result = sandbox.run(["/bin/sh", "-c", "exec >&- 2>&-; sleep 30"])
    assert result.killed == "timeout"
    quick = sandbox.run(["/bin/sh", "-c", "exec >&- 2>&-; exit 7"])
    assert quick.exit_code == 7 and not quick.killed


# -- the workspace growth cap of popen'd children --------------------------------------

_FILL = """
i=0
while [ $i -lt 256 ]; do i=$((i+1)); head -c 1048576 /dev/zero > /workspace/f$i || break; done
touch /workspace/finished
exec sleep 30
"""


def _disk_watchers(pid: int) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == f"stockade-disk-watch-{pid}"]


def test_popen_past_the_disk_cap_is_killed_and_reported(
    sandbox: Sandbox, workspace: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A long-lived child that fills the workspace in 1 MiB files (each under
    the file size limit) is killed by the watch thread; the handle says why,
    a warning names the workspace and the cap, the pipes read end-of-file."""
    limits = Limits(cpu=60, file_size=1 << 20, disk_growth=8 << 20)
    with (
        caplog.at_level(logging.WARNING, logger="stockade.exec"),
        sandbox.popen(["/bin/sh", "-c", _FILL], limits=limits) as proc,
    ):
        proc.wait(timeout=20)
        assert proc.killed == "disk"
        assert proc.disk_limit == 8 << 20
        assert proc.stdout is not None and proc.stdout.read() == b""
    assert not (workspace / "finished").exists()
    assert len(list(workspace.glob("f*"))) >= 8
    warning = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warning == [
        f"sandbox: the workspace `{workspace}` grew by more than 8 MiB: "
        f"killed the sandboxed process {proc.pid} and everything it started"
    ]
    assert _disk_watchers(proc.pid) == []


def test_popen_under_the_disk_cap_is_not_killed(
    sandbox: Sandbox, workspace: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A child that writes less than the cap lives on, even when the
    filesystem as a whole lost more than the cap (so the watch walks the
    workspace) and the walk has run."""
    walks: list[int | None] = []
    walked = threading.Event()
    real_measure = sandbox_mod._DiskWatch.measure

    def measure(self: Any) -> int | None:
        growth = real_measure(self)
        walks.append(growth)
        walked.set()
        return growth

    monkeypatch.setattr(sandbox_mod._DiskWatch, "measure", measure)
    code = "head -c 2097152 /dev/zero > /workspace/small; echo written; read line; echo bye"
    limits = Limits(cpu=60, disk_growth=8 << 20)
    with sandbox.popen(["/bin/sh", "-c", code], limits=limits) as proc:
        assert proc.stdin is not None and proc.stdout is not None
        assert proc.stdout.readline() == b"written\n"
        _write(tmp_path / "elsewhere", 12)  # outside the workspace, same filesystem
        assert walked.wait(20)
        assert walks and walks[0] is not None and 2 << 20 <= walks[0] < 8 << 20
        assert proc.poll() is None
        proc.stdin.write(b"go on\n")
        proc.stdin.flush()
        assert proc.stdout.readline() == b"bye\n"
        assert proc.wait(timeout=20) == 0
        assert proc.killed == ""
    assert (workspace / "small").stat().st_size == 2 << 20


def test_popen_watch_thread_ends_with_the_process(sandbox: Sandbox) -> None:
    """The watch thread is a daemon, one per child, gone after kill() and
    after the child ended by itself."""
    proc = sandbox.popen(["/bin/sh", "-c", "sleep 4713"])
    (watcher,) = _disk_watchers(proc.pid)
    assert watcher.daemon and watcher.is_alive()
    proc.kill()
    assert not watcher.is_alive()
    assert proc.killed == ""
    proc.kill()  # twice is fine

    quick = sandbox.popen(["/bin/true"])
    (watcher,) = _disk_watchers(quick.pid)
    assert quick.wait(timeout=20) == 0
    watcher.join(20)
    assert not watcher.is_alive()
    quick.kill()
    assert _disk_watchers(proc.pid) == _disk_watchers(quick.pid) == []
