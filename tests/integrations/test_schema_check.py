"""The tool-schema checker: the subset it checks, what it refuses to compile, and robustness."""

from __future__ import annotations

from typing import Any, Literal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stockade import ConfigurationError, Guard
from stockade.integrations.schema import compile_schema, schema_for

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": 5, "pattern": "^[a-z]+$"},
        "n": {"type": "integer", "minimum": 0, "exclusiveMaximum": 10},
        "ratio": {"type": ["number", "null"]},
        "tags": {
            "type": "array",
            "items": {"enum": ["a", "b"]},
            "maxItems": 2,
            "uniqueItems": True,
        },
        "mode": {"const": "fast"},
        "target": {"$ref": "#/$defs/target"},
        "either": {"oneOf": [{"type": "string"}, {"type": "integer"}]},
        "any": {"anyOf": [{"type": "boolean"}, {"type": "null"}]},
        "both": {"allOf": [{"type": "string"}, {"maxLength": 2}]},
    },
    "required": ["name"],
    "additionalProperties": False,
    "$defs": {
        "target": {
            "type": "object",
            "properties": {"host": {"type": "string"}},
            "additionalProperties": {"type": "integer"},
        }
    },
    "title": "ignored",
    "description": "ignored",
    "$schema": "ignored",
}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"name": "ab"}, []),
        (
            {
                "name": "ab",
                "n": 9,
                "ratio": None,
                "tags": ["a", "b"],
                "mode": "fast",
                "target": {"host": "h", "port": 1},
                "either": 3,
                "any": True,
                "both": "xy",
            },
            [],
        ),
        ({}, ["`name`: required"]),
        ({"name": "AB"}, ["`name`: does not match the required pattern"]),
        ({"name": "abcdef"}, ["`name`: length out of bounds"]),
        ({"name": "a", "n": 10}, ["`n`: out of range"]),
        ({"name": "a", "n": 1.5}, ["`n`: expected integer"]),
        ({"name": "a", "n": True}, ["`n`: expected integer"]),
        ({"name": "a", "n": 2.0}, []),
        ({"name": "a", "ratio": "1"}, ["`ratio`: expected number or null"]),
        ({"name": "a", "ratio": float("nan")}, ["`ratio`: expected number or null"]),
        ({"name": "a", "tags": ["a", "a"]}, ["`tags`: items are not unique"]),
        ({"name": "a", "tags": ["c"]}, ["`tags[0]`: not one of the allowed values"]),
        ({"name": "a", "mode": "slow"}, ["`mode`: not the allowed value"]),
        ({"name": "a", "target": {"port": "x"}}, ["`target.port`: expected integer"]),
        ({"name": "a", "either": 1.5}, ["`either`: must match exactly one of the allowed forms"]),
        ({"name": "a", "any": 1}, ["`any`: matches none of the allowed forms"]),
        ({"name": "a", "both": "xyz"}, ["`both`: length out of bounds"]),
        ({"name": "a", "extra": 1}, ["`extra`: unexpected argument"]),
        ([], ["the arguments: expected object"]),
    ],
)
def test_checks(value: Any, expected: list[str]) -> None:
    assert compile_schema(SCHEMA).errors(value) == expected


@pytest.mark.parametrize(
    ("schema", "message"),
    [
        ({"patternProperties": {}}, "unsupported tool schema keyword `patternProperties`"),
        ({"if": {}, "then": {}}, "unsupported tool schema keyword `if`"),
        ({"type": "float"}, "unknown JSON schema type `float`"),
        ({"$ref": "https://example.com/s.json"}, "only local"),
        ({"$ref": "#/$defs/missing"}, "points nowhere"),
        ({"pattern": "(a"}, "bad `pattern`"),
        ({"items": [{}, {}]}, "tuple-form"),
        ({"anyOf": []}, "at least one"),
        ({"properties": {"x": 3}}, "must be an object or a boolean"),
    ],
)
def test_refuses_what_it_cannot_check(schema: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        compile_schema(schema)


def test_recursive_ref_and_error_messages_hide_values() -> None:
    tree = {
        "$ref": "#/$defs/node",
        "$defs": {
            "node": {
                "type": "object",
                "properties": {"kids": {"type": "array", "items": {"$ref": "#/$defs/node"}}},
            }
        },
    }
    check = compile_schema(tree)
    assert check.errors({"kids": [{"kids": []}]}) == []
    assert check.errors({"kids": [{"kids": "sk-live-secret"}]}) == [
        "`kids[0].kids`: expected array"
    ]


def test_schema_from_signature() -> None:
    guard = Guard.from_text("version: 1")

    @guard.tool(rename={"to": "recipient"})
    def send(
        to: str,
        cc: list[str] | None = None,
        mode: Literal["a", "b"] = "a",
        n: float = 1.0,
        meta: dict[str, int] | None = None,
        **extra: Any,
    ) -> None:
        """Send."""

    schema = schema_for(guard.tools["send"], "call")
    assert schema["required"] == ["recipient"]
    assert "additionalProperties" not in schema  # **extra
    props = schema["properties"]
    assert props["recipient"] == {"type": "string"}
    assert props["mode"] == {"enum": ["a", "b"]}
    assert props["n"] == {"type": "number"}
    assert props["cc"] == {
        "anyOf": [{"type": "array", "items": {"type": "string"}}, {"type": "null"}]
    }
    assert props["meta"] == {"anyOf": [{"type": "object"}, {"type": "null"}]}


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(JSON)
def test_never_raises_on_any_value(value: Any) -> None:
    errors = compile_schema(SCHEMA).errors(value)
    assert isinstance(errors, list)
    if not isinstance(value, dict):
        assert errors


def test_schema_from_described_argument_names(tmp_path: Any) -> None:
    from stockade import Capability, Output

    class Named(Capability):
        name = "named"
        actions = frozenset({"read", "list"})

        def execute(self, call: Any, ctx: Any) -> Output:
            return Output("")

        def describe(self) -> dict[str, Any]:
            return {"name": "named", "arguments": {"read": ["path", "offset"], "list": ["path"]}}

    schema = schema_for(Named(), "read")
    assert schema == {
        "type": "object",
        "properties": {"path": {}, "offset": {}},
        "additionalProperties": False,
    }
    assert compile_schema(schema).errors({"path": "a", "mode": "x"}) == [
        "`mode`: unexpected argument"
    ]


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet="ab./\x00~", max_size=16))
def test_canonical_paths_never_leave_a_climbing_dotdot(path: str) -> None:
    from stockade import ToolCall, ToolError
    from stockade.integrations.schema import canonical_paths

    call = ToolCall("t", "call", {"path": path, "other": path}, session="s")
    try:
        out = canonical_paths(call, ["path"])
    except ToolError:
        assert "\x00" in path or ".." in path
        return
    value = out.args["path"]
    assert out.args["other"] == path  # only the named arguments change
    if value:
        parts = value.split("/")
        assert ".." not in parts or value.startswith("/")
        assert "\x00" not in value
        if value.startswith("/"):
            assert ".." not in parts
