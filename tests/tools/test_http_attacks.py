"""The attack corpus (tests/attacks/http/attacks.yaml) against each layer, and the legit corpus.

Every attack runs three ways: the whole stack; the policy layer alone (the
engine's address check switched off through ``stockade.hazmat``); the
address layer alone (raw URLs through :class:`SafeTransport` with no policy
at all). An internal loopback server stands for what SSRF reaches: whatever
the outcome, it must never receive a request.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from http_support import LoopbackServer, load_cases, policy_text

from stockade import Guard
from stockade.errors import Denied, HTTPError, StockadeError
from stockade.hazmat.http_transport import disable_address_checks
from stockade.model import Integrity
from stockade.tools.http import HTTPTool
from stockade.tools.http_transport import SafeTransport, StaticResolver

_PORTS = {"PORT": 1, "INTERNAL": 2}  # placeholders, only to list the case ids
ATTACKS = load_cases("attacks.yaml", **_PORTS)
LEGIT = load_cases("legit.yaml", **_PORTS)


def resolver() -> StaticResolver:
    """The in-process resolver: loopback names, the legit API name, metadata."""
    return StaticResolver(
        {
            "localhost": ["127.0.0.1"],
            "ip6-localhost": ["::1"],
            "api.localhost": ["127.0.0.1"],
            "localtest.me": ["127.0.0.1"],
            "127.0.0.1.nip.io": ["127.0.0.1"],
            "api.legit.test": ["127.0.0.1"],
            "metadata.google.internal": ["169.254.169.254"],
        }
    )


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[LoopbackServer, LoopbackServer]]:
    allowed, internal = LoopbackServer(), LoopbackServer()
    yield allowed, internal
    allowed.close()
    internal.close()


@pytest.fixture(scope="module")
def guards(
    servers: tuple[LoopbackServer, LoopbackServer],
) -> Iterator[dict[str, Guard]]:
    """Two guards on the test policy: the whole stack, and the policy layer alone."""
    allowed, internal = servers
    out = {}
    for mode in ("full", "policy-only"):
        guard = Guard.from_text(policy_text(allowed.port, internal.port))
        tool = guard.capability("http")
        assert isinstance(tool, HTTPTool)
        tool.use_resolver(resolver())
        if mode == "policy-only":
            disable_address_checks(tool, resolver())
        out[mode] = guard
    yield out
    for guard in out.values():
        guard.close()


@pytest.fixture
def env(servers: tuple[LoopbackServer, LoopbackServer], guards: dict[str, Guard]) -> dict[str, Any]:
    allowed, internal = servers
    internal.hits.clear()
    tool = guards["full"].capability("http")
    return {
        "guard": guards["full"],
        "unchecked": guards["policy-only"],
        "tool": tool,
        "allowed": allowed,
        "internal": internal,
    }


@functools.lru_cache(maxsize=8)
def _cases(name: str, port: int, internal: int) -> dict[str, dict[str, Any]]:
    return {c["id"]: c for c in load_cases(name, PORT=port, INTERNAL=internal)}


def _case(cases: list[dict[str, Any]], case_id: str, env: dict[str, Any]) -> dict[str, Any]:
    name = "attacks.yaml" if cases is ATTACKS else "legit.yaml"
    return _cases(name, env["allowed"].port, env["internal"].port)[case_id]


def _call(guard: Guard, case: dict[str, Any]) -> Any:
    args = {k: case[k] for k in ("url", "method", "json", "params") if k in case}
    return guard.call("http", "request", args)


@pytest.mark.parametrize("case_id", [c["id"] for c in ATTACKS])
def test_attack_blocked_by_whole_stack(case_id: str, env: dict[str, Any]) -> None:
    case = _case(ATTACKS, case_id, env)
    with pytest.raises((Denied, HTTPError)):
        _call(env["guard"], case)
    assert env["internal"].hits == []


@pytest.mark.parametrize("case_id", [c["id"] for c in ATTACKS if "policy" in c["layers"]])
def test_attack_blocked_by_policy_layer_alone(case_id: str, env: dict[str, Any]) -> None:
    case = _case(ATTACKS, case_id, env)
    with pytest.raises((Denied, HTTPError)):
        _call(env["unchecked"], case)
    assert env["internal"].hits == []


@pytest.mark.parametrize("case_id", [c["id"] for c in ATTACKS if "address" in c["layers"]])
def test_attack_blocked_by_address_layer_alone(case_id: str, env: dict[str, Any]) -> None:
    case = _case(ATTACKS, case_id, env)
    transport = SafeTransport(env["tool"].addresses, resolver())
    client = httpx.Client(
        transport=transport, follow_redirects=True, max_redirects=3, timeout=1.0, trust_env=False
    )
    before = len(env["allowed"].hits)
    try:
        response = client.request(case.get("method", "GET"), case["url"])
    except (StockadeError, httpx.HTTPError, httpx.InvalidURL):
        pass
    else:  # a parser read the URL as the allowed server: it reached only that
        assert response.status_code == 200
        assert len(env["allowed"].hits) == before + 1
    finally:
        client.close()
    assert env["internal"].hits == []


def test_policy_layer_alone_really_is_unchecked(env: dict[str, Any]) -> None:
    """The hazmat switch does turn the address check off (so the tests above mean something)."""
    internal = env["internal"]
    guard = Guard.from_text(
        policy_text(env["allowed"].port, internal.port)
        + f"    - {{id: open, host: localhost, scheme: http, port: {internal.port}}}\n"
    )
    tool = guard.capability("http")
    assert isinstance(tool, HTTPTool)
    tool.use_resolver(resolver())
    with pytest.raises(HTTPError, match="loopback address"):
        guard.call("http", "request", {"url": f"http://localhost:{internal.port}/"})
    disable_address_checks(tool, resolver())
    assert guard.call("http", "request", {"url": f"http://localhost:{internal.port}/"})
    assert len(internal.hits) == 1
    internal.hits.clear()
    guard.close()


@pytest.mark.parametrize("case_id", [c["id"] for c in LEGIT])
def test_legit_request_allowed(case_id: str, env: dict[str, Any]) -> None:
    case = _case(LEGIT, case_id, env)
    result = _call(env["guard"], case)
    assert result.value["status"] == 200
    assert result.call.args["url"] == case["canonical"]
    assert result.labels[0].integrity is Integrity.UNTRUSTED
    assert result.labels[0].source.startswith("http:http://")
    assert result.meta["http_address"] == "127.0.0.1"
    assert env["internal"].hits == []
