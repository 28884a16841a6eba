"""LangChain / LangGraph: an agent middleware, the guard's tools as LangChain tools, a wrapper.

>>> from langchain.agents import create_agent                    # doctest: +SKIP
>>> agent = create_agent(model, tools=[search, send_mail],
...                      middleware=[StockadeMiddleware(guard)],
...                      checkpointer=InMemorySaver())

:class:`StockadeMiddleware` wraps the agent's tool-call hook so that every
tool call goes through :meth:`Guard.call` (the tool itself still runs through
LangGraph's tool node), feeds the user's messages to the session as trusted
input, replaces each tool result by the scanned value (labels and findings in
the message's ``response_metadata["stockade"]``), answers refusals with an
error tool message the model can read (no rule ids, no rule texts), and turns
an ``ask`` decision into a LangGraph human-in-the-loop interrupt: resume with
``Command(resume={"type": "approve"})`` (or ``"reject"``, ``True``/``False``,
or LangChain's ``{"decisions": [{"type": ...}]}``).

:func:`tools` gives the guard's registered tools as LangChain tools and
:func:`guard_tool` puts any existing ``BaseTool`` behind the guard.

Needs the ``langchain`` extra (``pip install 'stockade[langchain]'``).
"""

from __future__ import annotations

import contextvars
import json
import re
import threading
import weakref
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from stockade.errors import (
    ApprovalRequired,
    ConfigurationError,
    Denied,
    IntegrationError,
    ToolError,
)
from stockade.integrations.mcp_config import DEFAULT_PATH_ARGS
from stockade.integrations.openai import failure_text, refusal_text
from stockade.integrations.schema import (
    canonical_paths,
    denied_paths,
    schema_for,
    tool_description,
)
from stockade.model import Decision, Integrity, Label, Output, ToolCall
from stockade.session import Session
from stockade.stages import Approval, ApprovalRequest
from stockade.tools.base import Capability, Context

try:
    from langchain.agents.middleware import AgentMiddleware
    from langchain_core.messages import HumanMessage, ToolMessage
    from langchain_core.tools import BaseTool, StructuredTool
    from langgraph.types import interrupt
except ImportError as exc:  # pragma: no cover - depends on the extra
    raise ImportError(
        "stockade.integrations.langchain needs the langchain extra: "
        "pip install 'stockade[langchain]'"
    ) from exc

if TYPE_CHECKING:
    from langgraph.prebuilt.tool_node import ToolCallRequest
    from langgraph.types import Command

    from stockade.guard import Guard
    from stockade.model import Result

__all__ = ["LangChainToolCapability", "StockadeMiddleware", "guard_tool", "tools"]

_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,127}$")
_APPROVER = "langgraph-interrupt"


# -- capabilities around LangChain tools ------------------------------------------


@dataclass
class _Run:
    """How the current call's tool runs (set by the middleware for one call).

    ``tool`` is the LangChain tool the agent's tool node would run: a
    capability runs the call through the node only when that tool is its own.
    """

    tool: Any = None
    sync: Callable[[dict[str, Any]], Any] | None = None
    run_async: Callable[[dict[str, Any]], Awaitable[Any]] | None = None
    message: Any = None


_RUN: contextvars.ContextVar[_Run | None] = contextvars.ContextVar("stockade_lc_run", default=None)


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list):  # content blocks
        parts = [b.get("text", "") if isinstance(b, Mapping) else str(b) for b in value]
        return "\n".join(p for p in parts if p)
    return json.dumps(value, default=str, ensure_ascii=False)


def _output(value: Any, name: str) -> Output:
    label = Label(f"langchain:{name}", Integrity.UNTRUSTED)
    if isinstance(value, ToolMessage):
        run = _RUN.get()
        if run is not None:
            run.message = value
        return Output(_text(value.content), (label,), {"tool_status": value.status})
    if type(value).__name__ == "Command":
        raise IntegrationError(f"tool `{name}` returned a Command, which stockade cannot scan")
    return Output(value if isinstance(value, str) else _text(value), (label,))


class LangChainToolCapability(Capability):
    """A LangChain ``BaseTool`` as a guard capability with the single action ``call``.

    Its results are labelled ``untrusted`` (``langchain:<name>``): a tool's
    output is content from outside the conversation.
    """

    actions = frozenset({"call"})

    def __init__(self, tool: BaseTool | None, name: str, *, external: bool = False) -> None:
        if not _NAME.match(name):
            raise ConfigurationError(f"tool name `{name[:80]}` cannot be named in a policy")
        self.tool = tool
        self.name = name
        self.external = external
        # Registered by the middleware on a tool's first call: the policy names the
        # tool by its LangChain name, so a rebuilt tool of the same name may run too.
        self.by_name = False

    def _through_node(self, run: _Run | None) -> bool:
        """Whether the middleware's tool node runs this call (else ``self.tool`` does).

        Refuses a call whose agent tool is not this capability's own: the
        guard decided for this capability, so no other tool may run under it.
        """
        if run is None:
            return False
        if self.tool is not None and run.tool is self.tool:
            return True
        if self.tool is not None and _built_route(run.tool) == (self.name, "call"):
            return False  # guard_tool's wrapper of this tool: run the tool itself, once
        if self.by_name and getattr(run.tool, "name", None) == self.name:
            return True
        shown = str(getattr(run.tool, "name", "") or "?")[:80]
        raise IntegrationError(
            f"the agent's tool `{shown}` is not the tool `{self.name}` that was decided; "
            "stockade does not run one tool under another's permission"
        )

    def prepare(self, call: ToolCall) -> ToolCall:
        """Normalise path-like arguments (``path``, ``source``...) before the policy decides."""
        return canonical_paths(call, DEFAULT_PATH_ARGS)

    def check(self, call: ToolCall) -> Decision | None:
        """Path arguments on the built-in deny list (`.env`, keys, credentials) are denied."""
        return denied_paths(call, DEFAULT_PATH_ARGS)

    def execute(self, call: ToolCall, ctx: Context) -> Output:
        """Run the tool (through the agent's tool node when the middleware drives it)."""
        args = dict(call.args)
        run = _RUN.get()
        if self._through_node(run) and run is not None and run.sync is not None:
            return _output(run.sync(args), self.name)
        if self.tool is None:
            raise IntegrationError(f"tool `{self.name}` can only run inside the agent")
        return _output(self.tool.invoke(args), self.name)

    async def aexecute(self, call: ToolCall, ctx: Context) -> Output:
        """Async :meth:`execute`."""
        args = dict(call.args)
        run = _RUN.get()
        if self._through_node(run) and run is not None and run.run_async is not None:
            return _output(await run.run_async(args), self.name)
        if self.tool is None:
            raise IntegrationError(f"tool `{self.name}` can only run inside the agent")
        return _output(await self.tool.ainvoke(args), self.name)

    def describe(self) -> Mapping[str, Any]:
        """The LangChain tool's description and argument schema."""
        schema: Any = {"type": "object"}
        if self.tool is not None:
            schema = self.tool.tool_call_schema
            if not isinstance(schema, dict):
                schema = schema.model_json_schema()
        return {
            "name": self.name,
            "actions": ["call"],
            "description": self.tool.description if self.tool is not None else "",
            "parameters": schema,
        }


def _answer_text(result: Result) -> str:
    return _text(result.value)


def _metadata(result: Result) -> dict[str, Any]:
    return {
        "stockade": {
            "labels": [label.as_dict() for label in result.labels],
            "findings": [f.as_dict() for f in result.findings],
            "audit_seq": result.audit_seq,
        }
    }


def _refused(exc: Denied | ApprovalRequired, name: str) -> str:
    return refusal_text(exc, name)


# The LangChain tools stockade built (id -> (weak reference, guard, route)). Only
# these are routed by the tool they were built for; any other tool is decided
# by its own name, whatever its ``metadata`` says.
_BUILT: dict[int, tuple[weakref.ref[Any], Any, tuple[str, str]]] = {}
_BUILT_LOCK = threading.Lock()


def _remember(built: BaseTool, guard: Guard, route: tuple[str, str]) -> None:
    key = id(built)
    with _BUILT_LOCK:
        _BUILT[key] = (weakref.ref(built), guard, route)
    weakref.finalize(built, _forget, key)


def _forget(key: int) -> None:
    with _BUILT_LOCK:
        _BUILT.pop(key, None)


def _built_route(tool: Any, guard: Guard | None = None) -> tuple[str, str] | None:
    """The (tool, action) a tool was built for by :func:`tools`/:func:`guard_tool`, else None.

    With ``guard``, only a tool built for that guard counts.
    """
    with _BUILT_LOCK:
        entry = _BUILT.get(id(tool))
    if entry is None or entry[0]() is not tool:
        return None
    if guard is not None and entry[1] is not guard:
        return None
    return entry[2]


def tools(guard: Guard, names: list[str] | None = None) -> list[BaseTool]:
    """The guard's registered tools as LangChain tools, one per action.

    A single-action tool keeps its name; others give ``<tool>_<action>``.
    Calling one runs :meth:`Guard.call`; a refusal is returned as text so the
    agent can read it.
    """
    out: list[BaseTool] = []
    for tool_name, cap in sorted(guard.tools.items()):
        if names is not None and tool_name not in names:
            continue
        actions = sorted(cap.actions)
        for action in actions:
            name = tool_name if len(actions) == 1 else f"{tool_name}_{action}"
            out.append(_guarded(guard, tool_name, action, name, cap))
    return out


def _guarded(guard: Guard, tool: str, action: str, name: str, cap: Capability) -> BaseTool:
    def run(**kwargs: Any) -> str:
        try:
            return _answer_text(guard.call(tool, action, kwargs))
        except (Denied, ApprovalRequired) as exc:
            return _refused(exc, name)
        except ToolError as exc:
            return failure_text(exc, name)

    async def arun(**kwargs: Any) -> str:
        try:
            return _answer_text(await guard.acall(tool, action, kwargs))
        except (Denied, ApprovalRequired) as exc:
            return _refused(exc, name)
        except ToolError as exc:
            return failure_text(exc, name)

    built = StructuredTool(
        name=re.sub(r"[^A-Za-z0-9_-]", "_", name)[:64],
        description=tool_description(cap, action),
        args_schema=schema_for(cap, action),
        func=run,
        coroutine=arun,
        metadata={"stockade_tool": tool, "stockade_action": action},
    )
    _remember(built, guard, (tool, action))
    return built


def guard_tool(guard: Guard, tool: BaseTool, *, name: str | None = None) -> BaseTool:
    """Put an existing LangChain tool behind the guard.

    The tool is registered with the guard as ``name`` (default: its own
    name, action ``call``); the returned tool has the same name, description
    and argument schema, and runs the original only through the guard.
    """
    cap = LangChainToolCapability(tool, name or tool.name)
    guard.register(cap)
    return _guarded(guard, cap.name, "call", tool.name, cap)


# -- approvals through LangGraph interrupts ----------------------------------------


@dataclass
class _Pending:
    """One call's exchange with the interrupt approver."""

    answer: Approval | None = None
    request: ApprovalRequest | None = None


_PENDING: contextvars.ContextVar[_Pending | None] = contextvars.ContextVar(
    "stockade_lc_pending", default=None
)


class InterruptApprover:
    """Answers ``ask`` by way of a LangGraph interrupt, driven by the middleware.

    Outside an agent run there is nobody to ask: the call is refused (and the
    refusal audited). Inside, the first answer is "pending": the middleware
    then raises the interrupt; on resume, the human's answer is returned.
    """

    def __init__(self, fallback: Any = None) -> None:
        self.fallback = fallback

    def approve(self, request: ApprovalRequest) -> Approval:
        """See the class docstring."""
        pending = _PENDING.get()
        if pending is None:
            if self.fallback is not None:
                answer: Approval = self.fallback.approve(request)
                return answer
            return Approval(False, _APPROVER, "no human to ask outside an agent run")
        if pending.answer is not None:
            return pending.answer
        pending.request = request
        return Approval(False, _APPROVER, "pending: sent to a human through a LangGraph interrupt")


def _resume_answer(value: Any) -> Approval:
    """A human's resume value as an approval; anything unclear is a refusal."""
    if isinstance(value, Mapping) and isinstance(value.get("decisions"), list):
        decisions = value["decisions"]
        value = decisions[0] if len(decisions) == 1 else None
    message = ""
    if isinstance(value, Mapping):
        message = str(value.get("message") or value.get("reason") or "")
        value = value["approved"] is True if "approved" in value else value.get("type")
    approved = value is True or (
        isinstance(value, str) and value.lower() in ("approve", "accept", "yes", "allow")
    )
    return Approval(approved, f"{_APPROVER}:human", message[:500])


# -- the middleware -----------------------------------------------------------------


class StockadeMiddleware(AgentMiddleware):
    """Every tool call of a ``create_agent`` agent through the guard.

    ``session`` fixes the session (a :class:`Session` or an id); by default
    each LangGraph thread (``configurable.thread_id``) is its own session.
    Tools the guard does not know are registered with it on first use as
    :class:`LangChainToolCapability` (action ``call``), so the policy names
    them by their LangChain name.

    When the guard has no approver of its own, an :class:`InterruptApprover`
    is installed on it so ``ask`` decisions become interrupts.
    """

    def __init__(self, guard: Guard, *, session: Session | str | None = None) -> None:
        super().__init__()
        self.guard = guard
        if guard.approver is None:
            guard.approver = InterruptApprover()
        self._fixed = session
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()

    # -- sessions and the user's words -----------------------------------------------

    def session_for(self, config: Mapping[str, Any] | None = None) -> Session:
        """The session of a run (the fixed one, or one per LangGraph thread)."""
        if isinstance(self._fixed, Session):
            return self._fixed
        sid = self._fixed
        if sid is None:
            configurable = (config or {}).get("configurable") or {}
            sid = str(configurable.get("thread_id") or "langchain-default")
        with self._lock:
            s = self._sessions.get(sid)
            if s is None:
                s = self.guard.session(sid)
                self._sessions[sid] = s
            return s

    def _feed_user(self, state: Any, config: Mapping[str, Any] | None) -> None:
        session = self.session_for(config)
        seen: set[str] = session.state.setdefault("stockade_langchain_fed", set())
        for i, msg in enumerate(state.get("messages", ()) if isinstance(state, Mapping) else ()):
            if not isinstance(msg, HumanMessage):
                continue
            key = msg.id or f"#{i}"
            if key in seen:
                continue
            seen.add(key)
            session.user_said(_text(msg.content))

    def before_model(self, state: Any, runtime: Any) -> dict[str, Any] | None:
        """Give the user's new messages to the session as trusted input."""
        self._feed_user(state, _config())
        return None

    async def abefore_model(self, state: Any, runtime: Any) -> dict[str, Any] | None:
        """Async :meth:`before_model`."""
        self._feed_user(state, _config())
        return None

    # -- tool calls ---------------------------------------------------------------------

    def _route(self, request: ToolCallRequest) -> tuple[str, str]:
        # Only a tool stockade built for this guard is decided as the tool it was
        # built for; ``metadata`` is data anyone can set, so it never routes.
        built = _built_route(request.tool, self.guard)
        if built is not None:
            return built
        name = str(request.tool_call["name"])
        own = getattr(request.tool, "name", name) if request.tool is not None else name
        if own != name:  # another tool answers this call: it would run under this name's rules
            raise ConfigurationError(
                f"the agent's tool `{str(own)[:80]}` answers a call of `{name[:80]}`; "
                "stockade decides a tool only by its own name"
            )
        with self._lock:  # parallel calls of a new tool register it once
            existing = self.guard.capability(name)
            if existing is None:
                cap = LangChainToolCapability(request.tool, name)
                cap.by_name = True
                self.guard.register(cap)
            elif not isinstance(existing, LangChainToolCapability):
                # Running the guard's tool instead of the agent's would surprise; refuse.
                raise ConfigurationError(
                    f"tool `{name}` has the name of another stockade tool; rename one of them"
                )
        return name, "call"

    def _message(self, request: ToolCallRequest, content: str, **kw: Any) -> ToolMessage:
        return ToolMessage(
            content=content,
            tool_call_id=request.tool_call["id"],
            name=request.tool_call["name"],
            **kw,
        )

    def _payload(self, pending: _Pending, tool: str, action: str) -> dict[str, Any]:
        req = pending.request
        return {
            "stockade": "approval",
            "tool": tool,
            "action": action,
            "args": dict(req.args) if req else {},
            "rule": req.decision.rule if req else "",
            "reason": req.decision.reason if req else "",
            "provenance": dict(req.provenance) if req else {},
        }

    def wrap_tool_call(
        self,
        request: ToolCallRequest,
        handler: Callable[[ToolCallRequest], ToolMessage | Command[Any]],
    ) -> ToolMessage | Command[Any]:
        """Decide the call with the guard; run it through ``handler`` only when allowed."""
        try:
            tool, action = self._route(request)
        except ConfigurationError as exc:
            return self._message(request, f"call refused by stockade: {exc}", status="error")
        session = self.session_for(_config())
        args = dict(request.tool_call.get("args") or {})

        def run_sync(a: dict[str, Any]) -> Any:
            return handler(request.override(tool_call={**request.tool_call, "args": a}))

        pending = _Pending()
        run = _Run(tool=request.tool, sync=run_sync)
        for _ in range(2):
            p_token, r_token = _PENDING.set(pending), _RUN.set(run)
            try:
                result = self.guard.call(tool, action, args, session=session)
                return self._done(request, result, run)
            except (Denied, ApprovalRequired) as exc:
                if pending.request is None or pending.answer is not None:
                    return self._message(request, _refused(exc, tool), status="error")
            except ToolError as exc:
                return self._message(request, failure_text(exc, tool), status="error")
            finally:
                _RUN.reset(r_token)
                _PENDING.reset(p_token)
            pending.answer = _resume_answer(interrupt(self._payload(pending, tool, action)))
        raise AssertionError("unreachable")  # pragma: no cover

    async def awrap_tool_call(
        self,
        request: ToolCallRequest,
        handler: Callable[[ToolCallRequest], Awaitable[ToolMessage | Command[Any]]],
    ) -> ToolMessage | Command[Any]:
        """Async :meth:`wrap_tool_call`."""
        try:
            tool, action = self._route(request)
        except ConfigurationError as exc:
            return self._message(request, f"call refused by stockade: {exc}", status="error")
        session = self.session_for(_config())
        args = dict(request.tool_call.get("args") or {})

        async def run_async(a: dict[str, Any]) -> Any:
            return await handler(request.override(tool_call={**request.tool_call, "args": a}))

        pending = _Pending()
        run = _Run(tool=request.tool, run_async=run_async)
        for _ in range(2):
            p_token, r_token = _PENDING.set(pending), _RUN.set(run)
            try:
                result = await self.guard.acall(tool, action, args, session=session)
                return self._done(request, result, run)
            except (Denied, ApprovalRequired) as exc:
                if pending.request is None or pending.answer is not None:
                    return self._message(request, _refused(exc, tool), status="error")
            except ToolError as exc:
                return self._message(request, failure_text(exc, tool), status="error")
            finally:
                _RUN.reset(r_token)
                _PENDING.reset(p_token)
            pending.answer = _resume_answer(interrupt(self._payload(pending, tool, action)))
        raise AssertionError("unreachable")  # pragma: no cover

    def _done(self, request: ToolCallRequest, result: Result, run: _Run) -> ToolMessage:
        status = "success"
        if isinstance(run.message, ToolMessage) and run.message.status == "error":
            status = "error"
        return self._message(
            request,
            _answer_text(result),
            status=status,
            response_metadata=_metadata(result),
        )


def _config() -> Mapping[str, Any] | None:
    try:
        from langgraph.config import get_config

        config: Mapping[str, Any] = get_config()
    except Exception:  # outside a graph run: no thread, the default session
        return None
    return config
