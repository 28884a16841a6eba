"""The durable approval queue: SQLite and PostgreSQL, answered by other processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from approvals_helpers import ATTACK, injected, make_guard

from stockade import ApprovalRequired, Denied, Guard, Policy
from stockade.approvals import ApprovalQueue, QueueApprover, approver_from_policy
from stockade.errors import ApprovalError, ConfigurationError
from stockade.model import Decision, ToolCall
from stockade.stages import ApprovalRequest

SRC = Path(__file__).resolve().parents[2] / "src"


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run `stockade` in another process, as an operator would."""
    return subprocess.run(
        [sys.executable, "-m", "stockade.cli", *args],
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONPATH=str(SRC), **(env or {})),
        timeout=60,
        check=False,
    )


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'approvals.db'}"


@pytest.fixture
def pg_queue_url(postgres_url: str) -> Iterator[str]:
    import psycopg

    name = f"stockade_appr_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    base, _, _ = postgres_url.rpartition("/")
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(params=["sqlite", "postgres"])
def queue_url(request: pytest.FixtureRequest) -> str:
    if request.param == "sqlite":
        return str(request.getfixturevalue("sqlite_url"))
    return str(request.getfixturevalue("pg_queue_url"))


def _request(session: str = "s", amount: int = 5) -> ApprovalRequest:
    call = ToolCall("pay", "pay", {"iban": "GB33", "amount": amount}, session)
    return ApprovalRequest(
        call, Decision.ask("flow:payee", "untrusted iban"), {"iban": "GB33", "amount": amount}
    )


def _wait_pending(queue: ApprovalQueue, n: int = 1) -> list[Any]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        rows = queue.pending()
        if len(rows) >= n:
            return rows
        time.sleep(0.05)
    raise AssertionError("no request reached the queue")


def _agent(
    guard: Guard, args: dict[str, Any], out: dict[str, Any], session: str = "q"
) -> threading.Thread:
    def run() -> None:
        with guard.session(session) as s:
            injected(guard, s)
            try:
                out["result"] = guard.call("pay", "pay", args, session=s)
            except Denied as exc:
                out["denied"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_approved_from_another_process(queue_url: str) -> None:
    queue = ApprovalQueue(queue_url)
    guard, audit = make_guard(QueueApprover(queue, timeout=30, poll=0.05))
    out: dict[str, Any] = {}
    thread = _agent(guard, ATTACK, out)
    (row,) = _wait_pending(queue)
    assert row.tool == "pay" and row.rule == "flow:payee"
    assert row.provenance["iban"]["integrity"] == "untrusted"
    listed = cli("approvals", "list", "--queue", queue_url)
    assert listed.returncode == 0, listed.stderr
    assert f"[{row.id}] pay.pay (pending" in listed.stdout
    assert "! chars 7-29 from untrusted" in listed.stdout
    done = cli(
        "approvals",
        "approve",
        row.id,
        "--queue",
        queue_url,
        "--as",
        "alice",
        "--reason",
        "checked by phone",
    )
    assert done.returncode == 0, done.stderr
    assert f"approved [{row.id}] pay.pay as alice" in done.stdout
    thread.join(30)
    assert "result" in out, out
    assert out["result"].decision.allowed
    (event,) = [e for e in audit.events if e.kind == "approval"]
    assert event.extra["approver"] == "alice"
    assert event.extra["approval_reason"] == "checked by phone"
    again = cli("approvals", "deny", row.id, "--queue", queue_url, "--as", "bob")
    assert again.returncode == 1 and "already approved" in again.stderr
    queue.close()


def test_refused_from_another_process(sqlite_url: str) -> None:
    queue_url = sqlite_url
    queue = ApprovalQueue(queue_url)
    guard, audit = make_guard(QueueApprover(queue, timeout=30, poll=0.05))
    out: dict[str, Any] = {}
    thread = _agent(guard, ATTACK, out)
    (row,) = _wait_pending(queue)
    done = cli(
        "approvals", "deny", row.id, "--as", "carol", env={"STOCKADE_APPROVALS_QUEUE": queue_url}
    )
    assert done.returncode == 0, done.stderr
    thread.join(30)
    assert "refused by carol" in out["denied"].decision.reason
    (event,) = [e for e in audit.events if e.kind == "approval"]
    assert event.extra["approver"] == "carol" and event.extra["approved"] is False
    shown = json.loads(cli("approvals", "list", "--all", "--json", "--queue", queue_url).stdout)
    assert shown[0]["status"] == "denied" and shown[0]["approver"] == "carol"
    queue.close()


def test_expiry(queue_url: str) -> None:
    queue = ApprovalQueue(queue_url)
    guard, audit = make_guard(QueueApprover(queue, timeout=0.3, poll=0.05))
    with guard.session("e") as s:
        injected(guard, s)
        with pytest.raises(Denied):
            guard.call("pay", "pay", ATTACK, session=s)
    (event,) = [e for e in audit.events if e.kind == "approval"]
    assert event.extra["approver"] == "queue:expired"
    (row,) = queue.recent()
    assert row.status == "expired"
    late = cli("approvals", "approve", row.id, "--queue", queue_url, "--as", "alice")
    assert late.returncode == 1 and "expired" in late.stderr
    queue.close()


def test_session_scope_covers_the_same_call_only(queue_url: str) -> None:
    queue = ApprovalQueue(queue_url)
    guard, audit = make_guard(QueueApprover(queue, timeout=30, poll=0.05))
    out: dict[str, Any] = {}
    thread = _agent(guard, ATTACK, out, session="scoped")
    (row,) = _wait_pending(queue)
    queue.answer(row.id, approved=True, approver="alice", scope="session")
    thread.join(30)
    assert out["result"].decision.allowed
    with guard.session("scoped") as s:
        assert guard.call("pay", "pay", ATTACK, session=s).decision.allowed  # no new request
    assert queue.pending() == []
    grants = [e for e in audit.events if e.kind == "approval"]
    assert [g.extra["scope"] for g in grants] == ["session", "session"]
    assert grants[1].extra["approver"] == "alice"
    other = QueueApprover(queue, timeout=0.2, poll=0.05)
    assert not other.approve(_request(session="scoped", amount=99)).approved  # other arguments
    assert not other.approve(_request(session="elsewhere")).approved
    queue.close()


def test_queue_api_errors(sqlite_url: str) -> None:
    now = [1000.0]
    queue = ApprovalQueue(sqlite_url, clock=lambda: now[0])
    rid = queue.submit(_request(), ttl=10)
    with pytest.raises(ApprovalError, match="unknown scope"):
        queue.answer(rid, approved=True, approver="a", scope="forever")
    with pytest.raises(ApprovalError, match="approver's name"):
        queue.answer(rid, approved=True, approver="")
    with pytest.raises(ApprovalError, match="no approval request"):
        queue.answer("nope", approved=True, approver="a")
    now[0] = 1011.0
    with pytest.raises(ApprovalError, match="expired"):
        queue.answer(rid, approved=True, approver="a")
    assert queue.get(rid).status == "expired"  # type: ignore[union-attr]
    queue.close()


def test_masked_arguments_are_flagged(sqlite_url: str) -> None:
    queue = ApprovalQueue(sqlite_url)
    call = ToolCall("pay", "pay", {"iban": "GB33BUKB20201555555555"}, "s")
    prov = {"iban": {"integrity": "untrusted", "spans": [{"start": 0, "end": 22, "counts": True}]}}
    req = ApprovalRequest(call, Decision.ask("flow:payee", "x"), {"iban": "GB33…55"}, prov)
    rid = queue.submit(req, ttl=60)
    row = queue.get(rid)
    assert row is not None and row.args == {"iban": "GB33…55"}
    assert row.provenance["iban"]["masked"] is True
    assert "GB33BUKB" not in json.dumps(row.as_dict())  # the raw value is never stored
    queue.close()


def test_bad_urls_and_tables(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError):
        ApprovalQueue("mysql://x")
    with pytest.raises(ConfigurationError):
        ApprovalQueue("sqlite:relative.db")
    with pytest.raises(ConfigurationError):
        ApprovalQueue(f"sqlite:///{tmp_path}/a.db", table="x; drop table y")
    with pytest.raises(ApprovalError):
        ApprovalQueue(f"sqlite:///{tmp_path}/missing/dir/a.db")


def test_policy_section(tmp_path: Path) -> None:
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(
        "version: 1\napprovals: {approver: queue, queue: 'sqlite:///state/appr.db', timeout: 2s}\n"
    )
    (tmp_path / "state").mkdir()
    approver = approver_from_policy(Policy.from_file(policy_file))
    assert isinstance(approver, QueueApprover)
    assert approver.timeout == 2.0
    assert (tmp_path / "state" / "appr.db").exists()  # relative to the policy file
    rid = approver.queue.submit(_request(), ttl=60)
    listed = cli("approvals", "list", "--policy", str(policy_file))
    assert rid in listed.stdout
    approver.queue.close()
    terminal = approver_from_policy(
        Policy.from_text("version: 1\napprovals: {approver: terminal, name: ops}")
    )
    assert terminal is not None and terminal.name == "ops"  # type: ignore[attr-defined]
    assert approver_from_policy(Policy.from_text("version: 1")) is None


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ("{approver: queue}", "needs `queue:"),
        ("{approver: email}", "unknown value `email`"),
        ("{approver: queue, queue: 'redis://x'}", "unknown queue `redis`"),
        ("{approver: terminal, timeout: 0}", "longer than 0"),
        ("{approver: terminal, table: 'a b'}", "bad table name"),
        ("{queue: 'sqlite:///x.db'}", "missing required key `approver`"),
    ],
)
def test_section_errors(section: str, message: str) -> None:
    from stockade import PolicyError

    with pytest.raises(PolicyError, match=message):
        Policy.from_text(f"version: 1\napprovals: {section}\n")


def test_without_an_approver_ask_raises_and_is_audited() -> None:
    guard, audit = make_guard(None)
    with guard.session("n") as s:
        injected(guard, s)
        with pytest.raises(ApprovalRequired) as exc:
            guard.call("pay", "pay", ATTACK, session=s)
    assert exc.value.decision.rule == "flow:payee"
    assert audit.events[-1].extra["provenance"]["iban"]["integrity"] == "untrusted"


def test_cli_without_a_queue() -> None:
    env = {k: v for k, v in os.environ.items() if k != "STOCKADE_APPROVALS_QUEUE"}
    done = subprocess.run(
        [sys.executable, "-m", "stockade.cli", "approvals", "list"],
        capture_output=True,
        text=True,
        env=dict(env, PYTHONPATH=str(SRC)),
        timeout=60,
        check=False,
    )
    assert done.returncode == 2 and "no approval queue" in done.stderr
