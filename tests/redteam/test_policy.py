"""Red team regression: rule semantics (R5 type confusion, R14 non-canonical globs; fixed in b4cb8e1)."""

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


@pytest.mark.parametrize(
    "path",
    ["notes/../../etc/passwd", "notes/../secrets/key.txt", "notes/./../secrets/key.txt"],
)
def test_glob_allow_rule_does_not_admit_dot_dot(path: str) -> None:
    # A glob matches the raw string: `notes/**` is `notes` followed by
    # anything, `..` included. Built-in tools canonicalise paths first, but a
    # plain `@guard.tool` function (and a LangChain/MCP tool whose path
    # argument has an unlisted name) gets the raw string, so the allow rule
    # admits a path that climbs out. A glob cannot judge a non-canonical path
    # and should answer "cannot judge" (no allow, deny fires).
    guard = Guard.from_text(
        "version: 1\nrules:\n"
        "  - {id: notes, tool: read_note, effect: allow, when: {path: {glob: 'notes/**'}}}\n"
        "  - {id: no-secrets, tool: read_note, effect: deny,"
        " when: {path: {glob: 'secrets/**'}}}\n"
    )

    @guard.tool("read_note")
    def read_note(path: str) -> str:
        return f"would open {path}"

    assert guard.call("read_note", "call", {"path": "notes/a.md"}).value  # control
    with pytest.raises(Denied):
        guard.call("read_note", "call", {"path": path})
