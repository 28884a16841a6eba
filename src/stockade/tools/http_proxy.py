"""``stockade proxy``: a forward HTTP proxy that asks the guard about every request.

Point any HTTP client (or a sandboxed command, ``exec`` with ``network:
proxy``) at it with ``HTTP_PROXY``/``HTTPS_PROXY``. Every request is decided
by the same pipeline as the ``http`` tool (``guard.decide``: argument
scanners, the ``http:`` rules, the tool's own check, flow rules, limits) and
recorded in the audit log; allowed requests leave through the same SSRF-safe
engine (resolve once, check the address, connect to it).

- Plain HTTP (absolute-form request line): decided as ``http.request`` with
  url, method, headers and body, sent through :class:`SafeTransport`, the
  response relayed with the size cap and deadline of the ``http:`` section.
- ``CONNECT host:port`` (HTTPS): decided as ``http.connect`` with host and
  port only (no TLS interception, so method and path cannot be seen: only
  entries with ``tunnel: true`` allow it), the address checked the same
  way, then bytes are relayed with the section's request/response size caps
  as upload/download caps and its timeout as the idle timeout.

>>> from stockade import Guard
>>> guard = Guard.from_text("version: 1\\nhttp: {allow: [{host: docs.example.com}]}")
>>> handle = start_proxy(guard, "127.0.0.1", 0)
>>> handle.url.startswith("http://127.0.0.1:")
True
>>> handle.close()
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import logging
import signal
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from stockade.errors import ApprovalRequired, ConfigurationError, Denied, HTTPError, StockadeError
from stockade.guard import Guard
from stockade.model import AuditEvent, Decision, Effect, new_call_id
from stockade.policy import Policy
from stockade.session import Session
from stockade.tools.http import HTTPTool
from stockade.tools.http_url import canonical_connect, canonical_request

__all__ = ["ProxyHandle", "register", "start_proxy"]

log = logging.getLogger("stockade.proxy")

_HEAD_LIMIT = 64 * 1024
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authorization",
        "proxy-authenticate",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
        "accept-encoding",
        "expect",
    }
)
_REASONS = {
    400: "Bad Request",
    403: "Forbidden",
    405: "Method Not Allowed",
    411: "Length Required",
    413: "Content Too Large",
    431: "Request Header Fields Too Large",
    502: "Bad Gateway",
    504: "Gateway Timeout",
}


@dataclass
class ProxyHandle:
    """A running proxy: ``address`` is ``(host, port)``; :meth:`close` stops it."""

    address: tuple[str, int]
    _loop: asyncio.AbstractEventLoop = field(repr=False)
    _thread: threading.Thread = field(repr=False)
    _stop: asyncio.Event = field(repr=False)
    _owned: Guard | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        """The proxy URL for ``HTTP_PROXY`` / ``HTTPS_PROXY``."""
        host, port = self.address
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    def close(self) -> None:
        """Stop accepting, drop open connections, and wait for the thread."""
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(timeout=10)
        if self._owned is not None:
            self._owned.close()
            self._owned = None

    def __enter__(self) -> ProxyHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def start_proxy(
    guard_or_policy: Guard | Policy,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    session: Session | str = "proxy",
) -> ProxyHandle:
    """Start the proxy in a background thread on ``host:port`` (0 picks a free port).

    The guard's ``http`` tool supplies the address rules and the resolver;
    decisions are made and audited in ``session`` (a :class:`Session` of
    that guard keeps its principal: the exec tool passes the calling one,
    so requests from its sandbox meet that session's flow rules, limits and
    budgets). You MUST NOT listen on an
    address other processes than the agent's can reach: the proxy has no
    authentication of its own.
    """
    owned = None if isinstance(guard_or_policy, Guard) else Guard(guard_or_policy)
    guard = owned or guard_or_policy
    assert isinstance(guard, Guard)
    tool = guard.capability("http")
    if not isinstance(tool, HTTPTool):
        if owned is not None:
            owned.close()
        raise ConfigurationError("the proxy needs a policy with an `http` section")
    server = _ProxyServer(guard, tool, session)
    ready = threading.Event()
    box: dict[str, Any] = {}

    def run() -> None:
        """The proxy thread: its own event loop, closed when the server stops."""
        loop = asyncio.new_event_loop()
        box["loop"] = loop
        try:
            loop.run_until_complete(server.serve(host, port, box, ready))
            loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            loop.close()

    thread = threading.Thread(target=run, name="stockade-proxy", daemon=True)
    thread.start()
    ready.wait(timeout=10)
    if "address" not in box:
        thread.join(timeout=5)
        if owned is not None:
            owned.close()
        reason = box.get("error", "it did not start")
        raise ConfigurationError(f"the proxy cannot listen on `{host}:{port}`: {reason}")
    return ProxyHandle(box["address"], box["loop"], thread, box["stop"], owned)


class _Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class _ProxyServer:
    def __init__(self, guard: Guard, tool: HTTPTool, session: Session | str) -> None:
        self.guard = guard
        self.tool = tool
        self.session = session
        self.session_id = session.id if isinstance(session, Session) else session
        self.principal = session.principal if isinstance(session, Session) else ""
        self.config = tool.config
        self._tasks: set[asyncio.Task[None]] = set()

    async def serve(
        self, host: str, port: int, box: dict[str, Any], ready: threading.Event
    ) -> None:
        """Listen until ``stop`` is set; report the address (or the error) through ``box``."""
        stop = asyncio.Event()
        box["stop"] = stop
        try:
            server = await asyncio.start_server(self._client, host, port, limit=_HEAD_LIMIT)
        except OSError as exc:
            box["error"] = exc.strerror or type(exc).__name__
            ready.set()
            return
        sock = server.sockets[0].getsockname()
        box["address"] = (str(sock[0]), int(sock[1]))
        ready.set()
        async with server:
            await stop.wait()
            server.close()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            await self._handle(reader, writer)
        except _Refused as exc:
            await _reply(writer, exc.status, exc.message)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.TimeoutError):
            pass
        except asyncio.CancelledError:
            pass
        except Exception as exc:  # fail closed: any surprise ends the connection
            log.warning("proxy connection failed: %s", type(exc).__name__)
        finally:
            with contextlib.suppress(Exception):
                writer.close()
            if task is not None:
                self._tasks.discard(task)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), self.config.timeout)
        except asyncio.LimitOverrunError as exc:
            raise _Refused(431, "request head too large") from exc
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            raise _Refused(400, "bad request line")
        method, target, _version = parts
        headers: list[tuple[str, str]] = []
        for line in lines[1:]:
            if not line:
                continue
            name, sep, value = line.partition(":")
            if not sep or not name or name != name.strip():
                raise _Refused(400, "bad header line")
            headers.append((name.lower(), value.strip()))
        if method == "CONNECT":
            await self._connect(target, reader, writer)
        else:
            await self._forward(method, target, headers, reader, writer)

    # -- CONNECT ------------------------------------------------------------------------

    async def _connect(
        self, target: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        host, sep, port_text = target.rpartition(":")
        if not sep or not port_text.isdigit():
            raise _Refused(400, "CONNECT needs host:port")
        args = {"host": host, "port": int(port_text)}
        call_id, decision = await self._decide("connect", args)
        canon = canonical_connect(args)
        try:
            targets = await asyncio.to_thread(
                self.tool.addresses.resolve_checked,
                canon["host"],
                canon["port"],
                self.tool.resolver,
            )
        except HTTPError as exc:
            raise _Refused(403, f"stockade: {exc}") from None
        upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        for ip in targets:
            try:
                upstream = await asyncio.wait_for(
                    asyncio.open_connection(ip, canon["port"]), self.config.connect_timeout
                )
                break
            except (OSError, asyncio.TimeoutError):
                continue
        if upstream is None:
            raise _Refused(502, "stockade: cannot connect to the server")
        up_reader, up_writer = upstream
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        await writer.drain()
        up = down = 0
        try:
            up, down = await asyncio.gather(
                self._pipe(reader, up_writer, self.config.max_request_bytes),
                self._pipe(up_reader, writer, self.config.max_response_bytes),
            )
        finally:
            with contextlib.suppress(Exception):
                up_writer.close()
            await self._outcome(
                "connect",
                call_id,
                decision,
                down,
                {"http_address": targets[0], "bytes_up": up, "bytes_down": down},
            )

    async def _pipe(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter, cap: int) -> int:
        total = 0
        try:
            while True:
                chunk = await asyncio.wait_for(src.read(65536), self.config.timeout)
                if not chunk:
                    break
                total += len(chunk)
                if total > cap:
                    log.warning("proxy tunnel closed: more than %d bytes one way", cap)
                    break
                dst.write(chunk)
                await dst.drain()
        except (ConnectionError, asyncio.TimeoutError):
            pass
        finally:
            with contextlib.suppress(Exception):
                dst.close()
        return total

    # -- plain HTTP -------------------------------------------------------------------------

    async def _forward(
        self,
        method: str,
        target: str,
        headers: list[tuple[str, str]],
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        if not target.lower().startswith(("http://", "https://")):
            raise _Refused(400, "a proxy request needs an absolute http:// URL")
        if any(n == "transfer-encoding" for n, _ in headers):
            raise _Refused(411, "chunked request bodies are not supported; send Content-Length")
        length_text = next((v for n, v in headers if n == "content-length"), "0")
        if not length_text.isdigit():
            raise _Refused(400, "bad Content-Length")
        length = int(length_text)
        if length > self.config.max_request_bytes:
            raise _Refused(413, f"request body larger than {self.config.max_request_bytes} bytes")
        if length and any(n == "expect" and v.lower() == "100-continue" for n, v in headers):
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            await writer.drain()
        body = await asyncio.wait_for(reader.readexactly(length), self.config.timeout)
        listed = {t.strip().lower() for n, v in headers if n == "connection" for t in v.split(",")}
        fwd = {
            n: v
            for n, v in headers
            if n not in _HOP_BY_HOP and n not in listed and not n.startswith("proxy-")
        }
        args = {
            "url": target,
            "method": method,
            "headers": fwd,
            "body": body.decode("utf-8", "replace"),
        }
        call_id, decision = await self._decide("request", args)
        try:
            status, resp_headers, data = await asyncio.to_thread(self._send, args, body)
        except _Refused as exc:
            await self._outcome("request", call_id, decision, 0, {}, "HTTPError")
            raise exc from None
        await self._outcome("request", call_id, decision, len(data), {"http_status": status})
        out = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}".encode("latin-1")]
        for name, value in resp_headers:
            out.append(f"{name}: {value}".encode("latin-1", "replace"))
        out.append(f"content-length: {len(data)}".encode("latin-1"))
        out.append(b"connection: close")
        writer.write(b"\r\n".join(out) + b"\r\n\r\n" + data)
        await writer.drain()

    def _send(
        self, args: Mapping[str, Any], raw: bytes
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        cfg = self.config
        deadline = time.monotonic() + cfg.timeout
        try:
            canon = canonical_request(args, cfg.max_request_bytes)
            sent = self.tool._send(canon, deadline, broker=False, content=raw)
            response = sent.response
            try:
                length = response.headers.get("content-length")
                if length is not None and length.isdigit() and int(length) > cfg.max_response_bytes:
                    raise HTTPError(f"response larger than {cfg.max_response_bytes} bytes")
                chunks: list[bytes] = []
                total = 0
                for chunk in response.iter_raw():
                    total += len(chunk)
                    if total > cfg.max_response_bytes:
                        raise HTTPError(f"response larger than {cfg.max_response_bytes} bytes")
                    if time.monotonic() > deadline:
                        raise HTTPError(f"response took longer than {cfg.timeout:g}s")
                    chunks.append(chunk)
            finally:
                response.close()
        except HTTPError as exc:
            timeout = "timed out" in str(exc) or "longer than" in str(exc)
            raise _Refused(504 if timeout else 502, f"stockade: {exc}") from None
        keep = [
            (k.decode("latin-1"), v.decode("latin-1"))
            for k, v in response.headers.raw
            if k.decode("latin-1").lower() not in _HOP_BY_HOP
        ]
        return response.status_code, keep, b"".join(chunks)

    # -- the decision ----------------------------------------------------------------------

    async def _decide(self, action: str, args: Mapping[str, Any]) -> tuple[str, Decision]:
        call_id = new_call_id()
        try:
            decision = await asyncio.to_thread(
                self.guard.decide, "http", action, dict(args), session=self.session, call_id=call_id
            )
        except (Denied, ApprovalRequired) as exc:
            raise _Refused(403, f"stockade: denied by {exc.decision.rule}") from None
        except StockadeError as exc:
            raise _Refused(403, f"stockade: {type(exc).__name__}") from None
        if decision.effect is Effect.ASK:
            raise _Refused(403, f"stockade: {decision.rule} needs approval")
        if decision.effect is not Effect.ALLOW:
            raise _Refused(403, f"stockade: denied by {decision.rule}")
        return call_id, decision

    async def _outcome(
        self,
        action: str,
        call_id: str,
        decision: Decision,
        size: int,
        extra: dict[str, Any],
        error_type: str = "",
    ) -> None:
        """Record what an allowed request or tunnel did (the decision is already recorded)."""
        event = AuditEvent(
            kind="outcome",
            time=time.time(),
            session=self.session_id,
            principal=self.principal,
            call_id=call_id,
            tool="http",
            action=action,
            args={},
            decision=decision,
            mode=self.guard.policy.mode,
            result_size=size,
            error_type=error_type,
            extra={"proxy": True, **extra},
        )
        try:
            await asyncio.to_thread(self.guard.audit.append, event)
        except Exception as exc:  # the response is already sent; say so loudly
            log.error("audit store could not record a proxy outcome: %s", type(exc).__name__)


async def _reply(writer: asyncio.StreamWriter, status: int, message: str) -> None:
    body = (message.replace("\r", " ").replace("\n", " ") + "\n").encode("utf-8", "replace")
    head = (
        f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\n"
        f"content-type: text/plain; charset=utf-8\r\ncontent-length: {len(body)}\r\n"
        "connection: close\r\n\r\n"
    )
    with contextlib.suppress(Exception):
        writer.write(head.encode("latin-1") + body)
        await writer.drain()


# -- command line ----------------------------------------------------------------------------


def _listen(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) < 65536:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got `{text}`")
    return host.strip("[]") or "127.0.0.1", int(port)


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _proxy_command(args: argparse.Namespace) -> int:
    host, port = args.listen
    if not _is_loopback(host) and not args.allow_remote:
        print(
            f"stockade proxy: refusing to listen on `{host}`: the proxy has no authentication "
            "and acts with the policy's permissions for whoever reaches it; listen on "
            "loopback, or pass --allow-remote if the network is yours alone",
            file=sys.stderr,
        )
        return 2
    try:
        guard = Guard.from_file(args.policy)
        handle = start_proxy(guard, host, port, session=args.session)
    except StockadeError as exc:
        print(f"stockade proxy: {exc}", file=sys.stderr)
        return 2
    if guard.policy.section("audit") is None:
        print(
            "stockade proxy: warning: no audit: section: the proxy's decisions are kept "
            "in memory only and lost at exit",
            file=sys.stderr,
            flush=True,
        )
    if not _is_loopback(host):
        print(
            f"stockade proxy: warning: listening on `{host}` (--allow-remote): anyone who "
            "reaches this address can use the policy's permissions",
            file=sys.stderr,
            flush=True,
        )
    stopped = threading.Event()

    def stop(*_: object) -> None:
        """SIGTERM handler."""
        stopped.set()

    # before the "listening" line: a supervisor may stop us as soon as it reads it
    signal.signal(signal.SIGTERM, stop)
    print(f"stockade proxy listening on {handle.url}", flush=True)
    try:
        while not stopped.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        handle.close()
        guard.close()
    return 0


def register(subparsers: Any) -> None:
    """Add ``stockade proxy`` to the command line."""
    p = subparsers.add_parser(
        "proxy",
        help="run a forward HTTP proxy that checks every request against a policy",
        description=(
            "Run a forward HTTP proxy (plain HTTP and CONNECT, no TLS interception). "
            "Every request is decided by the policy's `http:` rules through the guard and "
            "audited; allowed requests go out through the SSRF-safe engine. CONNECT "
            "tunnels need an entry with `tunnel: true`. Point clients at it with "
            "HTTP_PROXY/HTTPS_PROXY. Stop with Ctrl-C or SIGTERM."
        ),
    )
    p.add_argument("--policy", required=True, metavar="FILE", help="policy YAML file")
    p.add_argument(
        "--listen",
        type=_listen,
        default=("127.0.0.1", 3128),
        metavar="HOST:PORT",
        help="address to listen on (default 127.0.0.1:3128); an address beyond loopback "
        "needs --allow-remote",
    )
    p.add_argument(
        "--allow-remote",
        action="store_true",
        help="allow a --listen address beyond loopback. The proxy has no authentication: "
        "every machine that reaches the address acts with the policy's permissions",
    )
    p.add_argument(
        "--session",
        default="proxy",
        metavar="ID",
        help="session id the decisions are made and audited in (default: proxy)",
    )
    p.set_defaults(func=_proxy_command)
