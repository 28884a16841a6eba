"""An MCP proxy: a real MCP server behind the guard, with its tools pinned.

``stockade mcp-proxy --policy FILE -- COMMAND ARGS...`` starts the server as
a child process over stdio, with a scrubbed environment (and inside the exec
sandbox when the policy's ``mcp:`` section says so), and serves the same
tools to the client over stdio or streamable HTTP:

- every upstream tool becomes a :class:`~stockade.tools.base.Capability`
  named after it (``mcp.tool_prefix`` + name, action ``call``), so the
  policy decides each ``tools/call`` like any other call; results are
  labelled ``untrusted`` and audited by the guard, and scanned when the
  policy has a ``scan:`` section;
- **pinning**: the first listing of a server records a digest of each tool's
  name, description, input schema, title, annotations and output schema, and
  the server's name and version, in the pin file. A later change (a new
  tool, a changed description, schema, title or hint, another server
  version) blocks the tool until someone re-approves it with
  ``stockade mcp pin``; the message names what changed;
- tool descriptions and titles are scanned for hidden instructions,
  invisible characters and references to other tools before the client sees
  them; a tool whose description or title has findings is blocked (but for the
  finding kinds ``mcp.accept`` names for that tool). A blocked tool is listed
  with a description that says why (never its own text) and every call to
  it is refused.

Needs the ``mcp`` extra (``pip install 'stockade[mcp]'``).
"""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
import os
import re
import sys
from collections.abc import Mapping, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from stockade.errors import (
    ApprovalRequired,
    ConfigurationError,
    Denied,
    IntegrationError,
    ToolError,
)
from stockade.integrations.mcp_config import MCPConfig
from stockade.integrations.mcp_pins import (
    PinCheck,
    PinStore,
    ToolFingerprint,
    builtin_description_scan,
    scan_tool_description,
)
from stockade.integrations.mcp_start import StderrTail, start_failure
from stockade.integrations.openai import failure_text, refusal_text
from stockade.integrations.schema import (
    SchemaCheck,
    canonical_paths,
    compile_schema,
    denied_paths,
)
from stockade.model import (
    AuditEvent,
    Decision,
    Effect,
    Finding,
    Integrity,
    Label,
    Output,
    ToolCall,
)
from stockade.tools.base import Capability, Context

if TYPE_CHECKING:
    import mcp_types
    from mcp import Client
    from mcp.server.lowlevel import Server

    from stockade.guard import Guard
    from stockade.session import Session

__all__ = [
    "MCPProxy",
    "MCPToolCapability",
    "PinCheck",
    "PinReview",
    "PinStore",
    "ToolFingerprint",
    "builtin_description_scan",
    "fingerprint",
    "listing_findings",
    "pin_server",
    "printable",
    "scan_tool_description",
    "split_accepted",
]

log = logging.getLogger("stockade.mcp")

_RULE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,127}$")


def _require_sdk() -> None:
    try:
        import mcp  # noqa: F401
    except ImportError as exc:
        raise ConfigurationError(
            "the MCP proxy needs the mcp extra: pip install 'stockade[mcp]'"
        ) from exc


# -- capabilities -------------------------------------------------------------------


class MCPToolCapability(Capability):
    """One upstream MCP tool as a guard capability with the single action ``call``.

    ``prepare`` checks the arguments against the tool's input schema (when
    stockade's checker covers it) and canonicalises the path arguments
    (``mcp.path_args``) so the policy decides on the path the server will
    open; ``check`` refuses a tool that pinning or the description scan
    blocked; ``aexecute`` forwards the call to the server.
    """

    actions = frozenset({"call"})

    def __init__(self, proxy: MCPProxy, upstream: str, name: str, *, external: bool) -> None:
        self.proxy = proxy
        self.upstream = upstream
        self.name = name
        self.external = external
        self.blocked: Decision | None = None
        self.clash = False
        self.description = ""
        self.input_schema: dict[str, Any] = {"type": "object"}
        self.schema_check: SchemaCheck | None = None

    def set_schema(self, schema: Mapping[str, Any] | None) -> None:
        """Take the tool's input schema as listed; compile it when the checker can."""
        self.input_schema = dict(schema or {"type": "object"})
        try:
            self.schema_check = compile_schema(self.input_schema)
        except ConfigurationError as exc:
            # The server checks its own input; the policy still decides. Say so once.
            self.schema_check = None
            log.info("arguments of `%s` are not schema-checked: %s", self.name, exc)

    def prepare(self, call: ToolCall) -> ToolCall:
        """Check the schema; canonicalise path arguments (NUL and climbing `..` refused)."""
        if self.schema_check is not None:
            errors = self.schema_check.errors(dict(call.args))
            if errors:
                raise ToolError("arguments do not match the schema: " + "; ".join(errors[:5]))
        return canonical_paths(call, self.proxy.config.path_args)

    def check(self, call: ToolCall) -> Decision | None:
        """Deny a blocked tool (changed since pinned, poisoned description, gone), and
        path arguments on the built-in deny list (`.env`, keys, credentials)."""
        return self.blocked or denied_paths(call, self.proxy.config.path_args)

    def execute(self, call: ToolCall, ctx: Context) -> Output:
        """MCP tools run asynchronously: use ``guard.acall``."""
        raise IntegrationError(f"MCP tool `{self.name}` is async; call it with guard.acall")

    async def aexecute(self, call: ToolCall, ctx: Context) -> Output:
        """Forward the call to the server; the text content is the value."""
        return await self.proxy._forward(self, dict(call.args))

    def describe(self) -> Mapping[str, Any]:
        """The upstream tool's description and input schema."""
        return {
            "name": self.name,
            "actions": ["call"],
            "description": self.description,
            "parameters": self.input_schema,
        }


# -- the proxy ----------------------------------------------------------------------


def _scrubbed_env(config: MCPConfig) -> dict[str, str]:
    return {k: os.environ[k] for k in config.env if k in os.environ}


class MCPProxy:
    """An upstream MCP server (a child process) behind a guard.

    Use it as an async context manager; :meth:`list_tools` and
    :meth:`call_tool` are what the served MCP server answers with, and
    :meth:`serve_stdio` / :meth:`http_app` serve them to a client.

    >>> async def main(guard):                                     # doctest: +SKIP
    ...     async with MCPProxy(guard, ["node", "server.js", "/data"]) as proxy:
    ...         await proxy.serve_stdio()
    """

    def __init__(
        self,
        guard: Guard,
        command: Sequence[str],
        *,
        config: MCPConfig | None = None,
        session: Session | None = None,
        cwd: str | Path | None = None,
        errlog: TextIO | None = None,
    ) -> None:
        _require_sdk()
        if not command:
            raise ConfigurationError("the MCP proxy needs the server's command")
        self.guard = guard
        self.config = config or guard.policy.section("mcp") or MCPConfig.default()
        self.command = list(command)
        self._sandbox: Any = None
        self.argv = list(command)
        if self.config.sandbox:
            from stockade.integrations.mcp_sandbox import sandbox_command, sandbox_for

            self.argv = sandbox_command(self.command, self.config)
            self._sandbox = sandbox_for(self.config, _scrubbed_env(self.config))
        self.key = self.config.name or " ".join(self.command)
        self.pins = PinStore(self.config.pin_file)
        self.session = session or guard.session(principal="mcp-proxy")
        self.cwd = cwd
        self.errlog = errlog or sys.stderr
        self.identity: dict[str, str] = {}
        self._caps: dict[str, MCPToolCapability] = {}
        self._listed: list[mcp_types.Tool] = []
        self._accept_checked = False
        self._client: Client | None = None
        self._stack: AsyncExitStack | None = None

    # -- lifecycle --------------------------------------------------------------

    async def __aenter__(self) -> MCPProxy:
        await self.start()
        return self

    async def start(self, *, list_tools: bool = True) -> None:
        """Start the server and connect; list (and pin on first use) its tools."""
        import anyio
        from mcp import Client, StdioServerParameters

        server: Any
        tail: StderrTail | None = None
        if self._sandbox is not None:
            from stockade.integrations.mcp_sandbox import sandboxed_stdio

            server = sandboxed_stdio(self._sandbox, self.argv)
        else:
            from mcp.client.stdio import stdio_client

            params = StdioServerParameters(
                command=self.argv[0],
                args=self.argv[1:],
                env=_scrubbed_env(self.config),
                cwd=self.cwd,
            )
            tail = StderrTail()
            server = stdio_client(params, errlog=tail.file)
        stack = AsyncExitStack()
        try:
            client = await stack.enter_async_context(Client(server, cache=None))
        except Exception as exc:
            await stack.aclose()
            lines: list[str] = []
            if tail is not None:
                tail.spawned()
                lines = await anyio.to_thread.run_sync(tail.lines, 2.0)
            raise IntegrationError(
                f"could not start the MCP server `{self.argv[0]}`: {start_failure(exc, lines)}"
            ) from exc
        finally:
            if tail is not None:
                tail.spawned()
        self._stack, self._client = stack, client
        if self.guard.policy.section("scan") is None:
            self._say(
                "the policy has no `scan:` section: tool results reach the client unscanned "
                "(add `scan: {}` for the default scanners)"
            )
        info = client.server_info
        self.identity = {
            "name": info.name if info else "",
            "version": info.version if info else "",
        }
        if list_tools:
            await self.refresh()

    async def __aexit__(self, *exc: object) -> None:
        stack, self._stack, self._client = self._stack, None, None
        if stack is not None:
            await stack.aclose()

    @property
    def client(self) -> Client:
        """The SDK client connected to the upstream server."""
        if self._client is None:
            raise IntegrationError("the MCP proxy is not started; use `async with`")
        return self._client

    # -- tools ------------------------------------------------------------------

    async def _upstream_tools(self) -> list[mcp_types.Tool]:
        tools: list[mcp_types.Tool] = []
        cursor: str | None = None
        for _ in range(100):
            page = await self.client.list_tools(cursor=cursor, cache_mode="refresh")
            tools.extend(page.tools)
            cursor = page.next_cursor
            if cursor is None:
                break
        return tools

    async def refresh(self) -> list[mcp_types.Tool]:
        """List the server's tools, check pins and descriptions; return what the client sees."""
        import mcp_types as types

        upstream = await self._upstream_tools()
        prints = [fingerprint(t) for t in upstream]
        check = self.pins.compare(self.key, self.identity, prints)
        if check.first_use:
            self.pins.record(self.key, self.identity, prints)
            text = f"pinned {len(prints)} tools of `{self.key}` in {self.pins.path} (first use)"
            self._audit("mcp", "pin", Decision(Effect.ALLOW, "mcp:first-use", text))
            self._say(text)
        names = [t.name for t in upstream]
        if not self._accept_checked:
            self._accept_checked = True
            for name in sorted(set(self.config.accept) - set(names)):
                self._say(f"mcp.accept names `{name}`, which the server does not offer")
        listed: list[types.Tool] = []
        seen: set[str] = set()
        for tool in upstream:
            cap = self._capability(tool.name)
            seen.add(cap.name)
            cap.description = tool.description or ""
            cap.set_schema(tool.input_schema)
            cap.blocked = self._verdict(tool, names, check)
            if cap.blocked is None:
                listed.append(
                    types.Tool(
                        name=cap.name,
                        title=tool.title,
                        description=tool.description,
                        input_schema=tool.input_schema,
                        annotations=tool.annotations,
                    )
                )
            else:
                self._audit(cap.name, "list", cap.blocked)
                self._say(cap.blocked.reason)
                listed.append(
                    types.Tool(
                        name=cap.name,
                        description=f"[blocked by stockade] {cap.blocked.reason}",
                        input_schema={"type": "object", "properties": {}},
                    )
                )
        for name, cap in self._caps.items():
            if name not in seen:
                cap.blocked = Decision.deny("mcp:gone", f"tool `{name}` is no longer offered")
        self._listed = listed
        return list(listed)

    def _capability(self, upstream: str) -> MCPToolCapability:
        name = self.config.tool_prefix + upstream
        cap = self._caps.get(name)
        if cap is None:
            cap = MCPToolCapability(self, upstream, name, external=upstream in self.config.external)
            if _RULE_NAME.match(name):
                try:
                    self.guard.register(cap)
                except ConfigurationError:
                    cap.clash = True  # another tool has this name: never forward to it
            self._caps[name] = cap
        return cap

    def _verdict(self, tool: mcp_types.Tool, names: list[str], check: PinCheck) -> Decision | None:
        name = self.config.tool_prefix + tool.name
        if not _RULE_NAME.match(name):
            return Decision.deny("mcp:name", f"tool name `{name[:80]}` cannot be named in a policy")
        if self._caps[name].clash:
            return Decision.deny(
                "mcp:name",
                f"tool `{name}` has the name of another stockade tool; set mcp.tool_prefix",
            )
        if check.identity:
            return Decision.deny(
                "mcp:pin",
                f"tool `{name}` is blocked: the server's identity changed since it was pinned "
                f"({check.identity}); run `stockade mcp pin` to approve",
            )
        if tool.name in check.changed:
            return Decision.deny(
                "mcp:pin",
                f"tool `{name}` is blocked: {check.changed[tool.name]}; "
                "run `stockade mcp pin` to approve",
            )
        try:
            found = listing_findings(tool, names)
        except Exception as exc:  # a scanner that breaks must not pass the tool
            log.warning("description scan failed for %s: %s", name, type(exc).__name__)
            return Decision.deny(
                "mcp:description", f"tool `{name}` is blocked: its description could not be scanned"
            )
        found, waived = split_accepted(found, self.config.accept.get(tool.name, frozenset()))
        if found:
            return Decision.deny("mcp:description", f"tool `{name}` is blocked: {_findings(found)}")
        if waived:
            text = f"tool `{name}` passes with accepted findings: {_findings(waived)} (mcp.accept)"
            self._audit(name, "list", Decision(Effect.ALLOW, "mcp:accept", text))
            self._say(text)
        return None

    def _audit(self, tool: str, action: str, decision: Decision) -> None:
        """Record a listing-time event (a block, a first-use pin) in the guard's audit log."""
        import time

        event = AuditEvent(
            kind="decision",
            time=time.time(),
            session=self.session.id,
            principal=self.session.principal,
            call_id="",
            tool=tool,
            action=action,
            args={},
            decision=decision,
            mode=self.guard.policy.mode,
            extra={"server": self.key, "identity": dict(self.identity)},
        )
        try:
            self.guard.audit.append(event)
        except Exception:
            log.error("audit store could not record the %s event of `%s`", action, tool)

    def _say(self, text: str) -> None:
        log.info("%s", text)
        with contextlib.suppress(Exception):
            print(f"stockade mcp-proxy: {text}", file=self.errlog, flush=True)

    async def list_tools(self) -> list[mcp_types.Tool]:
        """What the client sees for ``tools/list`` (re-checked on every listing)."""
        return await self.refresh()

    async def call_tool(
        self, name: str, arguments: Mapping[str, Any] | None
    ) -> mcp_types.CallToolResult:
        """Run one ``tools/call`` through the guard; refusals are error results."""
        import mcp_types as types

        cap = self._caps.get(name)
        if cap is None or not _RULE_NAME.match(name):
            return _error(f"call refused by stockade: no tool named `{name[:80]}`")
        if cap.clash:  # the guard's tool of that name is another one: never run it from here
            reason = cap.blocked.reason if cap.blocked else "name clash"
            return _error(f"call refused by stockade: {reason}")
        try:
            result = await self.guard.acall(
                cap.name, "call", dict(arguments or {}), session=self.session
            )
        except (Denied, ApprovalRequired) as exc:
            if cap.blocked is not None:
                return _error(f"call refused by stockade: {cap.blocked.reason}")
            return _error(refusal_text(exc, name))
        except ToolError as exc:
            return _error(failure_text(exc, name))
        text = (
            result.value if isinstance(result.value, str) else json.dumps(result.value, default=str)
        )
        return types.CallToolResult(
            content=[types.TextContent(type="text", text=text)],
            is_error=bool(result.meta.get("mcp_is_error")),
        )

    async def _forward(self, cap: MCPToolCapability, args: dict[str, Any]) -> Output:
        import mcp_types as types

        try:
            res = await self.client.call_tool(cap.upstream, args)
        except Exception as exc:
            raise IntegrationError(
                f"the MCP server failed on `{cap.name}`: {type(exc).__name__}"
            ) from exc
        parts = []
        for block in res.content:
            if isinstance(block, types.TextContent):
                parts.append(block.text)
            else:
                parts.append(f"[{block.type} content withheld by stockade]")
        text = "\n".join(parts)
        if len(text.encode("utf-8", "surrogatepass")) > self.config.max_result:
            raise IntegrationError(f"the result of `{cap.name}` is larger than mcp.max_result")
        label = Label(
            f"mcp:{self.identity.get('name') or self.key}/{cap.upstream}", Integrity.UNTRUSTED
        )
        return Output(value=text, labels=(label,), meta={"mcp_is_error": bool(res.is_error)})

    # -- serving ----------------------------------------------------------------

    def server(self) -> Server[Any]:
        """An MCP server (SDK low-level ``Server``) that answers through this proxy."""
        import mcp_types as types
        from mcp.server.lowlevel import Server

        async def on_list_tools(ctx: Any, params: Any) -> types.ListToolsResult:
            return types.ListToolsResult(tools=await self.list_tools())

        async def on_call_tool(
            ctx: Any, params: types.CallToolRequestParams
        ) -> types.CallToolResult:
            return await self.call_tool(params.name, params.arguments)

        return Server(
            "stockade-mcp-proxy",
            version=_version(),
            instructions=None,
            on_list_tools=on_list_tools,
            on_call_tool=on_call_tool,
        )

    async def serve_stdio(self) -> None:
        """Serve the client on this process's stdin/stdout until it closes."""
        from mcp.server.stdio import stdio_server

        server = self.server()
        async with stdio_server() as (read, write):
            await server.run(read, write, server.create_initialization_options())

    def http_app(self, host: str | None = None) -> Any:
        """A streamable HTTP app (ASGI) serving the proxy at ``mcp.http_path``.

        With ``mcp.http_token_env`` set, every request must carry
        ``Authorization: Bearer <token>`` (the variable's value); a
        non-loopback address without a token is refused.
        """
        host = host or self.config.http_host
        token = ""
        if self.config.http_token_env:
            token = os.environ.get(self.config.http_token_env, "")
            if not token:
                raise ConfigurationError(
                    f"the environment variable `{self.config.http_token_env}` "
                    "(mcp.http_token_env) is empty or not set"
                )
        elif not _is_loopback(host):
            raise ConfigurationError(
                f"refusing to serve MCP on `{host}` without a token: set mcp.http_token_env"
            )
        app = self.server().streamable_http_app(
            streamable_http_path=self.config.http_path, host=host
        )
        return _BearerAuth(app, token) if token else app

    async def serve_http(self, host: str | None = None, port: int | None = None) -> None:
        """Serve streamable HTTP on ``host:port`` (default: ``mcp.http_listen``)."""
        import uvicorn

        host = host or self.config.http_host
        cfg = uvicorn.Config(
            self.http_app(host),
            host=host,
            port=self.config.http_port if port is None else port,
            log_level="warning",
            lifespan="on",
        )
        await uvicorn.Server(cfg).serve()


def _is_loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class _BearerAuth:
    """ASGI wrapper: HTTP requests need ``Authorization: Bearer <token>``."""

    def __init__(self, app: Any, token: str) -> None:
        self.app = app
        self._expected = f"Bearer {token}".encode()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope.get("type") == "http":
            got = b""
            for name, value in scope.get("headers") or ():
                if name.lower() == b"authorization":
                    got = value
            if not hmac.compare_digest(got, self._expected):
                body = b'{"error": "unauthorized"}'
                await send(
                    {
                        "type": "http.response.start",
                        "status": 401,
                        "headers": [
                            (b"content-type", b"application/json"),
                            (b"www-authenticate", b"Bearer"),
                            (b"content-length", str(len(body)).encode()),
                        ],
                    }
                )
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)


def fingerprint(tool: mcp_types.Tool) -> ToolFingerprint:
    """What is pinned of an upstream tool: name, description, input schema, title,
    annotations and output schema.
    """
    annotations = None
    if tool.annotations is not None:
        annotations = tool.annotations.model_dump(mode="json", by_alias=True, exclude_none=True)
    return ToolFingerprint.of(
        tool.name,
        tool.description,
        tool.input_schema,
        title=tool.title,
        annotations=annotations,
        output_schema=tool.output_schema,
    )


def listing_findings(tool: mcp_types.Tool, names: Sequence[str]) -> dict[str, list[Finding]]:
    """Scan findings in the texts a client may show of a tool, by part.

    The description (with the input schema) and the titles (the tool's and its
    annotations'): the keys are ``description`` and ``title``, only parts with
    findings are present.
    """
    out: dict[str, list[Finding]] = {}
    found = scan_tool_description(tool.name, tool.description or "", names, tool.input_schema)
    if found:
        out["description"] = found
    titles = [tool.title or ""]
    if tool.annotations is not None:
        titles.append(tool.annotations.title or "")
    title = "\n".join(t for t in titles if t)
    if title:
        found = scan_tool_description(tool.name, title, names)
        if found:
            out["title"] = found
    return out


def split_accepted(
    found: Mapping[str, list[Finding]], kinds: frozenset[str]
) -> tuple[dict[str, list[Finding]], dict[str, list[Finding]]]:
    """``found`` split into what still blocks and what ``mcp.accept`` accepted (``kinds``)."""
    blocking: dict[str, list[Finding]] = {}
    accepted: dict[str, list[Finding]] = {}
    for part, items in found.items():
        if rest := [f for f in items if f.kind not in kinds]:
            blocking[part] = rest
        if taken := [f for f in items if f.kind in kinds]:
            accepted[part] = taken
    return blocking, accepted


def _findings(found: Mapping[str, list[Finding]]) -> str:
    """``its description has ...; its title has ...`` for a block message."""
    return "; ".join(
        f"its {part} has {', '.join(sorted({f.kind for f in items}))}"
        for part, items in found.items()
    )


def _error(text: str) -> mcp_types.CallToolResult:
    import mcp_types as types

    return types.CallToolResult(content=[types.TextContent(type="text", text=text)], is_error=True)


def _version() -> str:
    from stockade import __version__

    return __version__


@dataclass(frozen=True)
class PinReview:
    """What ``stockade mcp pin`` shows: the comparison, the listing, the findings.

    ``descriptions``, ``titles`` and ``annotations`` hold each tool's current
    description, title and annotations, for a human to read before approving
    (print texts with :func:`printable`); ``blocked`` says, per tool with
    findings, which of its texts has what; ``accepted`` the same for the
    findings ``mcp.accept`` lets through.
    """

    check: PinCheck
    prints: list[ToolFingerprint]
    findings: dict[str, list[Finding]]
    descriptions: dict[str, str]
    titles: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, dict[str, Any]] = field(default_factory=dict)
    blocked: dict[str, str] = field(default_factory=dict)
    accepted: dict[str, str] = field(default_factory=dict)


def printable(text: str) -> str:
    """``text`` with invisible and control characters shown as ``\\u....`` escapes."""
    import unicodedata

    out = []
    for ch in text:
        if unicodedata.category(ch) in ("Cf", "Cc", "Co", "Cn") and ch not in "\n":
            out.append(f"\\u{ord(ch):04x}" if ord(ch) <= 0xFFFF else f"\\U{ord(ch):08x}")
        else:
            out.append(ch)
    return "".join(out)


async def pin_server(
    guard: Guard,
    command: Sequence[str],
    *,
    config: MCPConfig | None = None,
    write: bool = True,
) -> PinReview:
    """Connect to the server, compare its listing with the pins, and (``write``) pin it anew.

    Tools whose descriptions have findings stay blocked even when pinned, but for
    the finding kinds ``mcp.accept`` names for them.
    """
    proxy = MCPProxy(guard, command, config=config, errlog=open(os.devnull, "w"))  # noqa: SIM115
    try:
        await proxy.start(list_tools=False)
        try:
            upstream = await proxy._upstream_tools()
            prints = [fingerprint(t) for t in upstream]
            names = [t.name for t in upstream]
            check = proxy.pins.compare(proxy.key, proxy.identity, prints)
            by_part: dict[str, dict[str, list[Finding]]] = {}
            waived: dict[str, dict[str, list[Finding]]] = {}
            for t in upstream:
                found, taken = split_accepted(
                    listing_findings(t, names), proxy.config.accept.get(t.name, frozenset())
                )
                if found:
                    by_part[t.name] = found
                if taken:
                    waived[t.name] = taken
            findings = {
                name: [f for fs in parts.values() for f in fs] for name, parts in by_part.items()
            }
            if write:
                proxy.pins.record(proxy.key, proxy.identity, prints)
            return PinReview(
                check,
                prints,
                findings,
                {t.name: t.description or "" for t in upstream},
                titles={t.name: t.title for t in upstream if t.title},
                annotations={
                    t.name: t.annotations.model_dump(mode="json", by_alias=True, exclude_none=True)
                    for t in upstream
                    if t.annotations is not None
                },
                blocked={name: _findings(parts) for name, parts in by_part.items()},
                accepted={name: _findings(parts) for name, parts in waived.items()},
            )
        finally:
            await proxy.__aexit__(None, None, None)
    finally:
        proxy.errlog.close()
