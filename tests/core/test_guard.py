"""The pipeline: decisions, the decorator, sessions, limits, approvals, audit order."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from stockade import (
    Approval,
    ApprovalRequest,
    ApprovalRequired,
    ConfigurationError,
    Denied,
    Effect,
    Guard,
    MemoryAuditSink,
    RateLimited,
    ToolError,
)
from stockade.model import Decision, Output, ToolCall
from stockade.tools.base import Capability, Context

POLICY = """
version: 1
limits:
  - {id: echo-rate, tool: echo, calls: 3, window: 1h}
budgets: {calls: 50}
rules:
  - {id: echo-short, tool: echo, action: call, effect: allow, when: {text: {length: {max: 20}}}}
  - {id: echo-long-ask, tool: echo, action: call, effect: ask, when: {text: {length: {min: 21}}}}
  - {id: add, tool: add, action: call, effect: allow, when: {a: {min: 0}, b: {min: 0}}}
  - {id: aadd, tool: aadd, effect: allow}
"""


def make_guard(**kwargs: Any) -> tuple[Guard, MemoryAuditSink, list[str]]:
    sink = MemoryAuditSink()
    ran: list[str] = []
    guard = Guard.from_text(POLICY, audit=sink, **kwargs)

    @guard.tool("echo")
    def echo(text: str) -> str:
        ran.append(text)
        return text.upper()

    @guard.tool("add")
    def add(a: int, b: int) -> int:
        ran.append(f"{a}+{b}")
        return a + b

    return guard, sink, ran


def test_allowed_call_runs_and_is_audited_twice() -> None:
    guard, sink, ran = make_guard()
    result = guard.call("echo", "call", {"text": "hi"})
    assert result.value == "HI"
    assert result.decision.rule == "echo-short"
    assert ran == ["hi"]
    assert [e.kind for e in sink.events] == ["decision", "outcome"]
    assert sink.events[1].result_digest and sink.events[1].result_size == 2
    assert result.audit_seq == 1


def test_denied_call_does_not_run_and_is_audited_once() -> None:
    guard, sink, ran = make_guard()
    with pytest.raises(Denied) as info:
        guard.call("add", "call", {"a": -1, "b": 2})
    assert info.value.rule == "default-deny"
    assert info.value.audit_seq == 0
    assert ran == []
    assert [(e.kind, e.decision.effect) for e in sink.events] == [("decision", Effect.DENY)]


def test_decorated_function_goes_through_the_pipeline() -> None:
    guard, _, ran = make_guard()
    add = guard.tool("add2")(lambda a, b: a + b)
    with pytest.raises(Denied):
        add(1, 2)  # no rule for add2
    assert ran == []


def test_decorated_function_does_not_expose_the_raw_function() -> None:
    guard, _, _ = make_guard()

    @guard.tool("secret_tool")
    def raw() -> str:
        return "x"

    assert not hasattr(raw, "__wrapped__")
    with pytest.raises(Denied):
        raw()


def test_unknown_tool_is_denied() -> None:
    guard, sink, _ = make_guard()
    with pytest.raises(Denied) as info:
        guard.call("nope", "call", {})
    assert info.value.rule == "default-deny"


def test_allowed_by_policy_but_no_tool_registered() -> None:
    guard = Guard.from_text("version: 1\nrules: [{id: x, tool: ghost, effect: allow}]")
    with pytest.raises(Denied) as info:
        guard.call("ghost", "call", {})
    assert info.value.rule == "no-such-tool"


def test_unknown_action_of_a_known_tool_is_denied() -> None:
    guard, _, ran = make_guard()
    with pytest.raises(Denied) as info:
        guard.call("echo", "delete", {"text": "x"})
    assert info.value.rule == "echo:unknown-action"
    assert ran == []


def test_bad_arguments_are_denied_before_the_tool_runs() -> None:
    guard, sink, ran = make_guard()
    with pytest.raises(Denied, match="no argument `extra`") as info:
        guard.call("echo", "call", {"text": "a", "extra": 1})
    assert info.value.rule == "echo:invalid"
    with pytest.raises(Denied, match="missing a required argument"):
        guard.call("echo", "call", {})
    assert ran == []


@pytest.mark.parametrize("args", ["notamapping", [("text", "a")], 42])
def test_arguments_that_are_not_a_mapping_are_denied_and_audited(args: Any) -> None:
    guard, sink, ran = make_guard()
    with pytest.raises(Denied, match="arguments must be a mapping") as info:
        guard.call("echo", "call", args)
    assert info.value.rule == "echo:invalid"
    assert f"not `{type(args).__name__}`" in str(info.value)
    assert info.value.audit_seq == 0
    assert [(e.kind, e.decision.rule, dict(e.args)) for e in sink.events] == [
        ("decision", "echo:invalid", {})
    ]
    decision = guard.decide("echo", "call", args)
    assert (decision.effect, decision.rule) == (Effect.DENY, "echo:invalid")
    with pytest.raises(Denied):
        asyncio.run(guard.acall("echo", "call", args))
    assert ran == []


def test_defaults_are_made_explicit_for_the_policy() -> None:
    guard = Guard.from_text(
        "version: 1\nrules: [{id: r, tool: r, effect: deny, when: {mode: {equals: unsafe}}},"
        " {id: ok, tool: r, effect: allow}]"
    )

    @guard.tool("r")
    def r(mode: str = "unsafe") -> str:
        return mode

    with pytest.raises(Denied) as info:
        r()
    assert info.value.rule == "r"
    assert r("safe") == "safe"


def test_tool_exception_is_mapped_and_audited() -> None:
    guard, sink, _ = make_guard()

    @guard.tool("boom")
    def boom() -> None:
        raise KeyError("secret-value-123")

    guard2 = Guard.from_text("version: 1\nrules: [{id: b, tool: boom, effect: allow}]", audit=sink)
    guard2.register(guard.capability("boom"))  # type: ignore[arg-type]
    with pytest.raises(ToolError) as info:
        guard2.call("boom", "call", {})
    assert "secret-value-123" not in str(info.value)
    assert isinstance(info.value.__cause__, KeyError)
    assert sink.events[-1].error_type == "KeyError"


def test_duplicate_tool_names_are_refused() -> None:
    guard, _, _ = make_guard()
    with pytest.raises(ConfigurationError, match="already registered"):
        guard.tool("echo")(lambda text: text)


def test_ask_without_approver_raises_approval_required() -> None:
    guard, sink, ran = make_guard()
    with pytest.raises(ApprovalRequired) as info:
        guard.call("echo", "call", {"text": "x" * 30})
    assert info.value.decision.rule == "echo-long-ask"
    assert ran == []
    assert sink.events[-1].decision.effect is Effect.ASK


def test_ask_with_approver_yes_and_no() -> None:
    seen: list[ApprovalRequest] = []

    def approver(req: ApprovalRequest) -> Approval:
        seen.append(req)
        return Approval(approved=req.args["text"].startswith("ok"), approver="alice")

    guard, sink, ran = make_guard(approver=approver)
    assert guard.call("echo", "call", {"text": "ok" + "x" * 30}).value.startswith("OK")
    with pytest.raises(Denied, match="refused by alice"):
        guard.call("echo", "call", {"text": "no" + "x" * 30})
    assert len(seen) == 2 and len(ran) == 1
    approvals = [e for e in sink.events if e.kind == "approval"]
    assert [e.extra["approved"] for e in approvals] == [True, False]
    assert all(e.extra["approver"] == "alice" for e in approvals)


def test_plain_boolean_callback_approver() -> None:
    guard, _, ran = make_guard(approver=lambda req: True)
    guard.call("echo", "call", {"text": "y" * 30})
    assert ran == ["y" * 30]


def test_rate_limit_per_session() -> None:
    guard, _, _ = make_guard()
    for _ in range(3):
        guard.call("echo", "call", {"text": "a"}, session="s1")
    with pytest.raises(RateLimited) as info:
        guard.call("echo", "call", {"text": "a"}, session="s1")
    assert info.value.rule == "limit:echo-rate"
    guard.call("echo", "call", {"text": "a"}, session="s2")  # another session has its own window


def test_denied_calls_do_not_use_up_the_rate_limit() -> None:
    guard = Guard.from_text(
        "version: 1\nlimits: [{id: l, tool: t, calls: 2, window: 1h}]\n"
        "rules: [{id: t, tool: t, effect: allow, when: {n: {max: 10}}}]"
    )
    guard.tool("t")(lambda n: n)
    for _ in range(5):
        with pytest.raises(Denied) as info:
            guard.call("t", "call", {"n": 99}, session="s")
        assert info.value.rule == "default-deny"
    guard.call("t", "call", {"n": 1}, session="s")
    guard.call("t", "call", {"n": 1}, session="s")
    with pytest.raises(RateLimited):
        guard.call("t", "call", {"n": 1}, session="s")


def test_call_budget() -> None:
    guard = Guard.from_text(
        "version: 1\nbudgets: {calls: 2}\nrules: [{id: t, tool: t, effect: allow}]"
    )
    guard.tool("t")(lambda: 1)
    guard.call("t", "call", session="b")
    guard.call("t", "call", session="b")
    with pytest.raises(RateLimited, match="budget:calls"):
        guard.call("t", "call", session="b")


def test_byte_budget() -> None:
    guard = Guard.from_text(
        "version: 1\nbudgets: {bytes: 10}\nrules: [{id: t, tool: t, effect: allow}]"
    )
    guard.tool("t")(lambda: "x" * 8)
    guard.call("t", "call", session="b")
    guard.call("t", "call", session="b")  # 8 bytes used: still under the budget
    with pytest.raises(RateLimited, match="budget:bytes"):
        guard.call("t", "call", session="b")


def test_sessions_carry_principals() -> None:
    guard = Guard.from_text(
        "version: 1\nrules: [{id: t, tool: t, effect: allow, principal: bot-*}]"
    )
    t = guard.tool("t")(lambda: "ok")
    with pytest.raises(Denied):
        t()
    with guard.session("s", principal="bot-1"):
        assert t() == "ok"
    with guard.session("s", principal="human"), pytest.raises(Denied):
        t()


def test_decide_does_not_run_and_is_audited() -> None:
    guard, sink, ran = make_guard()
    d = guard.decide("echo", "call", {"text": "hi"})
    assert d.allowed and ran == []
    assert sink.events[-1].kind == "decision"
    d = guard.decide("echo", "call", {"text": "x" * 40})
    assert d.effect is Effect.ASK
    d = guard.decide("add", "call", {"a": -1, "b": 1})
    assert d.effect is Effect.DENY and d.rule == "default-deny"
    assert sink.events[-1].decision.rule == "default-deny"


def test_async_functions_and_acall() -> None:
    guard, _, _ = make_guard()

    @guard.tool("aadd")
    async def aadd(a: int, b: int) -> int:
        await asyncio.sleep(0)
        return a + b

    assert asyncio.run(aadd(2, 3)) == 5
    assert asyncio.run(guard.acall("echo", "call", {"text": "x"})).value == "X"
    coro = aadd(4, 5)
    assert asyncio.iscoroutine(coro)
    assert asyncio.run(coro) == 9
    assert asyncio.run(guard.acall("aadd", "call", {"a": 1, "b": 1})).value == 2


def test_sync_call_of_async_tool_outside_a_loop() -> None:
    guard, _, _ = make_guard()

    @guard.tool("aadd")
    async def aadd(a: int, b: int) -> int:
        return a + b

    assert guard.call("aadd", "call", {"a": 1, "b": 2}).value == 3


def test_rename_maps_parameters_to_policy_names() -> None:
    guard = Guard.from_text(
        "version: 1\nrules: [{id: m, tool: m, effect: allow, when: {recipient: {regex: 'a@b'}}}]"
    )

    @guard.tool("m", rename={"to": "recipient"})
    def m(to: str) -> str:
        return to

    assert m("a@b") == "a@b"
    with pytest.raises(Denied):
        m("c@d")


class Upper(Capability):
    """A capability with a prepare step: the policy decides on canonical args."""

    name = "up"
    actions = frozenset({"say"})

    def prepare(self, call: ToolCall) -> ToolCall:
        text = call.args.get("text")
        if not isinstance(text, str):
            raise ToolError("`text` must be a string")
        return call.with_args({"text": text.strip().lower()})

    def check(self, call: ToolCall) -> Decision | None:
        if "forbidden" in call.args["text"]:
            return Decision.deny("up:builtin", "forbidden word")
        return None

    def execute(self, call: ToolCall, ctx: Context) -> Output:
        return Output(call.args["text"].upper())


def test_policy_decides_on_prepared_arguments() -> None:
    guard = Guard.from_text(
        "version: 1\nrules: [{id: u, tool: up, effect: allow, when: {text: {regex: '[a-z ]+'}}}]",
        capabilities=[Upper()],
    )
    assert guard.call("up", "say", {"text": "  HELLO "}).value == "HELLO"
    with pytest.raises(Denied) as info:
        guard.call("up", "say", {"text": 5})
    assert info.value.rule == "up:invalid"
    with pytest.raises(Denied) as info:
        guard.call("up", "say", {"text": "Forbidden"})
    assert info.value.rule == "up:builtin"


def test_shadow_mode_policy_never_blocks_but_records() -> None:
    sink = MemoryAuditSink()
    guard = Guard.from_text(
        "version: 1\nmode: shadow\nrules: [{id: no-up, tool: up, effect: deny}]",
        capabilities=[Upper()],
        audit=sink,
    )
    r = guard.call("up", "say", {"text": "forbidden"})
    assert r.value == "FORBIDDEN"
    assert r.decision.shadow is not None
    assert sink.events[0].decision.shadow is not None
    assert sink.events[0].mode == "shadow"


def test_shadow_mode_still_denies_on_stage_errors() -> None:
    guard = Guard.from_text(
        "version: 1\nmode: shadow\nrules: [{id: u, tool: up, effect: allow}]",
        capabilities=[Upper()],
    )
    guard.policy.decide = lambda call: 1 / 0  # type: ignore[method-assign,assignment,misc]
    with pytest.raises(Denied, match="error:policy"):
        guard.call("up", "say", {"text": "x"})


def test_masked_arguments_never_hold_raw_values_in_memory_sink() -> None:
    guard, sink, _ = make_guard()
    guard.call("echo", "call", {"text": "hi"})
    assert all(e.raw_args == {} for e in sink.events)


def test_results_that_json_cannot_sort_still_come_back() -> None:
    guard = Guard.from_text("version: 1\nrules: [{id: t, tool: t, effect: allow}]")
    guard.tool("t")(lambda: {1: "a", "b": 2})
    assert guard.call("t", "call").value == {1: "a", "b": 2}


def test_memory_sink_keeps_only_the_latest_events_and_keeps_counting() -> None:
    sink = MemoryAuditSink(max_events=8)
    guard = Guard.from_text(
        "version: 1\nrules: [{id: echo, tool: echo, effect: allow}]", audit=sink
    )

    @guard.tool("echo")
    def echo(text: str) -> str:
        return text

    seqs = [guard.call("echo", "call", {"text": str(i)}).audit_seq for i in range(20)]
    # two records per call (decision, outcome); numbers never repeat
    assert seqs == [2 * i + 1 for i in range(20)]
    assert 1 <= len(sink.events) <= 8
    assert sink.events[-1].kind == "outcome"
    assert sink.events[-1].args == {"text": "19"}


def test_memory_sink_bound_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_events"):
        MemoryAuditSink(max_events=0)
    unbounded = MemoryAuditSink(max_events=None)
    assert unbounded.max_events is None
