"""Glob, host and CIDR matchers against independent reference implementations."""

from __future__ import annotations

import fnmatch
import ipaddress
from functools import cache

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stockade.policy.matchers import (
    PatternError,
    compile_cidr,
    compile_glob,
    compile_host,
    compile_regex,
    normalize_host,
    parse_ip,
)

# -- globs: reference is a segment-wise recursive matcher over fnmatch ----------


def ref_glob(pattern: str, path: str) -> bool:
    pats = []
    for seg in pattern.split("/"):
        if seg == "**" and pats and pats[-1] == "**":
            continue
        pats.append(seg)
    parts = path.split("/")

    @cache
    def go(i: int, j: int) -> bool:
        if i == len(pats):
            return j == len(parts)
        if pats[i] == "**":
            # zero or more whole segments
            return any(go(i + 1, k) for k in range(j, len(parts) + 1))
        if j == len(parts):
            return False
        return fnmatch.fnmatchcase(parts[j], pats[i]) and go(i + 1, j + 1)

    if pats and pats[-1] == "**" and len(pats) > 1:
        # `a/**` also matches `a` itself (and the trailing empty match above covers it)
        pass
    return go(0, 0)


seg_chars = st.sampled_from(list("ab.x-_"))
segment = st.text(seg_chars, min_size=1, max_size=4)
path_st = st.lists(segment, min_size=1, max_size=5).map("/".join)
glob_seg = st.one_of(
    segment,
    st.just("*"),
    st.just("**"),
    st.builds(
        lambda a, b: a + "*" + b, st.text(seg_chars, max_size=2), st.text(seg_chars, max_size=2)
    ),
    st.builds(lambda a: a + "?", st.text(seg_chars, max_size=2)),
    st.builds(lambda a: "[ab]" + a, st.text(seg_chars, max_size=2)),
    st.builds(lambda a: "[!ab]" + a, st.text(seg_chars, max_size=2)),
)
glob_st = st.lists(glob_seg, min_size=1, max_size=4).map("/".join)


@settings(max_examples=600, deadline=None)
@given(glob_st, path_st)
def test_glob_matches_reference(pattern: str, path: str) -> None:
    segments = path.split("/")
    canonical = path == "." or not any(s in (".", "..", "") for s in segments)
    expected = ref_glob(pattern, path) if canonical else None
    assert compile_glob([pattern])(path) == expected, (pattern, path)


@pytest.mark.parametrize(
    "path", ["notes/../secrets/key", "../x", "notes/./a", "a//b", "a/..", ".."]
)
def test_globs_cannot_judge_non_canonical_paths(path: str) -> None:
    assert compile_glob(["**"])(path) is None
    assert compile_glob(["notes/**"])(path) is None


@pytest.mark.parametrize(
    ("pattern", "path", "expected"),
    [
        ("notes/**", "notes", True),
        ("notes/**", "notes/a/b", True),
        ("notes/**", "notesx", False),
        ("**/*.md", "a.md", True),
        ("**/*.md", "x/y/a.md", True),
        ("a/**/b", "a/b", True),
        ("*.{pem,key}", "x.key", True),
        ("*.{pem,key}", "x.crt", False),
        ("*", "a/b", False),
        ("[!a]b", "/b", False),
        (".env*", ".env.local", True),
    ],
)
def test_glob_examples(pattern: str, path: str, expected: bool) -> None:
    assert compile_glob([pattern])(path) is expected


@pytest.mark.parametrize("bad", ["", "a/**b", "x[ab", "{a,{b}}", "{a,b", "[+-0]"])
def test_bad_globs_are_rejected(bad: str) -> None:
    with pytest.raises(PatternError):
        compile_glob([bad])


def test_glob_on_non_string_cannot_judge() -> None:
    assert compile_glob(["**"])(3) is None


def test_glob_is_linear_on_hostile_input() -> None:
    # A backtracking engine takes exponential time here; RE2 does not.
    m = compile_glob(["*a*a*a*a*a*a*a*a*a*a*b"])
    assert m("a" * 5000) is False


# -- hosts: reference is plain label comparison ---------------------------------

label = st.text(st.sampled_from(list("abcxyz019-")), min_size=1, max_size=6).filter(
    lambda s: not s.startswith("-") and not s.endswith("-")
)
host_st = st.lists(label, min_size=1, max_size=4).map(".".join)


def ref_host(pattern: str, host: str) -> bool:
    host = host.lower().rstrip(".")
    if pattern == "*":
        return True
    if pattern.startswith("*."):
        suffix = pattern[2:].lower()
        return host.endswith("." + suffix)
    return host == pattern.lower()


@settings(max_examples=400, deadline=None)
@given(host_st, host_st, st.booleans(), st.booleans(), st.booleans())
def test_host_matches_reference(
    base: str, sub: str, wildcard: bool, upper: bool, dot: bool
) -> None:
    pattern = ("*." + base) if wildcard else base
    for value in (base, f"{sub}.{base}", sub):
        shown = value.upper() if upper else value
        shown = shown + "." if dot else shown
        try:
            normalize_host(value)
        except ValueError:
            continue
        assert compile_host([pattern])(shown) == ref_host(pattern, value), (pattern, shown)


def test_host_idna_and_case() -> None:
    m = compile_host(["bücher.example"])
    assert m("xn--bcher-kva.example") is True
    assert m("BÜCHER.example.") is True
    assert compile_host(["*.example.com"])("example.com") is False
    assert compile_host(["*.example.com"])("a.example.com") is True
    assert compile_host(["example.com"])("") is None
    assert compile_host(["example.com"])(["example.com"]) is None


def test_fullwidth_dots_normalise_to_the_same_host() -> None:
    # UTS 46 maps U+FF0E to '.', so the rule sees the host that would be contacted.
    assert compile_host(["evil.com"])("evil\uff0ecom") is True
    assert compile_host(["good.com"])("evil\uff0ecom") is False


# -- CIDR: reference is integer arithmetic ------------------------------------------


def ref_cidr(net: str, ip: str) -> bool:
    n = ipaddress.ip_network(net)
    a = ipaddress.ip_address(ip)
    if a.version != n.version:
        return False
    mask = ((1 << n.prefixlen) - 1) << (n.max_prefixlen - n.prefixlen)
    return (int(a) & mask) == int(n.network_address)


@settings(max_examples=500, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(0, 32), st.integers(0, 2**32 - 1))
def test_cidr_v4_matches_reference(base: int, prefix: int, probe: int) -> None:
    net = str(ipaddress.ip_network((base, prefix), strict=False))
    ip = str(ipaddress.IPv4Address(probe))
    assert compile_cidr([net])(ip) == ref_cidr(net, ip)


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 2**128 - 1), st.integers(0, 128), st.integers(0, 2**128 - 1))
def test_cidr_v6_matches_reference(base: int, prefix: int, probe: int) -> None:
    net = str(ipaddress.ip_network((base, prefix), strict=False))
    addr = ipaddress.IPv6Address(probe)
    if addr.ipv4_mapped is not None:
        return  # mapped addresses are compared as IPv4, tested below
    assert compile_cidr([net])(str(addr)) == ref_cidr(net, str(addr))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("127.0.0.1", "127.0.0.1"),
        ("::ffff:127.0.0.1", "127.0.0.1"),
        ("[::1]", "::1"),
        ("fe80::1%eth0", "fe80::1"),
        ("2130706433", None),
        ("0x7f.1", None),
        ("0177.0.0.1", None),
        ("127.1", None),
        ("localhost", None),
    ],
)
def test_parse_ip_accepts_only_canonical_forms(value: str, expected: str | None) -> None:
    ip = parse_ip(value)
    assert (str(ip) if ip is not None else None) == expected


def test_mapped_ipv6_matches_ipv4_network() -> None:
    assert compile_cidr(["127.0.0.0/8"])("::ffff:127.0.0.2") is True


def test_regex_is_full_match_and_linear() -> None:
    m = compile_regex(["(a+)+b"])
    assert m("aab") is True
    assert m("xaab") is False
    assert m("a" * 10000) is False  # catastrophic for backtracking engines


def test_bad_regex_is_rejected_without_noise(capfd: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(PatternError, match="invalid perl operator"):
        compile_regex(["(?<=a)b"])
    assert capfd.readouterr().err == ""
