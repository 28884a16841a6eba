"""Red team: rule semantics. Each test asserts the secure behaviour and FAILS today."""

from __future__ import annotations

import pytest

from stockade import Guard
from stockade.errors import Denied

POLICY = """
version: 1
rules:
  - {id: pay, tool: pay, effect: allow}
  - {id: no-force, tool: pay, effect: deny, when: {force: true}}
  - {id: no-big, tool: pay, effect: deny, when: {amount: {one_of: [1000000]}}}
  - {id: no-admin, tool: pay, effect: deny, when: {to: admin}}
"""


def _guard() -> Guard:
    guard = Guard.from_text(POLICY)

    @guard.tool("pay")
    def pay(to: str, amount: int = 1, force: bool = False) -> str:
        return f"paid {to} {amount} force={bool(force)}"

    return guard


@pytest.mark.parametrize(
    "args",
    [
        {"to": "bob", "force": 1},  # truthy int for `equals: true`
        {"to": "bob", "force": "yes"},  # truthy string for `equals: true`
        {"to": "bob", "amount": 1000000.0},  # float for `one_of: [1000000]`
    ],
)
def test_deny_rule_cannot_be_dodged_by_another_type(args: dict[str, object]) -> None:
    # `equals`/`one_of` compare type and value; for a deny rule a value of
    # another type is answered "no match" (False) instead of "cannot judge"
    # (None), so the deny does not fire while the tool treats 1 like true.
    guard = _guard()
    with pytest.raises(Denied):
        guard.call("pay", "call", {"to": "bob", "force": True})  # control
    with pytest.raises(Denied):
        guard.call("pay", "call", args)
