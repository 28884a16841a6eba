"""``stockade audit ...`` end to end: init, verify exit codes, query, tail, proof, export, report."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from stockade import Guard
from stockade.audit.cli import EXIT_CODES
from stockade.audit.merkle import verify_consistency, verify_inclusion
from stockade.cli import EXIT_BROKEN_PIPE, main
from stockade.errors import Denied
from stockade_testing import to_closed_pipe

POLICY = """version: 1
rules:
  - {id: greet, tool: greet, effect: allow, when: {name: {regex: "[a-z]{1,10}"}}}
  - {id: files-secret, tool: files, effect: deny, when: {path: {glob: "**/.env"}}}
  - {id: files-read, tool: files, effect: allow}
audit:
  path: state/audit.db
  origin: cli-test
  keys: state/keys
  checkpoint: {every: 4, interval: 0}
  mirror: {file: state/mirror.jsonl}
"""


@pytest.fixture
def policy(tmp_path: Path) -> Path:
    p = tmp_path / "policy.yaml"
    p.write_text(POLICY)
    return p


def _fill(policy: Path) -> None:
    guard = Guard.from_file(policy)

    @guard.tool()
    def greet(name: str) -> str:
        return f"hi {name}"

    @guard.tool("files", action="read")
    def read(path: str) -> str:
        return "content"

    with guard.session("alice"):
        greet("ada")
        greet("bob")
        read("notes/a.md")
    with guard.session("mallory"):
        for attempt in (lambda: greet("<script>alert(1)</script>"), lambda: read("app/.env")):
            with pytest.raises(Denied):
                attempt()
    guard.close()


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["audit", *argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def filled(policy: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    code, out, _ = _run(capsys, "init", "--policy", str(policy))
    assert code == 0 and "public key" in out
    _fill(policy)
    return policy


def test_init_creates_keys_and_store(policy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "init", "--policy", str(policy))
    assert code == 0
    state = policy.parent / "state"
    assert (state / "audit.db").exists() and (state / "keys" / "audit-signing.key").exists()
    assert "created keys" in out
    code, out, _ = _run(capsys, "init", "--policy", str(policy))
    assert code == 0 and "kept existing keys" in out


def test_verify_ok_and_json(filled: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "verify", "--policy", str(filled), "--strict")
    assert code == 0 and "audit log ok" in out and "mirrored" in out
    code, out, _ = _run(capsys, "verify", "--policy", str(filled), "--json")
    data = json.loads(out)
    assert data["ok"] and data["records"] == 8 and data["unsigned"] == 0


@pytest.mark.parametrize(
    ("sql", "kind", "seq"),
    [
        (
            "UPDATE records SET record = replace(record, 'deny', 'allow') WHERE seq = 6",
            "invalid",
            6,
        ),
        ("DELETE FROM records WHERE seq >= 6", "missing", 6),
        ("DELETE FROM records WHERE seq = 2", "gap", 2),
    ],
)
def test_verify_exit_codes(
    filled: Path, capsys: pytest.CaptureFixture[str], sql: str, kind: str, seq: int
) -> None:
    db = sqlite3.connect(filled.parent / "state" / "audit.db")
    db.execute(sql)
    db.commit()
    db.close()
    code, _, err = _run(capsys, "verify", "--policy", str(filled))
    assert code == EXIT_CODES[kind]
    assert f"({kind} at seq {seq})" in err
    code, out, _ = _run(capsys, "verify", "--policy", str(filled), "--json")
    assert json.loads(out) == {
        "ok": False,
        "kind": kind,
        "seq": seq,
        "error": json.loads(out)["error"],
    }
    assert len(set(EXIT_CODES.values())) == 3 and 0 not in EXIT_CODES.values()


def test_verify_by_store_and_public_key(filled: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state = filled.parent / "state"
    code, out, _ = _run(
        capsys,
        "verify",
        "--store",
        str(state / "audit.db"),
        "--public-key",
        str(state / "keys" / "audit-signing.pub"),
        "--mirror",
        str(state / "mirror.jsonl"),
    )
    assert code == 0, out
    other = filled.parent / "other"
    _run(capsys, "init", "--store", str(other / "x.db"), "--keys", str(other / "keys"))
    code, _, err = _run(
        capsys, "verify", "--store", str(state / "audit.db"), "--keys", str(other / "keys")
    )
    assert code == EXIT_CODES["invalid"] and "signed by key" in err


def test_where_is_the_log(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = _run(capsys, "verify")
    assert code == 2 and "--policy FILE or --store" in err
    code, _, err = _run(capsys, "verify", "--store", str(tmp_path / "none.db"))
    assert code == 2 and "does not exist" in err
    code, _, err = _run(capsys, "verify", "--store", "postgresql://x/y")
    assert code == 2 and "--origin" in err
    nosection = tmp_path / "p.yaml"
    nosection.write_text("version: 1\n")
    code, _, err = _run(capsys, "verify", "--policy", str(nosection))
    assert code == 2 and "no audit section" in err


def test_query_filters_and_json(filled: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "query", "--policy", str(filled), "--decision", "deny", "--json")
    rows = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and [r["rule"] for r in rows] == ["default-deny", "files-secret"]
    assert {r["session"] for r in rows} == {"mallory"}
    code, out, _ = _run(
        capsys, "query", "--policy", str(filled), "--session", "alice", "--kind", "outcome"
    )
    assert out.count("outcome") == 3
    code, out, _ = _run(
        capsys,
        "query",
        "--policy",
        str(filled),
        "--tool",
        "files",
        "--rule",
        "files-read",
        "--since",
        "1h",
        "--until",
        "2999-01-01T00:00:00Z",
    )
    assert code == 0 and out.count("files.read") == 2
    code, out, _ = _run(capsys, "query", "--policy", str(filled), "--since", "2999-01-01")
    assert out.count("\n") == 1  # header only
    with pytest.raises(SystemExit):
        main(["audit", "query", "--policy", str(filled), "--since", "yesterday-ish"])


def test_table_output_strips_terminal_escapes(
    policy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _run(capsys, "init", "--policy", str(policy))
    guard = Guard.from_file(policy)

    @guard.tool()
    def greet(name: str) -> str:
        return name

    guard.call("greet", "call", {"name": "x"}, session="\x1b[2J\x1b]0;pwned\x07")
    guard.close()
    _, out, _ = _run(capsys, "tail", "--policy", str(policy))
    assert "\x1b" not in out and "\x07" not in out


def test_tail_and_follow(filled: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "tail", "--policy", str(filled), "-n", "2", "--json")
    assert [json.loads(line)["seq"] for line in out.splitlines()] == [6, 7]
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "stockade.cli",
            "audit",
            "tail",
            "--policy",
            str(filled),
            "-n",
            "1",
            "--follow",
            "--interval",
            "0.05",
            "--max-polls",
            "400",
            "--json",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert json.loads(proc.stdout.readline())["seq"] == 7  # tail is up
    _fill(filled)  # eight more records while tail follows
    seqs = [json.loads(proc.stdout.readline())["seq"] for _ in range(8)]
    proc.kill()
    proc.wait()
    proc.stdout.close()
    if proc.stderr is not None:
        proc.stderr.close()
    assert seqs == list(range(8, 16))


def test_proofs(filled: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "proof", "--policy", str(filled), "--inclusion", "5")
    p = json.loads(out)
    assert code == 0 and p["tree_size"] == 8 and p["checkpoint"]["size"] == 8
    verify_inclusion(
        bytes.fromhex(p["leaf_hash"]),
        5,
        8,
        [bytes.fromhex(x) for x in p["proof"]],
        bytes.fromhex(p["root"]),
    )
    code, out, _ = _run(capsys, "proof", "--policy", str(filled), "--inclusion", "1", "--size", "4")
    assert json.loads(out)["tree_size"] == 4
    code, out, _ = _run(capsys, "proof", "--policy", str(filled), "--consistency", "4", "8")
    c = json.loads(out)
    verify_consistency(
        4,
        8,
        [bytes.fromhex(x) for x in c["proof"]],
        bytes.fromhex(c["root1"]),
        bytes.fromhex(c["root2"]),
    )
    code, _, err = _run(capsys, "proof", "--policy", str(filled), "--inclusion", "1", "--size", "3")
    assert code == 2 and "no checkpoint at size 3" in err
    code, _, err = _run(capsys, "proof", "--policy", str(filled), "--inclusion", "99")
    assert code == 2 and "not covered" in err


def test_export_jsonl_and_otel(
    filled: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, out, err = _run(capsys, "export", "--policy", str(filled), "--format", "jsonl")
    lines = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and [r["seq"] for r in lines] == list(range(8)) and "8 records" in err
    assert all("raw_args" not in r for r in lines)
    target = tmp_path / "spans.json"
    code, _, err = _run(
        capsys, "export", "--policy", str(filled), "--format", "otel", "-o", str(target)
    )
    assert code == 0 and "5 spans" in err
    request = json.loads(target.read_text())
    spans = request["resourceSpans"][0]["scopeSpans"][0]["spans"]
    attrs = [{a["key"]: next(iter(a["value"].values())) for a in s["attributes"]} for s in spans]
    assert [s["name"] for s in spans] == ["execute_tool greet"] * 2 + ["execute_tool files"] + [
        "execute_tool greet",
        "execute_tool files",
    ]
    assert attrs[0]["gen_ai.operation.name"] == "execute_tool"
    assert attrs[0]["gen_ai.tool.name"] == "greet" and attrs[0]["gen_ai.conversation.id"] == "alice"
    assert attrs[0]["stockade.decision"] == "allow" and "error.type" not in attrs[0]
    assert attrs[0]["stockade.audit.seq"] == "1" and attrs[0]["stockade.audit.decision_seq"] == "0"
    assert (
        attrs[4]["error.type"] == "stockade.denied" and attrs[4]["stockade.rule"] == "files-secret"
    )
    assert attrs[4]["stockade.audit.origin"] == "cli-test"
    assert spans[4]["status"]["code"] == 2 and spans[0]["status"]["code"] == 1
    assert len(spans[0]["traceId"]) == 32 and len(spans[0]["spanId"]) == 16
    assert spans[0]["traceId"] != spans[3]["traceId"]  # one trace per session
    assert int(spans[0]["endTimeUnixNano"]) >= int(spans[0]["startTimeUnixNano"])


def test_report_is_self_contained_and_escaped(
    filled: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    target = tmp_path / "report.html"
    code, out, _ = _run(capsys, "report", "--policy", str(filled), "--html", str(target))
    assert code == 0 and str(target) in out
    page = target.read_text()
    assert "<svg" in page and "Denials by rule" in page and "Slowest calls" in page
    assert "verified: 8 records" in page
    assert "<script" not in page.lower() and "src=" not in page and "href=" not in page
    assert "default-src 'none'" in page
    assert "files-secret" in page and "mallory" in page
    db = sqlite3.connect(filled.parent / "state" / "audit.db")
    db.execute("DELETE FROM records WHERE seq = 3")
    db.commit()
    db.close()
    _run(capsys, "report", "--policy", str(filled), "--html", str(target))
    assert "VERIFICATION FAILED (gap at seq 3)" in target.read_text()


def test_help_texts(capsys: pytest.CaptureFixture[str]) -> None:
    for sub in ("init", "verify", "tail", "query", "proof", "export", "report"):
        with pytest.raises(SystemExit) as info:
            main(["audit", sub, "--help"])
        assert info.value.code == 0
        assert len(capsys.readouterr().out) > 200
    assert main(["audit"]) == 2


def test_postgres_store_from_the_command_line(
    pg_db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], origin: str
) -> None:
    keys = tmp_path / "keys"
    where = ["--store", pg_db, "--origin", origin, "--keys", str(keys)]
    code, out, _ = _run(capsys, "init", *where)
    assert code == 0 and f"origin `{origin}`" in out
    policy = tmp_path / "pg.yaml"
    policy.write_text(
        POLICY.split("audit:")[0]
        + f"audit: {{url: '{pg_db}', origin: {origin}, keys: keys, checkpoint: {{every: 4}}}}\n"
    )
    _fill(policy)
    code, out, _ = _run(capsys, "verify", *where, "--strict", "--json")
    assert code == 0 and json.loads(out)["records"] == 8
    code, out, _ = _run(capsys, "query", *where, "--decision", "deny", "--json")
    assert [json.loads(line)["rule"] for line in out.splitlines()] == [
        "default-deny",
        "files-secret",
    ]
    code, out, _ = _run(capsys, "proof", *where, "--consistency", "4", "8")
    assert code == 0 and json.loads(out)["size2"] == 8
    code, _, err = _run(capsys, "verify", "--store", pg_db, "--keys", str(keys))
    assert code == 2 and "needs --origin" in err and f"`{origin}` (8 records)" in err


def test_missing_configured_mirror(filled: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (filled.parent / "state" / "mirror.jsonl").unlink()
    code, out, _ = _run(capsys, "verify", "--policy", str(filled))
    assert code == 0 and "mirror" in out and "is missing" in out
    code, _, err = _run(capsys, "verify", "--policy", str(filled), "--strict")
    assert code == EXIT_CODES["missing"] and "is missing" in err


@pytest.mark.parametrize(
    "argv",
    [
        ("export", "--format", "jsonl"),
        ("export", "--format", "otel"),
        ("query",),
        ("tail", "-n", "50"),
        ("proof", "--inclusion", "2"),
    ],
)
def test_a_closed_pipe_ends_the_command_quietly(filled: Path, argv: tuple[str, ...]) -> None:
    proc = to_closed_pipe("audit", *argv, "--policy", str(filled))
    assert proc.returncode == EXIT_BROKEN_PIPE, proc.stderr
    assert proc.stderr == ""


def test_an_unwritable_output_file_is_named(
    filled: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    where = tmp_path / "no" / "such" / "dir"
    code, _, err = _run(capsys, "report", "--policy", str(filled), "--html", str(where / "r.html"))
    assert code == 2
    assert err == f"stockade: cannot write `{where / 'r.html'}`: no such file or directory\n"
    code, _, err = _run(
        capsys, "export", "--policy", str(filled), "--format", "otel", "-o", str(where / "x")
    )
    assert (
        code == 2 and err == f"stockade: cannot write `{where / 'x'}`: no such file or directory\n"
    )
    code, _, err = _run(capsys, "export", "--policy", str(filled), "-o", str(tmp_path))
    assert code == 2 and err == f"stockade: cannot write `{tmp_path}`: is a directory\n"


def test_counts_and_time_ranges_are_checked(
    filled: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for argv in (("tail", "-n", "-5"), ("query", "--limit", "-1")):
        with pytest.raises(SystemExit) as info:
            main(["audit", *argv, "--policy", str(filled)])
        assert info.value.code == 2
        assert f"expected a count of 0 or more, got `{argv[-1]}`" in capsys.readouterr().err
    code, out, _ = _run(capsys, "tail", "--policy", str(filled), "-n", "0", "--json")
    assert code == 0 and out == ""
    for cmd in ("query", "export"):
        code, out, err = _run(
            capsys, cmd, "--policy", str(filled), "--since", "1h", "--until", "2h"
        )
        assert code == 2 and out == ""
        assert "--since `1h`" in err and "--until `2h`" in err and "is not before" in err
    code, out, _ = _run(
        capsys, "query", "--policy", str(filled), "--since", "1h", "--until", "2030-01-01", "--json"
    )
    assert code == 0 and len(out.splitlines()) == 8


def test_a_policy_that_does_not_load_cannot_run(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, _, err = _run(capsys, "query", "--policy", str(tmp_path / "nope.yaml"))
    assert code == 2 and "nope.yaml:1:1: cannot read" in err
