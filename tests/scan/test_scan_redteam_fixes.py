"""Red team R3 (mapping keys) and R4 (integers): what hides in a value's shape is scanned too."""

from __future__ import annotations

import json
from typing import Any

import pytest
from scan_helpers import corpus

from stockade import Guard
from stockade.errors import Denied
from stockade.scan._base import key_path, map_strings, number_text
from stockade.stages import MemoryAuditSink

GH = "ghp_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8"  # GitHub token shape (fake)
GH2 = "ghp_" + "Z9y8X7w6V5u4T3s2R1q0P9o8N7m6L5k4J3i2"
EMAIL = "ada.lovelace@example.com"
CARD = 4111111111111111

POLICY = """
version: 1
rules:
  - {id: any, tool: [lookup, echo, rows], effect: allow}
"""
DATA = corpus("structure.yaml")


def _guard(scan: str = "scan: {model: false}") -> tuple[Guard, MemoryAuditSink, list[Any]]:
    audit = MemoryAuditSink()
    guard = Guard.from_text(POLICY + scan, audit=audit)
    state: dict[str, Any] = {"value": None}
    sent: list[Any] = []

    @guard.tool("lookup")
    def lookup() -> object:
        return state["value"]

    @guard.tool("echo")
    def echo(data: object) -> object:
        sent.append(data)
        return "ok"

    guard.state = state  # type: ignore[attr-defined]
    return guard, audit, sent


def _returning(guard: Guard, value: object, session: str = "s") -> Any:
    guard.state["value"] = value  # type: ignore[attr-defined]
    return guard.call("lookup", "call", {}, session=session).value


def _audit(audit: MemoryAuditSink) -> str:
    return json.dumps(
        [(e.args, [f.as_dict() for f in e.findings]) for e in audit.events], default=str
    )


# -- R3: keys -------------------------------------------------------------------------


def test_secret_and_email_as_result_keys_are_masked() -> None:
    guard, _, _ = _guard()
    value = _returning(guard, {GH: "the deploy token", EMAIL: "customer"})
    shown = json.dumps(value)
    assert GH not in shown and EMAIL not in shown
    assert value == {"[REDACTED:GITHUB-TOKEN]": "the deploy token", "<EMAIL_1>": "customer"}


def test_secret_as_argument_key_is_masked_in_audit_and_findings() -> None:
    guard, audit, sent = _guard()
    guard.call("echo", "call", {"data": {GH: 1}})
    assert sent == [{GH: 1}]  # the tool gets what was asked for; only the audit copy is masked
    assert audit.events
    for event in audit.events:
        assert GH not in json.dumps(event.args), event.kind
        assert all(GH not in f.reason for f in event.findings)
    assert "[REDACTED:GITHUB-TOKEN]" in _audit(audit)


def test_secret_as_argument_key_is_blocked_where_the_policy_says() -> None:
    guard, _, sent = _guard("scan: {model: false, block: {arguments: [secrets]}}")
    with pytest.raises(Denied):
        guard.call("echo", "call", {"data": {"x": GH}})  # control: a value is blocked
    with pytest.raises(Denied) as info:
        guard.call("echo", "call", {"data": {GH: "x"}})
    assert info.value.rule == "scan:secrets"
    assert GH not in str(info.value)
    with pytest.raises(Denied):  # the name of an argument is a key too
        guard.call("echo", "call", {GH: "x"})
    assert sent == []


def test_finding_paths_name_values_by_their_masked_key() -> None:
    guard, _, _ = _guard()
    guard.state["value"] = {GH: {"contact": EMAIL}}  # type: ignore[attr-defined]
    result = guard.call("lookup", "call", {}, session="s")
    reasons = [f.reason for f in result.findings]
    assert all(GH not in r and EMAIL not in r for r in reasons)
    assert any(r.startswith("(key): ") for r in reasons)
    assert any(r.startswith("[REDACTED:GITHUB-TOKEN].contact: ") for r in reasons)


def test_keys_masked_alike_are_kept_apart_deterministically() -> None:
    guard, _, _ = _guard()
    value = {GH: 1, "[REDACTED:GITHUB-TOKEN]": 2, GH2: 3, "plain": 4}
    first = _returning(guard, value)
    # a key left alone keeps its name; masked keys take the next free suffix, in order
    assert first == {
        "[REDACTED:GITHUB-TOKEN]#2": 1,
        "[REDACTED:GITHUB-TOKEN]": 2,
        "[REDACTED:GITHUB-TOKEN]#3": 3,
        "plain": 4,
    }
    assert _returning(guard, value) == first


def test_pseudonyms_in_argument_keys_are_restored_for_the_tool_only() -> None:
    guard, audit, sent = _guard()
    assert _returning(guard, f"customer {EMAIL}", session="a") == "customer <EMAIL_1>"
    guard.call("echo", "call", {"data": {"<EMAIL_1>": {"note": "<EMAIL_1>"}}}, session="a")
    assert sent == [{EMAIL: {"note": EMAIL}}]
    log = _audit(audit)
    assert EMAIL not in log
    event = audit.events[-1]
    assert event.args == {"data": {"<EMAIL_1>": {"note": "<EMAIL_1>"}}}
    restored = [f.reason for f in event.findings if f.kind == "pseudonym-restored"]
    assert restored == [
        "data.(key): <EMAIL_1> restored (email, seen in tool:lookup)",
        "data.<EMAIL_1>.note: <EMAIL_1> restored (email, seen in tool:lookup)",
    ]


def test_a_pseudonym_key_from_another_session_stays_literal() -> None:
    guard, _, sent = _guard()
    _returning(guard, EMAIL, session="alice")
    guard.call("echo", "call", {"data": {"<EMAIL_1>": 1}}, session="mallory")
    assert sent == [{"<EMAIL_1>": 1}]


def test_a_blocked_kind_is_blocked_when_its_pseudonym_comes_back_as_a_key() -> None:
    guard, _, sent = _guard(
        "scan: {model: false, mask: {secrets: pseudonym}, block: {arguments: [secrets]}}"
    )
    assert _returning(guard, {GH: 1}) == {"<GITHUB_TOKEN_1>": 1}
    with pytest.raises(Denied) as info:
        guard.call("echo", "call", {"data": {"<GITHUB_TOKEN_1>": 1}}, session="s")
    assert info.value.rule == "scan:secrets"
    assert GH not in str(info.value)
    assert sent == []


def test_keys_of_objects_the_scanners_cannot_look_into_become_their_text() -> None:
    class Contact:
        def __init__(self, mail: str) -> None:
            self.mail = mail

        def __str__(self) -> str:
            return f"Contact({self.mail})"

    guard, _, _ = _guard()
    value = _returning(guard, {Contact(EMAIL): 1, Contact(EMAIL): 2, "7": "seven"})
    assert value == {"Contact(<EMAIL_1>)": 1, "Contact(<EMAIL_1>)#2": 2, "7": "seven"}


def test_a_masked_number_key_turns_its_neighbours_into_text() -> None:
    # keys of one type, as a model reads them in JSON (and as the audit can sort them)
    guard, _, _ = _guard()
    value = _returning(guard, {CARD: "visa", 7: "seven", "7": "text", None: 0})
    assert value == {"<CARD_1>": "visa", "7#2": "seven", "7": "text", "null": 0}
    assert _returning(guard, {7: "seven", 123456789: "id"}) == {7: "seven", 123456789: "id"}


# -- R4: integers -----------------------------------------------------------------------


def test_card_number_returned_as_integer_is_masked() -> None:
    guard, _, _ = _guard()
    value = _returning(guard, [{"card": CARD, "card_text": str(CARD)}])
    assert value == [{"card": "<CARD_1>", "card_text": "<CARD_1>"}]


def test_card_number_returned_as_a_whole_float_is_masked() -> None:
    guard, _, _ = _guard()
    assert _returning(guard, {"card": float(CARD), "t": 1700000000.5}) == {
        "card": "<CARD_1>",
        "t": 1700000000.5,
    }


def test_card_number_as_integer_argument_is_masked_in_audit_only() -> None:
    guard, audit, sent = _guard()
    guard.call("echo", "call", {"data": {"card": CARD}})
    assert sent == [{"card": CARD}]  # the tool still gets the number
    assert str(CARD) not in _audit(audit)
    assert audit.events[-1].args == {"data": {"card": "<CARD_1>"}}


def test_card_number_as_integer_argument_is_blocked_where_the_policy_says() -> None:
    guard, _, sent = _guard("scan: {model: false, block: {arguments: [card]}}")
    with pytest.raises(Denied) as info:
        guard.call("echo", "call", {"data": [CARD]})
    assert info.value.rule == "scan:pii"
    assert sent == []


@pytest.mark.parametrize("item", DATA["attacks"], ids=[a["name"] for a in DATA["attacks"]])
def test_structure_attack_corpus(item: dict[str, Any]) -> None:
    guard, audit, _ = _guard()
    shown = json.dumps(_returning(guard, item["result"]))
    assert item["clear"] not in shown
    guard.call("echo", "call", {"data": item["result"]})
    assert item["clear"] not in _audit(audit)


@pytest.mark.parametrize("value", DATA["benign"])
def test_structure_benign_corpus_comes_back_unchanged(value: Any) -> None:
    guard, audit, sent = _guard()
    assert _returning(guard, value) == value
    guard.call("echo", "call", {"data": value})
    assert sent == [value]
    assert audit.events[-1].args == {"data": value}


# -- the walker itself ------------------------------------------------------------------


def _upper(path: str, text: str) -> str:
    return text.upper()


def test_map_strings_maps_keys_and_names_paths() -> None:
    seen: list[tuple[str, str]] = []

    def fn(path: str, text: str) -> str:
        seen.append((path, text))
        return text.upper()

    out = map_strings({"a": {"b": ["c"]}, 1: "d"}, fn)
    assert out == {"A": {"B": ["C"]}, 1: "D"}
    assert seen == [
        ("(key)", "a"),
        ("A.(key)", "b"),
        ("A.B[0]", "c"),
        ("1", "d"),
    ]
    assert key_path("") == "(key)" and key_path("x[0]") == "x[0].(key)"


def test_map_strings_name_overrides_the_path_below_a_key() -> None:
    seen: list[str] = []

    def fn(path: str, text: str) -> str:
        seen.append(path)
        return text

    map_strings({"real": {"x": "y"}}, fn, name=lambda key: f"<{key}>")
    assert seen == ["(key)", "<real>.(key)", "<real>.<x>"]


def test_map_strings_numbers_only_when_asked_and_never_bools() -> None:
    seen: list[str] = []

    def fn(path: str, text: str) -> str:
        seen.append(text)
        return "N" if text.lstrip("-").isdigit() else text

    value = {
        "big": 123456789,
        "neg": -123456789,
        "small": 12345678,
        "flag": True,
        "whole": 1e12,
        "part": 1700000000.5,
        "exp": 1e30,
        "nan": float("nan"),
    }
    assert map_strings(value, fn) == value  # numbers off: kept (the same nan object)
    assert seen == list(value)  # only the keys were looked at
    out = map_strings(value, fn, numbers=True)
    assert out["big"] == out["neg"] == out["whole"] == "N"
    assert out["small"] == 12345678 and out["flag"] is True
    assert out["part"] == 1700000000.5 and out["exp"] == 1e30
    assert "1000000000000" in seen and "1700000000.5" not in seen
    assert number_text(10**8) == "100000000" and number_text(10**8 - 1) is None
    assert number_text(True) is None and number_text(4111111111111111.0) == "4111111111111111"


def test_map_strings_keeps_an_integer_too_long_to_print() -> None:
    huge = 10**5000  # beyond Python's int-to-text limit: nothing renders it as text either
    assert map_strings({"n": huge}, _upper, numbers=True) == {"N": huge}


def test_map_strings_unchanged_numbers_keep_their_type() -> None:
    assert map_strings([123456789012], lambda p, t: t, numbers=True) == [123456789012]
    assert isinstance(map_strings([123456789012], lambda p, t: t, numbers=True)[0], int)
