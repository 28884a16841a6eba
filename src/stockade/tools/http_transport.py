"""The engine layer of the HTTP tool: resolve once, check, connect to what was checked.

:class:`SafeTransport` is an ordinary httpx transport, so every request that
goes through it (each redirect hop included, whoever follows the redirects)
passes the same check at the moment a socket is opened:

1. the host is an IP literal in canonical form, or a name that the
   :class:`Resolver` is asked about exactly once;
2. every address in the answer is classified (:func:`address_kind`); one
   loopback, private, link-local, CGNAT, multicast, unspecified, IPv4-mapped
   or -compatible, NAT64, 6to4, Teredo, documentation or metadata address
   rejects the host, unless an :class:`AddressPolicy` entry names that exact
   address for that host and port;
3. the socket connects to a checked address (no second lookup, so DNS
   rebinding cannot swap it); the URL keeps its host name, so the ``Host``
   header and the TLS SNI and certificate check still use the name.

This layer does not know the policy's method or path rules: those are the
other, independent layer (``Capability.prepare`` + policy rules).

>>> policy = AddressPolicy([AddressAllowance(("127.0.0.1",), frozenset({8080}), ("127.0.0.1",))])
>>> transport = SafeTransport(policy)  # use with httpx.Client(transport=transport)
"""

from __future__ import annotations

import functools
import ipaddress
import socket
import ssl
import threading
import typing
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import httpcore
import httpx

from stockade.errors import HTTPError
from stockade.policy.matchers import compile_host, normalize_host

__all__ = [
    "METADATA_HOSTS",
    "AddressAllowance",
    "AddressPolicy",
    "CheckedBackend",
    "Resolver",
    "SafeTransport",
    "StaticResolver",
    "SystemResolver",
    "address_kind",
    "is_numeric_host",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Address ranges no request reaches unless a rule names the exact address.
# `not is_global` catches most of them; the list also names the ones Python
# still calls global (NAT64, 6to4, IPv4-compatible, 192.0.0.0/24 on 3.11).
_RANGES: tuple[tuple[str, str], ...] = (
    ("0.0.0.0/8", "unspecified"),
    ("10.0.0.0/8", "private"),
    ("100.64.0.0/10", "cgnat"),
    ("127.0.0.0/8", "loopback"),
    ("169.254.0.0/16", "link-local"),
    ("172.16.0.0/12", "private"),
    ("192.0.0.0/24", "reserved"),
    ("192.0.2.0/24", "documentation"),
    ("192.88.99.0/24", "6to4"),
    ("192.168.0.0/16", "private"),
    ("198.18.0.0/15", "benchmark"),
    ("198.51.100.0/24", "documentation"),
    ("203.0.113.0/24", "documentation"),
    ("224.0.0.0/4", "multicast"),
    ("240.0.0.0/4", "reserved"),
    ("::/128", "unspecified"),
    ("::1/128", "loopback"),
    ("::ffff:0:0/96", "ipv4-mapped"),
    ("::/96", "ipv4-compatible"),
    ("64:ff9b::/96", "nat64"),
    ("64:ff9b:1::/48", "nat64"),
    ("100::/64", "discard"),
    ("2001::/32", "teredo"),
    ("2001:db8::/32", "documentation"),
    ("2002::/16", "6to4"),
    ("fc00::/7", "private"),
    ("fe80::/10", "link-local"),
    ("fec0::/10", "site-local"),
    ("ff00::/8", "multicast"),
)
_NETWORKS = tuple((ipaddress.ip_network(net), kind) for net, kind in _RANGES)

#: cloud metadata endpoints (AWS, GCP, Azure, Alibaba, Oracle, ECS task metadata)
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",
        "169.254.170.2",
        "169.254.169.253",
        "100.100.100.200",
        "192.0.0.192",
        "fd00:ec2::254",
        "fd00:ec2::23",
    )
)

#: host names of cloud metadata services; denied by the tool's own check
METADATA_HOSTS = frozenset(
    {
        "metadata",
        "metadata.google.internal",
        "metadata.goog",
        "metadata.azure.com",
        "instance-data",
        "instance-data.ec2.internal",
        "metadata.tencentyun.com",
    }
)

# Kinds that no rule can open: they are notations or broadcast targets, not hosts.
_NEVER = frozenset(
    {"unspecified", "multicast", "ipv4-mapped", "ipv4-compatible", "nat64", "6to4", "teredo"}
)


@functools.lru_cache(maxsize=4096)
def address_kind(ip: IPAddress) -> str | None:
    """The kind of non-public address ``ip`` is (``loopback``, ``metadata``...), or ``None``.

    >>> address_kind(ipaddress.ip_address("169.254.169.254"))
    'metadata'
    >>> address_kind(ipaddress.ip_address("93.184.215.14")) is None
    True
    """
    if ip in METADATA_ADDRESSES:
        return "metadata"
    for net, kind in _NETWORKS:
        if ip.version == net.version and ip in net:
            return kind
    if not ip.is_global or ip.is_multicast:
        return "reserved"
    return None


def is_numeric_host(host: str) -> bool:
    """Whether ``host`` looks like an IPv4 address in a non-standard form.

    Browsers and ``inet_aton`` read ``2130706433``, ``0x7f.1`` or ``127.1`` as
    addresses; a name whose last label is a number (decimal or ``0x`` hex) is
    one of those and is never resolved.
    """
    last = host.rstrip(".").rsplit(".", 1)[-1].lower()
    if not last:
        return False
    if last.isdigit():
        return True
    return last.startswith("0x") and all(c in "0123456789abcdef" for c in last[2:])


# -- resolvers ----------------------------------------------------------------


@runtime_checkable
class Resolver(Protocol):
    """Answers a host name with addresses. Called once per new connection."""

    def resolve(self, host: str, port: int) -> list[str]:
        """Addresses (canonical text) for ``host``; raise :class:`HTTPError` when none."""
        ...


class SystemResolver:
    """The operating system's resolver (``getaddrinfo``)."""

    def resolve(self, host: str, port: int) -> list[str]:
        """Ask ``getaddrinfo``; keep the answer's order, drop duplicates and scopes."""
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError) as exc:
            raise HTTPError(f"cannot resolve `{host}`") from exc
        out: list[str] = []
        for _family, _type, _proto, _name, sockaddr in infos:
            addr = str(sockaddr[0]).split("%", 1)[0]
            if addr not in out:
                out.append(addr)
        if not out:
            raise HTTPError(f"cannot resolve `{host}`")
        return out


class StaticResolver:
    """An in-process resolver: fixed answers per host, for tests and static maps.

    A host's value is a list of addresses, or a list of such lists answered
    in turn (the last one repeats) to play DNS rebinding. Hosts not in the
    map go to ``fallback`` (none by default: they do not resolve).

    >>> r = StaticResolver({"rebind.test": [["93.184.215.14"], ["127.0.0.1"]]})
    >>> r.resolve("rebind.test", 80), r.resolve("rebind.test", 80)
    (['93.184.215.14'], ['127.0.0.1'])
    """

    def __init__(
        self,
        answers: Mapping[str, Sequence[str] | Sequence[Sequence[str]]],
        fallback: Resolver | None = None,
    ) -> None:
        self._answers: dict[str, list[list[str]]] = {}
        for host, value in answers.items():
            seq = list(value)
            turns = [list(v) for v in seq] if seq and not isinstance(seq[0], str) else [seq]
            self._answers[normalize_host(host)] = turns  # type: ignore[assignment]
        self._fallback = fallback
        self._lock = threading.Lock()
        self.calls: list[str] = []

    def resolve(self, host: str, port: int) -> list[str]:
        """The next answer for ``host``."""
        key = normalize_host(host)
        with self._lock:
            self.calls.append(key)
            turns = self._answers.get(key)
            if turns is None:
                if self._fallback is None:
                    raise HTTPError(f"cannot resolve `{host}`")
            else:
                return list(turns.pop(0) if len(turns) > 1 else turns[0])
        assert self._fallback is not None
        return self._fallback.resolve(host, port)


# -- the address check ----------------------------------------------------------


@dataclass(frozen=True)
class AddressAllowance:
    """Non-public addresses a rule names for some hosts and ports.

    ``ports`` is ``None`` for any port. Addresses are exact, never ranges.
    """

    hosts: tuple[str, ...]
    ports: frozenset[int] | None
    addresses: tuple[str, ...]


class AddressPolicy:
    """Decides whether a host may be reached at an address (the engine layer's rule set)."""

    def __init__(self, allowances: Iterable[AddressAllowance] = ()) -> None:
        self._entries = []
        for a in allowances:
            ips = frozenset(ipaddress.ip_address(x) for x in a.addresses)
            for ip in ips:
                kind = address_kind(ip)
                if kind in _NEVER:
                    raise ValueError(f"`{ip}` is a {kind} address and cannot be allowed")
            self._entries.append((compile_host(list(a.hosts)), a.ports, ips))

    def check(self, host: str, port: int, address: str) -> IPAddress:
        """Return the parsed address when ``host:port`` may be reached at it; else raise."""
        try:
            ip = ipaddress.ip_address(address.split("%", 1)[0])
        except ValueError as exc:
            raise HTTPError(f"`{host}` gave an address that is not one") from exc
        kind = address_kind(ip)
        if kind is None:
            return ip
        if kind not in _NEVER:
            for match, ports, ips in self._entries:
                if ip in ips and (ports is None or port in ports) and match(host) is True:
                    return ip
        raise HTTPError(
            f"`{host}` is at a {kind} address ({ip}) that no rule allows; "
            "only public addresses or exact addresses named in the policy are reached"
        )

    def resolve_checked(self, host: str, port: int, resolver: Resolver) -> list[str]:
        """Resolve ``host`` once and check every answer; return the addresses to try.

        A single forbidden answer rejects the host: an attacker's name must
        not get a chance to pick the internal one on a retry.
        """
        if not 0 < port < 65536:
            raise HTTPError(f"bad port `{port}`")
        h = host[1:-1] if host.startswith("[") and host.endswith("]") else host
        try:
            ip = ipaddress.ip_address(h)
        except ValueError:
            ip = None
        if ip is not None:
            if "%" in h:
                raise HTTPError(f"scoped address `{host}` is not allowed")
            return [str(self.check(str(ip), port, str(ip)))]
        if "%" in h or is_numeric_host(h):
            raise HTTPError(f"`{host}` is not a host name or a canonical IP address")
        try:
            name = normalize_host(h)
        except ValueError as exc:
            raise HTTPError(f"`{host}` is not a valid host name") from exc
        if name in METADATA_HOSTS:
            raise HTTPError(f"`{name}` is a cloud metadata host")
        answers = resolver.resolve(name, port)
        if not answers:
            raise HTTPError(f"cannot resolve `{name}`")
        return [str(self.check(name, port, a)) for a in answers]


# -- httpcore plumbing ------------------------------------------------------------


class CheckedBackend(httpcore.NetworkBackend):
    """An httpcore network backend that resolves, checks, then connects to the checked address."""

    def __init__(
        self,
        addresses: AddressPolicy,
        resolver: Resolver | None = None,
        inner: httpcore.NetworkBackend | None = None,
    ) -> None:
        self.addresses = addresses
        self.resolver: Resolver = resolver or SystemResolver()
        self._inner = inner or httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        """Connect to the first reachable checked address of ``host``."""
        targets = self.addresses.resolve_checked(host, port, self.resolver)
        error: Exception | None = None
        for ip in targets:
            try:
                return self._inner.connect_tcp(ip, port, timeout, local_address, socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                error = exc
        assert error is not None
        raise error

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        """Unix sockets are never reached."""
        raise HTTPError("unix sockets are not reachable through the http tool")

    def sleep(self, seconds: float) -> None:
        """Sleep (used by httpcore between retries)."""
        self._inner.sleep(seconds)


class _Stream(httpx.SyncByteStream):
    def __init__(self, stream: Iterable[bytes], host: str = "") -> None:
        self._stream = stream
        self._host = host

    def __iter__(self) -> Iterator[bytes]:
        with _mapped(self._host):
            yield from self._stream

    def close(self) -> None:
        """Close the underlying httpcore stream."""
        close = getattr(self._stream, "close", None)
        if close is not None:
            close()


class _mapped:
    """Map httpcore's exceptions to :class:`HTTPError` (ours pass through).

    A TLS failure names the host and the reason OpenSSL gives (``self-signed
    certificate``, ``Hostname mismatch...``), not a bare "cannot connect".
    """

    def __init__(self, host: str = "") -> None:
        self.host = host

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, tp: type[BaseException] | None, exc: BaseException | None, tb: object
    ) -> None:
        if exc is None or isinstance(exc, HTTPError):
            return
        tls = _tls_error(exc)
        if tls is not None:
            raise HTTPError(_tls_message(tls, self.host)) from exc
        if isinstance(exc, httpcore.TimeoutException):
            raise HTTPError(f"the request timed out ({_timeout_kind(exc)})") from exc
        if isinstance(exc, httpcore.ConnectError):
            raise HTTPError("cannot connect to the server") from exc
        if isinstance(exc, (httpcore.ProtocolError, httpcore.NetworkError)):
            raise HTTPError(f"the connection failed ({type(exc).__name__})") from exc
        if isinstance(exc, (httpcore.UnsupportedProtocol, httpcore.LocalProtocolError)):
            raise HTTPError(f"the request could not be sent ({type(exc).__name__})") from exc


def _tls_error(exc: BaseException) -> ssl.SSLError | None:
    """The :class:`ssl.SSLError` behind ``exc`` (httpcore wraps it in ConnectError)."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        if isinstance(cur, ssl.SSLError):
            return cur
        seen.add(id(cur))
        cur = cur.__cause__ or cur.__context__
    return None


def _tls_message(exc: ssl.SSLError, host: str) -> str:
    who = f" for `{host}`" if host else ""
    if isinstance(exc, ssl.SSLCertVerificationError):
        reason = exc.verify_message or exc.reason or "unknown reason"
        return f"TLS certificate verify failed{who}: {reason}"
    reason = (exc.reason or type(exc).__name__).lower().replace("_", " ")
    return f"TLS handshake failed{who}: {reason}"


def _timeout_kind(exc: BaseException) -> str:
    kinds: dict[type[BaseException], str] = {
        httpcore.ConnectTimeout: "connect",
        httpcore.ReadTimeout: "read",
        httpcore.WriteTimeout: "write",
        httpcore.PoolTimeout: "pool",
    }
    return kinds.get(type(exc), "timeout")


class SafeTransport(httpx.BaseTransport):
    """An httpx transport whose every connection goes through :class:`CheckedBackend`.

    It ignores proxies and environment variables (there is no proxy code
    path at all) and only speaks ``http`` and ``https``. Redirects are not
    followed here; whoever follows them sends each hop through this
    transport again.
    """

    def __init__(
        self,
        addresses: AddressPolicy,
        resolver: Resolver | None = None,
        *,
        max_connections: int = 20,
        keepalive_expiry: float = 30.0,
        ssl_context: typing.Any = None,
        _backend: httpcore.NetworkBackend | None = None,
    ) -> None:
        self.backend: httpcore.NetworkBackend = _backend or CheckedBackend(addresses, resolver)
        self._pool = httpcore.ConnectionPool(
            ssl_context=ssl_context,
            max_connections=max_connections,
            keepalive_expiry=keepalive_expiry,
            network_backend=self.backend,
        )

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Send one request (one hop) and return the response, body not yet read."""
        if request.url.scheme not in ("http", "https"):
            raise HTTPError(f"scheme `{request.url.scheme}` is not allowed")
        assert isinstance(request.stream, httpx.SyncByteStream)
        req = httpcore.Request(
            method=request.method,
            url=httpcore.URL(
                scheme=request.url.raw_scheme,
                host=request.url.raw_host,
                port=request.url.port,
                target=request.url.raw_path,
            ),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,
        )
        host = request.url.host
        with _mapped(host):
            resp = self._pool.handle_request(req)
        assert isinstance(resp.stream, typing.Iterable)
        return httpx.Response(
            status_code=resp.status,
            headers=resp.headers,
            stream=_Stream(resp.stream, host),
            extensions=resp.extensions,
        )

    def close(self) -> None:
        """Close pooled connections."""
        self._pool.close()
