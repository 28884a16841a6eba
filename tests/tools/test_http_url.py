"""Canonical URLs and address classes: vectors and generated mutations."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stockade.errors import HTTPError
from stockade.tools.http_transport import (
    AddressAllowance,
    AddressPolicy,
    StaticResolver,
    address_kind,
    is_numeric_host,
)
from stockade.tools.http_url import canonical_request

HOSTS = st.sampled_from(
    [
        "example.com",
        "EXAMPLE.com.",
        "ｅｘａｍｐｌｅ.com",
        "bücher.de",
        "a.b.c.example.org",
        "93.184.215.14",
        "[2606:2800:220:1:248:1893:25c8:1946]",
        "xn--bcher-kva.de",
    ]
)
PATH_CHARS = st.text(
    alphabet=st.sampled_from(list("abcXYZ019-._~!$&'()*+,;=:@/%20é ")), max_size=30
)


@given(
    scheme=st.sampled_from(["http", "https", "HTTP"]),
    host=HOSTS,
    port=st.one_of(st.none(), st.integers(1, 65535)),
    path=PATH_CHARS,
    query=st.dictionaries(st.text("abc", min_size=1, max_size=3), st.text("xyz &=", max_size=4)),
)
@settings(max_examples=300, deadline=None)
def test_canonical_form_is_a_fixed_point(
    scheme: str, host: str, port: int | None, path: str, query: dict[str, str]
) -> None:
    url = f"{scheme}://{host}" + (f":{port}" if port else "") + "/" + path.replace(" ", "%20")
    if query:
        url += "?" + "&".join(
            f"{k}={v.replace(' ', '+').replace('&', '%26')}" for k, v in query.items()
        )
    try:
        first = canonical_request({"url": url})
    except HTTPError:
        return  # a bad escape the generator made; refusing is fine
    again = canonical_request({"url": first["url"]})
    assert again == first
    assert "@" not in first["url"].split("/", 3)[2]
    assert first["host"] == first["host"].lower()
    assert not first["host"].endswith(".")


@given(st.text(max_size=80))
@settings(max_examples=500, deadline=None)
def test_any_text_gives_a_canonical_url_or_an_http_error(text: str) -> None:
    try:
        out = canonical_request({"url": text})
    except HTTPError:
        return
    assert out["scheme"] in ("http", "https")
    assert not any(c.isspace() or c == "\\" for c in out["url"])


@given(st.integers(0, 2**32 - 1), st.sampled_from(["dec", "hex", "oct", "short"]))
def test_numeric_ipv4_forms_are_never_hosts(value: int, form: str) -> None:
    octets = ipaddress.IPv4Address(value).packed
    host = {
        "dec": str(value),
        "hex": hex(value),
        "oct": ".".join("0" + oct(o)[2:] for o in octets),
        "short": f"{octets[0]}.{int.from_bytes(octets[1:], 'big')}",
    }[form]
    assert is_numeric_host(host)
    with pytest.raises(HTTPError):
        canonical_request({"url": f"http://{host}/"})


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("127.0.0.1", "loopback"),
        ("10.1.2.3", "private"),
        ("172.31.255.255", "private"),
        ("192.168.0.1", "private"),
        ("100.64.0.1", "cgnat"),
        ("169.254.169.254", "metadata"),
        ("169.254.1.1", "link-local"),
        ("100.100.100.200", "metadata"),
        ("192.0.0.192", "metadata"),
        ("0.0.0.0", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("255.255.255.255", "reserved"),
        ("::1", "loopback"),
        ("::", "unspecified"),
        ("::ffff:8.8.8.8", "ipv4-mapped"),
        ("::8.8.8.8", "ipv4-compatible"),
        ("64:ff9b::808:808", "nat64"),
        ("2002:808:808::1", "6to4"),
        ("2001:0:1::1", "teredo"),
        ("fe80::1", "link-local"),
        ("fd00:ec2::254", "metadata"),
        ("fc00::1", "private"),
        ("ff02::1", "multicast"),
        ("8.8.8.8", None),
        ("2606:4700:4700::1111", None),
    ],
)
def test_address_kinds(address: str, kind: str | None) -> None:
    assert address_kind(ipaddress.ip_address(address)) == kind


def test_address_policy_exact_allowances() -> None:
    policy = AddressPolicy(
        [AddressAllowance(("api.internal.test",), frozenset({8443}), ("10.0.0.5",))]
    )
    resolver = StaticResolver(
        {"api.internal.test": ["10.0.0.5"], "other.test": ["10.0.0.5"], "mixed.test": ["10.0.0.6"]}
    )
    assert policy.resolve_checked("api.internal.test", 8443, resolver) == ["10.0.0.5"]
    for host, port in (("api.internal.test", 443), ("other.test", 8443), ("mixed.test", 8443)):
        with pytest.raises(HTTPError, match="private address"):
            policy.resolve_checked(host, port, resolver)
    for bad in ("0x7f.1", "metadata.google.internal", "fe80::1%eth0", "a..b"):
        with pytest.raises(HTTPError):
            policy.resolve_checked(bad, 80, resolver)
    with pytest.raises(HTTPError, match="bad port"):
        policy.resolve_checked("api.internal.test", 70000, resolver)
    with pytest.raises(ValueError, match="cannot be allowed"):
        AddressPolicy([AddressAllowance(("*",), None, ("::ffff:10.0.0.1",))])


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http:///path", "no host"),
        ("http://[::1/", "cannot be parsed"),
        ("http://[not-ip]/", "cannot be parsed"),
        ("http://[fe80::1%25x]/", "scoped host"),
        ("http://[::1]x/", "bad IPv6 literal"),
        ("http://a..b/", "not a valid host name"),
        ("http://a.test/%zz", "bad percent escape"),
        ("http://a.test/%2", "bad percent escape"),
        ("http://a.test/a%00b", "encoded slash, backslash or NUL"),
        ("http://a.test/a%5Cb", "encoded slash, backslash or NUL"),
        ("http://a.test:0/", "bad port"),
        ("http://a.test:８０/", "bad port"),
        ("http://a.test:/", "bad port"),
        ("http://" + "a" * 8200 + ".test/", "longer than 8192"),
        ("http://a.test/?" + "&".join(f"k{i}=v" for i in range(300)), "too many fields"),
        ("ftp://a.test/", "scheme `ftp` is not allowed"),
        ("//a.test/", "scheme `` is not allowed"),
        ("http://a.test/\x85", "control character"),
    ],
)
def test_refused_urls(url: str, message: str) -> None:
    with pytest.raises(HTTPError, match=message):
        canonical_request({"url": url})


@pytest.mark.parametrize(
    ("url", "canonical"),
    [
        ("https://A.test:443/", "https://a.test/"),
        ("http://a.test:8080", "http://a.test:8080/"),
        ("http://a.test/a/b/..", "http://a.test/a/"),
        ("http://a.test/a/.", "http://a.test/a/"),
        ("http://a.test/../../x", "http://a.test/x"),
        ("http://a.test/%7e%41%2e", "http://a.test/~A."),
        ("http://a.test/%c3%a9", "http://a.test/%C3%A9"),
        ("http://a.test/a b".replace(" ", "%20"), "http://a.test/a%20b"),
        ("http://a.test/<x>", "http://a.test/%3Cx%3E"),
        ("http://[2001:DB8::1]:8443/", "http://[2001:db8::1]:8443/"),
        ("http://a.test/?b=2&a=1&b=3", "http://a.test/?b=2&a=1&b=3"),
    ],
)
def test_canonical_vectors(url: str, canonical: str) -> None:
    assert canonical_request({"url": url})["url"] == canonical


def test_repeated_query_keys_become_lists() -> None:
    out = canonical_request({"url": "http://a.test/?b=2&a=1&b=3", "params": {"c": [1, "x"]}})
    assert out["query"] == {"b": ["2", "3"], "a": "1", "c": ["1", "x"]}


def test_system_resolver_reads_the_hosts_file() -> None:
    from stockade.tools.http_transport import SystemResolver

    assert set(SystemResolver().resolve("localhost", 80)) & {"127.0.0.1", "::1"}
