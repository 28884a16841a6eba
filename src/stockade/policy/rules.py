"""Rules: their schema, their compiled form, and how one matches a call.

A rule names tools, actions, principals and argument constraints, and an
effect. Constraints on one argument are ANDed, constraints on several
arguments are ANDed. A rule with a constraint on an argument does not apply
to a call without that argument (capabilities make every argument explicit
when they prepare a call, defaults included). A value the constraint cannot
judge (wrong type, not a host, not an address) never helps a call: it does not
satisfy an ``allow`` rule, and it does satisfy a ``deny`` or ``ask`` rule. A list value
satisfies an ``allow`` rule only when every element does, and a ``deny`` or
``ask`` rule when any element does.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from stockade.model import Decision, Effect
from stockade.policy.matchers import (
    Matcher,
    PatternError,
    compile_cidr,
    compile_glob,
    compile_host,
    compile_regex,
)
from stockade.policy.node import Node

__all__ = ["CONSTRAINT_OPS", "CompiledRule", "RuleSpec", "compile_constraint", "parse_rule"]

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,127}$")
_NAME = re.compile(r"^(\*|[A-Za-z0-9_][A-Za-z0-9_.:-]{0,127})$")

#: constraint operators and what their operand must be
CONSTRAINT_OPS = {
    "equals": "any scalar value",
    "one_of": "a list of scalar values",
    "glob": "a path glob or a list of them",
    "host": "a host pattern or a list of them",
    "cidr": "a CIDR network or a list of them",
    "regex": "an RE2 pattern or a list of them (full match)",
    "min": "a number",
    "max": "a number",
    "length": "a mapping with min and/or max",
}

RULE_KEYS = ("id", "tool", "action", "effect", "mode", "principal", "when", "reason")


@dataclass(frozen=True)
class RuleSpec:
    """A rule as written: the data ``policy explain`` and the checks look at."""

    id: str
    tools: tuple[str, ...]
    actions: tuple[str, ...]
    effect: Effect
    mode: str = "enforce"
    principals: tuple[str, ...] = ()
    when: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    reason: str = ""
    origin: str = ""  # file:line:column, for messages
    node: Node | None = field(default=None, compare=False, repr=False)

    def when_key(self) -> frozenset[tuple[str, str]]:
        """The constraints as a comparable set of (argument, canonical op text)."""
        return frozenset(
            (arg, op + "=" + repr(_canon(val)))
            for arg, ops in self.when.items()
            for op, val in ops.items()
        )


def _canon(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(sorted((_canon(v) for v in value), key=repr))
    if isinstance(value, dict):
        return tuple(sorted((k, _canon(v)) for k, v in value.items()))
    return value


def _scalar_key(value: Any) -> tuple[str, Any]:
    # bool is an int in Python; keep `true` and `1` apart.
    return (type(value).__name__, value)


Check = Callable[[Any], "bool | None"]


def compile_constraint(arg: str, ops: Mapping[str, Any], where: Node | None = None) -> Check:
    """Compile the operators for one argument into one check.

    Raise ``ValueError`` (``PatternError``) with a message for a bad operand.
    """
    checks: list[Matcher] = []
    for op, operand in ops.items():
        if op == "equals":
            checks.append(_equals(operand))
        elif op == "one_of":
            checks.append(_one_of(list(operand)))
        elif op == "glob":
            checks.append(compile_glob(_as_list(operand)))
        elif op == "host":
            checks.append(compile_host(_as_list(operand)))
        elif op == "cidr":
            checks.append(compile_cidr(_as_list(operand)))
        elif op == "regex":
            checks.append(compile_regex(_as_list(operand)))
        elif op == "min":
            checks.append(_bound(float(operand), None))
        elif op == "max":
            checks.append(_bound(None, float(operand)))
        elif op == "length":
            checks.append(_length(operand.get("min", 0), operand.get("max", math.inf)))
        else:  # pragma: no cover - the schema rejects unknown operators first
            raise PatternError(f"unknown constraint `{op}`")
    if len(checks) == 1:
        return checks[0]

    def all_of(value: Any) -> bool | None:
        unknown = False
        for c in checks:
            r = c(value)
            if r is False:
                return False
            if r is None:
                unknown = True
        return None if unknown else True

    return all_of


def _comparable(v: Any, operand: Any) -> bool:
    """Whether ``v`` and ``operand`` can be compared: same type, or both numbers."""
    return type(v) is type(operand) or (_is_number(v) and _is_number(operand))


def _equals(operand: Any) -> Matcher:
    def check(v: Any) -> bool | None:
        # Another type cannot be judged (never helps a call): `1`, `"yes"` are
        # not `true`, and a deny rule about `true` must still fire on them.
        if not _comparable(v, operand):
            return None
        return bool(v == operand)

    return check


def _one_of(operands: list[Any]) -> Matcher:
    allowed = frozenset(_scalar_key(v) for v in operands)
    types = frozenset(type(o) for o in operands)
    numbers = any(_is_number(o) for o in operands)

    def check(v: Any) -> bool | None:
        if isinstance(v, (dict, list)):
            return None
        if _scalar_key(v) in allowed:
            return True
        if type(v) in types and not (numbers and _is_number(v)):
            return False  # same type, not listed
        if not (numbers and _is_number(v)):
            return None  # another type: cannot judge
        return any(_is_number(o) and v == o for o in operands)

    return check


def _bound(lo: float | None, hi: float | None) -> Matcher:
    def check(v: Any) -> bool | None:
        if not _is_number(v):
            return None
        return (lo is None or v >= lo) and (hi is None or v <= hi)

    return check


def _length(lo: float, hi: float) -> Matcher:
    def check(v: Any) -> bool | None:
        if not isinstance(v, (str, bytes, list, tuple)):
            return None
        return lo <= len(v) <= hi

    return check


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and not math.isnan(v)


def _as_list(operand: Any) -> list[str]:
    return list(operand) if isinstance(operand, (list, tuple)) else [operand]


_MISSING = object()


def _lookup(args: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    value: Any = args
    for part in path:
        if not isinstance(value, Mapping) or part not in value:
            return _MISSING
        value = value[part]
    return value


class CompiledRule:
    """A rule ready to be evaluated many times."""

    __slots__ = (
        "checks", "decision", "effect", "id", "principal", "reason", "shadow", "spec", "strict",
    )  # fmt: skip

    def __init__(self, spec: RuleSpec) -> None:
        self.spec = spec
        self.id = spec.id
        self.effect = spec.effect
        self.reason = spec.reason or _default_reason(spec)
        # decisions are immutable: one per rule, made once
        self.decision = Decision(self.effect, self.id, self.reason)
        self.shadow = spec.mode == "shadow"
        # allow rules need every check to say yes; deny/ask rules fire on doubt.
        self.strict = spec.effect is Effect.ALLOW
        self.principal = compile_glob(list(spec.principals)) if spec.principals else None
        self.checks = tuple(
            (tuple(arg.split(".")), compile_constraint(arg, ops)) for arg, ops in spec.when.items()
        )

    def matches(self, args: Mapping[str, Any], principal: str) -> bool:
        """Whether this rule applies to a call with these arguments and principal."""
        if self.principal is not None and not self.principal(principal):
            return False
        strict = self.strict
        for path, check in self.checks:
            value = _lookup(args, path) if len(path) > 1 else args.get(path[0], _MISSING)
            if value is _MISSING:
                return False  # a rule about an argument says nothing of calls without it
            if isinstance(value, (list, tuple)):
                results = [check(v) for v in value]
                if strict:
                    if not all(r is True for r in results):
                        return False
                elif all(r is False for r in results):
                    return False  # no element fires the rule (an empty list never does)
                continue
            r = check(value)
            if strict:
                if r is not True:
                    return False
            elif r is False:
                return False
        return True


def _default_reason(spec: RuleSpec) -> str:
    verb = {"allow": "allows", "deny": "denies", "ask": "asks approval for"}[spec.effect.value]
    return f"rule `{spec.id}` {verb} this call"


def parse_rule(node: Node, default_mode: str) -> RuleSpec:
    """Read one rule; raise ``Invalid`` on the first problem in it."""
    m = node.mapping(allowed=RULE_KEYS, required=("id", "tool", "effect"))
    rule_id = m["id"].string()
    if not _ID.match(rule_id):
        m["id"].fail(f"invalid rule id `{rule_id}`; expected letters, digits and _.:/- (max 128)")
    tools = _names(m["tool"], "tool")
    actions = _names(m["action"], "action") if "action" in m else ("*",)
    effect = Effect(m["effect"].string(choices=("allow", "deny", "ask")))
    mode = m["mode"].string(choices=("enforce", "shadow")) if "mode" in m else default_mode
    principals: tuple[str, ...] = ()
    if "principal" in m:
        principals = tuple(m["principal"].strings())
        try:
            compile_glob(list(principals))
        except PatternError as exc:
            m["principal"].fail(f"bad principal pattern: {exc}")
    when: dict[str, dict[str, Any]] = {}
    if "when" in m:
        for arg, cnode in m["when"].mapping().items():
            if not arg or any(not part for part in arg.split(".")):
                m["when"].fail(f"invalid argument name `{arg}`", key=arg)
            when[arg] = parse_constraint(cnode)
    reason = m["reason"].string() if "reason" in m else ""
    return RuleSpec(
        id=rule_id,
        tools=tools,
        actions=actions,
        effect=effect,
        mode=mode,
        principals=principals,
        when=when,
        reason=reason,
        origin=f"{node.file}:{node.line}:{node.column}",
        node=node,
    )


def _names(node: Node, what: str) -> tuple[str, ...]:
    names = node.strings()
    for n in names:
        if not _NAME.match(n):
            node.fail(f"invalid {what} name `{n}`; expected `*` or letters, digits and _.:-")
    return tuple(sorted(set(names)))


def parse_constraint(node: Node) -> dict[str, Any]:
    """Read the operators for one argument. A bare scalar means ``equals``."""
    if not node.is_mapping:
        value = node.plain()
        if isinstance(value, list):
            node.fail("a list here is ambiguous; write `one_of: [...]` or `glob: [...]`")
        return {"equals": value}
    ops = node.mapping(allowed=CONSTRAINT_OPS)
    if not ops:
        node.fail(f"empty constraint; expected one of: {', '.join(sorted(CONSTRAINT_OPS))}")
    out: dict[str, Any] = {}
    for op, operand in ops.items():
        out[op] = _operand(op, operand)
    if "min" in out and "max" in out and out["min"] > out["max"]:
        node.fail(f"`min` ({out['min']}) is greater than `max` ({out['max']}); nothing can match")
    try:
        compile_constraint(node.path, out)
    except (PatternError, ValueError) as exc:
        node.fail(str(exc))
    return out


def _operand(op: str, node: Node) -> Any:
    if op == "equals":
        value = node.plain()
        if isinstance(value, (dict, list)):
            node.fail("`equals` takes a single value; use `one_of` for a list")
        return value
    if op == "one_of":
        values = node.seq()
        if not values:
            node.fail("`one_of` needs at least one value")
        plain = [v.plain() for v in values]
        for v, p in zip(values, plain, strict=True):
            if isinstance(p, (dict, list)):
                v.fail("`one_of` takes scalar values")
        return plain
    if op in ("glob", "host", "cidr", "regex"):
        patterns = node.strings()
        try:
            if op == "glob":
                compile_glob(patterns)
            elif op == "host":
                compile_host(patterns)
            elif op == "cidr":
                compile_cidr(patterns)
            else:
                compile_regex(patterns)
        except (PatternError, ValueError) as exc:
            node.fail(f"bad {op} pattern: {exc}")
        return patterns
    if op in ("min", "max"):
        return node.number()
    if op == "length":
        lm = node.mapping(allowed=("min", "max"))
        if not lm:
            node.fail("`length` needs `min` and/or `max`")
        out = {k: v.integer(minimum=0) for k, v in lm.items()}
        if "min" in out and "max" in out and out["min"] > out["max"]:
            node.fail(f"length `min` ({out['min']}) is greater than `max` ({out['max']})")
        return out
    raise AssertionError(op)  # pragma: no cover


def subsumes(
    general: RuleSpec,
    specific: RuleSpec,
    keys: dict[str, frozenset[tuple[str, str]]] | None = None,
) -> bool:
    """Whether every call that ``specific`` matches is also matched by ``general``.

    Conservative: only says yes when it is sure (same or wider tools, actions
    and principals, and ``general``'s constraints are a subset of ``specific``'s).
    """

    def covers(wide: Sequence[str], narrow: Sequence[str]) -> bool:
        return "*" in wide or set(narrow) <= set(wide)

    if not covers(general.tools, specific.tools) or not covers(general.actions, specific.actions):
        return False
    if general.principals and set(general.principals) != set(specific.principals):
        return False
    if keys is None:
        return general.when_key() <= specific.when_key()
    return keys[general.id] <= keys[specific.id]
