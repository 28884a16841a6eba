"""YAML read into nodes that remember where they stand, with typed accessors.

Every part that owns a policy section (fs, http, sql, exec, flow, scan,
audit, ...) reads it through :class:`Node`, so every bad value gets the same
precise error: file, line, column, the key's path, what is wrong and what was
expected.

>>> n = parse_yaml("limit: 3\\n", "p.yaml")
>>> n.mapping(allowed={"limit"})["limit"].integer(minimum=1)
3
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, NoReturn

import yaml

from stockade.errors import PolicyError, PolicyProblem


def _pick_loader() -> Any:
    """The C loader where PyYAML has libyaml and it resolves tags, else the Python one.

    The C loader has been seen composing nodes of a second copy of
    ``yaml.nodes`` (under coverage with a narrowed ``--source``); PyYAML's
    resolver then leaves every tag unresolved. A one-line self-check avoids it.
    """
    c_loader = getattr(yaml, "CSafeLoader", None)
    if c_loader is not None:
        probe = c_loader("a: 1")
        try:
            if probe.get_single_node().tag == "tag:yaml.org,2002:map":
                return c_loader
        finally:
            probe.dispose()
    return yaml.SafeLoader  # pragma: no cover - depends on the PyYAML build


_Loader = _pick_loader()

__all__ = ["Invalid", "Node", "parse_yaml"]

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(b|kb|kib|mb|mib|gb|gib)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {
    None: 1,
    "b": 1,
    "kb": 1000,
    "kib": 1024,
    "mb": 1000**2,
    "mib": 1024**2,
    "gb": 1000**3,
    "gib": 1024**3,
}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$", re.IGNORECASE)
_DURATION_UNITS = {None: 1.0, "ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


class Invalid(Exception):
    """Raised by accessors; carries the problem. Collected into :class:`PolicyError`."""

    def __init__(self, problem: PolicyProblem) -> None:
        super().__init__(str(problem))
        self.problem = problem


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return type(value).__name__  # pragma: no cover - YAML safe loader gives no other types


@dataclass(eq=False)
class Node:
    """A YAML value with its place in the file.

    For a mapping, ``value`` is ``dict[str, Node]``; for a sequence,
    ``list[Node]``; for a scalar, the plain Python value the safe loader gives.
    """

    value: Any
    file: str
    line: int
    column: int
    path: str = ""
    key_marks: dict[str, tuple[int, int]] = field(default_factory=dict)

    # -- errors -------------------------------------------------------------

    def problem(self, message: str, *, key: str | None = None) -> PolicyProblem:
        """A problem located at this node (or at ``key`` inside this mapping)."""
        if key is not None:
            line, column = self.key_marks.get(key, (self.line, self.column))
            return PolicyProblem(self.file, line, column, self.child_path(key), message)
        return PolicyProblem(self.file, self.line, self.column, self.path, message)

    def fail(self, message: str, *, key: str | None = None) -> NoReturn:
        """Raise :class:`Invalid` for this node."""
        raise Invalid(self.problem(message, key=key))

    def child_path(self, key: str | int) -> str:
        """The dotted path of a child key or index."""
        if isinstance(key, int):
            return f"{self.path}[{key}]"
        return f"{self.path}.{key}" if self.path else key

    # -- structure ----------------------------------------------------------

    @property
    def is_mapping(self) -> bool:
        """Whether this node is a mapping."""
        return isinstance(self.value, dict)

    @property
    def is_list(self) -> bool:
        """Whether this node is a sequence."""
        return isinstance(self.value, list)

    def mapping(
        self, *, allowed: Iterable[str] | None = None, required: Iterable[str] = ()
    ) -> dict[str, Node]:
        """This node as a mapping; unknown and missing keys are errors."""
        if not isinstance(self.value, dict):
            self.fail(f"expected a mapping, got {_kind(self.plain())}")
        items: dict[str, Node] = self.value
        if allowed is not None:
            known = sorted(set(allowed))
            for key in items:
                if key not in known:
                    hint = ", ".join(known) if known else "no keys"
                    self.fail(f"unknown key `{key}`; expected one of: {hint}", key=key)
        for key in required:
            if key not in items:
                self.fail(f"missing required key `{key}`")
        return items

    def items(self) -> Iterator[tuple[str, Node]]:
        """Key/value pairs of a mapping node."""
        yield from self.mapping().items()

    def seq(self) -> list[Node]:
        """This node as a list."""
        if not isinstance(self.value, list):
            self.fail(f"expected a list, got {_kind(self.plain())}")
        return list(self.value)

    def seq_or_one(self) -> list[Node]:
        """This node as a list; a single value counts as a list of one."""
        if isinstance(self.value, list):
            return list(self.value)
        return [self]

    # -- scalars ------------------------------------------------------------

    def plain(self) -> Any:
        """The node as plain Python data (mappings and lists unwrapped)."""
        if isinstance(self.value, dict):
            return {k: v.plain() for k, v in self.value.items()}
        if isinstance(self.value, list):
            return [v.plain() for v in self.value]
        return self.value

    def string(self, *, choices: Iterable[str] | None = None, nonempty: bool = True) -> str:
        """This node as a string (optionally one of ``choices``)."""
        value = self.value
        if not isinstance(value, str):
            hint = (
                " (quote it to make it a string)" if isinstance(value, (bool, int, float)) else ""
            )
            self.fail(f"expected a string, got {_kind(value)}{hint}")
        if nonempty and not value:
            self.fail("expected a non-empty string")
        if choices is not None:
            options = list(choices)
            if value not in options:
                self.fail(f"unknown value `{value}`; expected one of: {', '.join(options)}")
        return value

    def strings(self, *, allow_empty: bool = False) -> list[str]:
        """A string or a list of strings, as a list.

        An empty list is an error unless ``allow_empty`` (for keys whose
        documented default is ``[]``, so writing the default out loads).
        """
        out = [n.string() for n in self.seq_or_one()]
        if not out and not allow_empty:
            self.fail("expected at least one value")
        return out

    def boolean(self) -> bool:
        """This node as a boolean."""
        if not isinstance(self.value, bool):
            self.fail(f"expected true or false, got {_kind(self.value)}")
        return self.value

    def integer(self, *, minimum: int | None = None, maximum: int | None = None) -> int:
        """This node as an integer within bounds."""
        value = self.value
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(f"expected an integer, got {_kind(value)}")
        self._bounds(value, minimum, maximum)
        return value

    def number(self, *, minimum: float | None = None, maximum: float | None = None) -> float:
        """This node as a number within bounds."""
        value = self.value
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.fail(f"expected a number, got {_kind(value)}")
        self._bounds(value, minimum, maximum)
        return float(value)

    def size(self) -> int:
        """A byte size: an integer or a string such as ``10MB`` or ``512KiB``."""
        value = self.value
        if isinstance(value, int) and not isinstance(value, bool):
            self._bounds(value, 0, None)
            return value
        if isinstance(value, str):
            m = _SIZE.match(value)
            if m:
                unit = m.group(2).lower() if m.group(2) else None
                return int(float(m.group(1)) * _SIZE_UNITS[unit])
        self.fail(f"expected a size such as 4096, `64KB` or `10MiB`, got `{value}`")

    def duration(self) -> float:
        """A duration in seconds: a number or a string such as ``30s``, ``500ms``, ``1h``."""
        value = self.value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            self._bounds(value, 0, None)
            return float(value)
        if isinstance(value, str):
            m = _DURATION.match(value)
            if m:
                unit = m.group(2).lower() if m.group(2) else None
                return float(m.group(1)) * _DURATION_UNITS[unit]
        self.fail(f"expected a duration such as 30, `30s`, `500ms` or `1h`, got `{value}`")

    def _bounds(self, value: float, lo: float | None, hi: float | None) -> None:
        if lo is not None and value < lo:
            self.fail(f"expected a value >= {lo}, got {value}")
        if hi is not None and value > hi:
            self.fail(f"expected a value <= {hi}, got {value}")


def _build(node: yaml.Node, loader: Any, file: str, path: str) -> Node:
    mark = node.start_mark
    line, column = mark.line + 1, mark.column + 1
    # Node kinds by their `id`, not isinstance: the C loader's nodes and
    # yaml.nodes can be distinct classes when yaml is imported twice (seen
    # under coverage with a narrowed --source).
    kind = getattr(node, "id", "")
    if kind == "mapping":
        out: dict[str, Node] = {}
        marks: dict[str, tuple[int, int]] = {}
        parent = Node(out, file, line, column, path, marks)
        for key_node, value_node in node.value:
            kmark = key_node.start_mark
            kline, kcol = kmark.line + 1, kmark.column + 1
            key = loader.construct_object(key_node, deep=True)
            if not isinstance(key, str):
                raise Invalid(
                    PolicyProblem(
                        file, kline, kcol, path, f"keys must be strings, got {_kind(key)} `{key}`"
                    )
                )
            if key in out:
                raise Invalid(
                    PolicyProblem(
                        file, kline, kcol, parent.child_path(key), f"duplicate key `{key}`"
                    )
                )
            marks[key] = (kline, kcol)
            out[key] = _build(value_node, loader, file, parent.child_path(key))
        return parent
    if kind == "sequence":
        seq = Node([], file, line, column, path)
        seq.value = [_build(v, loader, file, seq.child_path(i)) for i, v in enumerate(node.value)]
        return seq
    value = loader.construct_object(node, deep=True)
    raw = node.value if kind == "scalar" and isinstance(node.value, str) else ""
    if isinstance(value, bool) and raw.lower() not in ("true", "false"):
        # YAML 1.1 reads yes/no/on/off (and NO, the country code) as booleans.
        raise Invalid(
            PolicyProblem(
                file,
                line,
                column,
                path,
                f"`{raw}` is read as a boolean; write true/false, or quote it for a string",
            )
        )
    if not isinstance(value, (str, int, float, bool, type(None))):
        raise Invalid(
            PolicyProblem(
                file,
                line,
                column,
                path,
                f"unsupported YAML value of type {type(value).__name__}; quote it",
            )
        )
    return Node(value, file, line, column, path)


def parse_yaml(text: str, file: str = "<policy>") -> Node:
    """Parse YAML text into a :class:`Node` tree; raise :class:`PolicyError` on bad YAML."""
    loader = _Loader(text)
    try:
        root = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        what = exc.problem or "invalid YAML"
        raise PolicyError([PolicyProblem(file, line, column, "", f"invalid YAML: {what}")]) from exc
    except yaml.YAMLError as exc:
        raise PolicyError([PolicyProblem(file, 1, 1, "", f"invalid YAML: {exc}")]) from exc
    if root is None:
        raise PolicyError([PolicyProblem(file, 1, 1, "", "the policy file is empty")])
    try:
        return _build(root, loader, file, "")
    except Invalid as exc:
        raise PolicyError([exc.problem]) from None
    except yaml.YAMLError as exc:
        raise PolicyError([PolicyProblem(file, 1, 1, "", f"invalid YAML: {exc}")]) from exc
    finally:
        loader.dispose()
