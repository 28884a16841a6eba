"""JSON schemas for tools: derive them from capabilities, and check arguments against them.

Integrations show the guard's tools to a model with a JSON schema per tool and
check the model's arguments against it before the policy decides. The checker
here covers the subset of JSON Schema that tool schemas use (types,
properties, required, additionalProperties, items, enum, const, string and
number bounds, RE2 patterns, anyOf/oneOf/allOf, local ``$ref``). A schema that
uses any other constraining keyword is refused when it is compiled, so no
constraint is ever silently skipped.

>>> check = compile_schema({"type": "object", "properties": {"n": {"type": "integer"}},
...                         "required": ["n"]})
>>> check.errors({"n": "3"})
['`n`: expected integer']
"""

from __future__ import annotations

import inspect
import math
import operator
import posixpath
import types
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from stockade.errors import ConfigurationError, ToolError
from stockade.model import Decision, ToolCall
from stockade.policy.matchers import PatternError, re2_compile
from stockade.tools.base import Capability, FunctionCapability

__all__ = [
    "SchemaCheck",
    "canonical_paths",
    "compile_schema",
    "denied_paths",
    "schema_for",
    "tool_description",
]

#: keywords that describe and never constrain: ignored by the checker
_ANNOTATIONS = frozenset(
    {
        "title",
        "description",
        "default",
        "examples",
        "$schema",
        "$id",
        "$comment",
        "format",
        "deprecated",
        "readOnly",
        "writeOnly",
        "$defs",
        "definitions",
    }
)
_CONSTRAINTS = frozenset(
    {
        "type",
        "properties",
        "required",
        "additionalProperties",
        "items",
        "enum",
        "const",
        "minLength",
        "maxLength",
        "pattern",
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "minItems",
        "maxItems",
        "uniqueItems",
        "anyOf",
        "oneOf",
        "allOf",
        "$ref",
    }
)
_TYPES = frozenset({"object", "array", "string", "integer", "number", "boolean", "null"})
_MAX_DEPTH = 64

Checker = Callable[[Any, str, list[str]], None]


def _is_type(value: Any, name: str) -> bool:
    if name == "null":
        return value is None
    if name == "boolean":
        return isinstance(value, bool)
    if name == "integer":
        if isinstance(value, bool):
            return False
        if isinstance(value, int):
            return True
        return isinstance(value, float) and math.isfinite(value) and value.is_integer()
    if name == "number":
        return (
            isinstance(value, (int, float))
            and not isinstance(value, bool)
            and not (isinstance(value, float) and not math.isfinite(value))
        )
    if name == "string":
        return isinstance(value, str)
    if name == "array":
        return isinstance(value, (list, tuple))
    return isinstance(value, Mapping)


def _where(path: str) -> str:
    return f"`{path}`" if path else "the arguments"


def _canon(value: Any) -> Any:
    """A hashable form where 1 == 1.0 but True != 1 (JSON equality)."""
    if isinstance(value, bool) or value is None:
        return ("b", value)
    if isinstance(value, (int, float)):
        return ("n", float(value))
    if isinstance(value, str):
        return ("s", value)
    if isinstance(value, (list, tuple)):
        return ("a", tuple(_canon(v) for v in value))
    if isinstance(value, Mapping):
        return ("o", tuple(sorted((str(k), _canon(v)) for k, v in value.items())))
    return ("?", repr(value))


class _Compiler:
    def __init__(self, root: Mapping[str, Any]) -> None:
        self.root = root
        self.refs: dict[str, Checker] = {}

    def compile(self, schema: Any, depth: int = 0) -> Checker:
        if depth > _MAX_DEPTH:
            raise ConfigurationError("tool schema is nested too deeply")
        if schema is True or schema == {}:
            return lambda v, p, e: None
        if schema is False:
            return lambda v, p, e: e.append(f"{_where(p)}: not allowed")
        if not isinstance(schema, Mapping):
            raise ConfigurationError("a tool schema must be an object or a boolean")
        unknown = sorted(k for k in schema if k not in _CONSTRAINTS and k not in _ANNOTATIONS)
        if unknown:
            raise ConfigurationError(
                f"unsupported tool schema keyword `{unknown[0]}`; "
                f"stockade checks only: {', '.join(sorted(_CONSTRAINTS))}"
            )
        checks: list[Checker] = []
        if "$ref" in schema:
            checks.append(self._ref(str(schema["$ref"]), depth))
        if "type" in schema:
            checks.append(self._type(schema["type"]))
        if "enum" in schema:
            allowed = {_canon(v) for v in schema["enum"]}
            checks.append(
                lambda v, p, e: (
                    None
                    if _canon(v) in allowed
                    else e.append(f"{_where(p)}: not one of the allowed values")
                )
            )
        if "const" in schema:
            const = _canon(schema["const"])
            checks.append(
                lambda v, p, e: (
                    None if _canon(v) == const else e.append(f"{_where(p)}: not the allowed value")
                )
            )
        checks.extend(self._strings(schema))
        checks.extend(self._numbers(schema))
        checks.extend(self._arrays(schema, depth))
        checks.extend(self._objects(schema, depth))
        checks.extend(self._combinators(schema, depth))

        def check(value: Any, path: str, errors: list[str]) -> None:
            for c in checks:
                c(value, path, errors)

        return check

    def _ref(self, ref: str, depth: int) -> Checker:
        prefixes = ("#/$defs/", "#/definitions/")
        if not ref.startswith(prefixes):
            raise ConfigurationError(f"unsupported `$ref` `{ref}`; only local #/$defs/ references")
        if ref in self.refs:
            return self.refs[ref]
        section, _, name = ref[2:].partition("/")
        target = self.root.get(section, {}).get(name) if isinstance(self.root, Mapping) else None
        if target is None:
            raise ConfigurationError(f"`$ref` `{ref}` points nowhere")
        holder: list[Checker] = []

        def lazy(v: Any, p: str, e: list[str]) -> None:
            holder[0](v, p, e)

        self.refs[ref] = lazy  # recursion resolves through the holder
        holder.append(self.compile(target, depth + 1))
        return lazy

    def _type(self, spec: Any) -> Checker:
        names = [spec] if isinstance(spec, str) else list(spec)
        bad = [n for n in names if n not in _TYPES]
        if bad or not names:
            raise ConfigurationError(f"unknown JSON schema type `{bad[0] if bad else ''}`")
        expected = " or ".join(names)

        def check(v: Any, p: str, e: list[str]) -> None:
            if not any(_is_type(v, n) for n in names):
                e.append(f"{_where(p)}: expected {expected}")

        return check

    def _strings(self, s: Mapping[str, Any]) -> list[Checker]:
        out: list[Checker] = []
        lo, hi = s.get("minLength"), s.get("maxLength")
        if lo is not None or hi is not None:

            def length(v: Any, p: str, e: list[str]) -> None:
                if isinstance(v, str) and (
                    (lo is not None and len(v) < lo) or (hi is not None and len(v) > hi)
                ):
                    e.append(f"{_where(p)}: length out of bounds")

            out.append(length)
        if "pattern" in s:
            try:
                rx = re2_compile(str(s["pattern"]))
            except PatternError as exc:
                raise ConfigurationError(f"bad `pattern` in tool schema: {exc}") from exc

            def pattern(v: Any, p: str, e: list[str]) -> None:
                if isinstance(v, str) and rx.search(v) is None:
                    e.append(f"{_where(p)}: does not match the required pattern")

            out.append(pattern)
        return out

    def _numbers(self, s: Mapping[str, Any]) -> list[Checker]:
        bounds = [
            (s.get("minimum"), operator.ge),
            (s.get("maximum"), operator.le),
            (s.get("exclusiveMinimum"), operator.gt),
            (s.get("exclusiveMaximum"), operator.lt),
        ]
        active = [(b, ok) for b, ok in bounds if isinstance(b, (int, float))]
        if not active:
            return []

        def check(v: Any, p: str, e: list[str]) -> None:
            if _is_type(v, "number") and not all(ok(v, b) for b, ok in active):
                e.append(f"{_where(p)}: out of range")

        return [check]

    def _arrays(self, s: Mapping[str, Any], depth: int) -> list[Checker]:
        out: list[Checker] = []
        if "items" in s:
            if not isinstance(s["items"], (Mapping, bool)):
                raise ConfigurationError("tuple-form `items` is not supported in tool schemas")
            item = self.compile(s["items"], depth + 1)

            def items(v: Any, p: str, e: list[str]) -> None:
                if isinstance(v, (list, tuple)):
                    for i, x in enumerate(v):
                        item(x, f"{p}[{i}]", e)

            out.append(items)
        lo, hi, unique = s.get("minItems"), s.get("maxItems"), bool(s.get("uniqueItems"))
        if lo is not None or hi is not None or unique:

            def count(v: Any, p: str, e: list[str]) -> None:
                if not isinstance(v, (list, tuple)):
                    return
                if (lo is not None and len(v) < lo) or (hi is not None and len(v) > hi):
                    e.append(f"{_where(p)}: number of items out of bounds")
                if unique and len({_canon(x) for x in v}) != len(v):
                    e.append(f"{_where(p)}: items are not unique")

            out.append(count)
        return out

    def _objects(self, s: Mapping[str, Any], depth: int) -> list[Checker]:
        props = {str(k): self.compile(v, depth + 1) for k, v in (s.get("properties") or {}).items()}
        required = [str(r) for r in s.get("required") or ()]
        extra_spec = s.get("additionalProperties", True)
        extra = None if extra_spec is True else self.compile(extra_spec, depth + 1)
        if not props and not required and extra is None:
            return []

        def check(v: Any, p: str, e: list[str]) -> None:
            if not isinstance(v, Mapping):
                return
            for name in required:
                if name not in v:
                    e.append(f"`{_join(p, name)}`: required")
            for key, value in v.items():
                sub = props.get(str(key))
                if sub is not None:
                    sub(value, _join(p, str(key)), e)
                elif extra_spec is False:
                    e.append(f"`{_join(p, str(key))}`: unexpected argument")
                elif extra is not None:
                    extra(value, _join(p, str(key)), e)

        return [check]

    def _combinators(self, s: Mapping[str, Any], depth: int) -> list[Checker]:
        out: list[Checker] = []
        for key in ("anyOf", "oneOf", "allOf"):
            if key not in s:
                continue
            branches = [self.compile(b, depth + 1) for b in s[key]]
            if not branches:
                raise ConfigurationError(f"`{key}` needs at least one schema")
            out.append(_combine(key, branches))
        return out


def _combine(key: str, branches: list[Checker]) -> Checker:
    def check(v: Any, p: str, e: list[str]) -> None:
        results = []
        for b in branches:
            errs: list[str] = []
            b(v, p, errs)
            results.append(errs)
        passed = sum(1 for r in results if not r)
        if key == "allOf":
            for r in results:
                e.extend(r)
        elif key == "anyOf" and passed == 0:
            e.append(f"{_where(p)}: matches none of the allowed forms")
        elif key == "oneOf" and passed != 1:
            e.append(f"{_where(p)}: must match exactly one of the allowed forms")

    return check


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


class SchemaCheck:
    """A compiled tool schema. :meth:`errors` lists what is wrong with a value.

    Messages name the argument and what was expected, never the value itself
    (it may be a secret the model was tricked into sending).
    """

    def __init__(self, schema: Mapping[str, Any]) -> None:
        self.schema = dict(schema)
        self._check = _Compiler(self.schema).compile(self.schema)

    def errors(self, value: Any) -> list[str]:
        """Problems with ``value``; empty when it conforms."""
        errors: list[str] = []
        self._check(value, "", errors)
        return errors


def compile_schema(schema: Mapping[str, Any]) -> SchemaCheck:
    """Compile a JSON schema; raise :class:`ConfigurationError` for what it cannot check."""
    return SchemaCheck(schema)


# -- schemas from capabilities ----------------------------------------------------


def _annotation_schema(annotation: Any) -> dict[str, Any]:
    if annotation is inspect.Parameter.empty or annotation is Any:
        return {}
    if isinstance(annotation, str):
        return {}  # an unresolved forward reference: accept any JSON value
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        branches = [_annotation_schema(a) for a in args]
        if any(b == {} for b in branches):
            return {}
        return {"anyOf": branches}
    if origin is typing.Literal:
        return {"enum": list(args)}
    simple = {str: "string", int: "integer", float: "number", bool: "boolean"}
    if annotation in simple:
        return {"type": simple[annotation]}
    if annotation is type(None):
        return {"type": "null"}
    base = origin or annotation
    if isinstance(base, type) and issubclass(base, (list, tuple, set, frozenset, Sequence)):
        if base is str:
            return {"type": "string"}
        item = _annotation_schema(args[0]) if args else {}
        return {"type": "array", "items": item} if item else {"type": "array"}
    if isinstance(base, type) and issubclass(base, Mapping):
        return {"type": "object"}
    return {}


def _function_schema(cap: FunctionCapability) -> dict[str, Any]:
    try:
        hints = typing.get_type_hints(cap._fn)
    except Exception:
        hints = {}
    props: dict[str, Any] = {}
    required: list[str] = []
    open_kwargs = False
    rename = cap._rename
    for pname, param in cap.signature.parameters.items():
        if param.kind is inspect.Parameter.VAR_KEYWORD:
            open_kwargs = True
            continue
        if param.kind is inspect.Parameter.VAR_POSITIONAL:
            continue
        name = rename.get(pname, pname)
        props[name] = _annotation_schema(hints.get(pname, param.annotation))
        if param.default is inspect.Parameter.empty:
            required.append(name)
    schema: dict[str, Any] = {"type": "object", "properties": props}
    if required:
        schema["required"] = required
    if not open_kwargs:
        schema["additionalProperties"] = False
    return schema


def schema_for(capability: Capability, action: str) -> dict[str, Any]:
    """The JSON schema of one action's arguments.

    A :class:`FunctionCapability` gets one from its signature and type hints;
    another capability may publish ``describe()["schemas"][action]`` (or
    ``describe()["parameters"]`` as a JSON schema), or only the argument
    names (``describe()["arguments"|"parameters"]``, per action or for all):
    then those names and no others; otherwise any object.
    """
    if isinstance(capability, FunctionCapability):
        return _function_schema(capability)
    desc = capability.describe()
    schemas = desc.get("schemas")
    if isinstance(schemas, Mapping) and isinstance(schemas.get(action), Mapping):
        return dict(schemas[action])
    params = desc.get("parameters")
    if isinstance(params, Mapping) and params.get("type") == "object":
        return dict(params)
    for key in ("arguments", "parameters"):
        names = desc.get(key)
        if isinstance(names, Mapping):
            names = names.get(action)
        if isinstance(names, (list, tuple)) and all(isinstance(n, str) for n in names):
            # Only the names are known: any JSON value each, nothing else; the
            # tool's own checks judge the values.
            return {
                "type": "object",
                "properties": {n: {} for n in names},
                "additionalProperties": False,
            }
    return {"type": "object"}


def tool_description(capability: Capability, action: str) -> str:
    """A one-paragraph description of a capability's action for a model."""
    desc = capability.describe()
    descriptions = desc.get("descriptions")
    if isinstance(descriptions, Mapping) and isinstance(descriptions.get(action), str):
        return str(descriptions[action])
    text = desc.get("description")
    if isinstance(text, str) and text:
        return text
    return f"`{capability.name}` tool, action `{action}`"


# -- path arguments -------------------------------------------------------------------


def _canonical_path(value: Any, arg: str) -> Any:
    if isinstance(value, list):
        return [_canonical_path(v, arg) for v in value]
    if not isinstance(value, str):
        return value
    if "\x00" in value:
        raise ToolError(f"argument `{arg}` holds a NUL byte")
    if not value:
        return value
    norm = posixpath.normpath(value)
    if norm == ".." or norm.startswith("../"):
        raise ToolError(f"argument `{arg}` climbs out of its directory with `..`")
    return norm


def denied_paths(call: ToolCall, names: Iterable[str]) -> Decision | None:
    """A deny when a path argument falls in the fs tool's built-in deny list.

    `.env`, private keys, cloud credentials, password stores and model weights
    stay out of reach of file-reading tools from other frameworks too, not only
    of stockade's own fs tool (red-team R16). Nothing lifts it here: give such a
    file to the agent through the fs tool and its `unlock` list.
    """
    from stockade.tools.fs import builtin_deny_group

    wanted = set(names)
    for key, value in call.args.items():
        if key not in wanted:
            continue
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, str):
                group = builtin_deny_group(item)
                if group is not None:
                    return Decision.deny(
                        "integrations:builtin-deny",
                        f"argument `{key}` names a path on the built-in deny list ({group})",
                    )
    return None


def canonical_paths(call: ToolCall, names: Iterable[str]) -> ToolCall:
    """The call with its path arguments (``names``) normalised, so globs decide on real paths.

    ``a/../b`` becomes ``b``; a relative path that climbs above its start, or
    a NUL byte, is refused with :class:`ToolError` (the guard denies the call).
    Tools from other frameworks cannot tell stockade which arguments are
    paths, so integrations treat these names as paths.
    """
    wanted = set(names)
    if not any(k in wanted for k in call.args):
        return call
    return call.with_args(
        {k: _canonical_path(v, k) if k in wanted else v for k, v in call.args.items()}
    )
