"""The terminal approver, driven through its streams and through a real pseudo-terminal."""

from __future__ import annotations

import io
import os
import pty
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from approvals_helpers import ATTACK, injected, make_guard

from stockade import Denied
from stockade.approvals import TerminalApprover

SRC = Path(__file__).resolve().parents[2] / "src"


def _events(audit, kind):  # type: ignore[no-untyped-def]
    return [e for e in audit.events if e.kind == kind]


def test_prompt_shows_call_reason_and_provenance() -> None:
    out = io.StringIO()
    approver = TerminalApprover(input=io.StringIO("n\n"), output=out, name="ada", color=False)
    guard, audit = make_guard(approver)
    with guard.session("s1") as s:
        injected(guard, s)
        with pytest.raises(Denied) as denied:
            guard.call("pay", "pay", ATTACK, session=s)
    text = out.getvalue()
    assert "approval needed: pay.pay (session s1)" in text
    assert "flow:payee" in text and "untrusted data" in text
    lines = text.splitlines()
    value_line = next(i for i, line in enumerate(lines) if "gb33bukb20201555555555" in line)
    caret = lines[value_line + 1]
    value = lines[value_line]
    start = value.index("gb33")
    assert caret[start : start + 22] == "^" * 22  # the untrusted part is marked
    assert caret[:start].strip() == ""  # "pay to " is not
    assert "result #0 of inbox.read (mail:inbox)" in text
    assert "refused by ada" in denied.value.decision.reason
    (event,) = _events(audit, "approval")
    assert event.extra["approver"] == "ada" and event.extra["approved"] is False


def test_yes_and_session_scope() -> None:
    inp = io.StringIO("s\n")
    approver = TerminalApprover(input=inp, output=io.StringIO(), name="ada")
    guard, audit = make_guard(approver)
    with guard.session("s1") as s:
        injected(guard, s)
        first = guard.call("pay", "pay", ATTACK, session=s)
        again = guard.call("pay", "pay", ATTACK, session=s)  # no input left: remembered
        assert first.decision.allowed and again.decision.allowed
        other = dict(ATTACK, amount=6)
        with pytest.raises(Denied):  # different arguments: asked again, no answer: refused
            guard.call("pay", "pay", other, session=s)
    answers = _events(audit, "approval")
    assert [e.extra["scope"] for e in answers] == ["session", "session", "call"]
    assert all(e.extra["approver"] == "ada" for e in answers)
    with guard.session("s2") as s2:  # another session: not covered
        injected(guard, s2)
        with pytest.raises(Denied):
            guard.call("pay", "pay", ATTACK, session=s2)


def test_no_answer_in_time_refuses() -> None:
    r, w = os.pipe()
    try:
        with os.fdopen(r, "r") as inp:
            out = io.StringIO()
            approver = TerminalApprover(input=inp, output=out, name="ada", timeout=0.2)
            guard, audit = make_guard(approver)
            with guard.session("s") as s:
                injected(guard, s)
                with pytest.raises(Denied) as denied:
                    guard.call("pay", "pay", ATTACK, session=s)
            assert "refused by ada" in denied.value.decision.reason
            (event,) = _events(audit, "approval")
            assert event.extra["approval_reason"] == "no answer in time"
            assert "no answer in time: refused" in out.getvalue()
    finally:
        os.close(w)


def test_streams_must_come_in_pairs() -> None:
    from stockade import ConfigurationError

    with pytest.raises(ConfigurationError):
        TerminalApprover(input=io.StringIO())


def test_through_a_pseudo_terminal_with_colour() -> None:
    master, slave = pty.openpty()
    inp = os.fdopen(slave, "r")
    out = os.fdopen(os.dup(slave), "w")
    approver = TerminalApprover(input=inp, output=out, name="ada@pty", timeout=20)
    guard, audit = make_guard(approver)
    result: dict[str, object] = {}

    def agent() -> None:
        with guard.session("pty") as s:
            injected(guard, s)
            result["r"] = guard.call("pay", "pay", ATTACK, session=s)

    thread = threading.Thread(target=agent)
    thread.start()
    seen = b""
    deadline = time.monotonic() + 20
    while b"approve?" not in seen and time.monotonic() < deadline:
        seen += os.read(master, 4096)
    os.write(master, b"y\n")
    thread.join(20)
    try:
        assert b"\x1b[1;31mgb33bukb20201555555555\x1b[0m" in seen  # red on a terminal
        assert result["r"].decision.allowed  # type: ignore[attr-defined]
        (event,) = [e for e in audit.events if e.kind == "approval"]
        assert event.extra["approver"] == "ada@pty"
    finally:
        inp.close()
        out.close()
        os.close(master)


CHILD = textwrap.dedent(
    """
    import fcntl, sys, termios
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)  # make the pty our controlling terminal
    sys.path.insert(0, {tests!r})
    from approvals_helpers import ATTACK, make_guard, injected
    from stockade.approvals import TerminalApprover
    guard, audit = make_guard(TerminalApprover(name="operator", timeout=20))
    with guard.session("tty") as s:
        injected(guard, s)
        r = guard.call("pay", "pay", ATTACK, session=s)
    print("RESULT", r.decision.effect.value, [e.extra["approver"] for e in audit.events if e.kind == "approval"])
    """
)


def test_default_uses_the_controlling_terminal() -> None:
    master, slave = pty.openpty()
    env = dict(os.environ, PYTHONPATH=str(SRC))
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD.format(tests=str(Path(__file__).parent))],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        start_new_session=True,
        env=env,
    )
    os.close(slave)
    seen = b""
    try:
        deadline = time.monotonic() + 30
        while b"approve?" not in seen and time.monotonic() < deadline:
            seen += os.read(master, 4096)
        os.write(master, b"y\n")
        while b"RESULT" not in seen or not seen.rstrip().endswith(b"]"):
            chunk = os.read(master, 4096)
            if not chunk:
                break
            seen += chunk
    except OSError:
        pass  # the child closed the terminal
    finally:
        child.wait(30)
        os.close(master)
    assert b"RESULT allow ['operator']" in seen, seen.decode(errors="replace")


def test_without_a_terminal_the_call_is_denied() -> None:
    script = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from approvals_helpers import ATTACK, make_guard, injected
        from stockade import Denied
        from stockade.approvals import TerminalApprover
        guard, audit = make_guard(TerminalApprover(timeout=5))
        with guard.session("x") as s:
            injected(guard, s)
            try:
                guard.call("pay", "pay", ATTACK, session=s)
            except Denied as exc:
                print("DENIED", exc.rule)
        """
    )
    env = dict(os.environ, PYTHONPATH=str(SRC))
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        start_new_session=True,  # no controlling terminal
        stdin=subprocess.DEVNULL,
        env=env,
        timeout=60,
        check=True,
    )
    assert "DENIED error:approval" in done.stdout
