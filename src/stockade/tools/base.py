"""What a tool is to the guard: a :class:`Capability`.

A capability does three things, each called only by ``Guard.call``:

- ``prepare`` turns the agent's arguments into canonical ones (a path relative
  to the root, a normalised URL, a parsed statement) so the policy decides on
  what will really happen, not on a string that can be written many ways;
- ``check`` is the tool's own policy layer (built-in deny lists, read-only
  SQL, host rules): it returns a deny or ask decision, or ``None``;
- ``execute`` does the work with the tool's engine-level limits, the second,
  independent layer.

There is no public way to run a capability around the guard: tools are
registered with a guard and run through ``guard.call``.
"""

from __future__ import annotations

import asyncio
import inspect
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from stockade.errors import ConfigurationError, ToolError
from stockade.model import Decision, Label, Output, ToolCall

if TYPE_CHECKING:
    from stockade.session import Session

__all__ = ["Capability", "Context", "FunctionCapability"]


@dataclass
class Context:
    """What a capability gets besides the call: the session, and room for the
    tool to report facts for the audit record (``extra``)."""

    session: Session
    extra: dict[str, Any] = field(default_factory=dict)


class Capability(ABC):
    """A tool the guard can run. Subclasses set ``name`` and ``actions``."""

    name: str = ""
    actions: frozenset[str] = frozenset()
    #: whether this tool sends data out of the machine (the flow stage's
    #: "external sink"); a policy can override it per tool.
    external: bool = False

    def prepare(self, call: ToolCall) -> ToolCall:
        """Return the call with canonical arguments; raise :class:`ToolError` on bad input."""
        return call

    def check(self, call: ToolCall) -> Decision | None:
        """The tool's own policy layer on the prepared call: a deny or ask, or ``None``."""
        return None

    @abstractmethod
    def execute(self, call: ToolCall, ctx: Context) -> Output:
        """Do the work (engine layer). Called only by the guard."""

    async def aexecute(self, call: ToolCall, ctx: Context) -> Output:
        """Async version of :meth:`execute`; by default runs it in a thread."""
        return await asyncio.to_thread(self.execute, call, ctx)

    def describe(self) -> Mapping[str, Any]:
        """A JSON schema-ish description of the actions, for integrations."""
        return {"name": self.name, "actions": sorted(self.actions)}

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release what the capability holds (connections, descriptors)."""


class FunctionCapability(Capability):
    """A plain sync or async Python function as a tool with one action.

    Made by ``@guard.tool``; the function's parameters are the policy's
    argument names unless ``rename`` maps them (``{"to": "recipient"}``).
    """

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        name: str,
        action: str = "call",
        rename: Mapping[str, str] | None = None,
        labels: tuple[Label, ...] = (),
        external: bool = False,
    ) -> None:
        if not name:
            raise ConfigurationError("a tool needs a name")
        self._fn = fn
        self.name = name
        self.actions = frozenset({action})
        self.action = action
        self.signature = inspect.signature(fn)
        self.is_async = inspect.iscoroutinefunction(fn)
        self._rename = dict(rename or {})
        self._unrename = {v: k for k, v in self._rename.items()}
        self._labels = labels
        self.external = external
        for param in self._rename:
            if param not in self.signature.parameters:
                raise ConfigurationError(f"`{param}` is not a parameter of `{fn.__name__}`")
        params = self.signature.parameters.values()
        # Keyword-able parameters only: the common case, checked without inspect.bind.
        self._simple = all(
            p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
            for p in params
        )
        self._names = frozenset(self._rename.get(p.name, p.name) for p in params)
        self._required = frozenset(
            self._rename.get(p.name, p.name) for p in params if p.default is inspect.Parameter.empty
        )
        self._defaults = {
            self._rename.get(p.name, p.name): p.default
            for p in params
            if p.default is not inspect.Parameter.empty
        }

    def bind(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """Map a Python call's arguments to policy argument names."""
        try:
            bound = self.signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise ToolError(f"bad arguments for tool `{self.name}`: {exc}") from None
        bound.apply_defaults()
        out: dict[str, Any] = {}
        for param, value in bound.arguments.items():
            kind = self.signature.parameters[param].kind
            if kind is inspect.Parameter.VAR_KEYWORD:
                out.update(value)
            else:
                out[self._rename.get(param, param)] = value
        return out

    def prepare(self, call: ToolCall) -> ToolCall:
        """Make every argument explicit, defaults included, so the policy sees them.

        Unknown or missing arguments are a :class:`ToolError` (the guard denies).
        """
        if self._simple:
            given = call.args.keys()
            unknown = given - self._names
            if unknown:
                names = ", ".join(f"`{k}`" for k in sorted(unknown))
                raise ToolError(f"tool `{self.name}` has no argument {names}")
            missing = self._required - given
            if missing:
                names = ", ".join(f"`{k}`" for k in sorted(missing))
                raise ToolError(
                    f"bad arguments for tool `{self.name}`: missing a required argument {names}"
                )
            if self._defaults.keys() <= given:
                return call
            return call.with_args({**self._defaults, **call.args})
        args, kwargs = self._kwargs(call)
        try:
            bound = self.signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise ToolError(f"bad arguments for tool `{self.name}`: {exc}") from None
        bound.apply_defaults()
        out: dict[str, Any] = {}
        for param, value in bound.arguments.items():
            kind = self.signature.parameters[param].kind
            if kind is inspect.Parameter.VAR_KEYWORD:
                out.update(value)
            elif kind is inspect.Parameter.VAR_POSITIONAL:
                out[self._rename.get(param, param)] = list(value)
            else:
                out[self._rename.get(param, param)] = value
        return call.with_args(out)

    def _kwargs(self, call: ToolCall) -> tuple[list[Any], dict[str, Any]]:
        params = self.signature.parameters
        args: list[Any] = []
        kwargs: dict[str, Any] = {}
        extra: dict[str, Any] = {}
        for key, value in call.args.items():
            param = self._unrename.get(key, key)
            p = params.get(param)
            if p is None:
                extra[key] = value
            elif p.kind is inspect.Parameter.VAR_POSITIONAL:
                args.extend(value)
            elif p.kind is inspect.Parameter.POSITIONAL_ONLY:
                args.append(value)
            else:
                kwargs[param] = value
        if extra:
            if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
                names = ", ".join(f"`{k}`" for k in sorted(extra))
                raise ToolError(f"tool `{self.name}` has no argument {names}")
            kwargs.update(extra)
        return args, kwargs

    def execute(self, call: ToolCall, ctx: Context) -> Output:
        """Run the function with the call's arguments."""
        args, kwargs = self._kwargs(call)
        if self.is_async:
            try:
                asyncio.get_running_loop()
            except RuntimeError:
                value = asyncio.run(self._fn(*args, **kwargs))
            else:
                raise ConfigurationError(
                    f"tool `{self.name}` is async; await it (or use guard.acall) inside a loop"
                )
        else:
            value = self._fn(*args, **kwargs)
        return Output(value=value, labels=self._labels or (Label(f"tool:{self.name}"),))

    async def aexecute(self, call: ToolCall, ctx: Context) -> Output:
        """Await the function (or run a sync one in a thread)."""
        args, kwargs = self._kwargs(call)
        if self.is_async:
            value = await self._fn(*args, **kwargs)
        else:
            value = await asyncio.to_thread(self._fn, *args, **kwargs)
        return Output(value=value, labels=self._labels or (Label(f"tool:{self.name}"),))

    def describe(self) -> Mapping[str, Any]:
        """The tool's name, action, docstring and parameters."""
        params = [
            self._rename.get(p, p)
            for p, spec in self.signature.parameters.items()
            if spec.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
        ]
        return {
            "name": self.name,
            "actions": [self.action],
            "description": inspect.getdoc(self._fn) or "",
            "parameters": params,
        }


AsyncFn = Callable[..., Awaitable[Any]]
