"""Typed accessors of policy nodes: every wrong value is a located, clear error."""

from __future__ import annotations

import pytest

from stockade import PolicyError
from stockade.policy.node import Invalid, parse_yaml


def node(text: str, key: str = "v"):  # type: ignore[no-untyped-def]
    return parse_yaml(text, "p.yaml").mapping()[key]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("v: 4096", 4096),
        ("v: 64KB", 64000),
        ("v: 10MiB", 10 * 1024**2),
        ("v: 1.5kb", 1500),
        ("v: 2 GiB", 2 * 1024**3),
        ("v: 7b", 7),
    ],
)
def test_sizes(text: str, expected: int) -> None:
    assert node(text).size() == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("v: 30", 30.0),
        ("v: 30s", 30.0),
        ("v: 500ms", 0.5),
        ("v: 2m", 120.0),
        ("v: 1h", 3600.0),
        ("v: 1d", 86400.0),
        ("v: 0.5", 0.5),
    ],
)
def test_durations(text: str, expected: float) -> None:
    assert node(text).duration() == expected


@pytest.mark.parametrize(
    ("text", "call", "message"),
    [
        ("v: lots", "size", "expected a size"),
        ("v: -1", "size", "expected a value >= 0"),
        ("v: soon", "duration", "expected a duration"),
        ("v: [1]", "duration", "expected a duration"),
        ("v: 1.5", "integer", "expected an integer, got a number"),
        ("v: true", "integer", "expected an integer, got a boolean"),
        ("v: x", "number", "expected a number, got a string"),
        ("v: 3", "boolean", "expected true or false, got an integer"),
        ("v: ''", "string", "expected a non-empty string"),
        ("v: 1", "seq", "expected a list, got an integer"),
        ("v: 1", "mapping", "expected a mapping, got an integer"),
        ("v: []", "strings", "expected at least one value"),
    ],
)
def test_wrong_values(text: str, call: str, message: str) -> None:
    with pytest.raises(Invalid, match=message) as info:
        getattr(node(text), call)()
    assert info.value.problem.line == 1 and info.value.problem.key == "v"


def test_strings_may_allow_an_empty_list() -> None:
    assert node("v: []").strings(allow_empty=True) == []
    assert node("v: a").strings(allow_empty=True) == ["a"]


def test_bounds() -> None:
    with pytest.raises(Invalid, match="expected a value <= 5"):
        node("v: 9").integer(maximum=5)
    with pytest.raises(Invalid, match="expected a value >= 1"):
        node("v: 0.5").number(minimum=1)
    assert node("v: 3").number(minimum=1, maximum=5) == 3.0


def test_choices_and_items() -> None:
    with pytest.raises(Invalid, match="unknown value `x`; expected one of: a, b"):
        node("v: x").string(choices=("a", "b"))
    m = parse_yaml("a: {b: 1, c: [x, y]}", "p.yaml").mapping()["a"]
    assert {k: v.plain() for k, v in m.items()} == {"b": 1, "c": ["x", "y"]}
    assert m.mapping()["c"].seq_or_one()[1].path == "a.c[1]"
    assert m.mapping()["b"].seq_or_one()[0].plain() == 1


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "the policy file is empty"),
        ("{1: a}", "keys must be strings"),
        ("a: !!binary aGk=", "unsupported YAML value of type bytes"),
        ("a: 2024-01-01", "unsupported YAML value of type date"),
        ("a: [", "invalid YAML"),
        ("a: *nope", "invalid YAML"),
    ],
)
def test_bad_yaml(text: str, message: str) -> None:
    with pytest.raises(PolicyError, match=message):
        parse_yaml(text, "p.yaml")
