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


def test_run_denied(policy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _main("sandbox", "run", "--policy", str(policy), "--", "rm", "-rf", "/") == 1
    assert "denied by default-deny" in capsys.readouterr().err


def test_run_needs_a_command(policy: Path) -> None:
    assert _main("sandbox", "run", "--policy", str(policy)) == 2
