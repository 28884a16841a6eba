"""The decision server: the guard's checks for agents in other processes or languages.

An agent written in another language (or running in another process) asks
``POST /v1/decide`` before it runs a tool, reports what the user said and what
tools returned so provenance works, and runs the tool itself only on
``"effect": "allow"``. Every decision is made by the same pipeline as
``Guard.decide`` and lands in the same audit log.

Endpoints (JSON in, JSON out):

- ``POST /v1/decide`` ``{tool, action, args, session, principal?, call_id?}``
  → ``{effect, rule, reason, shadow, call_id}``
- ``POST /v1/observe`` ``{session, tool, action, value, labels?}``: content the
  agent read (labels as ``{source, integrity, confidentiality}``)
- ``POST /v1/user-said`` ``{session, text}``: the user's own, trusted words
- ``GET /v1/decisions?limit=N``: the most recent decisions of this server
  (``N`` at least 1, default 50)

A body with a key its endpoint does not take, or a bad ``limit``, is a 400
naming it.
- ``GET /healthz``; ``GET /``: a small web console of recent decisions

With a token configured, every ``/v1`` request needs ``Authorization: Bearer
<token>``. The server MUST NOT listen beyond loopback without a token (``stockade
serve`` refuses to).

Needs the ``server`` extra (``pip install 'stockade[server]'``).
"""

from __future__ import annotations

import collections
import hmac
import html
import json
import threading
import time
from typing import Any

from stockade.errors import ConfigurationError, StockadeError
from stockade.guard import Guard
from stockade.model import Confidentiality, Integrity, Label, ToolCall
from stockade.session import Session

try:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import HTMLResponse, JSONResponse, Response
    from starlette.routing import Route
except ImportError as exc:  # pragma: no cover - depends on the extra
    raise ConfigurationError(
        "the decision server needs the server extra: pip install 'stockade[server]'"
    ) from exc

__all__ = ["create_app"]

_MAX_BODY = 1 << 20


class _BadRequest(Exception):
    pass


class _State:
    def __init__(self, guard: Guard, token: str | None, keep: int) -> None:
        self.guard = guard
        self.token = token.encode() if token else None
        self.recent: collections.deque[dict[str, Any]] = collections.deque(maxlen=keep)
        self.sessions: collections.OrderedDict[tuple[str, str], Session] = collections.OrderedDict()
        self.lock = threading.Lock()

    def session(self, sid: str, principal: str) -> Session:
        key = (sid, principal)
        with self.lock:
            s = self.sessions.get(key)
            if s is None:
                s = self.guard.session(sid, principal=principal)
                self.sessions[key] = s
                if len(self.sessions) > 10000:
                    self.sessions.popitem(last=False)
            else:
                self.sessions.move_to_end(key)
            return s


def _string(body: dict[str, Any], key: str, *, required: bool = True, default: str = "") -> str:
    value = body.get(key)
    if value is None:
        if required:
            raise _BadRequest(f"missing `{key}`")
        return default
    if not isinstance(value, str) or not value or len(value) > 256:
        raise _BadRequest(f"`{key}` must be a non-empty string of at most 256 characters")
    return value


async def _json(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if len(raw) > _MAX_BODY:
        raise _BadRequest("request body too large")
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise _BadRequest("request body is not JSON") from exc
    if not isinstance(body, dict):
        raise _BadRequest("request body must be a JSON object")
    return body


def _known(body: dict[str, Any], keys: tuple[str, ...]) -> None:
    """Refuse keys the endpoint does not take: a misspelt `principal` must not pass unseen."""
    unknown = sorted(k for k in body if k not in keys)
    if unknown:
        raise _BadRequest(
            f"unknown key `{unknown[0]}`; expected one of: {', '.join(f'`{k}`' for k in keys)}"
        )


def _limit(raw: str | None, keep: int) -> int:
    """``?limit=N``: an integer of at least 1 (more than the server keeps gives all it keeps)."""
    if raw is None:
        return min(50, keep)
    if not raw.isascii() or not raw.isdigit() or int(raw) < 1:
        raise _BadRequest("`limit` must be a whole number of at least 1")
    return min(keep, int(raw))


def _labels(raw: Any) -> tuple[Label, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise _BadRequest("`labels` must be a list")
    out = []
    for item in raw:
        if not isinstance(item, dict) or not isinstance(item.get("source"), str):
            raise _BadRequest("each label needs a `source` string")
        try:
            out.append(
                Label(
                    item["source"],
                    Integrity(item.get("integrity", "untrusted")),
                    Confidentiality(item.get("confidentiality", "internal")),
                )
            )
        except ValueError as exc:
            raise _BadRequest("bad label integrity or confidentiality") from exc
    return tuple(out)


def create_app(guard: Guard, *, token: str | None = None, keep: int = 500) -> Starlette:
    """An ASGI app that serves ``guard``'s decisions (see the module docstring)."""
    state = _State(guard, token, keep)

    def authorised(request: Request) -> bool:
        if state.token is None:
            return True
        header = request.headers.get("authorization", "")
        given = header[7:].encode() if header.lower().startswith("bearer ") else b""
        return hmac.compare_digest(given, state.token)

    async def handle(request: Request, fn: Any) -> Response:
        if not authorised(request):
            return JSONResponse({"error": "missing or wrong bearer token"}, status_code=401)
        try:
            body = await _json(request)
            return JSONResponse(fn(body))
        except _BadRequest as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        except StockadeError as exc:
            return JSONResponse({"error": str(exc)}, status_code=500)

    def decide(body: dict[str, Any]) -> dict[str, Any]:
        _known(body, ("tool", "action", "args", "session", "principal", "call_id"))
        tool = _string(body, "tool")
        action = _string(body, "action")
        session = state.session(
            _string(body, "session"), _string(body, "principal", required=False)
        )
        args = body.get("args", {})
        if not isinstance(args, dict):
            raise _BadRequest("`args` must be a JSON object")
        call_id = body.get("call_id")
        if call_id is not None and (not isinstance(call_id, str) or len(call_id) > 128):
            raise _BadRequest("`call_id` must be a string of at most 128 characters")
        d = guard.decide(tool, action, args, session=session, call_id=call_id)
        out = {
            "effect": d.effect.value,
            "rule": d.rule,
            "reason": d.reason,
            "shadow": None
            if d.shadow is None
            else {
                "effect": d.shadow.effect.value,
                "rule": d.shadow.rule,
                "reason": d.shadow.reason,
            },
        }
        state.recent.appendleft(
            {"time": time.time(), "session": session.id, "tool": tool, "action": action, **out}
        )
        return out

    def observe(body: dict[str, Any]) -> dict[str, Any]:
        _known(body, ("session", "principal", "tool", "action", "value", "labels"))
        session = state.session(
            _string(body, "session"), _string(body, "principal", required=False)
        )
        call = ToolCall(
            _string(body, "tool"),
            _string(body, "action"),
            {},
            session=session.id,
            principal=session.principal,
        )
        guard.flow.observe(call, body.get("value"), _labels(body.get("labels")), session)
        return {"ok": True}

    def user_said(body: dict[str, Any]) -> dict[str, Any]:
        _known(body, ("session", "principal", "text"))
        session = state.session(
            _string(body, "session"), _string(body, "principal", required=False)
        )
        text = body.get("text")
        if not isinstance(text, str):
            raise _BadRequest("`text` must be a string")
        session.user_said(text)
        return {"ok": True}

    async def decide_ep(request: Request) -> Response:
        return await handle(request, decide)

    async def observe_ep(request: Request) -> Response:
        return await handle(request, observe)

    async def user_said_ep(request: Request) -> Response:
        return await handle(request, user_said)

    async def decisions_ep(request: Request) -> Response:
        if not authorised(request):
            return JSONResponse({"error": "missing or wrong bearer token"}, status_code=401)
        unknown = sorted(k for k in request.query_params if k != "limit")
        if unknown:
            return JSONResponse(
                {"error": f"unknown query parameter `{unknown[0]}`; expected `limit`"},
                status_code=400,
            )
        try:
            limit = _limit(request.query_params.get("limit"), keep)
        except _BadRequest as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse(list(state.recent)[:limit])

    async def health(request: Request) -> Response:
        return JSONResponse(
            {
                "ok": True,
                "policy": guard.policy.digest[:16],
                "rules": len(guard.policy.rules),
                "mode": guard.policy.mode,
            }
        )

    async def console(request: Request) -> Response:
        if not authorised(request) and state.token is not None:
            return HTMLResponse("<p>bearer token required</p>", status_code=401)
        rows = "".join(
            "<tr class='{cls}'><td>{t}</td><td>{s}</td><td>{tool}.{action}</td>"
            "<td>{effect}</td><td>{rule}</td><td>{reason}</td></tr>".format(
                cls=html.escape(r["effect"]),
                t=time.strftime("%H:%M:%S", time.localtime(r["time"])),
                s=html.escape(r["session"]),
                tool=html.escape(r["tool"]),
                action=html.escape(r["action"]),
                effect=html.escape(r["effect"]),
                rule=html.escape(r["rule"]),
                reason=html.escape(r["reason"]),
            )
            for r in state.recent
        )
        page = _CONSOLE.replace("{rows}", rows or "<tr><td colspan=6>no decisions yet</td></tr>")
        page = page.replace("{policy}", html.escape(guard.policy.name or guard.policy.source))
        return HTMLResponse(page)

    return Starlette(
        routes=[
            Route("/", console),
            Route("/healthz", health),
            Route("/v1/decide", decide_ep, methods=["POST"]),
            Route("/v1/observe", observe_ep, methods=["POST"]),
            Route("/v1/user-said", user_said_ep, methods=["POST"]),
            Route("/v1/decisions", decisions_ep),
        ]
    )


_CONSOLE = """<!doctype html><html><head><meta charset="utf-8">
<meta http-equiv="refresh" content="5"><title>stockade decisions</title>
<style>body{font:14px system-ui,sans-serif;margin:2em}table{border-collapse:collapse;width:100%}
td,th{border-bottom:1px solid #ddd;padding:4px 8px;text-align:left}
tr.deny td:nth-child(4){color:#b00;font-weight:bold}tr.ask td:nth-child(4){color:#a60}
tr.allow td:nth-child(4){color:#070}</style></head><body>
<h1>stockade decisions</h1><p>policy: {policy} &middot; refreshes every 5 s</p>
<table><tr><th>time</th><th>session</th><th>call</th><th>effect</th><th>rule</th><th>why</th></tr>
{rows}</table></body></html>"""
