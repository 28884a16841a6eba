"""Regressions for LangChain's SSRF CVEs, replayed against the http tool.

Each LangChain bug is a missing or weak destination check in a tool that
fetches a URL the model (or a fetched page) chose. The same request through
stockade is denied, and the loopback server standing for the internal
service never sees it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from http_support import LoopbackServer, RecordingBackend, load_cases, policy_text

from stockade import Guard
from stockade.errors import Denied, HTTPError
from stockade.hazmat.http_transport import install_backend
from stockade.tools.http import HTTPTool
from stockade.tools.http_transport import CheckedBackend, StaticResolver

PUBLIC = "93.184.215.14"  # a public address; never dialled for real in tests


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[LoopbackServer, LoopbackServer]]:
    allowed, internal = LoopbackServer(), LoopbackServer()
    yield allowed, internal
    allowed.close()
    internal.close()


@pytest.fixture
def env(servers: tuple[LoopbackServer, LoopbackServer]) -> Iterator[dict[str, Any]]:
    allowed, internal = servers
    internal.hits.clear()
    extra = f"""    - id: rebind
      host: rebind.test
      scheme: http
      port: {internal.port}
      reason: a public API whose name an attacker controls the DNS of
"""
    guard = Guard.from_text(policy_text(allowed.port, internal.port, extra))
    tool = guard.capability("http")
    assert isinstance(tool, HTTPTool)
    tool.use_resolver(StaticResolver({"api.legit.test": ["127.0.0.1"], "localhost": ["127.0.0.1"]}))
    yield {"guard": guard, "tool": tool, "allowed": allowed, "internal": internal}
    guard.close()


def _blocked(env: dict[str, Any], url: str) -> None:
    with pytest.raises((Denied, HTTPError)):
        env["guard"].call("http", "request", {"url": url})
    assert env["internal"].hits == []


def test_cve_2023_32786_no_destination_check(env: dict[str, Any]) -> None:
    """APIChain/requests tools fetched whatever URL the model produced (here: injected)."""
    _blocked(env, f"http://127.0.0.1:{env['internal'].port}/admin/delete-all")
    _blocked(env, "http://169.254.169.254/latest/meta-data/iam/security-credentials/")


def test_cve_2024_3095_web_research_retriever(env: dict[str, Any]) -> None:
    """WebResearchRetriever loaded URLs from search results without a check."""
    for url in (
        f"http://localhost:{env['internal'].port}/",
        "http://metadata.google.internal/computeMetadata/v1/instance/",
        f"http://[::1]:{env['internal'].port}/",
    ):
        _blocked(env, url)


def test_cve_2025_2828_requests_toolkit(env: dict[str, Any]) -> None:
    """RequestsToolkit let the model send any method to any address."""
    internal = env["internal"].port
    with pytest.raises(Denied):
        env["guard"].call(
            "http", "request", {"url": f"http://127.0.0.1:{internal}/users/1", "method": "DELETE"}
        )
    # the allowed API is read-only unless a rule grants more
    with pytest.raises(Denied):
        env["guard"].call(
            "http",
            "request",
            {"url": f"http://api.legit.test:{env['allowed'].port}/users/1", "method": "DELETE"},
        )
    assert env["internal"].hits == []


def test_cve_2024_0243_string_prefix_allow_list(env: dict[str, Any]) -> None:
    """RecursiveUrlLoader kept links that merely started with the base URL string."""
    port, internal = env["allowed"].port, env["internal"].port
    base = f"http://api.legit.test:{port}"
    for url in (
        f"{base}@127.0.0.1:{internal}/",
        f"{base}.evil.test/",
        f"{base}0/",
        f"http://api.legit.test.evil.test:{port}/",
        f"{base}\\@127.0.0.1:{internal}/",
    ):
        assert url.startswith("http://api.legit.test")  # passes a string-prefix check
        _blocked(env, url)
    assert env["guard"].call("http", "request", {"url": f"{base}/docs"}).value["status"] == 200
    # a real parser reads `#@...` as a fragment: the request goes to the allowed host only
    r = env["guard"].call("http", "request", {"url": f"{base}#@127.0.0.1:{internal}/"})
    assert r.call.args["url"] == f"{base}/"
    assert env["internal"].hits == []


def test_cve_2026_41488_dns_rebinding_between_check_and_fetch(env: dict[str, Any]) -> None:
    """A name that answers a public address to the check and 127.0.0.1 to the fetch."""
    tool: HTTPTool = env["tool"]
    internal = env["internal"].port
    resolver = StaticResolver({"rebind.test": [[PUBLIC], ["127.0.0.1"]]})
    recorder = RecordingBackend()
    install_backend(tool, CheckedBackend(tool.addresses, resolver, inner=recorder))
    url = f"http://rebind.test:{internal}/"
    # deciding resolves nothing: there is no "check" lookup to rebind against
    assert env["guard"].decide("http", "request", {"url": url}).rule == "http:rebind"
    assert resolver.calls == []
    # the fetch resolves once and dials exactly what it checked (the public answer)
    with pytest.raises(HTTPError, match="cannot connect"):
        env["guard"].call("http", "request", {"url": url})
    assert resolver.calls == ["rebind.test"]
    assert recorder.connects == [(PUBLIC, internal)]
    # the next lookup answers 127.0.0.1: refused before any socket is opened
    with pytest.raises(HTTPError, match="loopback address"):
        env["guard"].call("http", "request", {"url": url})
    assert resolver.calls == ["rebind.test", "rebind.test"]
    assert recorder.connects == [(PUBLIC, internal)]
    assert env["internal"].hits == []


def test_mixed_answer_with_one_internal_address_is_refused(env: dict[str, Any]) -> None:
    tool: HTTPTool = env["tool"]
    resolver = StaticResolver({"rebind.test": [PUBLIC, "127.0.0.1"]})
    recorder = RecordingBackend()
    install_backend(tool, CheckedBackend(tool.addresses, resolver, inner=recorder))
    with pytest.raises(HTTPError, match="loopback address"):
        env["guard"].call("http", "request", {"url": f"http://rebind.test:{env['internal'].port}/"})
    assert recorder.connects == []
    assert env["internal"].hits == []


REBINDING = load_cases("rebinding.yaml", INTERNAL=0)


@pytest.mark.parametrize("case_id", [c["id"] for c in REBINDING])
def test_rebinding_corpus(case_id: str, env: dict[str, Any]) -> None:
    """tests/attacks/http/rebinding.yaml: hostile DNS answers for an allowed name."""
    case = next(c for c in REBINDING if c["id"] == case_id)
    tool: HTTPTool = env["tool"]
    internal = env["internal"].port
    answers = case["answers"]
    resolver = StaticResolver({"rebind.test": answers if len(answers) > 1 else answers[0]})
    recorder = RecordingBackend()
    install_backend(tool, CheckedBackend(tool.addresses, resolver, inner=recorder))
    for _ in range(3):
        with pytest.raises(HTTPError):
            env["guard"].call("http", "request", {"url": f"http://rebind.test:{internal}/"})
    assert env["internal"].hits == []
    assert all(host == PUBLIC for host, _ in recorder.connects)
