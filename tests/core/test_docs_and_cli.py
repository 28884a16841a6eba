"""The README example runs, the CLI's core commands behave, and the demo exits 0."""

from __future__ import annotations

import io
import re
import subprocess
import sys
from pathlib import Path

import pytest

from stockade.cli import (
    EXIT_BROKEN_PIPE,
    OutputError,
    build_parser,
    main,
    open_output,
    write_output,
)
from stockade.demo import run_demo
from stockade_testing import to_closed_pipe

ROOT = Path(__file__).resolve().parents[2]


def test_readme_example_runs(capsys: pytest.CaptureFixture[str]) -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert blocks, "the README has no python example"
    code = blocks[0]
    assert len(code.strip().splitlines()) <= 30
    exec(compile(code, "README.md", "exec"), {})
    out = capsys.readouterr().out
    assert "sent to bob@example.com" in out
    assert "default-deny" in out


def test_policy_check_ok_and_broken(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = tmp_path / "good.yaml"
    good.write_text("version: 1\nrules: [{id: a, tool: t, effect: allow}]\n")
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nrules: [{id: a, tool: t, effect: permit}]\n")
    assert main(["policy", "check", str(good)]) == 0
    assert "ok (1 rules" in capsys.readouterr().out
    assert main(["policy", "check", str(good), str(bad)]) == 1
    err = capsys.readouterr().err
    assert f"{bad}:2:" in err and "unknown value `permit`" in err


def test_policy_explain_worst_first(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = tmp_path / "p.yaml"
    p.write_text(
        "version: 1\nrules:\n"
        "  - {id: r, tool: fs, action: read, effect: allow, when: {path: {glob: 'docs/**'}}}\n"
        "  - {id: d, tool: fs, action: delete, effect: allow, when: {path: {glob: 'notes/**'}}}\n"
        "  - {id: p, tool: http, action: post, effect: allow, when: {host: {host: api.example.com}}}\n"
    )
    assert main(["policy", "explain", str(p)]) == 0
    lines = [ln.strip() for ln in capsys.readouterr().out.splitlines()[1:]]
    assert lines[0] == "[high] may delete any file under `notes/`"
    assert "[medium] may POST to `api.example.com`" in lines
    assert lines.index("[medium] may POST to `api.example.com`") < lines.index(
        "[low] may read any file under `docs/`"
    )
    assert lines[-1] == "[info] everything else is denied"
    assert main(["policy", "explain", "--json", str(p)]) == 0
    assert '"rule": "d"' in capsys.readouterr().out


def test_policy_test_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = tmp_path / "p.yaml"
    p.write_text("version: 1\nrules: [{id: r, tool: fs, action: read, effect: allow}]\n")
    cases = tmp_path / "cases.yaml"
    cases.write_text(
        "cases:\n"
        "  - {name: reads, tool: fs, action: read, expect: allow, rule: r}\n"
        "  - {name: deletes, tool: fs, action: delete, expect: deny}\n"
    )
    assert main(["policy", "test", str(p), str(cases)]) == 0
    assert "2 passed, 0 failed" in capsys.readouterr().out
    cases.write_text("cases:\n  - {name: wrong, tool: fs, action: delete, expect: allow}\n")
    assert main(["policy", "test", str(p), str(cases)]) == 1
    assert "expected allow, got deny by default-deny" in capsys.readouterr().out


def test_every_command_has_help() -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for name, cmd in sub.choices.items():  # type: ignore[union-attr]
        assert cmd.description or cmd.format_help(), name
        text = cmd.format_help()
        assert "usage:" in text


def test_help_and_no_command_exit_codes() -> None:
    assert main([]) == 2
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0


def test_demo_runs_and_exits_zero() -> None:
    out = io.StringIO()
    assert run_demo(out, color=False) == 0, out.getvalue()
    text = out.getvalue()
    assert "ALLOW" in text and "DENY" in text and "summary:" in text
    assert "unexpected" not in text


def test_demo_command_in_a_subprocess() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "stockade.cli", "demo", "--scene", "core", "--no-color"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "summary:" in proc.stdout


def test_a_closed_pipe_ends_any_command_quietly(tmp_path: Path) -> None:
    policy = tmp_path / "p.yaml"
    policy.write_text("version: 1\nrules: [{id: r, tool: fs, action: read, effect: allow}]\n")
    secret = tmp_path / "config.env"
    secret.write_text("GITHUB=ghp_R4nd0mT0k3nV4lu3F0rT3st1ngPurp0s3sXY\n")
    for argv in (
        ("policy", "explain", str(policy)),
        ("policy", "check", str(policy)),
        ("scan", str(secret), "--no-model"),
    ):
        proc = to_closed_pipe(*argv)
        assert proc.returncode == EXIT_BROKEN_PIPE, (argv, proc.stderr)
        assert "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr, argv


def test_a_policy_that_does_not_load_is_an_error_outside_policy_commands(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = str(tmp_path / "nope.yaml")
    assert main(["undo", "--policy", missing, "--session", "s"]) == 2
    assert "nope.yaml:1:1: cannot read" in capsys.readouterr().err
    assert main(["policy", "explain", missing]) == 1  # there the policy is what is checked
    assert "nope.yaml:1:1: cannot read" in capsys.readouterr().err


def test_output_error_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(OutputError, match=r"cannot write `.*x.txt`: no such file or directory"):
        write_output(tmp_path / "no" / "x.txt", "text")
    with pytest.raises(OutputError, match=r"is a directory"), open_output(tmp_path) as out:
        out.write("never")
    with open_output(tmp_path / "y.txt") as out:
        out.write("kept")
    assert (tmp_path / "y.txt").read_text() == "kept"
