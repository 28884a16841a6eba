"""A callback approver that returns something other than a bool or an Approval."""

from __future__ import annotations

from typing import Any

import pytest
from approvals_helpers import ATTACK, injected, make_guard

from stockade import Denied
from stockade.errors import ConfigurationError
from stockade.stages import Approval, ApprovalRequest


def _asked(approver: Any) -> tuple[Denied, Any]:
    guard, audit = make_guard(approver)
    with guard.session("cb") as s:
        injected(guard, s)
        with pytest.raises(Denied) as info:
            guard.call("pay", "pay", ATTACK, session=s)
    return info.value, audit


@pytest.mark.parametrize(
    ("answer", "type_name"), [("yes", "str"), (None, "NoneType"), (1, "int"), ({}, "dict")]
)
def test_a_wrong_return_type_is_named_and_denies(answer: Any, type_name: str) -> None:
    denied, audit = _asked(lambda req: answer)
    assert denied.decision.rule == "error:approval"
    assert denied.decision.reason == (
        f"the approval stage failed (ConfigurationError: the approver returned `{type_name}`; "
        "it must return a bool or an Approval)"
    )
    assert isinstance(denied.__cause__, ConfigurationError)
    # the denial is audited with the error's type, and pay never ran
    assert [(e.kind, e.error_type) for e in audit.events if e.tool == "pay"] == [
        ("decision", "ConfigurationError")
    ]


@pytest.mark.parametrize("approved", ["no", "yes", 1])
def test_an_approval_with_a_non_bool_approved_denies(approved: Any) -> None:
    # "no" is truthy: were it let through, the guard would approve the call
    def approver(req: ApprovalRequest) -> Approval:
        return Approval(approved=approved, approver="alice")

    denied, audit = _asked(approver)
    assert denied.decision.rule == "error:approval"
    assert f"an Approval's `approved` is `{type(approved).__name__}`" in denied.decision.reason
    assert [e.kind for e in audit.events if e.tool == "pay"] == ["decision"]


def test_bools_and_approvals_still_work() -> None:
    denied, _ = _asked(lambda req: False)
    assert denied.decision.rule != "error:approval"
    guard, _ = make_guard(lambda req: Approval(True, "alice"))
    with guard.session("ok") as s:
        injected(guard, s)
        assert guard.call("pay", "pay", ATTACK, session=s).value == "paid"


def test_an_approver_object_that_returns_something_else_denies_and_is_audited() -> None:
    class Broken:
        def approve(self, request: ApprovalRequest) -> Any:
            return "yes"  # not an Approval: must not approve, must not escape

    denied, audit = _asked(Broken())
    assert denied.decision.rule == "error:approval"
    assert "the approver returned `str`; it must return an Approval" in denied.decision.reason
    assert [(e.kind, e.error_type) for e in audit.events if e.tool == "pay"] == [
        ("decision", "ConfigurationError")
    ]
