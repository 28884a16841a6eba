"""`policy test` decides cases as the guard would: canonical arguments, the tool's
own checks, then the rules; nothing runs and nothing persists."""

from __future__ import annotations

from pathlib import Path

import pytest

from stockade import Policy
from stockade.cli import main
from stockade.errors import PolicyError
from stockade.policy.cases import case_guard, parse_cases, run_cases
from stockade.policy.node import parse_yaml

HTTP_POLICY = """
version: 1
http:
  allow:
    - {id: echo, scheme: http, host: 127.0.0.1, port: 38571, methods: [GET], path: /echo}
    - {id: anywhere, scheme: http, host: "*", port: 80, methods: [GET]}
"""

HTTP_CASES = """
cases:
  - name: a raw URL the tool allows
    tool: http
    action: request
    args: {url: "http://127.0.0.1:38571/echo"}
    expect: allow
    rule: http:echo
  - name: a decimal IP is refused before any rule
    tool: http
    action: request
    args: {url: "http://2130706433:38571/echo"}
    expect: deny
    rule: http:invalid
  - name: the metadata address is refused even with host "*"
    tool: http
    action: request
    args: {url: "http://169.254.169.254/latest/meta-data/"}
    expect: deny
    rule: http:metadata
"""


def _write(tmp_path: Path, policy: str, cases: str) -> tuple[str, str]:
    p, c = tmp_path / "policy.yaml", tmp_path / "cases.yaml"
    p.write_text(policy, encoding="utf-8")
    c.write_text(cases, encoding="utf-8")
    return str(p), str(c)


def test_http_cases_are_decided_like_the_tool(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["policy", "test", *_write(tmp_path, HTTP_POLICY, HTTP_CASES)]) == 0
    out = capsys.readouterr().out
    assert "ok   a raw URL the tool allows: allow by http:echo" in out
    assert "deny by http:invalid" in out
    assert "deny by http:metadata" in out
    assert "3 passed, 0 failed" in out


def test_a_wrong_expectation_names_the_tool_rule(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cases = HTTP_CASES.replace("expect: deny\n    rule: http:metadata", "expect: allow")
    assert main(["policy", "test", *_write(tmp_path, HTTP_POLICY, cases)]) == 1
    assert "expected allow, got deny by http:metadata" in capsys.readouterr().out


def test_fs_cases_see_canonical_paths_and_the_builtin_deny_list(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "notes").mkdir(parents=True)
    journal = tmp_path / "journal"
    audit = tmp_path / "audit.db"
    policy = Policy.from_text(
        f"version: 1\n"
        f"audit: {{path: {audit}}}\n"
        f"fs:\n  root: {root}\n  allow: {{read: ['**']}}\n"
        f"  journal: {{path: {journal}}}\n"
    )
    cases = parse_cases(
        parse_yaml(
            "cases:\n"
            "  - {tool: fs, action: read, args: {path: ./notes/../notes/a.md}, expect: allow}\n"
            "  - {tool: fs, action: read, args: {path: ../etc/passwd}, expect: deny,"
            " rule: 'fs:invalid'}\n"
            "  - {tool: fs, action: read, args: {path: .env}, expect: deny}\n",
            "cases.yaml",
        )
    )
    outcomes = list(run_cases(policy, cases))
    assert [o.passed for o in outcomes] == [True, True, True], [o.detail for o in outcomes]
    assert "default-deny" not in outcomes[2].detail  # the tool's own deny list decided
    # nothing persisted: no audit store, no journal
    assert not audit.exists()
    assert not journal.exists()


def test_limits_do_not_carry_from_one_case_to_the_next() -> None:
    policy = Policy.from_text(
        "version: 1\n"
        "limits: [{id: one, tool: [t], calls: 1, window: 1h, per: global}]\n"
        "rules: [{id: t, tool: t, action: x, effect: allow}]\n"
    )
    case = "  - {tool: t, action: x, expect: allow}\n"
    cases = parse_cases(parse_yaml("cases:\n" + case * 3, "cases.yaml"))
    assert all(o.passed for o in run_cases(policy, cases))


def test_sql_cases_are_decided_by_rules_alone_with_a_note(tmp_path: Path) -> None:
    db = tmp_path / "shop.db"
    policy = Policy.from_text(
        f"version: 1\nsql:\n  databases:\n    shop: {{url: 'sqlite:///{db}', tables: {{orders: {{}}}}}}\n"
    )
    guard, notes = case_guard(policy)
    with guard:
        assert "sql" not in guard.tools
    assert notes and "`sql` cases are decided by the rules alone" in notes[0]
    assert not db.exists()


def test_an_empty_case_list_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(PolicyError, match="no cases"):
        parse_cases(parse_yaml("cases: []\n", "cases.yaml"))
    assert main(["policy", "test", *_write(tmp_path, HTTP_POLICY, "cases: []\n")]) == 1
    captured = capsys.readouterr()
    assert "no cases: an empty list tests nothing" in captured.err
    assert "passed" not in captured.out


def test_exec_cases_see_the_resolved_program_and_the_shell_rule(tmp_path: Path) -> None:
    (tmp_path / "work").mkdir()
    policy = Policy.from_text(
        "version: 1\n"
        "exec: {workspace: ./work, sandbox: none}\n"
        "rules:\n"
        "  - {id: ls, tool: exec, action: run, effect: allow,"
        " when: {program: {one_of: [/usr/bin/ls, /bin/ls]}}}\n"
        "  - {id: sh, tool: exec, action: shell, effect: allow}\n",
        source=str(tmp_path / "policy.yaml"),
    )
    cases = parse_cases(
        parse_yaml(
            "cases:\n"
            "  - {tool: exec, action: run, args: {argv: [ls, -l]}, expect: allow, rule: ls}\n"
            "  - {tool: exec, action: shell, args: {script: ls}, expect: deny,"
            " rule: 'exec:no-shell'}\n"
            "  - {tool: exec, action: run, args: {argv: ls -l}, expect: deny,"
            " rule: 'exec:invalid'}\n",
            "cases.yaml",
        )
    )
    outcomes = list(run_cases(policy, cases))
    assert all(o.passed for o in outcomes), [o.detail for o in outcomes]
