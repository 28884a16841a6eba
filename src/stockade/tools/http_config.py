"""The ``http:`` policy section: allow entries (compiled into rules), secrets, limits.

See :mod:`stockade.tools.http` for the tool and ``docs/http.md`` for the
reference. Secrets are named here with where to read them (an environment
variable or a file) and how to attach them; their values are read only when a
request is sent and never stored in the policy object.
"""

from __future__ import annotations

import base64
import logging
import os
import re
import ssl
import threading
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from stockade.errors import HTTPError, PolicyError, PolicyProblem
from stockade.model import Effect
from stockade.policy import SectionContext
from stockade.policy.matchers import PatternError, compile_glob, compile_host, normalize_host
from stockade.policy.node import Invalid, Node
from stockade.policy.rules import RuleSpec, parse_constraint
from stockade.tools.http_transport import AddressAllowance, AddressPolicy, is_numeric_host
from stockade.tools.http_url import (
    DEFAULT_PORTS,
    FORBIDDEN_HEADERS,
    METHODS,
    READ_ONLY,
    ip_or_none,
)

__all__ = ["HTTPConfig", "HTTPEntry", "SecretBroker", "SecretSpec", "mask", "parse_section"]

_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,100}$")
DEFAULT_CONTENT_TYPES = (
    "text/*",
    "application/json",
    "application/*+json",
    "application/xml",
    "application/*+xml",
    "application/javascript",
    "application/x-ndjson",
)
#: headers the agent may not set: they belong to the transport or to stockade
_SECRET_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
_ENTRY_KEYS = (
    "id",
    "host",
    "scheme",
    "port",
    "methods",
    "path",
    "query",
    "headers",
    "when",
    "effect",
    "addresses",
    "tunnel",
    "reason",
)
_SECTION_KEYS = (
    "allow",
    "secrets",
    "hosts",
    "timeout",
    "connect_timeout",
    "max_redirects",
    "max_request_bytes",
    "max_response_bytes",
    "content_types",
    "user_agent",
    "ca_file",
)
_SECRET_KEYS = ("name", "host", "env", "file", "attach", "header", "param", "username", "schemes")


# -- configuration ---------------------------------------------------------------


@dataclass(frozen=True)
class HTTPEntry:
    """One ``allow`` entry as read (its rule is added to the policy)."""

    id: str
    hosts: tuple[str, ...]
    schemes: tuple[str, ...]
    ports: frozenset[int] | None
    methods: tuple[str, ...]
    paths: tuple[str, ...]
    effect: Effect
    addresses: tuple[str, ...] = ()
    tunnel: bool = False


@dataclass(frozen=True)
class SecretSpec:
    """A credential stockade attaches for some hosts; the value is read when sent.

    ``attach`` is ``bearer``, ``basic`` (``username`` + the secret as
    password), ``header`` (``header`` names it) or ``query`` (``param``).
    """

    name: str
    hosts: tuple[str, ...]
    attach: str
    env: str = ""
    file: Path | None = None
    header: str = ""
    param: str = ""
    username: str = ""
    schemes: tuple[str, ...] = ("https",)
    #: where the secret's `file:` is written in the policy (for ``policy check``'s warning)
    origin: PolicyProblem | None = field(default=None, compare=False, repr=False)

    @property
    def source(self) -> str:
        """Where the value comes from, for messages: ``environment variable `X```
        or ``file `/path```. Never the value."""
        if self.file is not None:
            return f"file `{self.file}`"
        return f"environment variable `{self.env}`"

    @property
    def placeholder(self) -> str:
        """What the model sees in place of the value: ``<SECRET_WEATHER_KEY>`` for
        ``weather-key`` (the form of the scanners' pseudonyms, so they leave it alone)."""
        return "<SECRET_" + re.sub(r"[^A-Z0-9]", "_", self.name.upper()) + ">"

    def load(self) -> str:
        """The secret's value; raise :class:`HTTPError` (never showing it) when missing."""
        if self.file is not None:
            try:
                value = self.file.read_text(encoding="utf-8").strip()
            except OSError as exc:
                reason = (exc.strerror or type(exc).__name__).lower()
                raise HTTPError(
                    f"secret `{self.name}` cannot be read from {self.source}: {reason}"
                ) from exc
            except UnicodeError as exc:
                raise HTTPError(
                    f"secret `{self.name}` cannot be read from {self.source}: not UTF-8 text"
                ) from exc
            if not value:
                raise HTTPError(f"secret `{self.name}` is not available: {self.source} is empty")
        else:
            value = os.environ.get(self.env, "").strip()
            if not value:
                raise HTTPError(
                    f"secret `{self.name}` is not available: {self.source} is not set or empty"
                )
        if any(c in value for c in "\r\n\0"):
            raise HTTPError(f"secret `{self.name}` contains a line break")
        return value


@dataclass(frozen=True)
class HTTPConfig:
    """The parsed ``http:`` section."""

    entries: tuple[HTTPEntry, ...] = ()
    secrets: tuple[SecretSpec, ...] = ()
    hosts: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    timeout: float = 30.0
    connect_timeout: float = 10.0
    max_redirects: int = 5
    max_request_bytes: int = 1 << 20
    max_response_bytes: int = 5 << 20
    content_types: tuple[str, ...] = DEFAULT_CONTENT_TYPES
    user_agent: str = "stockade"
    #: extra CA certificates (PEM) trusted for https besides the default ones
    ca_file: Path | None = None

    def ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context for https: ``None`` (httpcore's default) without ``ca_file``."""
        if self.ca_file is None:
            return None
        context = httpx.create_ssl_context()
        context.load_verify_locations(cafile=str(self.ca_file))
        return context

    def warnings(self) -> list[PolicyProblem]:
        """What ``policy check`` should point out without failing: secret files that
        do not exist now (they may be mounted at run time)."""
        out: list[PolicyProblem] = []
        for sec in self.secrets:
            if sec.file is None or sec.origin is None or sec.file.is_file():
                continue
            o = sec.origin
            out.append(
                PolicyProblem(
                    o.file,
                    o.line,
                    o.column,
                    o.key,
                    f"warning: secret `{sec.name}` reads `{sec.file}`, which is not a file "
                    "now; requests that need it fail until it exists",
                )
            )
        return out

    def explain(self) -> list[Any]:
        """Lines for ``policy explain``: what each entry reaches, in URL form, worst first."""
        from stockade.policy.explain import Explanation

        out: list[Any] = []
        for e in self.entries:
            if e.effect is Effect.DENY:
                continue
            ports = "any port" if e.ports is None else ", ".join(str(p) for p in sorted(e.ports))
            urls = ", ".join(
                f"{'/'.join(e.schemes)}://{h} ({ports}) {', '.join(e.paths)}" for h in e.hosts
            )
            writes = [m for m in e.methods if m not in READ_ONLY]
            risk = "high" if "DELETE" in writes else "medium" if writes else "low"
            if "*" in e.hosts:
                risk = {"low": "medium", "medium": "high", "high": "critical"}[risk]
            verb = "may" if e.effect is Effect.ALLOW else "may, after approval,"
            out.append(
                Explanation(risk, f"http: {verb} {'/'.join(e.methods)} {urls}", f"http:{e.id}")
            )
            if e.addresses:
                out.append(
                    Explanation(
                        "medium",
                        f"http: `{'`, `'.join(e.hosts)}` may reach the internal address(es) "
                        + ", ".join(e.addresses),
                        f"http:{e.id}",
                    )
                )
            if e.tunnel:
                out.append(
                    Explanation(
                        "high",
                        f"http: the proxy may tunnel (CONNECT) to `{'`, `'.join(e.hosts)}` "
                        f"({ports}): any method and path inside TLS",
                        f"http:{e.id}:tunnel",
                    )
                )
        for sec in self.secrets:
            out.append(
                Explanation(
                    "info",
                    f"http: requests to `{'`, `'.join(sec.hosts)}` carry the credential "
                    f"{sec.placeholder} ({sec.attach}); the model never sees its value",
                )
            )
        return out

    def address_policy(self) -> AddressPolicy:
        """The exact non-public addresses the entries name (IP-literal hosts name themselves)."""
        allowances = []
        for e in self.entries:
            if e.effect is not Effect.ALLOW and e.effect is not Effect.ASK:
                continue
            literal = [h for h in e.hosts if ip_or_none(h) is not None]
            addrs = tuple(dict.fromkeys([*e.addresses, *literal]))
            if addrs:
                allowances.append(AddressAllowance(e.hosts, e.ports, addrs))
        return AddressPolicy(allowances)


def parse_section(node: Node, ctx: SectionContext) -> HTTPConfig:
    """Read the ``http:`` section; add one rule per ``allow`` entry (``http:<id>``).

    Every problem of the section is collected (one per entry, secret, host or
    setting) and raised together as a :class:`PolicyError`.
    """
    m = node.mapping(allowed=_SECTION_KEYS)
    problems: list[PolicyProblem] = []

    def attempt(fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except Invalid as exc:
            problems.append(exc.problem)
            return None

    entries: list[HTTPEntry] = []
    if "allow" in m:
        for i, enode in enumerate(attempt(m["allow"].seq) or []):
            parsed = attempt(_parse_entry, enode, i, ctx)
            if parsed is None:
                continue
            entry, spec = parsed
            entries.append(entry)
            ctx.add_rule(spec)
            if entry.tunnel:
                ctx.add_rule(
                    RuleSpec(
                        id=f"{spec.id}:tunnel",
                        tools=("http",),
                        actions=("connect",),
                        effect=entry.effect,
                        mode=ctx.mode,
                        when={"host": {"host": list(entry.hosts)}}
                        | ({"port": {"one_of": sorted(entry.ports)}} if entry.ports else {}),
                        reason=f"{spec.reason} (CONNECT tunnel through the proxy)",
                        origin=spec.origin,
                        node=enode,
                    )
                )
    secrets: list[SecretSpec] = []
    if "secrets" in m:
        seen: set[str] = set()
        for snode in attempt(m["secrets"].seq) or []:
            sec = attempt(_parse_secret, snode, ctx)
            if sec is None:
                continue
            if sec.name in seen:
                problems.append(snode.problem(f"duplicate secret name `{sec.name}`"))
            seen.add(sec.name)
            secrets.append(sec)
    hosts: dict[str, tuple[str, ...]] = {}
    if "hosts" in m:
        for name, hnode in (attempt(m["hosts"].mapping) or {}).items():
            got = attempt(_parse_host, m["hosts"], name, hnode)
            if got is not None:
                hosts[got[0]] = got[1]
    kwargs: dict[str, Any] = {}
    for key in ("timeout", "connect_timeout"):
        if key in m:
            kwargs[key] = attempt(_positive_duration, m[key])
    if "max_redirects" in m:
        kwargs["max_redirects"] = attempt(lambda: m["max_redirects"].integer(minimum=0, maximum=20))
    for key in ("max_request_bytes", "max_response_bytes"):
        if key in m:
            kwargs[key] = attempt(m[key].size)
    if "content_types" in m:
        kwargs["content_types"] = attempt(_content_types, m["content_types"])
    if "user_agent" in m:
        kwargs["user_agent"] = attempt(m["user_agent"].string)
    if "ca_file" in m:
        kwargs["ca_file"] = attempt(_ca_file, m["ca_file"], ctx)
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    config = HTTPConfig(entries=tuple(entries), secrets=tuple(secrets), hosts=hosts, **kwargs)
    try:
        config.address_policy()
    except ValueError as exc:
        problems.append(node.problem(str(exc)))
    if problems:
        raise PolicyError(problems)
    return config


def _parse_host(parent: Node, name: str, node: Node) -> tuple[str, tuple[str, ...]]:
    try:
        key = normalize_host(name)
    except ValueError:
        parent.fail(f"`{name}` is not a host name", key=name)
    addrs = node.strings()
    for a in addrs:
        if ip_or_none(a) is None:
            node.fail(f"`{a}` is not an IP address")
    return key, tuple(addrs)


def _positive_duration(node: Node) -> float:
    value = node.duration()
    if value <= 0:
        node.fail("expected a duration longer than 0")
    return value


def _content_types(node: Node) -> tuple[str, ...]:
    types = tuple(t.lower() for t in node.strings())
    try:
        compile_glob(list(types))
    except PatternError as exc:
        node.fail(f"bad content type pattern: {exc}")
    return types


def _ca_file(node: Node, ctx: SectionContext) -> Path:
    path = Path(node.string())
    if not path.is_absolute():
        path = ctx.base_dir / path
    if not path.is_file():
        node.fail(f"CA file `{path}` does not exist")
    try:
        ssl.create_default_context(cafile=str(path))
    except (ssl.SSLError, OSError, ValueError) as exc:
        node.fail(f"CA file `{path}` holds no usable PEM certificate ({type(exc).__name__})")
    return path


def _parse_entry(node: Node, index: int, ctx: SectionContext) -> tuple[HTTPEntry, RuleSpec]:
    m = node.mapping(allowed=_ENTRY_KEYS, required=("host",))
    entry_id = m["id"].string() if "id" in m else f"allow-{index}"
    effect = (
        Effect(m["effect"].string(choices=("allow", "ask", "deny")))
        if "effect" in m
        else (Effect.ALLOW)
    )
    hosts = tuple(m["host"].strings())
    for h in hosts:
        if h != "*" and not h.startswith("*."):
            ip = ip_or_none(h.strip("[]"))
            if ip is None and is_numeric_host(h):
                m["host"].fail(f"`{h}` is not a canonical IP address or a host name")
    try:
        compile_host(list(hosts))
    except (PatternError, ValueError) as exc:
        m["host"].fail(f"bad host pattern: {exc}")
    hosts = tuple(h if h == "*" or h.startswith("*.") else normalize_host(h) for h in hosts)
    deny = effect is Effect.DENY
    schemes = _schemes(m["scheme"]) if "scheme" in m else ("http", "https") if deny else ("https",)
    ports: frozenset[int] | None
    if "port" in m:
        ports = _ports(m["port"])
    elif deny:
        ports = None
    else:
        ports = frozenset(DEFAULT_PORTS[s] for s in schemes)
    methods = _methods(m["methods"]) if "methods" in m else (METHODS if deny else READ_ONLY)
    paths = tuple(m["path"].strings()) if "path" in m else ("/**",)
    for p in paths:
        if not p.startswith("/"):
            m["path"].fail(f"path glob `{p}` must start with `/`")
    try:
        compile_glob(list(paths))
    except PatternError as exc:
        m["path"].fail(f"bad path glob: {exc}")
    when: dict[str, dict[str, Any]] = {
        "scheme": {"one_of": list(schemes)},
        "host": {"host": list(hosts)},
        "method": {"one_of": list(methods)},
        "path": {"glob": list(paths)},
    }
    if ports is not None:
        when["port"] = {"one_of": sorted(ports)}
    for key, prefix in (("query", "query."), ("headers", "headers.")):
        if key in m:
            for name, cnode in m[key].mapping().items():
                if not name or "." in name:
                    m[key].fail(f"invalid {key} name `{name}`", key=name)
                arg = prefix + (name.lower() if key == "headers" else name)
                when[arg] = parse_constraint(cnode)
    if "when" in m:
        for arg, cnode in m["when"].mapping().items():
            if arg in when:
                m["when"].fail(f"`{arg}` is already set by the entry", key=arg)
            when[arg] = parse_constraint(cnode)
    addresses: tuple[str, ...] = ()
    if "addresses" in m:
        addresses = tuple(m["addresses"].strings())
        for a in addresses:
            ip = ip_or_none(a)
            if ip is None:
                m["addresses"].fail(f"`{a}` is not an exact IP address (ranges are not allowed)")
    tunnel = m["tunnel"].boolean() if "tunnel" in m else False
    reason = m["reason"].string() if "reason" in m else f"http entry `{entry_id}`"
    origin = f"{node.file}:{node.line}:{node.column}"
    spec = RuleSpec(
        id=f"http:{entry_id}",
        tools=("http",),
        actions=("request",),
        effect=effect,
        mode=ctx.mode,
        when=when,
        reason=reason,
        origin=origin,
        node=node,
    )
    entry = HTTPEntry(
        id=entry_id,
        hosts=hosts,
        schemes=schemes,
        ports=ports,
        methods=methods,
        paths=paths,
        effect=effect,
        addresses=addresses,
        tunnel=tunnel,
    )
    return entry, spec


def _schemes(node: Node) -> tuple[str, ...]:
    out = []
    for n in node.seq_or_one():
        out.append(n.string(choices=("http", "https")))
    return tuple(dict.fromkeys(out))


def _ports(node: Node) -> frozenset[int] | None:
    if node.value in ("any", "*"):
        return None
    return frozenset(n.integer(minimum=1, maximum=65535) for n in node.seq_or_one())


def _methods(node: Node) -> tuple[str, ...]:
    out = []
    for n in node.seq_or_one():
        value = n.string().upper()
        if value not in METHODS:
            n.fail(f"unknown method `{value}`; expected one of: {', '.join(METHODS)}")
        out.append(value)
    return tuple(dict.fromkeys(out))


def _parse_secret(node: Node, ctx: SectionContext) -> SecretSpec:
    m = node.mapping(allowed=_SECRET_KEYS, required=("name", "host", "attach"))
    name = m["name"].string()
    if not _SECRET_NAME.match(name):
        m["name"].fail(f"invalid secret name `{name}`; expected lowercase letters, digits, _ -")
    hosts = tuple(m["host"].strings())
    try:
        compile_host(list(hosts))
    except (PatternError, ValueError) as exc:
        m["host"].fail(f"bad host pattern: {exc}")
    if ("env" in m) == ("file" in m):
        node.fail("a secret needs exactly one of `env` or `file`")
    attach = m["attach"].string(choices=("bearer", "basic", "header", "query"))
    needs = {"header": "header", "query": "param", "basic": "username"}.get(attach)
    if needs and needs not in m:
        node.fail(f"`attach: {attach}` needs `{needs}`")
    header = m["header"].string() if "header" in m else ""
    if header and (not _TOKEN.match(header) or header.lower() in FORBIDDEN_HEADERS):
        m["header"].fail(f"`{header}` cannot carry a secret")
    file = None
    origin = None
    if "file" in m:
        file = Path(m["file"].string())
        if not file.is_absolute():
            file = ctx.base_dir / file
        origin = m["file"].problem("")
    return SecretSpec(
        name=name,
        hosts=hosts,
        attach=attach,
        env=m["env"].string() if "env" in m else "",
        file=file,
        header=header,
        param=m["param"].string() if "param" in m else "",
        username=m["username"].string() if "username" in m else "",
        schemes=_schemes(m["schemes"]) if "schemes" in m else ("https",),
        origin=origin,
    )


# -- credential brokering ----------------------------------------------------------------


class SecretBroker:
    """Attaches configured secrets and masks them (and their encodings) in what comes back."""

    def __init__(self, specs: tuple[SecretSpec, ...]) -> None:
        self.specs = specs
        self._matchers = [(s, compile_host(list(s.hosts))) for s in specs]

    def for_request(self, scheme: str, host: str) -> list[SecretSpec]:
        """The secrets to attach to a request to ``scheme://host``."""
        return [s for s, match in self._matchers if scheme in s.schemes and match(host) is True]

    def attach(
        self, spec: SecretSpec, value: str, headers: dict[str, str], url: httpx.URL
    ) -> httpx.URL:
        """Attach ``value`` as ``spec`` says; return the URL (changed for ``query``)."""
        if spec.attach == "bearer":
            headers["authorization"] = f"Bearer {value}"
        elif spec.attach == "basic":
            token = base64.b64encode(f"{spec.username}:{value}".encode()).decode("ascii")
            headers["authorization"] = f"Basic {token}"
        elif spec.attach == "header":
            headers[spec.header.lower()] = value
        else:
            url = url.copy_set_param(spec.param, value)
        return url

    def forms(self) -> list[tuple[str, str]]:
        """Every loadable secret in the forms it can come back in, longest first."""
        out: list[tuple[str, str]] = []
        for s in self.specs:
            try:
                value = s.load()
            except HTTPError:
                continue
            variants = {value, urllib.parse.quote(value, safe=""), urllib.parse.quote_plus(value)}
            if s.attach == "basic":
                variants.add(base64.b64encode(f"{s.username}:{value}".encode()).decode("ascii"))
            variants.add(base64.b64encode(value.encode()).decode("ascii"))
            out.extend((v, s.placeholder) for v in variants if len(v) >= 4)
        out.sort(key=lambda p: -len(p[0]))
        LOG_MASK.remember(out)
        return out


def mask(text: str, forms: list[tuple[str, str]]) -> str:
    """``text`` with every secret form replaced by its placeholder."""
    for value, placeholder in forms:
        if value in text:
            text = text.replace(value, placeholder)
    return text


class _LogMask(logging.Filter):
    """Masks brokered secrets in log records of the HTTP stack (httpcore traces
    log response headers, which a server may use to echo a credential back)."""

    LOGGERS = ("httpcore.http11", "httpcore.http2", "httpcore.connection", "httpcore.proxy")

    def __init__(self) -> None:
        super().__init__()
        self._forms: dict[str, str] = {}
        self._lock = threading.Lock()
        self._ordered: list[tuple[str, str]] = []

    def install(self) -> None:
        """Add the filter to the HTTP stack's loggers (once)."""
        for name in self.LOGGERS:
            logger = logging.getLogger(name)
            if self not in logger.filters:
                logger.addFilter(self)

    def remember(self, forms: list[tuple[str, str]]) -> None:
        """Mask these secret forms from now on."""
        with self._lock:
            changed = False
            for value, placeholder in forms:
                if value not in self._forms:
                    self._forms[value] = placeholder
                    changed = True
            if changed:
                self._ordered = sorted(self._forms.items(), key=lambda p: -len(p[0]))

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite a record that holds a secret; keep every record."""
        forms = self._ordered
        if forms:
            try:
                text = record.getMessage()
            except Exception:  # a record that cannot format is dropped, not leaked
                return False
            masked = mask(text, forms)
            if masked != text:
                record.msg, record.args = masked, ()
        return True


#: the process-wide log filter for brokered secrets
LOG_MASK = _LogMask()
