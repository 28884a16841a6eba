"""Plain functions as tools: argument mapping in every Python parameter shape."""

from __future__ import annotations

from typing import Any

import pytest

from stockade import ConfigurationError, Denied, Guard, ToolError
from stockade.tools.base import FunctionCapability

ALLOW_ALL = "version: 1\nrules: [{id: all, tool: '*', effect: allow}]"


def test_var_args_positional_only_and_kwargs() -> None:
    guard = Guard.from_text(ALLOW_ALL)

    @guard.tool("f")
    def f(a: int, /, *rest: int, k: str = "x", **extra: Any) -> str:
        return f"{a}|{rest}|{k}|{sorted(extra.items())}"

    assert f(1, 2, 3, k="y", z=9) == "1|(2, 3)|y|[('z', 9)]"
    assert guard.call("f", "call", {"a": 1, "rest": [4], "q": 2}).value == "1|(4,)|x|[('q', 2)]"


def test_unknown_argument_without_kwargs_is_refused() -> None:
    guard = Guard.from_text(ALLOW_ALL)

    @guard.tool("g")
    def g(a: int, /, *rest: int) -> int:
        return a

    with pytest.raises(Denied, match="has no argument `zz`"):
        guard.call("g", "call", {"a": 1, "zz": 2})


def test_binding_errors_are_tool_errors() -> None:
    guard = Guard.from_text(ALLOW_ALL)

    @guard.tool("h")
    def h(a: int) -> int:
        return a

    with pytest.raises(ToolError, match="bad arguments for tool `h`"):
        h(1, 2)


def test_rename_must_name_a_parameter() -> None:
    with pytest.raises(ConfigurationError, match="`nope` is not a parameter"):
        FunctionCapability(lambda a: a, name="x", rename={"nope": "y"})
    with pytest.raises(ConfigurationError, match="needs a name"):
        FunctionCapability(lambda a: a, name="")


def test_describe_uses_docstring_and_policy_names() -> None:
    def send(to: str, body: str = "") -> None:
        """Send a message."""

    cap = FunctionCapability(send, name="mail", action="send", rename={"to": "recipient"})
    d = cap.describe()
    assert d == {
        "name": "mail",
        "actions": ["send"],
        "description": "Send a message.",
        "parameters": ["recipient", "body"],
    }


def test_async_tool_called_synchronously_inside_a_loop_is_refused() -> None:
    import asyncio

    guard = Guard.from_text(ALLOW_ALL)

    @guard.tool("a")
    async def a() -> int:
        return 1

    async def inside() -> None:
        with pytest.raises(ConfigurationError, match="is async"):
            guard.call("a", "call", {})

    asyncio.run(inside())


def test_sync_tool_through_acall_runs_in_a_thread() -> None:
    import asyncio
    import threading

    guard = Guard.from_text(ALLOW_ALL)
    seen: list[str] = []

    @guard.tool("s")
    def s() -> str:
        seen.append(threading.current_thread().name)
        return "ok"

    assert asyncio.run(s.ainvoke({})).value == "ok"
    assert seen and seen[0] != "MainThread"
