"""``stockade sandbox check`` and ``stockade sandbox run`` (the parsers and handlers)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

import stockade.tools.sandbox_host as host
from stockade.tools import exec_cli


def _main(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="stockade")
    exec_cli.register(parser.add_subparsers())
    args = parser.parse_args(list(argv))
    code: int = args.func(args)
    return code


@pytest.fixture
def policy(workspace: Path, tmp_path: Path) -> Path:
    p = tmp_path / "policy.yaml"
    p.write_text(f"version: 1\nexec:\n  workspace: {workspace}\n  commands: [echo]\n")
    return p


def test_check_reports_the_layers(policy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _main("sandbox", "check", "--policy", str(policy)) == 0
    out = capsys.readouterr().out
    assert "user namespaces     ok" in out
    assert '"seccomp": true' in out
    assert "commands can run sandboxed" in out


def test_check_without_bubblewrap_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(host, "_probes", {})
    monkeypatch.setattr(host, "_launcher_cache", {})  # no compiler on this PATH either
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    assert _main("sandbox", "check") == 1
    out = capsys.readouterr().out
    assert "bubblewrap          missing" in out
    assert "cannot run sandboxed" in out


def test_check_with_a_bad_policy(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nexec: {}\n")
    assert _main("sandbox", "check", "--policy", str(bad)) == 2


def test_run_prints_output_and_exits_with_the_status(
    policy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _main("sandbox", "run", "--policy", str(policy), "--", "echo", "hello") == 0
    captured = capsys.readouterr()
    assert captured.out == "hello\n"
    assert "stockade: exit status 0" in captured.err


def test_run_denied_has_its_own_status_and_names_the_command(
    policy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = _main("sandbox", "run", "--policy", str(policy), "--", "rm", "-rf", "/")
    assert code == exec_cli.EXIT_DENIED == 3
    err = capsys.readouterr().err
    assert err == "stockade: denied `rm -rf /` by default-deny: no rule allows this call\n"


def test_run_keeps_the_commands_own_failure_status(
    workspace: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    p = tmp_path / "policy.yaml"
    p.write_text(f"version: 1\nexec:\n  workspace: {workspace}\n  commands: ['false', ls]\n")
    assert _main("sandbox", "run", "--policy", str(p), "--", "false") == 1
    assert "stockade: exit status 1" in capsys.readouterr().err
    assert _main("sandbox", "run", "--policy", str(p), "--", "ls", "no-such-file") == 2
    assert "stockade: exit status 2" in capsys.readouterr().err


def test_run_denied_in_a_folder_names_it(policy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ("sandbox", "run", "--policy", str(policy), "--cwd", "sub", "--", "no-such-prog-xyz")
    assert _main(*args) == exec_cli.EXIT_DENIED
    err = capsys.readouterr().err
    assert err.startswith("stockade: denied `no-such-prog-xyz` in `sub` by exec:invalid: ")


def test_run_denied_masks_secrets_in_the_command(
    workspace: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    p = tmp_path / "policy.yaml"
    p.write_text(
        "version: 1\nscan: {results: [secrets], model: false}\n"
        f"exec:\n  workspace: {workspace}\n  commands: [echo]\n"
    )
    token = "ghp_" + "abcdefghijklmnopqrstuvwxyz0123456789"
    argv = ("curl", "-H", f"Authorization: Bearer {token}", "https://x.example")
    assert _main("sandbox", "run", "--policy", str(p), "--", *argv) == exec_cli.EXIT_DENIED
    err = capsys.readouterr().err
    assert token not in err
    assert err.startswith("stockade: denied `curl -H 'Authorization: Bearer [REDACTED")
    assert "https://x.example` by default-deny" in err


def test_run_help_documents_the_denied_status(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        _main("sandbox", "run", "--help")
    assert "3 when the guard denied it" in " ".join(capsys.readouterr().out.split())


def test_run_needs_a_command(policy: Path) -> None:
    assert _main("sandbox", "run", "--policy", str(policy)) == 2
