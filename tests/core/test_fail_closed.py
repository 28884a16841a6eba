"""Fail closed: an exception inside any stage denies the call and is audited.

Each test breaks one stage with a real exception and checks that the tool did
not run (or, after it ran, that its result was withheld), that the denial names
the stage, and that the audit log has the record with the error type.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from stockade import (
    AuditError,
    ConfigurationError,
    Denied,
    Guard,
    Label,
    MemoryAuditSink,
    MemorySessionStore,
)
from stockade.model import AuditEvent, Output, ToolCall
from stockade.session import Session
from stockade.stages import (
    ArgumentScan,
    FlowVerdict,
    ResultScan,
)

POLICY = """
version: 1
limits: [{id: l, tool: t, calls: 100, window: 1m}]
rules:
  - {id: t, tool: t, effect: allow}
  - {id: t-ask, tool: t, effect: ask, when: {x: {equals: ask}}}
"""


class Broken(Exception):
    """The failure injected into a stage."""


class Scanner:
    def __init__(self, fail_on: str) -> None:
        self.fail_on = fail_on

    def scan_arguments(self, call: ToolCall, session: Session) -> ArgumentScan:
        if self.fail_on == "args":
            raise Broken("secret-in-message")
        return ArgumentScan(call=call, masked_args=call.args)

    def scan_result(self, call: ToolCall, output: Output, session: Session) -> ResultScan:
        if self.fail_on == "result":
            raise Broken("boom")
        return ResultScan(value=output.value, labels=output.labels)


class Flow:
    def __init__(self, fail_on: str) -> None:
        self.fail_on = fail_on

    def check(self, call: ToolCall, session: Session) -> FlowVerdict:
        if self.fail_on == "check":
            raise Broken("boom")
        return FlowVerdict()

    def observe(
        self, call: ToolCall, value: Any, labels: Sequence[Label], session: Session
    ) -> None:
        if self.fail_on == "observe":
            raise Broken("boom")

    def user_said(self, session: Session, text: str) -> None:
        pass


class BrokenStore(MemorySessionStore):
    def hit(self, key: str, window: float, limit: int) -> bool:
        raise Broken("redis down")


class FlakySink(MemoryAuditSink):
    """Refuses the n-th append (0-based) and everything after it."""

    def __init__(self, fail_from: int) -> None:
        super().__init__()
        self.fail_from = fail_from
        self.tries = 0

    def append(self, event: AuditEvent) -> int:
        self.tries += 1
        if self.tries > self.fail_from:
            raise OSError(28, "No space left on device")
        return super().append(event)


def build(**kwargs: Any) -> tuple[Guard, list[int], MemoryAuditSink]:
    sink = kwargs.pop("audit", None) or MemoryAuditSink()
    guard = Guard.from_text(POLICY, audit=sink, **kwargs)
    ran: list[int] = []

    @guard.tool("t")
    def t(x: str = "") -> str:
        ran.append(1)
        return "value"

    return guard, ran, sink


def _assert_denied(guard: Guard, stage: str, sink: MemoryAuditSink, args: dict[str, Any]) -> Denied:
    with pytest.raises(Denied) as info:
        guard.call("t", "call", args)
    assert info.value.rule == f"error:{stage}"
    assert "secret-in-message" not in str(info.value)
    last = sink.events[-1]
    assert last.decision is not None and last.decision.rule == f"error:{stage}"
    assert last.error_type == "Broken"
    return info.value


@pytest.mark.parametrize("stage", ["scan_arguments", "policy", "flow", "limits", "approval"])
def test_failure_before_execution_denies_and_nothing_runs(stage: str) -> None:
    kwargs: dict[str, Any] = {}
    args: dict[str, Any] = {"x": "go"}
    if stage == "scan_arguments":
        kwargs["scanner"] = Scanner("args")
    elif stage == "flow":
        kwargs["flow"] = Flow("check")
    elif stage == "limits":
        kwargs["sessions"] = BrokenStore()
    elif stage == "approval":

        def approver(req: Any) -> bool:
            raise Broken("approver crashed")

        kwargs["approver"] = approver
        args = {"x": "ask"}
    guard, ran, sink = build(**kwargs)
    if stage == "policy":

        def broken_decide(call: ToolCall) -> Any:
            raise Broken("bug")

        guard.policy.decide = broken_decide  # type: ignore[method-assign]
    _assert_denied(guard, stage, sink, args)
    assert ran == []


def test_failure_in_capability_prepare_and_check_denies() -> None:
    guard, ran, sink = build()
    cap = guard.capability("t")
    assert cap is not None

    def bad_prepare(call: ToolCall) -> ToolCall:
        raise Broken("x")

    cap.prepare = bad_prepare  # type: ignore[method-assign]
    _assert_denied(guard, "prepare", sink, {})
    guard2, ran2, sink2 = build()
    cap2 = guard2.capability("t")
    assert cap2 is not None

    def bad_check(call: ToolCall) -> Any:
        raise Broken("x")

    cap2.check = bad_check  # type: ignore[method-assign]
    _assert_denied(guard2, "capability", sink2, {})
    assert ran == [] and ran2 == []


def test_a_set_up_mistake_is_named_in_the_denial_other_errors_only_by_type() -> None:
    guard, ran, sink = build()
    cap = guard.capability("t")
    assert cap is not None

    def misconfigured(call: ToolCall) -> ToolCall:
        raise ConfigurationError(
            "role `postgres` is a superuser; connect as a least-privilege role"
        )

    cap.prepare = misconfigured  # type: ignore[method-assign]
    with pytest.raises(Denied) as info:
        guard.call("t", "call", {})
    assert info.value.rule == "error:prepare"
    assert "superuser; connect as a least-privilege role" in str(info.value)
    assert sink.events[-1].error_type == "ConfigurationError"
    assert ran == []


@pytest.mark.parametrize(
    ("stage", "scanner", "flow"),
    [
        ("scan_result", Scanner("result"), None),
        ("observe", None, Flow("observe")),
    ],
)
def test_failure_after_execution_withholds_the_result(stage: str, scanner: Any, flow: Any) -> None:
    kwargs = {k: v for k, v in {"scanner": scanner, "flow": flow}.items() if v is not None}
    guard, ran, sink = build(**kwargs)
    _assert_denied(guard, stage, sink, {"x": "go"})
    assert ran == [1]  # it ran, but the model never sees the value
    assert sink.events[-1].kind == "outcome"


def test_audit_store_failure_before_execution_denies() -> None:
    sink = FlakySink(fail_from=0)
    guard, ran, _ = build(audit=sink)
    with pytest.raises(Denied) as info:
        guard.call("t", "call", {"x": "go"})
    assert info.value.rule == "error:audit"
    assert isinstance(info.value.__cause__, AuditError)
    assert ran == []


def test_audit_store_failure_after_execution_withholds_the_result() -> None:
    sink = FlakySink(fail_from=1)
    guard, ran, _ = build(audit=sink)
    with pytest.raises(Denied, match="result withheld") as info:
        guard.call("t", "call", {"x": "go"})
    assert info.value.rule == "error:audit"
    assert ran == [1]


def test_audit_not_required_lets_calls_through() -> None:
    sink = FlakySink(fail_from=0)
    guard, ran, _ = build(audit=sink)
    guard.audit_required = False
    assert guard.call("t", "call", {"x": "go"}).value == "value"
    assert ran == [1]


def test_denial_still_raised_when_the_audit_store_is_down() -> None:
    sink = FlakySink(fail_from=0)
    guard, ran, _ = build(audit=sink)
    with pytest.raises(Denied) as info:
        guard.call("nope", "call", {})
    assert info.value.audit_seq is None
