"""Matchers for argument constraints: glob, host, CIDR, RE2 regex.

All of them run on attacker-controlled text, so all are linear time: globs
and regexes compile to RE2 (never Python's backtracking ``re``), hosts and
addresses are parsed, not pattern-matched.

A matcher answers ``True``, ``False`` or ``None`` (the value cannot be judged:
wrong type, not a host, not an address). The rule that uses it decides what
``None`` means, always the restrictive way.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Callable, Sequence
from typing import Any

import idna
import re2

__all__ = [
    "Matcher",
    "compile_cidr",
    "compile_glob",
    "compile_host",
    "compile_regex",
    "glob_to_regex",
    "normalize_host",
    "parse_ip",
]

Matcher = Callable[[Any], "bool | None"]

_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False
_RE2_OPTIONS.max_mem = 8 << 20


class PatternError(ValueError):
    """A glob, host pattern, regex or CIDR that does not compile."""


def re2_compile(pattern: str) -> Any:
    """Compile ``pattern`` with RE2; raise :class:`PatternError` with RE2's reason."""
    return re2_compile_raw(pattern)


def re2_compile_bytes(pattern: str) -> Any:
    """Compile ``pattern`` for matching UTF-8 bytes (much cheaper to call than str)."""
    return re2_compile_raw(pattern.encode("utf-8"))


def re2_compile_raw(pattern: str | bytes) -> Any:
    try:
        return re2.compile(pattern, options=_RE2_OPTIONS)
    except re2.error as exc:
        reason = exc.args[0] if exc.args else "invalid pattern"
        if isinstance(reason, bytes):
            reason = reason.decode("utf-8", "replace")
        raise PatternError(str(reason)) from None


# -- globs --------------------------------------------------------------------


def glob_to_regex(glob: str) -> str:
    """Translate a path glob to a regular expression for a full match.

    ``*`` matches within one path segment, ``**`` as a whole segment matches
    any number of segments (``dir/**`` matches ``dir`` itself and everything
    under it), ``?`` one character, ``[abc]``/``[!abc]`` a class, ``{a,b}``
    alternatives (not nested). ``/`` is never matched by ``*``, ``?`` or a class.

    >>> import re2; bool(re2.fullmatch(glob_to_regex("notes/**/*.md"), "notes/a/b.md"))
    True
    """
    if not glob:
        raise PatternError("empty glob")
    segments: list[str] = []
    for seg in glob.split("/"):
        if seg == "**" and segments and segments[-1] == "**":
            continue  # `**/**` is the same as `**`
        segments.append(seg)
    n = len(segments)
    parts: list[str] = []
    for i, seg in enumerate(segments):
        if seg == "**":
            if n == 1:
                parts.append(".*")
            elif i == n - 1:
                parts.append("(?:/.*)?")
            elif i == 0:
                parts.append("(?:[^/]+/)*")
            else:
                parts.append("/(?:[^/]+/)*")
            continue
        sep = "" if i == 0 or segments[i - 1] == "**" else "/"
        parts.append(sep + _segment_to_regex(seg, glob))
    return "".join(parts)


def _class_to_regex(body: str, glob: str) -> str:
    negate = body[:1] in ("!", "^")
    if negate:
        body = body[1:]
    if not body:
        raise PatternError(f"empty character class in glob `{glob}`")
    escaped = body.replace("\\", "\\\\").replace("[", "\\[").replace("^", "\\^")
    escaped = escaped.replace("]", "\\]")
    if negate:
        return f"[^/{escaped}]"
    regex = f"[{escaped}]"
    if re2_compile(regex).fullmatch("/") is not None:
        raise PatternError(f"character class `[{body}]` matches `/` in glob `{glob}`")
    return regex


def _segment_to_regex(seg: str, glob: str) -> str:
    out: list[str] = []
    i, n = 0, len(seg)
    in_brace = False
    while i < n:
        c = seg[i]
        if c == "*":
            if i + 1 < n and seg[i + 1] == "*":
                raise PatternError(f"`**` must be a whole path segment in glob `{glob}`")
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            j = i + 1
            if j < n and seg[j] in "!^":
                j += 1
            if j < n and seg[j] == "]":
                j += 1
            while j < n and seg[j] != "]":
                j += 1
            if j >= n:
                raise PatternError(f"unclosed `[` in glob `{glob}`")
            out.append(_class_to_regex(seg[i + 1 : j], glob))
            i = j
        elif c == "{":
            if in_brace:
                raise PatternError(f"nested `{{` in glob `{glob}`")
            in_brace = True
            out.append("(?:")
        elif c == "}" and in_brace:
            in_brace = False
            out.append(")")
        elif c == "," and in_brace:
            out.append("|")
        else:
            out.append(re2.escape(c))
        i += 1
    if in_brace:
        raise PatternError(f"unclosed `{{` in glob `{glob}`")
    return "".join(out)


_GLOB_SPECIAL = frozenset("*?[{")


def _glob_fast_path(pattern: str) -> Matcher | None:
    """Plain string tests for the common glob shapes; ``None`` when RE2 is needed.

    The Python RE2 binding costs microseconds per call, most of it in crossing
    into C++; these shapes cover most policies and cost a string comparison.
    """
    if not any(c in _GLOB_SPECIAL for c in pattern):
        return lambda v: v == pattern
    if pattern == "**":
        return lambda v: True
    if pattern.endswith("/**"):
        base = pattern[:-3]
        if base and not any(c in _GLOB_SPECIAL for c in base) and "//" not in pattern:
            under = base + "/"
            return lambda v: v == base or v.startswith(under)
    if pattern.startswith("**/*"):
        tail = pattern[4:]
        if tail and "/" not in tail and not any(c in _GLOB_SPECIAL for c in tail):
            return lambda v: v.endswith(tail)
    return None


def _non_canonical(path: str) -> bool:
    """Whether a path has `.` or `..` segments or empty inner segments.

    A glob judges canonical paths only: `notes/**` must not admit
    `notes/../secrets/key`. Built-in tools canonicalise before the policy
    decides; for a plain function's argument the glob cannot judge (``None``),
    so an allow rule does not match and a deny rule fires.
    """
    if "//" in path[1:]:
        return True
    if path[:1] == "." and (path == ".." or path.startswith(("./", "../"))):
        return True  # `.` alone is the canonical name of a tool's root
    if "/." not in path:
        return False  # the common case: no segment starts with a dot
    return "/./" in path or "/../" in path or path.endswith(("/.", "/.."))


def compile_glob(patterns: Sequence[str]) -> Matcher:
    """A matcher that is true when a string matches any of ``patterns``."""
    fast: list[Matcher] = []
    slow: list[str] = []
    for p in patterns:
        glob_to_regex(p)  # validate every pattern, fast or not
        f = _glob_fast_path(p)
        if f is not None:
            fast.append(f)
        else:
            slow.append(p)
    compiled = None
    if slow:
        regex = "(?s)(?:" + "|".join(f"(?:{glob_to_regex(p)})" for p in slow) + ")"
        compiled = re2_compile_bytes(regex)

    def match(value: Any) -> bool | None:
        if not isinstance(value, str) or _non_canonical(value):
            return None
        for f in fast:
            if f(value):
                return True
        if compiled is None:
            return False
        return compiled.fullmatch(value.encode("utf-8", "surrogatepass")) is not None

    return match


# -- hosts --------------------------------------------------------------------


@functools.lru_cache(maxsize=4096)
def normalize_host(host: str) -> str:
    """Canonical form of a host name: lowercase, IDNA (UTS 46), no trailing dot.

    IP literals come back in their canonical text form (``[::1]`` → ``::1``).
    Raise ``ValueError`` for something that is not a host name.
    """
    h = host.strip()
    if h.startswith("[") and h.endswith("]"):
        h = h[1:-1]
    if h.endswith("."):
        h = h[:-1]
    if not h or h.endswith("."):
        raise ValueError("empty host")
    if _ASCII_HOST.fullmatch(h) is not None:
        # Fast path: plain ASCII letters, digits, hyphens and dots need no IDNA
        # mapping beyond lowercasing; anything else goes through UTS 46 below.
        lowered = h.lower()
        if not lowered.replace(".", "").isdigit() and ":" not in lowered:
            return lowered
    ip = parse_ip(h)
    if ip is not None:
        return str(ip)
    try:
        return idna.encode(h, uts46=True).decode("ascii")
    except idna.IDNAError as exc:
        raise ValueError(f"not a valid host name: {exc}") from None


def compile_host(patterns: Sequence[str]) -> Matcher:
    """A matcher for host patterns: ``example.com`` exactly, ``*.example.com`` any
    subdomain of it at any depth (not the apex), ``*`` any host.

    Values are normalised with :func:`normalize_host` before matching; a value
    that is not a host gives ``None``.
    """
    exact: set[str] = set()
    suffixes: list[str] = []
    any_host = False
    for p in patterns:
        if p == "*":
            any_host = True
        elif p.startswith("*."):
            suffixes.append("." + normalize_host(p[2:]))
        elif "*" in p:
            raise PatternError(f"`*` may only stand alone or as the first label in host `{p}`")
        else:
            exact.add(normalize_host(p))
    suffix_tuple = tuple(suffixes)

    def match(value: Any) -> bool | None:
        if not isinstance(value, str):
            return None
        try:
            host = normalize_host(value)
        except ValueError:
            return None
        if any_host or host in exact:
            return True
        return bool(suffix_tuple) and host.endswith(suffix_tuple)

    return match


# -- addresses ----------------------------------------------------------------

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_ASCII_HOST = re2_compile(rf"{_LABEL}(?:\.{_LABEL})*")


def parse_ip(value: str) -> IPAddress | None:
    """Parse a canonical IP literal; IPv4-mapped IPv6 comes back as IPv4.

    Only standard dotted-quad and RFC 4291 text forms are accepted: decimal,
    octal, hex or short IPv4 forms are not addresses here (they give ``None``),
    so a rule cannot be sidestepped by writing an address differently. Scoped
    IPv6 addresses (``fe80::1%eth0``) lose their scope.
    """
    text = value.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    if "%" in text:
        text = text.split("%", 1)[0]
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def compile_cidr(networks: Sequence[str]) -> Matcher:
    """A matcher that is true when an IP address lies in any of ``networks``."""
    nets = []
    for n in networks:
        try:
            nets.append(ipaddress.ip_network(n, strict=True))
        except ValueError as exc:
            raise PatternError(str(exc)) from None

    def match(value: Any) -> bool | None:
        if not isinstance(value, str):
            return None
        ip = parse_ip(value)
        if ip is None:
            return None
        return any(ip.version == net.version and ip in net for net in nets)

    return match


# -- regex --------------------------------------------------------------------


def compile_regex(patterns: Sequence[str]) -> Matcher:
    """A matcher that is true when a string fully matches any RE2 pattern."""
    for p in patterns:
        re2_compile(p)  # errors name the pattern as written
    compiled = re2_compile_bytes("|".join(f"(?:{p})" for p in patterns))

    def match(value: Any) -> bool | None:
        if not isinstance(value, str):
            return None
        return compiled.fullmatch(value.encode("utf-8", "surrogatepass")) is not None

    return match
