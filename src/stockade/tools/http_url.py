"""Canonical HTTP requests: one spelling per request, so rules decide on what is sent.

:func:`canonical_request` turns an agent's ``url``/``method``/``headers``/
``body``/``json``/``params`` into the arguments the policy, the scanners and
the audit log see. Anything a second parser could read differently is an
error (:class:`~stockade.errors.HTTPError`, which the guard turns into a deny
with rule ``http:invalid``): user info, backslashes, control characters,
percent-encoded hosts, non-standard IPv4 forms (``2130706433``, ``0x7f.1``,
``0177.0.0.1``, ``127.1``), IPv4-mapped or -compatible IPv6, scoped IPv6,
encoded slashes in the path, ports out of range. Host names are normalised
(IDNA UTS 46, so full-width letters and Unicode dots fold, case, trailing
dot); dot segments are removed; the fragment is dropped. The result is
parsed again with httpx's parser and both must agree.
"""

from __future__ import annotations

import functools
import ipaddress
import json
import re
import urllib.parse
from collections.abc import Mapping
from typing import Any

import httpx

from stockade.errors import HTTPError
from stockade.policy.matchers import normalize_host
from stockade.tools.http_transport import is_numeric_host

__all__ = [
    "DEFAULT_PORTS",
    "FORBIDDEN_HEADERS",
    "METHODS",
    "READ_ONLY",
    "canonical_connect",
    "canonical_request",
    "ip_or_none",
]

METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
READ_ONLY = ("GET", "HEAD")
DEFAULT_PORTS = {"http": 80, "https": 443}
FORBIDDEN_HEADERS = frozenset(
    {
        "host",
        "content-length",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "upgrade",
        "te",
        "trailer",
        "expect",
        "accept-encoding",
        "proxy-authorization",
        "proxy-connection",
    }
)
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,100}$")
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_PATH_SAFE = "/!$&'()*+,;=:@-._~%"


def ip_or_none(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """Parse a canonical IP literal, or ``None``."""
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _bad(message: str) -> HTTPError:
    return HTTPError(message)


def _canonical_host(raw: str) -> str:
    if not raw:
        raise _bad("the URL has no host")
    if "%" in raw:
        raise _bad(f"percent-encoded or scoped host `{raw}` is not allowed")
    if raw.startswith("["):
        if not raw.endswith("]"):
            raise _bad(f"bad IPv6 literal `{raw}`")
        try:
            ip6 = ipaddress.IPv6Address(raw[1:-1])
        except ValueError as exc:
            raise _bad(f"bad IPv6 literal `{raw}`") from exc
        if ip6.ipv4_mapped is not None or (
            int(ip6) >> 32 == 0 and int(ip6) > 1
        ):  # ::ffff:a.b.c.d and ::a.b.c.d write an IPv4 address in IPv6 clothes
            raise _bad(f"IPv4-mapped or -compatible address `{raw}` is not allowed")
        return str(ip6)
    try:
        host = normalize_host(raw)
    except ValueError as exc:
        raise _bad(f"`{raw}` is not a valid host name") from exc
    if ":" in host:  # an unbracketed IPv6 literal
        raise _bad(f"IPv6 address `{raw}` must be in brackets")
    try:
        return str(ipaddress.IPv4Address(host))
    except ValueError:
        pass
    if is_numeric_host(host):
        raise _bad(f"`{raw}` is not a canonical IP address or a host name")
    return host


def _canonical_path(raw: str) -> str:
    if not raw:
        return "/"
    out: list[str] = []
    i, n = 0, len(raw)
    while i < n:
        c = raw[i]
        if c == "%":
            hexpart = raw[i + 1 : i + 3]
            if len(hexpart) != 2 or any(h not in "0123456789abcdefABCDEF" for h in hexpart):
                raise _bad("the URL path has a bad percent escape")
            ch = chr(int(hexpart, 16))
            if ch in ("/", "\\", "\0"):
                raise _bad("the URL path has an encoded slash, backslash or NUL")
            out.append(ch if ch in _UNRESERVED else "%" + hexpart.upper())
            i += 3
            continue
        out.append(c if c in _PATH_SAFE or c in _UNRESERVED else urllib.parse.quote(c, safe=""))
        i += 1
    path = "".join(out)
    if not path.startswith("/"):
        path = "/" + path
    segments: list[str] = []
    parts = path.split("/")[1:]
    for k, seg in enumerate(parts):
        last = k == len(parts) - 1
        if seg == ".":
            if last:
                segments.append("")
        elif seg == "..":
            if segments:
                segments.pop()
            if last:
                segments.append("")
        else:
            segments.append(seg)
    return "/" + "/".join(segments)


def _query_pairs(raw: str) -> list[tuple[str, str]]:
    try:
        return urllib.parse.parse_qsl(raw, keep_blank_values=True, max_num_fields=200)
    except ValueError as exc:
        raise _bad("the URL query has too many fields") from exc


@functools.lru_cache(maxsize=4096)
def _split_url(url: str) -> tuple[str, str, int, str, tuple[tuple[str, str], ...]]:
    """Scheme, canonical host, port, canonical path and query pairs of ``url`` (cached:
    a pure function, and agents fetch the same URLs again and again)."""
    if len(url) > 8192:
        raise _bad("the URL is longer than 8192 characters")
    for ch in url:
        if ord(ch) <= 0x20 or ord(ch) == 0x7F or ch == "\\" or 0x80 <= ord(ch) <= 0x9F:
            raise _bad("the URL contains a space, control character or backslash")
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError as exc:
        raise _bad("the URL cannot be parsed") from exc
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise _bad(f"scheme `{parts.scheme}` is not allowed; use http or https")
    netloc = parts.netloc
    if "@" in netloc:
        raise _bad("URLs with a user name or password are not allowed")
    if netloc.startswith("["):
        close = netloc.find("]")
        raw_host, rest = netloc[: close + 1], netloc[close + 1 :]
        if close < 0 or (rest and not rest.startswith(":")):
            raise _bad("bad IPv6 literal in the URL")
        raw_port = rest[1:] if rest else None
    elif ":" in netloc:
        raw_host, _, raw_port = netloc.partition(":")
    else:
        raw_host, raw_port = netloc, None
    if raw_port is not None:
        if not raw_port.isascii() or not raw_port.isdigit() or not 0 < int(raw_port) < 65536:
            raise _bad(f"bad port `{raw_port}`")
        port = int(raw_port)
    else:
        port = DEFAULT_PORTS[scheme]
    host = _canonical_host(raw_host)
    path = _canonical_path(parts.path)
    return scheme, host, port, path, tuple(_query_pairs(parts.query))


def canonical_request(args: Mapping[str, Any], max_body: int = 1 << 20) -> dict[str, Any]:
    """The canonical arguments for a request (what rules, scanners and audit see).

    Raise :class:`HTTPError` for anything ambiguous: userinfo, backslashes,
    control characters, non-standard IP forms, encoded slashes, bad ports.

    >>> canonical_request({"url": "HTTPS://Ｄocs.Example.com.:443/a/./b/../c?x=1#frag"})["url"]
    'https://docs.example.com/a/c?x=1'
    """
    url = args.get("url")
    if not isinstance(url, str) or not url:
        raise _bad("`url` must be a non-empty string")
    scheme, host, port, path, url_pairs = _split_url(url)
    pairs = list(url_pairs)
    params = args.get("params")
    if params is not None:
        if not isinstance(params, Mapping):
            raise _bad("`params` must be a mapping")
        for k, v in params.items():
            for item in v if isinstance(v, list) else [v]:
                if not isinstance(k, str) or not isinstance(item, (str, int, float)):
                    raise _bad("`params` values must be strings or numbers")
                pairs.append((k, str(item)))
    query: dict[str, Any] = {}
    for k, v in pairs:
        if k in query:
            prev = query[k]
            query[k] = [*prev, v] if isinstance(prev, list) else [prev, v]
        else:
            query[k] = v
    qs = urllib.parse.urlencode(pairs, quote_via=urllib.parse.quote)
    url_host = f"[{host}]" if ":" in host else host
    port_part = "" if port == DEFAULT_PORTS[scheme] else f":{port}"
    canonical = f"{scheme}://{url_host}{port_part}{path}" + (f"?{qs}" if qs else "")
    _cross_check(canonical, host, port, path)

    method = args.get("method", "GET")
    if not isinstance(method, str) or method.upper() not in METHODS:
        raise _bad(f"method `{method}` is not allowed; expected one of: {', '.join(METHODS)}")
    method = method.upper()
    headers = _canonical_headers(args.get("headers"))
    body = _canonical_body(args, headers, max_body)
    if method == "HEAD" and body:
        raise _bad("a HEAD request has no body")
    return {
        "url": canonical,
        "method": method,
        "scheme": scheme,
        "host": host,
        "port": port,
        "path": path,
        "query": query,
        "headers": headers,
        "body": body,
    }


@functools.lru_cache(maxsize=4096)
def _cross_check(canonical: str, host: str, port: int, path: str) -> None:
    """Parse the canonical URL again with httpx's parser: both must agree."""
    try:
        x = httpx.URL(canonical)
    except httpx.InvalidURL as exc:
        raise _bad("the URL is ambiguous") from exc
    xhost = x.host
    same = ip_or_none(xhost) == ip_or_none(host) if ":" in host else xhost == host
    xpath = x.raw_path.decode("ascii").split("?", 1)[0]
    if not same or (x.port or DEFAULT_PORTS[x.scheme]) != port or xpath != path:
        raise _bad("the URL is ambiguous")


def _canonical_headers(raw: Any) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise _bad("`headers` must be a mapping of names to strings")
    if len(raw) > 50:
        raise _bad("more than 50 headers")
    out: dict[str, str] = {}
    for name, value in raw.items():
        if not isinstance(name, str) or not _TOKEN.match(name):
            raise _bad(f"bad header name `{str(name)[:40]}`")
        lname = name.lower()
        if lname in FORBIDDEN_HEADERS or lname.startswith("proxy-"):
            raise _bad(f"header `{lname}` is set by stockade, not by the agent")
        if not isinstance(value, str) or len(value) > 8192:
            raise _bad(f"header `{lname}` must be a string of at most 8192 characters")
        if any(c in value for c in "\r\n\0"):
            raise _bad(f"header `{lname}` contains a line break")
        out[lname] = value
    return out


def _canonical_body(args: Mapping[str, Any], headers: dict[str, str], max_body: int) -> str:
    body = args.get("body")
    if "json" in args and args["json"] is not None:
        if body is not None:
            raise _bad("give `body` or `json`, not both")
        try:
            body = json.dumps(args["json"], ensure_ascii=False, separators=(",", ":"))
        except (TypeError, ValueError) as exc:
            raise _bad("`json` is not JSON-serialisable") from exc
        headers.setdefault("content-type", "application/json")
    if body is None:
        return ""
    if not isinstance(body, str):
        raise _bad("`body` must be a string")
    size = len(body.encode("utf-8", "surrogatepass"))
    if size > max_body:
        raise _bad(f"the request body is {size} bytes; the limit is {max_body}")
    return body


def canonical_connect(args: Mapping[str, Any]) -> dict[str, Any]:
    """Canonical arguments of a proxy CONNECT: ``host`` and ``port``."""
    host = args.get("host")
    port = args.get("port")
    if not isinstance(host, str) or isinstance(port, bool) or not isinstance(port, int):
        raise _bad("`connect` needs a host and a port")
    if not 0 < port < 65536:
        raise _bad(f"bad port `{port}`")
    return {"host": _canonical_host(host), "port": port}
