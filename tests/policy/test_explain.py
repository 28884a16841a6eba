"""`policy explain`: plain words, worst first, every kind of rule and limit."""

from __future__ import annotations

from pathlib import Path

from stockade import Policy
from stockade.policy.explain import explain, explain_lines

POLICY = """
version: 1
budgets: {calls: 100, bytes: 1MB}
limits:
  - {id: web, tool: [http], calls: 10, window: 1m, per: principal}
rules:
  - {id: anything, tool: "*", effect: allow, principal: admin-*}
  - {id: reads, tool: "*", action: read, effect: allow}
  - {id: rm-tmp, tool: fs, action: delete, effect: allow, when: {path: {glob: ["tmp/**", "cache/*.tmp"]}}}
  - {id: write-all, tool: fs, action: write, effect: allow, when: {path: {glob: "**"}}}
  - {id: run, tool: shell, action: exec, effect: ask, when: {cmd: {one_of: [ls, pwd]}}}
  - {id: pay, tool: payments, action: pay, effect: ask, when: {amount: {min: 1, max: 50}, note: {length: {max: 20}}}}
  - {id: mail, tool: mail, action: send, effect: allow, when: {to: {regex: ".*@example\\\\.com"}, cc: {equals: none}}}
  - {id: net, tool: net, action: connect, effect: allow, when: {ip: {cidr: 10.0.0.0/8}}}
  - {id: get, tool: http, action: get, effect: allow, when: {host: {host: ["a.example", "b.example"]}}}
  - {id: no-env, tool: fs, action: read, effect: deny, when: {path: {glob: ".env*"}}}
  - {id: no-drop, tool: [db, warehouse], action: [drop, truncate], effect: deny}
  - {id: trial, tool: fs, action: move, effect: allow, mode: shadow}
  - {id: lenient, tool: t, action: x, effect: allow, when: {n: {length: {min: 2}}}}
"""


def test_explain_covers_every_rule_kind_worst_first() -> None:
    lines = explain_lines(Policy.from_text(POLICY))
    text = "\n".join(lines)
    assert lines[0] == "[critical] may use any tool with any arguments (for principals `admin-*`)"
    assert "[high] may write any file" in text
    assert "may delete any file under `tmp/` or files matching `cache/*.tmp`" in text
    assert "may, after approval, use `shell.exec` when cmd one of `ls`, `pwd`" in text
    assert "amount >= 1.0 and amount <= 50.0 and note of length at most 20" in text
    assert "cc = `none`" in text and "to matching the pattern" in text
    assert "ip an address in `10.0.0.0/8`" in text
    assert "may GET to `a.example`, `b.example`" in text
    assert "never: `fs` (read) when path matching `.env*`" in text
    assert "never: `db`, `warehouse` (drop, truncate)" in text
    assert "shadow rule `trial` (allow) is recorded, not enforced" in text
    assert "at most 10 calls per 60s per principal for http" in text
    assert "at most 100 calls per session" in text
    assert "at most 1000000 bytes of results per session" in text
    assert "n of length at least 2" in text
    assert "action `read` of any tool" in text
    assert lines[-1] == "[info] everything else is denied"
    order = ["critical", "high", "medium", "low", "info"]
    ranks = [order.index(line[1 : line.index("]")]) for line in lines]
    assert ranks == sorted(ranks)


def test_shadow_mode_is_the_first_thing_said() -> None:
    lines = explain_lines(Policy.from_text("version: 1\nmode: shadow\n"))
    assert lines[0].startswith("[critical] the policy is in shadow mode")


def test_sections_can_add_lines() -> None:
    policy = Policy.from_text("version: 1")

    class Section:
        def explain(self) -> list[str]:
            return ["root is /srv/agent"]

    policy.sections["fake"] = Section()
    assert "[info] fake: root is /srv/agent" in explain_lines(policy)
    assert all(e.as_dict()["risk"] for e in explain(policy))


def test_fs_unlock_is_its_own_high_risk_line(tmp_path: Path) -> None:
    text = f"version: 1\nfs:\n  root: {tmp_path}\n  allow: {{read: ['**']}}\n"
    without = explain(Policy.from_text(text))
    assert not any(e.rule == "fs:unlock" for e in without)
    lines = explain(Policy.from_text(text + "  unlock: ['.env', '.git/hooks/*']\n"))
    (unlock,) = [e for e in lines if e.rule == "fs:unlock"]
    assert unlock.risk == "high"
    assert "`unlock` lifts the built-in deny list for `.env`, `.git/hooks/*`" in unlock.text
    assert "environment file" in unlock.text and "git internals" in unlock.text
    # the rules still speak for themselves, after the unlock line
    texts = [e.text for e in lines]
    assert texts.index(unlock.text) < texts.index("may read any file")
