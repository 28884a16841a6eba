"""The exec tool: the policy section, canonical calls, command rules, the guard around it."""

from __future__ import annotations

from pathlib import Path

import pytest

from stockade import Guard
from stockade.errors import Denied, PolicyError, SandboxUnavailable
from stockade.model import ToolCall
from stockade.policy import Policy
from stockade.stages import MemoryAuditSink
from stockade.tools.exec import ExecConfig, ExecTool, resolve_program

POLICY = """
version: 1
exec:
  workspace: {ws}
  shell: {shell}
  limits: {{timeout: 10s, cpu: 5s, memory: 512MiB, processes: 32, output: 64KiB,
           disk_growth: 8MiB}}
  env: {{GREETING: hello}}
  commands:
    - {{program: ls}}
    - {{program: /bin/echo, args: {{regex: "[a-z ]*"}}}}
    - {{id: count, program: wc, line: {{regex: "-l [a-z.]+"}}, cwd: {{glob: "docs/**"}}}}
    - {{program: cat, effect: ask}}
"""


def _guard(ws: Path, shell: str = "false") -> tuple[Guard, MemoryAuditSink]:
    sink = MemoryAuditSink()
    return Guard(Policy.from_text(POLICY.format(ws=ws, shell=shell)), audit=sink), sink


def test_section_adds_one_rule_per_command(workspace: Path) -> None:
    policy = Policy.from_text(POLICY.format(ws=workspace, shell="false"))
    ids = [r.id for r in policy.rules]
    assert ids == ["exec:ls", "exec:echo", "exec:count", "exec:cat"]
    cfg = policy.section("exec")
    assert isinstance(cfg, ExecConfig)
    assert cfg.sandbox.limits.processes == 32
    assert cfg.sandbox.limits.output == 64 * 1024
    assert cfg.sandbox.limits.disk_growth == 8 * 1024 * 1024
    assert cfg.commands[1].program == resolve_program("echo")


def test_shell_true_adds_a_shell_rule(workspace: Path) -> None:
    policy = Policy.from_text(POLICY.format(ws=workspace, shell="true"))
    assert "exec:shell" in [r.id for r in policy.rules]


def test_relative_workspace_is_relative_to_the_policy(tmp_path: Path) -> None:
    (tmp_path / "work").mkdir()
    text = "version: 1\nexec: {workspace: work}\n"
    cfg = Policy.from_text(text, base_dir=tmp_path).section("exec")
    assert cfg.sandbox.workspace == tmp_path / "work"


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ("{}", "missing required key `workspace`"),
        ("{workspace: /tmp, sandbox: docker}", "unknown value `docker`"),
        ("{workspace: /tmp, network: host}", "unknown value `host`"),
        ("{workspace: /tmp, commands: [{program: no-such-prog-xyz}]}", "not found"),
        ("{workspace: /tmp, commands: [{program: sh}]}", "is a shell"),
        ("{workspace: /tmp, commands: [{program: bash}]}", "is a shell"),
        ("{workspace: /tmp, commands: [{program: ./ls}]}", "by absolute path"),
        ("{workspace: /tmp, commands: [ls, ls]}", "duplicate command id"),
        ("{workspace: /tmp, commands: [true]}", "quote `true`"),
        ("{workspace: /tmp, limits: {cpu: 0}}", "longer than 0"),
        ("{workspace: /tmp, limits: {memory: lots}}", "expected a size"),
        ("{workspace: /tmp, limits: {disk_growth: much}}", "expected a size"),
        ("{workspace: /tmp, limits: {disk_growth: 0}}", "`disk_growth` greater than 0"),
        ("{workspace: /tmp, limits: {walltime: 3}}", "unknown key `walltime`"),
        ("{workspace: /tmp, commands: [{program: ls, args: {regex: '('}}]}", "bad regex"),
        ("{workspace: /tmp, shell: maybe}", "unknown value `maybe`"),
        ("{workspace: /tmp, proxy: '127.0.0.1:3128'}", "only used with `network: proxy`"),
        ("{workspace: /tmp, env: {1BAD: x}}", "invalid environment variable"),
        ("{workspace: /tmp, env: {'é': x}}", "invalid environment variable"),
        ("{workspace: /tmp, pass_env: ['A-B']}", "invalid environment variable"),
        ("{workspace: /tmp, network: proxy, proxy: 'nope'}", "as `host:port`"),
    ],
)
def test_bad_sections_are_located_errors(section: str, message: str) -> None:
    with pytest.raises(PolicyError, match=message) as info:
        Policy.from_text(f"version: 1\nexec: {section}\n", source="p.yaml")
    assert str(info.value).startswith("p.yaml:2:")


def _tool(ws: Path) -> ExecTool:
    policy = Policy.from_text(POLICY.format(ws=ws, shell="false"))
    return ExecTool(policy.section("exec"))


def test_prepare_canonicalises(workspace: Path) -> None:
    tool = _tool(workspace)
    call = ToolCall("exec", "run", {"argv": ["/usr/bin/../bin/ls", "-l", "a b"]}, session="s")
    args = tool.prepare(call).args
    assert args["program"] == resolve_program("ls")
    assert args["argv"] == ["-l", "a b"]
    assert args["line"] == "-l 'a b'"
    assert args["cwd"] == "."
    cwd = tool.prepare(call.with_args({"argv": ["ls"], "cwd": "/workspace/docs/./x"})).args
    assert cwd["cwd"] == "docs/x"


@pytest.mark.parametrize(
    "args",
    [
        {"argv": "ls -l"},
        {"argv": []},
        {"argv": ["ls", 3]},
        {"argv": ["ls\x00"]},
        {"argv": ["./ls"]},
        {"argv": ["ls"], "cwd": "../up"},
        {"argv": ["ls"], "cwd": "/etc"},
        {"argv": ["ls"], "timeout": -1},
        {"argv": ["ls"], "stdin": 5},
        {"argv": ["ls"], "shell": True},
    ],
)
def test_prepare_rejects_bad_arguments(workspace: Path, args: dict[str, object]) -> None:
    guard, sink = _guard(workspace)
    with pytest.raises(Denied) as info:
        guard.call("exec", "run", args)
    assert info.value.rule == "exec:invalid"


def test_allowed_command_runs_in_the_sandbox_and_is_audited(workspace: Path) -> None:
    guard, sink = _guard(workspace)
    result = guard.call("exec", "run", {"argv": ["echo", "hello world"]})
    assert result.decision.rule == "exec:echo"
    assert result.value["stdout"] == "hello world\n"
    assert result.value["exit_code"] == 0
    assert result.labels[0].integrity.value == "untrusted"
    outcome = [e for e in sink.events if e.kind == "outcome"][-1]
    assert outcome.extra["sandbox"]["bwrap"] is True
    assert outcome.extra["sandbox"]["seccomp"] is True
    assert outcome.extra["sandbox"]["network"] == "none"
    assert outcome.extra["exec"]["status"] == "exit status 0"


def test_argument_patterns_decide(workspace: Path) -> None:
    guard, _ = _guard(workspace)
    with pytest.raises(Denied) as info:
        guard.call("exec", "run", {"argv": ["echo", "UPPER"]})
    assert info.value.rule == "default-deny"
    (workspace / "docs").mkdir()
    (workspace / "docs" / "a.md").write_text("1\n2\n")
    ok = guard.call("exec", "run", {"argv": ["wc", "-l", "a.md"], "cwd": "docs"})
    assert ok.decision.rule == "exec:count"
    assert ok.value["stdout"].startswith("2 ")
    for bad in ({"argv": ["wc", "-l", "a.md"]}, {"argv": ["wc", "-c", "a.md"], "cwd": "docs"}):
        with pytest.raises(Denied):
            guard.call("exec", "run", bad)


def test_unlisted_programs_are_denied(workspace: Path) -> None:
    guard, _ = _guard(workspace)
    for argv in (["rm", "-rf", "/"], ["curl", "http://evil.example"], ["/usr/bin/env"]):
        with pytest.raises(Denied) as info:
            guard.call("exec", "run", {"argv": argv})
        assert info.value.rule == "default-deny"


def test_ask_effect_needs_approval(workspace: Path) -> None:
    from stockade.errors import ApprovalRequired

    guard, _ = _guard(workspace)
    with pytest.raises(ApprovalRequired):
        guard.call("exec", "run", {"argv": ["cat", "x"]})


def test_no_shell_unless_allowed(workspace: Path) -> None:
    guard, _ = _guard(workspace)
    with pytest.raises(Denied) as info:
        guard.call("exec", "shell", {"script": "echo hi"})
    assert info.value.rule in ("exec:no-shell", "default-deny")
    tool = _tool(workspace)
    call = tool.prepare(ToolCall("exec", "run", {"argv": ["bash", "-c", "id"]}, session="s"))
    decision = tool.check(call)
    assert decision is not None and decision.rule == "exec:no-shell"


def test_shell_when_allowed_is_still_sandboxed(workspace: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "keep.txt").write_text("precious")
    guard, sink = _guard(workspace, shell="true")
    result = guard.call(
        "exec",
        "shell",
        {"script": f"echo $GREETING; rm -rf {home}; curl -sS -m 2 http://example.com"},
    )
    assert result.decision.rule == "exec:shell"
    assert result.value["stdout"] == "hello\n"
    assert result.value["exit_code"] != 0  # curl could not reach anything
    assert (home / "keep.txt").read_text() == "precious"


def test_shell_ask(workspace: Path) -> None:
    from stockade.errors import ApprovalRequired

    guard, _ = _guard(workspace, shell="ask")
    with pytest.raises(ApprovalRequired):
        guard.call("exec", "shell", {"script": "true"})


def test_timeout_argument_cannot_raise_the_limit(workspace: Path) -> None:
    tool = _tool(workspace)
    call = tool.prepare(ToolCall("exec", "run", {"argv": ["ls"], "timeout": 999}, session="s"))
    assert call.args["timeout"] == 10.0


def test_limits_are_reported(workspace: Path) -> None:
    guard, _ = _guard(workspace)
    result = guard.call("exec", "run", {"argv": ["ls", "-R", "/usr"]})
    assert result.value["truncated"] is True
    assert result.value["killed"] == "output"
    assert "output limit" in result.value["status"]


def test_workspace_growth_past_the_limit_is_killed_and_reported(workspace: Path) -> None:
    text = POLICY.format(ws=workspace, shell="true")
    guard = Guard(Policy.from_text(text), audit=MemoryAuditSink())
    script = "i=0; while [ $i -lt 1024 ]; do i=$((i+1)); head -c 1M /dev/zero > f$i; done"
    result = guard.call("exec", "shell", {"script": script})
    assert result.value["killed"] == "disk"
    assert result.value["disk_exceeded"] is True
    assert result.value["status"] == "killed: workspace disk limit (it grew by more than 8 MiB)"
    assert result.meta["exec"]["disk_exceeded"] is True
    assert result.meta["sandbox"]["limits"]["disk_growth"] == 8 * 1024 * 1024
    assert not (workspace / "f1024").exists()


def test_sandbox_unavailable_fails_the_call(
    workspace: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import stockade.tools.sandbox_host as host

    monkeypatch.setattr(host, "_probes", {})
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    guard, sink = _guard(workspace)
    with pytest.raises(SandboxUnavailable, match="bubblewrap"):
        guard.call("exec", "run", {"argv": ["ls"]})
    assert sink.events[-1].kind == "outcome"
    assert sink.events[-1].error_type == "SandboxUnavailable"


def test_sandbox_none_warns_in_the_audit_record(workspace: Path) -> None:
    text = f"version: 1\nexec: {{workspace: {workspace}, sandbox: none, commands: [ls]}}\n"
    sink = MemoryAuditSink()
    guard = Guard(Policy.from_text(text), audit=sink)
    guard.call("exec", "run", {"argv": ["ls"]})
    extra = sink.events[-1].extra
    assert extra["sandbox"]["backend"] == "none"
    assert "no isolation" in extra["sandbox"]["warning"]


def test_a_failing_check_denies(workspace: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail closed: an exception inside the tool's own check denies the call."""
    guard, _ = _guard(workspace)

    def boom(self: ExecTool, call: ToolCall) -> None:
        raise RuntimeError("broken check")

    monkeypatch.setattr(ExecTool, "check", boom)
    with pytest.raises(Denied) as info:
        guard.call("exec", "run", {"argv": ["ls"]})
    assert info.value.rule == "error:capability"


def test_a_failing_prepare_denies(workspace: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    guard, _ = _guard(workspace)

    def boom(self: ExecTool, call: ToolCall) -> ToolCall:
        raise KeyError("broken prepare")

    monkeypatch.setattr(ExecTool, "prepare", boom)
    with pytest.raises(Denied) as info:
        guard.call("exec", "run", {"argv": ["ls"]})
    assert info.value.rule == "error:prepare"


def test_explain_names_the_command_rule(workspace: Path) -> None:
    policy = Policy.from_text(POLICY.format(ws=workspace, shell="false"))
    call = ToolCall(
        "exec", "run", {"program": resolve_program("ls"), "argv": [], "cwd": "."}, session="s"
    )
    assert policy.decide(call).rule == "exec:ls"


def test_async_call_runs_in_a_thread(workspace: Path) -> None:
    import asyncio

    guard, _ = _guard(workspace)

    async def both() -> list[str]:
        results = await asyncio.gather(
            guard.acall("exec", "run", {"argv": ["echo", "one"]}),
            guard.acall("exec", "run", {"argv": ["echo", "two"]}),
        )
        return [r.value["stdout"] for r in results]

    assert asyncio.run(both()) == ["one\n", "two\n"]


def test_describe_publishes_schemas_integrations_can_check(workspace: Path) -> None:
    from stockade.integrations.schema import compile_schema, schema_for, tool_description

    tool = _tool(workspace)
    run = compile_schema(schema_for(tool, "run"))
    assert run.errors({"argv": ["ls", "-l"], "cwd": "docs"}) == []
    assert run.errors({"argv": "ls -l"})
    assert run.errors({"argv": []})
    assert run.errors({"argv": ["ls"], "shell": True})
    shell = compile_schema(schema_for(tool, "shell"))
    assert shell.errors({"script": "echo hi"}) == []
    assert shell.errors({})
    assert "no network" in tool_description(tool, "run")
