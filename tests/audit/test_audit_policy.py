"""The policy's audit section, and the guard with a real store: records, and denial on failure."""

from __future__ import annotations

import json
import logging
import sys
import uuid
from pathlib import Path

import pytest

from stockade import Guard
from stockade.audit import AuditConfig, AuditLog, UnavailableSink
from stockade.audit.keys import load_public_key
from stockade.audit.store import Query
from stockade.audit.store_sqlite import SQLiteStore
from stockade.audit.verify import verify_log
from stockade.errors import ConfigurationError, Denied, PolicyError
from stockade.policy import Policy
from stockade.stages import MemoryAuditSink

RULES = """
version: 1
rules:
  - {id: greet, tool: greet, effect: allow, when: {name: {regex: "[a-z]{1,10}"}}}
"""


def _policy(tmp_path: Path, audit: str) -> Path:
    p = tmp_path / "policy.yaml"
    p.write_text(RULES + audit)
    return p


def _guard(path: Path) -> tuple[Guard, list[str]]:
    guard = Guard.from_file(path)
    ran: list[str] = []

    @guard.tool()
    def greet(name: str) -> str:
        ran.append(name)
        return f"hi {name}"

    return guard, ran


def test_section_defaults_and_relative_paths(tmp_path: Path) -> None:
    policy = Policy.from_file(_policy(tmp_path, "audit: {origin: box}\n"))
    cfg = policy.section("audit")
    assert isinstance(cfg, AuditConfig)
    assert cfg.path == tmp_path / "audit.db"
    assert cfg.keys_dir == tmp_path / "audit-keys"
    assert cfg.required and not cfg.create_keys and cfg.durability == "process"
    assert (cfg.checkpoint_every, cfg.checkpoint_interval) == (1000, 10.0)
    assert cfg.mirror is None
    full = Policy.from_file(
        _policy(
            tmp_path,
            """audit:
  path: logs/a.db
  keys: /etc/stockade/keys
  hmac_key: secret/hmac.key
  checkpoint: {every: 5, interval: 2m}
  mirror: {file: logs/cp.jsonl}
  durability: power
  required: false
""",
        )
    ).section("audit")
    assert full.path == tmp_path / "logs" / "a.db"
    assert full.keys_dir == Path("/etc/stockade/keys")
    assert full.key_paths.hmac == tmp_path / "secret" / "hmac.key"
    assert (full.checkpoint_every, full.checkpoint_interval) == (5, 120.0)
    assert full.mirror_file == tmp_path / "logs" / "cp.jsonl"
    assert full.durability == "power" and not full.required
    pg = Policy.from_file(
        _policy(
            tmp_path,
            "audit: {url: 'postgresql://u:pw@db/audit', origin: w1, mirror: {command: [logger]}}\n",
        )
    ).section("audit")
    assert pg.url and pg.path is None and pg.mirror_command == ("logger",)
    assert pg.store_location == "postgresql://u:***@db/audit"


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ("audit: {path: a.db, url: 'postgresql://x/y'}", "either `path`"),
        ("audit: {url: 'mysql://x/y'}", "postgresql:// URL"),
        ("audit: {checkpoint: {every: 0}}", ">= 1"),
        ("audit: {checkpoint: {interval: soon}}", "duration"),
        ("audit: {mirror: {}}", "exactly one"),
        ("audit: {durability: fast}", "process, power"),
        ("audit: {required: 'yes'}", "true or false"),
        ('audit: {origin: "a\\nb"}', "control characters"),
        ("audit: {paht: a.db}", "unknown key `paht`"),
    ],
)
def test_section_errors_are_located(tmp_path: Path, section: str, message: str) -> None:
    with pytest.raises(PolicyError) as info:
        Policy.from_file(_policy(tmp_path, section + "\n"))
    problem = info.value.problems[0]
    assert message in problem.message
    assert problem.line >= 5 and problem.file.endswith("policy.yaml")


def test_no_section_keeps_the_memory_sink(tmp_path: Path) -> None:
    guard, _ = _guard(_policy(tmp_path, ""))
    assert isinstance(guard.audit, MemoryAuditSink)
    guard.close()


def test_missing_keys_stop_the_guard_from_starting(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="stockade audit init"):
        Guard.from_file(_policy(tmp_path, "audit: {origin: box}\n"))


def test_guard_records_decisions_and_outcomes(tmp_path: Path) -> None:
    path = _policy(tmp_path, "audit: {origin: box, create_keys: true, checkpoint: {every: 2}}\n")
    guard, ran = _guard(path)
    assert isinstance(guard.audit, AuditLog)
    result = guard.call("greet", "call", {"name": "ada"})
    with pytest.raises(Denied) as info:
        guard.call("greet", "call", {"name": "EVIL!"})
    guard.close()
    assert ran == ["ada"]
    assert result.audit_seq == 1 and info.value.audit_seq == 2
    store = SQLiteStore(tmp_path / "audit.db", "", readonly=True)
    records = [r.parsed() for r in store.query(Query())]
    assert [(r["kind"], r["decision"], r["rule"]) for r in records] == [
        ("decision", "allow", "greet"),
        ("outcome", "allow", "greet"),
        ("decision", "deny", "default-deny"),
    ]
    assert records[1]["result_size"] == len("hi ada") and records[1]["result_digest"]
    assert records[0]["origin"] == "box"
    verify_log(store, load_public_key(tmp_path / "audit-keys" / "audit-signing.pub"), strict=True)
    store.close()


def test_full_disk_denies_and_the_tool_does_not_run(tmp_path: Path) -> None:
    guard, ran = _guard(_policy(tmp_path, "audit: {origin: box, create_keys: true}\n"))
    assert isinstance(guard.audit, AuditLog)
    guard.call("greet", "call", {"name": "ada"})
    w = guard.audit.store._w  # type: ignore[attr-defined]
    pages = w.execute("PRAGMA page_count").fetchone()[0]
    w.execute(f"PRAGMA max_page_count = {pages}")  # SQLite's own "disk full"
    with pytest.raises(Denied) as info:  # noqa: PT012 - the disk fills after a few calls
        for i in range(200):
            guard.call("greet", "call", {"name": "".join(chr(97 + int(d)) for d in str(i))})
    assert info.value.rule == "error:audit"
    # the disk stays full: the next call is stopped before its tool runs
    with pytest.raises(Denied, match="could not record the decision") as info:
        guard.call("greet", "call", {"name": "zed"})
    assert info.value.rule == "error:audit"
    assert "zed" not in ran
    guard.close()


def test_not_required_goes_on_without_the_store(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "blocker").write_text("a file where a folder should be")
    path = _policy(
        tmp_path,
        "audit: {path: blocker/audit.db, create_keys: true, required: false}\n",
    )
    with caplog.at_level(logging.ERROR, logger="stockade"):
        guard, ran = _guard(path)
        assert isinstance(guard.audit, UnavailableSink)
        assert guard.call("greet", "call", {"name": "ada"}).value == "hi ada"
    assert ran == ["ada"]
    assert any("not required" in r.getMessage() for r in caplog.records)
    guard.close()


def test_required_store_that_cannot_open_stops_the_guard(tmp_path: Path) -> None:
    (tmp_path / "blocker").write_text("x")
    with pytest.raises(ConfigurationError, match="cannot open"):
        Guard.from_file(_policy(tmp_path, "audit: {path: blocker/a.db, create_keys: true}\n"))


def _pg_guard(tmp_path: Path, url: str) -> tuple[Guard, list[str]]:
    return _guard(_policy(tmp_path, f"audit: {{url: '{url}', origin: w1, create_keys: true}}\n"))


def test_postgres_gone_denies(tmp_path: Path, pg_db: str) -> None:
    import psycopg

    admin_url = pg_db.rsplit("/", 1)[0] + "/postgres"
    name = f"stockade_gone_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    guard, ran = _pg_guard(tmp_path, admin_url.rsplit("/", 1)[0] + f"/{name}")
    guard.call("greet", "call", {"name": "ada"})
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE {name} WITH (FORCE)")
    for attempt in ("bob", "cyd"):  # the first sees the lost link, the second cannot reconnect
        with pytest.raises(Denied) as info:
            guard.call("greet", "call", {"name": attempt})
        assert info.value.rule == "error:audit"
    assert ran == ["ada"]
    guard.close()


def test_postgres_permission_revoked_denies(tmp_path: Path, pg_db: str) -> None:
    import psycopg

    role = f"stockade_w_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_db, autocommit=True) as admin:
        admin.execute(f"CREATE ROLE {role} LOGIN")
        admin.execute(f"GRANT CREATE, USAGE ON SCHEMA public TO {role}")
    user_url = pg_db.replace("postgres@", f"{role}@")
    try:
        guard, ran = _pg_guard(tmp_path, user_url)  # the role creates its own tables
        guard.call("greet", "call", {"name": "ada"})
        with psycopg.connect(pg_db, autocommit=True) as admin:
            admin.execute("ALTER TABLE stockade_audit_records OWNER TO postgres")
            admin.execute(f"REVOKE ALL ON stockade_audit_records FROM {role}")
        with pytest.raises(Denied) as info:
            guard.call("greet", "call", {"name": "bob"})
        assert info.value.rule == "error:audit"
        assert ran == ["ada"]
        guard.close()
    finally:
        with psycopg.connect(pg_db, autocommit=True) as admin:
            admin.execute(f"DROP OWNED BY {role}")
            admin.execute(f"DROP ROLE {role}")


def test_demo_policy_section_parses(tmp_path: Path) -> None:
    from stockade.demo import demo_policy_text

    text = demo_policy_text().replace("${STATE}", str(tmp_path / "state"))
    text = text.replace("${WORKSPACE}", str(tmp_path))
    cfg = Policy.from_text(text, base_dir=tmp_path).section("audit")
    assert cfg.create_keys and cfg.path == tmp_path / "state" / "audit.db"
    json.dumps(str(cfg))
    assert sys.modules["stockade.audit"].sink_from_policy  # the guard's plug-in point


SECRETS = "password=hunter2hunter2 AKIAIOSFODNN7EXAMPLE"


@pytest.mark.parametrize("scan", ["", "scan: {model: false}\n"])
def test_no_secret_in_clear_with_or_without_the_scan_stage(tmp_path: Path, scan: str) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(
        "version: 1\nrules:\n  - {id: note, tool: note, effect: allow}\n"
        "audit: {origin: box, create_keys: true}\n" + scan
    )
    guard = Guard.from_file(path)
    assert isinstance(guard.audit, AuditLog)
    assert guard.audit.redact_secrets is (scan == "")

    @guard.tool()
    def note(text: str, meta: dict[str, int]) -> str:
        return "noted"

    guard.call("note", "call", {"text": f"x0 {SECRETS}", "meta": {SECRETS: 1}})
    guard.close()
    store = SQLiteStore(tmp_path / "audit.db", "", readonly=True)
    raw = b"".join(r.data for r in store.query(Query()))
    records = [r.parsed() for r in store.query(Query())]
    store.close()
    assert b"hunter2" not in raw and b"AKIAIOSFODNN7EXAMPLE" not in raw
    assert b"REDACTED" in raw or b"<" in raw  # masked, by the log or by the scanners
    assert records[0]["args_hmac"]  # the raw value can still be confirmed later
    assert records[0]["args"]["text"].startswith("x0 ")
