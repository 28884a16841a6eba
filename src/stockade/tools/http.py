"""HTTP egress: allow-listed, SSRF-safe, with credentials the model never sees.

The ``http:`` policy section names what may be reached; each ``allow`` entry
becomes an ordinary rule (``http:<id>``) on the canonical arguments that
:meth:`HTTPTool.prepare` produces, so it is decided, explained and audited
like any other rule::

    http:
      allow:
        - id: weather
          host: api.weather.example        # exact, or *.example.com, or a list
          path: /v1/**                     # globs; default /**
          # scheme: https  port: 443  methods: [GET, HEAD]   (the defaults)
      secrets:
        - name: weather-key
          host: api.weather.example
          env: WEATHER_KEY                 # or file: secrets/weather.key
          attach: bearer                   # bearer | basic | header | query

The tool itself has two more layers: its own check (metadata hosts, internal
IP literals, ``localhost``) and the engine layer in
:mod:`stockade.tools.http_transport` (resolve once, reject internal
addresses, connect to the checked address, on every redirect hop).

>>> from stockade import Guard
>>> guard = Guard.from_text('''
... version: 1
... http:
...   allow: [{id: docs, host: docs.example.com}]
... ''')
>>> guard.decide("http", "request", {"url": "https://DOCS.example.com./a"}).rule
'http:docs'
"""

from __future__ import annotations

import functools
import time
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from stockade.errors import ConfigurationError, HTTPError
from stockade.model import Decision, Effect, Integrity, Label, Output, ToolCall
from stockade.policy import Policy
from stockade.policy.matchers import compile_glob
from stockade.tools.base import Capability, Context
from stockade.tools.http_config import (
    LOG_MASK,
    HTTPConfig,
    HTTPEntry,
    SecretBroker,
    SecretSpec,
    mask,
    parse_section,
)
from stockade.tools.http_transport import (
    METADATA_HOSTS,
    Resolver,
    SafeTransport,
    StaticResolver,
    SystemResolver,
    address_kind,
)
from stockade.tools.http_url import canonical_connect, canonical_request, ip_or_none

__all__ = [
    "HTTPConfig",
    "HTTPEntry",
    "HTTPTool",
    "SecretSpec",
    "canonical_request",
    "capability_from_policy",
    "parse_section",
]

_REDIRECTS = frozenset({301, 302, 303, 307, 308})
#: the arguments each action takes (what the model may pass)
_REQUEST_ARGS = frozenset({"url", "method", "headers", "body", "json", "params"})
_CONNECT_ARGS = frozenset({"host", "port"})

# -- the tool -----------------------------------------------------------------------------


@dataclass
class _Sent:
    response: httpx.Response
    url: str
    address: str


class HTTPTool(Capability):
    """The ``http`` tool: action ``request`` (and ``connect``, decided for the proxy only).

    Arguments: ``url``, ``method`` (default GET), ``headers``, ``body`` or
    ``json``, ``params``. The result is ``{status, url, headers, body}``,
    labelled untrusted with the URL as its source.
    """

    name = "http"
    actions = frozenset({"request", "connect"})
    external = True

    def __init__(self, policy: Policy, *, resolver: Resolver | None = None) -> None:
        config = policy.section("http")
        if not isinstance(config, HTTPConfig):
            raise ConfigurationError("the policy has no `http` section")
        self.config = config
        self._policy = policy
        self.addresses = config.address_policy()
        self._broker = SecretBroker(config.secrets)
        if config.secrets:
            LOG_MASK.install()
        self._content_types = compile_glob(list(config.content_types))
        self._exact_hosts = {h for e in config.entries for h in e.hosts if "*" not in h}
        self._transport: SafeTransport | None = None
        # decisions of the tool's own check per (host, port): a pure function of the config
        self._checked: dict[tuple[str, int], Decision | None] = {}
        self._resolver: Resolver = resolver or _default_resolver(config)

    # -- setup ----------------------------------------------------------------------------

    def use_resolver(self, resolver: Resolver) -> None:
        """Resolve names with ``resolver`` from now on (every answer is still checked)."""
        self._resolver = resolver
        if self._transport is not None:
            self._transport.close()
            self._transport = None

    @property
    def resolver(self) -> Resolver:
        """The resolver new connections use."""
        return self._resolver

    @property
    def transport(self) -> SafeTransport:
        """The SSRF-safe transport (built on first use, pooled)."""
        if self._transport is None:
            self._transport = SafeTransport(
                self.addresses, self._resolver, ssl_context=self.config.ssl_context()
            )
        return self._transport

    def close(self) -> None:
        """Close pooled connections."""
        if self._transport is not None:
            self._transport.close()
            self._transport = None

    # -- the guard's hooks ------------------------------------------------------------------

    def prepare(self, call: ToolCall) -> ToolCall:
        """Canonicalise the request (see :func:`canonical_request`).

        An argument the tool does not take (``timeout``, a typo) is refused,
        as function tools refuse it, rather than silently dropped.
        """
        known = _CONNECT_ARGS if call.action == "connect" else _REQUEST_ARGS
        unknown = [k for k in call.args if k not in known]
        if unknown:
            names = ", ".join(f"`{k}`" for k in sorted(map(str, unknown)))
            raise HTTPError(f"tool `{self.name}` has no argument {names}")
        if call.action == "connect":
            return call.with_args(canonical_connect(call.args))
        return call.with_args(canonical_request(call.args, self.config.max_request_bytes))

    def check(self, call: ToolCall) -> Decision | None:
        """The tool's own layer: metadata hosts, internal IP literals and ``localhost``."""
        host = call.args.get("host")
        port = call.args.get("port")
        if not isinstance(host, str) or not isinstance(port, int):
            return Decision.deny("http:invalid", "the request has no canonical host and port")
        key = (host, port)
        if key in self._checked:
            return self._checked[key]
        decision = self._check_host(host, port)
        if len(self._checked) >= 4096:
            self._checked.clear()
        self._checked[key] = decision
        return decision

    def _check_host(self, host: str, port: int) -> Decision | None:
        if host in METADATA_HOSTS:
            return Decision.deny("http:metadata", f"`{host}` is a cloud metadata host")
        ip = ip_or_none(host)
        if ip is not None:
            kind = address_kind(ip)
            if kind is not None:
                try:
                    self.addresses.check(host, port, host)
                except HTTPError:
                    rule = "http:metadata" if kind == "metadata" else "http:internal-address"
                    return Decision.deny(
                        rule, f"`{host}` is a {kind} address that no http entry names"
                    )
        elif (host == "localhost" or host.endswith(".localhost")) and host not in self._exact_hosts:
            return Decision.deny("http:internal-address", f"`{host}` is a loopback name")
        return None

    def execute(self, call: ToolCall, ctx: Context) -> Output:
        """Send the request, follow allowed redirects, return the masked response."""
        if call.action != "request":
            raise HTTPError("`connect` opens tunnels for the proxy only; use `request`")
        forms = self._broker.forms()
        try:
            return self._execute(call, forms, ctx)
        except HTTPError as exc:
            raise HTTPError(mask(str(exc), forms)) from None
        except Exception as exc:
            raise HTTPError(f"the request failed ({type(exc).__name__})") from None

    def describe(self) -> Mapping[str, Any]:
        """Actions, parameters, and which hosts get a credential (by placeholder only)."""
        return {
            "name": self.name,
            "actions": ["request"],
            "description": "HTTP request to an allow-listed host; responses are untrusted",
            "parameters": ["url", "method", "headers", "body", "json", "params"],
            "credentials": {
                s.placeholder: {"hosts": list(s.hosts), "attach": s.attach}
                for s in self.config.secrets
            },
        }

    # -- engine ----------------------------------------------------------------------------

    def _execute(self, call: ToolCall, forms: list[tuple[str, str]], ctx: Context | None) -> Output:
        cfg = self.config
        deadline = time.monotonic() + cfg.timeout
        args = dict(call.args)
        hops: list[str] = []
        attached: list[str] = []
        while True:
            sent = self._send(args, deadline, broker=True, attached=attached)
            status = sent.response.status_code
            location = sent.response.headers.get("location")
            if status in _REDIRECTS and location:
                sent.response.close()
                if len(hops) >= cfg.max_redirects:
                    raise HTTPError(f"more than {cfg.max_redirects} redirects")
                args = self._redirect(args, status, location, forms, ctx)
                hops.append(mask(args["url"], forms))
                continue
            break
        response = sent.response
        try:
            body = self._read_body(response, deadline, args["method"] == "HEAD")
        finally:
            response.close()
        ctype = response.headers.get("content-type", "")
        text = body.decode(response.charset_encoding or "utf-8", "replace") if body else ""
        url = mask(args["url"], forms)
        headers = {
            k.lower(): mask(v, forms)
            for k, v in response.headers.items()
            if k.lower() not in ("set-cookie", "set-cookie2")
        }
        value = {"status": status, "url": url, "headers": headers, "body": mask(text, forms)}
        meta = {
            "http_status": status,
            "http_address": sent.address,
            "http_redirects": hops,
            "http_bytes": len(body),
            "http_content_type": ctype.split(";", 1)[0].strip().lower(),
            "http_credentials": sorted(set(attached)),
        }
        return Output(value=value, labels=(Label(f"http:{url}", Integrity.UNTRUSTED),), meta=meta)

    def _redirect(
        self,
        args: Mapping[str, Any],
        status: int,
        location: str,
        forms: list[tuple[str, str]],
        ctx: Context | None,
    ) -> dict[str, Any]:
        """The next hop's canonical arguments, decided like a call of its own.

        The hop goes through the guard's whole decision (argument scanners,
        rules, the tool's check, flow, limits) and gets its own audit record.
        """
        target = urllib.parse.urljoin(args["url"], location)
        if mask(target, forms) != target:
            raise HTTPError("redirect to a URL that carries a brokered credential; not followed")
        method = args["method"]
        body = args.get("body", "")
        if (status == 303 and method != "HEAD") or (status in (301, 302) and method == "POST"):
            method, body = "GET", ""
        headers = dict(args.get("headers") or {})
        if method == "GET":
            headers.pop("content-type", None)
        raw = {"url": target, "method": method, "headers": headers, "body": body}
        try:
            hop_args = canonical_request(raw, self.config.max_request_bytes)
        except HTTPError as exc:
            raise HTTPError(f"redirect to an invalid URL: {exc}") from None
        if (hop_args["scheme"], hop_args["host"], hop_args["port"]) != (
            args["scheme"],
            args["host"],
            args["port"],
        ):
            for h in ("authorization", "cookie"):
                hop_args["headers"].pop(h, None)
        hop = ToolCall("http", "request", hop_args, session=ctx.session.id if ctx else "")
        decision = self.check(hop)
        if decision is None:
            guard = getattr(ctx.session, "guard", None) if ctx is not None else None
            if ctx is not None and guard is not None:
                raw["headers"] = hop_args["headers"]
                decision = guard.decide("http", "request", raw, session=ctx.session)
            else:
                decision = self._policy.decide(hop)
        if decision.effect is not Effect.ALLOW:
            raise HTTPError(f"redirect to `{hop_args['url']}` denied by {decision.rule}")
        return hop_args

    def _send(
        self,
        args: Mapping[str, Any],
        deadline: float,
        *,
        broker: bool,
        attached: list[str] | None = None,
        content: bytes | None = None,
    ) -> _Sent:
        """Send one hop of a canonical request through the safe transport (no redirects)."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise HTTPError(f"the request took longer than {self.config.timeout:g}s")
        headers: dict[str, str] = {"user-agent": self.config.user_agent}
        headers.update(args.get("headers") or {})
        headers["accept-encoding"] = "identity"
        url = _parsed(args["url"])
        if broker:
            for spec in self._broker.for_request(args["scheme"], args["host"]):
                url = self._broker.attach(spec, spec.load(), headers, url)
                if attached is not None:
                    attached.append(spec.name)
        if content is None:
            content = (args.get("body") or "").encode("utf-8", "surrogatepass")
        timeout = {
            "connect": min(self.config.connect_timeout, remaining),
            "read": remaining,
            "write": remaining,
            "pool": remaining,
        }
        request = httpx.Request(
            args["method"],
            url,
            headers=headers,
            content=content or None,
            extensions={"timeout": timeout},
        )
        response = self.transport.handle_request(request)
        address = ""
        stream = response.extensions.get("network_stream")
        if stream is not None:
            peer = stream.get_extra_info("server_addr")
            if isinstance(peer, tuple) and peer:
                address = str(peer[0])
        return _Sent(response, args["url"], address)

    def _read_body(self, response: httpx.Response, deadline: float, head: bool = False) -> bytes:
        """Read the body within the size cap, the deadline and the allowed content types."""
        cap = self.config.max_response_bytes
        if head or response.status_code in (204, 304):
            return b""
        encoding = response.headers.get("content-encoding", "identity").lower().strip()
        if encoding not in ("", "identity"):
            raise HTTPError(f"compressed responses (`{encoding[:20]}`) are not accepted")
        length = response.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > cap:
            raise HTTPError(f"the response is {length} bytes; the limit is {cap}")
        ctype = response.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if length != "0" and self._content_types(ctype or "application/octet-stream") is not True:
            raise HTTPError(f"content type `{ctype[:60] or 'none'}` is not allowed")
        chunks: list[bytes] = []
        total = 0
        for chunk in response.iter_raw():
            total += len(chunk)
            if total > cap:
                raise HTTPError(f"the response is larger than {cap} bytes")
            if time.monotonic() > deadline:
                raise HTTPError(f"the response took longer than {self.config.timeout:g}s")
            chunks.append(chunk)
        return b"".join(chunks)


@functools.lru_cache(maxsize=1024)
def _parsed(url: str) -> httpx.URL:
    """httpx's parse of a canonical URL (immutable, so it can be shared)."""
    return httpx.URL(url)


def _default_resolver(config: HTTPConfig) -> Resolver:
    if config.hosts:
        return StaticResolver(
            {h: list(a) for h, a in config.hosts.items()}, fallback=SystemResolver()
        )
    return SystemResolver()


def capability_from_policy(policy: Policy) -> list[Capability]:
    """The ``http`` tool when the policy has an ``http:`` section."""
    if not isinstance(policy.section("http"), HTTPConfig):
        return []
    return [HTTPTool(policy)]
