"""OpenAI-style tool calls: validate, decide, run, answer with tool messages.

The chat-completions format (an assistant message with ``tool_calls``) and
the responses format (``function_call`` output items) are both understood;
many local model servers (vLLM, llama.cpp, Ollama's OpenAI endpoint) speak
the first. No OpenAI package is needed: messages are plain dicts, and SDK
objects are read through their ``model_dump()``.

>>> from stockade import Guard
>>> guard = Guard.from_text('''
... version: 1
... rules:
...   - {id: add, tool: add, effect: allow}
... ''')
>>> @guard.tool()
... def add(a: int, b: int) -> int:
...     return a + b
>>> registry = ToolRegistry.from_guard(guard)
>>> message = {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function",
...            "function": {"name": "add", "arguments": '{"a": 2, "b": 3}'}}]}
>>> handle_tool_calls(guard, message, registry)
[{'role': 'tool', 'tool_call_id': 'c1', 'content': '5'}]

Every call goes through :meth:`Guard.call`. A refused call is answered with a
tool message the model can read: that it was refused and a short why, never
the policy's rule ids or rule texts.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from stockade.errors import (
    ApprovalRequired,
    ConfigurationError,
    Denied,
    IntegrationError,
    RateLimited,
    ToolError,
)
from stockade.integrations.schema import SchemaCheck, compile_schema, schema_for, tool_description

if TYPE_CHECKING:
    from stockade.guard import Guard
    from stockade.model import Result
    from stockade.session import Session

__all__ = [
    "ToolRegistry",
    "ToolSpec",
    "ahandle_tool_calls",
    "failure_text",
    "feed_user_messages",
    "handle_tool_calls",
    "refusal_text",
]

_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
#: the largest ``arguments`` string accepted from a model (1 MiB)
MAX_ARGUMENTS = 1 << 20


@dataclass(frozen=True)
class ToolSpec:
    """One function the model may call, and the guarded tool and action behind it."""

    name: str
    tool: str
    action: str
    parameters: Mapping[str, Any]
    description: str = ""
    check: SchemaCheck = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "check", compile_schema(self.parameters))

    def as_chat_tool(self) -> dict[str, Any]:
        """The entry for the chat-completions ``tools`` parameter."""
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": dict(self.parameters),
            },
        }

    def as_responses_tool(self) -> dict[str, Any]:
        """The entry for the responses API ``tools`` parameter."""
        return {
            "type": "function",
            "name": self.name,
            "description": self.description,
            "parameters": dict(self.parameters),
        }


class ToolRegistry:
    """The functions offered to a model, by name, each bound to a guarded tool.

    Build it once (schemas are compiled here) and pass it to every
    :func:`handle_tool_calls`:

    >>> from stockade import Guard
    >>> guard = Guard.from_text("version: 1")
    >>> registry = ToolRegistry()
    >>> spec = registry.add("read_file", tool="fs", action="read",
    ...              parameters={"type": "object", "properties": {"path": {"type": "string"}},
    ...                          "required": ["path"], "additionalProperties": False})
    """

    def __init__(self, specs: Iterable[ToolSpec] = ()) -> None:
        self._specs: dict[str, ToolSpec] = {}
        for spec in specs:
            self._put(spec)

    def _put(self, spec: ToolSpec) -> None:
        if not _NAME.match(spec.name):
            raise ConfigurationError(
                f"invalid function name `{spec.name}`; expected 1-64 letters, digits, _ or -"
            )
        if spec.name in self._specs:
            raise ConfigurationError(f"a function named `{spec.name}` is already registered")
        self._specs[spec.name] = spec

    def add(
        self,
        name: str,
        *,
        tool: str,
        action: str = "call",
        parameters: Mapping[str, Any] | None = None,
        description: str = "",
    ) -> ToolSpec:
        """Offer ``tool.action`` to the model as function ``name``."""
        params = dict(parameters or {"type": "object"})
        spec = ToolSpec(name, tool, action, params, description)
        self._put(spec)
        return spec

    @classmethod
    def from_guard(cls, guard: Guard, names: Iterable[str] | None = None) -> ToolRegistry:
        """Every action of the guard's tools (or of the ``names`` given) as a function.

        A single-action tool keeps its name; a tool with several actions gives
        one function per action, ``<tool>_<action>``.
        """
        registry = cls()
        wanted = set(names) if names is not None else None
        for tool_name, cap in sorted(guard.tools.items()):
            if wanted is not None and tool_name not in wanted:
                continue
            actions = sorted(cap.actions)
            for action in actions:
                fname = tool_name if len(actions) == 1 else f"{tool_name}_{action}"
                registry.add(
                    _safe_name(fname),
                    tool=tool_name,
                    action=action,
                    parameters=schema_for(cap, action),
                    description=tool_description(cap, action),
                )
        return registry

    def get(self, name: str) -> ToolSpec | None:
        """The function called ``name``, if offered."""
        return self._specs.get(name)

    def __iter__(self) -> Any:
        return iter(self._specs.values())

    def __len__(self) -> int:
        return len(self._specs)

    def chat_tools(self) -> list[dict[str, Any]]:
        """The ``tools`` parameter for chat completions."""
        return [s.as_chat_tool() for s in self._specs.values()]

    def responses_tools(self) -> list[dict[str, Any]]:
        """The ``tools`` parameter for the responses API."""
        return [s.as_responses_tool() for s in self._specs.values()]


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", name)[:64]


def _registry(guard: Guard, registry: ToolRegistry | Mapping[str, Any] | None) -> ToolRegistry:
    if registry is None:
        return ToolRegistry.from_guard(guard)
    if isinstance(registry, ToolRegistry):
        return registry
    if isinstance(registry, Mapping):
        out = ToolRegistry()
        for name, target in registry.items():
            tool, action = _target(target)
            cap = guard.capability(tool)
            if cap is None:
                raise ConfigurationError(f"no tool `{tool}` is registered with the guard")
            out.add(
                name,
                tool=tool,
                action=action,
                parameters=schema_for(cap, action),
                description=tool_description(cap, action),
            )
        return out
    raise ConfigurationError("registry must be a ToolRegistry or a mapping of name to tool")


def _target(target: Any) -> tuple[str, str]:
    if isinstance(target, str):
        tool, _, action = target.partition(".")
        return tool, action or "call"
    tname: Any = getattr(target, "name", None)
    taction: Any = getattr(target, "action", None)
    if isinstance(tname, str) and isinstance(taction, str):
        return tname, taction
    raise ConfigurationError("a registry entry must be `tool.action` or a guarded tool")


# -- reading the model's message ---------------------------------------------------


@dataclass(frozen=True)
class _Call:
    call_id: str
    name: str
    arguments: Any
    style: str  # "chat" or "responses"


def _plain(obj: Any) -> Any:
    dump = getattr(obj, "model_dump", None)
    if callable(dump):
        return dump()
    return obj


def _calls(message: Any) -> list[_Call]:
    msg = _plain(message)
    if isinstance(msg, Mapping) and "tool_calls" in msg:
        out = []
        for raw in msg.get("tool_calls") or ():
            tc = _plain(raw)
            if not isinstance(tc, Mapping):
                raise IntegrationError("a tool call is not an object")
            fn = _plain(tc.get("function")) or {}
            if not isinstance(fn, Mapping):
                raise IntegrationError("a tool call has no `function` object")
            out.append(
                _Call(str(tc.get("id", "")), str(fn.get("name", "")), fn.get("arguments"), "chat")
            )
        return out
    if isinstance(msg, Mapping) and "output" in msg:
        msg = msg["output"]
    items = [msg] if isinstance(msg, Mapping) else msg
    if not isinstance(items, Sequence) or isinstance(items, (str, bytes)):
        raise IntegrationError("expected an assistant message with `tool_calls` or response output")
    out = []
    for raw in items:
        item = _plain(raw)
        if isinstance(item, Mapping) and item.get("type") == "function_call":
            call_id = str(item.get("call_id") or item.get("id") or "")
            out.append(
                _Call(call_id, str(item.get("name", "")), item.get("arguments"), "responses")
            )
    return out


def _parse_arguments(raw: Any) -> dict[str, Any]:
    if raw is None or raw == "":
        return {}
    if isinstance(raw, Mapping):  # some local servers send an object, not a string
        return dict(raw)
    if not isinstance(raw, str):
        raise IntegrationError("the arguments are neither a JSON string nor an object")
    if len(raw) > MAX_ARGUMENTS:
        raise IntegrationError("the arguments are too large")
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise IntegrationError("the arguments are not valid JSON") from exc
    if not isinstance(value, dict):
        raise IntegrationError("the arguments are not a JSON object")
    return value


# -- answering --------------------------------------------------------------------


def refusal_text(exc: Denied | ApprovalRequired, tool: str = "") -> str:
    """What the model reads when a call is refused: no rule ids, no rule texts.

    >>> from stockade.model import Decision
    >>> refusal_text(Denied("x", decision=Decision.deny("mail-colleagues", "only example.com")))
    'call refused by stockade: the policy does not allow this call'
    """
    rule = exc.decision.rule
    if isinstance(exc, ApprovalRequired):
        why = "this call needs a human's approval and none is available here"
    elif isinstance(exc, RateLimited):
        why = "a rate limit or budget is spent; do not retry now"
    elif rule.startswith("error:"):
        why = "a safety check could not run, so the call was refused"
    elif rule == "no-such-tool":
        why = "no such tool"
    elif rule.endswith((":invalid", ":unknown-action")):
        why = f"invalid arguments: {exc.decision.reason}"
    elif exc.decision.reason.startswith("refused by "):
        why = "a human refused this call"
    else:
        why = "the policy does not allow this call"
    prefix = f"call to `{tool}` refused" if tool else "call refused"
    return f"{prefix} by stockade: {why}"


def failure_text(exc: Exception, name: str) -> str:
    """What the model reads when an allowed tool failed: the tool's own one-line message.

    Stockade's tool errors never hold secrets (see ``stockade.errors``); foreign
    exceptions were already reduced to their type by the guard.
    """
    text = str(exc)
    return text if text.startswith("tool `") else f"tool `{name}` failed: {text}"


def _content(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return json.dumps(value, default=str, ensure_ascii=False)


def _answer(call: _Call, content: str) -> dict[str, Any]:
    if call.style == "chat":
        return {"role": "tool", "tool_call_id": call.call_id, "content": content}
    return {"type": "function_call_output", "call_id": call.call_id, "output": content}


def _prepare(reg: ToolRegistry, call: _Call) -> tuple[ToolSpec, dict[str, Any]] | str:
    spec = reg.get(call.name)
    if spec is None:
        return f"call refused by stockade: no tool named `{call.name[:64]}` is offered"
    try:
        args = _parse_arguments(call.arguments)
    except IntegrationError as exc:
        return f"call to `{spec.name}` refused by stockade: {exc}"
    try:
        errors = spec.check.errors(args)
    except Exception:  # a checker that breaks must not let the call through
        errors = ["the arguments could not be checked"]
    if errors:
        shown = "; ".join(errors[:5])
        return (
            f"call to `{spec.name}` refused by stockade: arguments do not match the schema: {shown}"
        )
    return spec, args


def _outcome(spec: ToolSpec, run: Any) -> str:
    try:
        result: Result = run()
    except (Denied, ApprovalRequired) as exc:
        return refusal_text(exc, spec.name)
    except ToolError as exc:
        return failure_text(exc, spec.name)
    return _content(result.value)


def _message_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts
        parts = []
        for part in content:
            p = _plain(part)
            if isinstance(p, Mapping) and isinstance(p.get("text"), str):
                parts.append(p["text"])
        return "\n".join(parts)
    return ""


def feed_user_messages(
    guard: Guard, conversation: Iterable[Any], session: Session | str | None
) -> None:
    """Give the user's messages in ``conversation`` to the session as trusted input.

    Chat messages (``{"role": "user", "content": ...}``) and responses input
    items with ``role: user`` count; each text is given once per session
    object. Values the user typed then stay trusted in the flow checks even
    when they also appear in untrusted content.
    """
    from stockade.session import Session, current_session

    if isinstance(session, Session):
        s = session
    elif isinstance(session, str):
        s = guard.session(session)
    else:
        s = current_session() or guard.session("default")
    fed: set[str] = s.state.setdefault("stockade_openai_fed", set())
    for raw in conversation:
        msg = _plain(raw)
        if not isinstance(msg, Mapping) or msg.get("role") != "user":
            continue
        text = _message_text(msg.get("content"))
        key = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
        if text and key not in fed:
            fed.add(key)
            s.user_said(text)


def handle_tool_calls(
    guard: Guard,
    message: Any,
    registry: ToolRegistry | Mapping[str, Any] | None = None,
    *,
    session: Session | str | None = None,
    conversation: Iterable[Any] | None = None,
) -> list[dict[str, Any]]:
    """Run every tool call in ``message`` through the guard; return the answers.

    ``message`` is a chat-completions assistant message (dict or SDK object)
    with ``tool_calls``, or a responses ``output`` list (or a response with
    ``output``). The answers are tool messages (``{"role": "tool", ...}``) or
    ``function_call_output`` items, one per call, in order: append them to
    the conversation and call the model again. Calls run one after the other
    so each is decided knowing what the previous ones read.

    ``registry`` maps function names to guarded tools: a :class:`ToolRegistry`,
    a mapping ``{"name": "tool.action" | guarded_tool}``, or ``None`` for all
    of the guard's tools. ``conversation`` (the messages sent to the model)
    lets the user's own messages reach the session as trusted input (see
    :func:`feed_user_messages`).
    """
    if conversation is not None:
        feed_user_messages(guard, conversation, session)
    reg = _registry(guard, registry)
    answers = []
    for call in _calls(message):
        prepared = _prepare(reg, call)
        if isinstance(prepared, str):
            answers.append(_answer(call, prepared))
            continue
        spec, args = prepared
        content = _outcome(
            spec, lambda s=spec, a=args: guard.call(s.tool, s.action, a, session=session)
        )
        answers.append(_answer(call, content))
    return answers


async def ahandle_tool_calls(
    guard: Guard,
    message: Any,
    registry: ToolRegistry | Mapping[str, Any] | None = None,
    *,
    session: Session | str | None = None,
    conversation: Iterable[Any] | None = None,
) -> list[dict[str, Any]]:
    """Async :func:`handle_tool_calls` (uses :meth:`Guard.acall`)."""
    if conversation is not None:
        feed_user_messages(guard, conversation, session)
    reg = _registry(guard, registry)
    answers = []
    for call in _calls(message):
        prepared = _prepare(reg, call)
        if isinstance(prepared, str):
            answers.append(_answer(call, prepared))
            continue
        spec, args = prepared
        try:
            result = await guard.acall(spec.tool, spec.action, args, session=session)
            content = _content(result.value)
        except (Denied, ApprovalRequired) as exc:
            content = refusal_text(exc, spec.name)
        except ToolError as exc:
            content = failure_text(exc, spec.name)
        answers.append(_answer(call, content))
    return answers
