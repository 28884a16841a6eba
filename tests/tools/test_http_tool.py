"""The http tool: credentials brokered and never shown, labels, methods, config, fail closed."""

from __future__ import annotations

import base64
import logging
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from http_support import LoopbackServer, policy_text

from stockade import ApprovalRequired, Guard, MemoryAuditSink, Policy
from stockade.errors import Denied, HTTPError, PolicyError, StockadeError, ToolError
from stockade.model import Integrity, ToolCall
from stockade.tools.http import HTTPTool
from stockade.tools.http_transport import StaticResolver


@pytest.fixture(scope="module")
def server() -> Iterator[LoopbackServer]:
    s = LoopbackServer()
    yield s
    s.close()


def _guard(text: str, audit: MemoryAuditSink | None = None) -> Guard:
    guard = Guard.from_text(text, audit=audit or MemoryAuditSink())
    tool = guard.capability("http")
    assert isinstance(tool, HTTPTool)
    tool.use_resolver(StaticResolver({"api.legit.test": ["127.0.0.1"]}))
    return guard


def _texts(exc: BaseException | None) -> list[str]:
    out: list[str] = []
    todo, seen = [exc], set()
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        out.append(f"{type(e).__name__}: {e} {e.args!r}")
        todo += [e.__cause__, e.__context__]
    return out


@pytest.mark.parametrize("attach", ["bearer", "basic", "header", "query"])
def test_secret_never_reaches_the_model_audit_or_logs(
    attach: str,
    server: LoopbackServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    secret = "sk-" + secrets.token_hex(16)
    how = {
        "bearer": "attach: bearer",
        "basic": "attach: basic\n      username: bot",
        "header": "attach: header\n      header: X-Api-Key",
        "query": "attach: query\n      param: api_key",
    }[attach]
    if attach == "header":
        (tmp_path / "key").write_text(secret + "\n")
        source = f"file: {tmp_path / 'key'}"
    else:
        monkeypatch.setenv("STOCKADE_TEST_SECRET", secret)
        source = "env: STOCKADE_TEST_SECRET"
    extra = f"""  secrets:
    - name: test-api
      host: 127.0.0.1
      schemes: [http]
      {source}
      {how}
"""
    caplog.set_level(logging.DEBUG)
    audit = MemoryAuditSink()
    guard = _guard(policy_text(server.port, 1, extra), audit)
    seen: list[str] = []
    server.hits.clear()
    # 1. the server echoes the credential back in its body and in a header
    r = guard.call("http", "request", {"url": server.url("/echo?x=1")})
    seen += [repr(r.value), repr(r.meta), repr(r.labels), repr(r.call)]
    assert "<SECRET_TEST_API>" in r.value["body"] + repr(r.value["headers"]) + r.value["url"]
    assert r.meta["http_credentials"] == ["test-api"]
    # 2. a redirect that carries the query (with a query-attached secret) along:
    #    not followed when the new URL holds the credential
    if attach == "query":
        with pytest.raises(HTTPError, match="carries a brokered credential") as refused:
            guard.call("http", "request", {"url": server.url("/echo-redirect")})
        seen += _texts(refused.value)
    else:
        r = guard.call("http", "request", {"url": server.url("/echo-redirect")})
        seen += [repr(r.value), repr(r.meta), repr(r.labels)]
    # 3. the model sets its own Authorization: replaced, never echoed as the secret
    r = guard.call(
        "http", "request", {"url": server.url("/echo"), "headers": {"Authorization": "mine"}}
    )
    seen.append(repr(r.value))
    # 4. a denied call and a failing call
    for args in (
        {"url": "http://169.254.169.254/latest/meta-data/"},
        {"url": server.url("/binary")},
        {"url": server.url("/redirect?to=http://evil.test/")},
    ):
        with pytest.raises(StockadeError) as info:
            guard.call("http", "request", args)
        seen += _texts(info.value)
    # the server did get the real credential: brokering works
    raw = repr(server.hits)
    encoded = base64.b64encode(f"bot:{secret}".encode()).decode()
    assert secret in raw or encoded in raw
    # ... and nothing the model, the audit log or the logs hold has it
    seen += [repr(e) for e in audit.events]
    seen.append(caplog.text)
    seen += [repr(rec.__dict__) for rec in caplog.records]
    blob = "\n".join(seen)
    for form in (secret, encoded):
        assert form not in blob
    guard.close()


def test_secret_only_goes_to_its_host(
    server: LoopbackServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STOCKADE_TEST_SECRET", "tok-" + secrets.token_hex(8))
    extra = """  secrets:
    - {name: t, host: 127.0.0.1, schemes: [http], env: STOCKADE_TEST_SECRET, attach: bearer}
"""
    guard = _guard(policy_text(server.port, 1, extra))
    server.hits.clear()
    target = f"http://api.legit.test:{server.port}/echo"
    r = guard.call("http", "request", {"url": server.url(f"/redirect?to={target}")})
    assert r.value["status"] == 200
    assert "authorization" in server.hits[0]["headers"]
    assert "authorization" not in server.hits[1]["headers"]  # the hop to another host
    r = guard.call("http", "request", {"url": target})
    assert "authorization" not in server.hits[2]["headers"]
    guard.close()


def test_secret_not_sent_over_a_scheme_it_does_not_name(
    server: LoopbackServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STOCKADE_TEST_SECRET", "tok-" + secrets.token_hex(8))
    extra = """  secrets:
    - {name: t, host: 127.0.0.1, env: STOCKADE_TEST_SECRET, attach: bearer}
"""
    guard = _guard(policy_text(server.port, 1, extra))
    server.hits.clear()
    guard.call("http", "request", {"url": server.url("/echo")})
    assert "authorization" not in server.hits[0]["headers"]  # https only by default
    guard.close()


def test_missing_secret_fails_without_sending(
    server: LoopbackServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("STOCKADE_NOT_SET", raising=False)
    extra = """  secrets:
    - {name: t, host: 127.0.0.1, schemes: [http], env: STOCKADE_NOT_SET, attach: bearer}
"""
    guard = _guard(policy_text(server.port, 1, extra))
    server.hits.clear()
    with pytest.raises(HTTPError, match="secret `t` is not available"):
        guard.call("http", "request", {"url": server.url("/")})
    assert server.hits == []
    guard.close()


def test_describe_shows_placeholders_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STOCKADE_TEST_SECRET", "do-not-show-me")
    extra = """  secrets:
    - {name: t, host: 127.0.0.1, env: STOCKADE_TEST_SECRET, attach: bearer}
"""
    guard = _guard(policy_text(1, 2, extra))
    tool = guard.capability("http")
    assert tool is not None
    assert "<SECRET_T>" in repr(tool.describe())
    assert "do-not-show-me" not in repr(tool.describe()) + repr(guard.policy.sections)
    guard.close()


def test_response_is_untrusted_and_cookies_dropped(server: LoopbackServer) -> None:
    guard = _guard(policy_text(server.port, 1))
    r = guard.call("http", "request", {"url": server.url("/hello")})
    assert r.labels[0].source == f"http:{server.url('/hello')}"
    assert r.labels[0].integrity is Integrity.UNTRUSTED
    assert r.value["headers"]["content-type"] == "application/json"
    assert r.meta["http_address"] == "127.0.0.1"
    guard.close()


def test_read_only_unless_a_rule_allows_more(server: LoopbackServer) -> None:
    extra = f"""    - id: write-ask
      host: 127.0.0.1
      scheme: http
      port: {server.port}
      methods: [DELETE]
      path: /items/*
      effect: ask
"""
    guard = _guard(policy_text(server.port, 1, extra))
    url = f"http://api.legit.test:{server.port}/items/1"
    with pytest.raises(Denied, match="default-deny"):
        guard.call("http", "request", {"url": url, "method": "DELETE"})
    with pytest.raises(ApprovalRequired):
        guard.call("http", "request", {"url": server.url("/items/1"), "method": "delete"})
    with pytest.raises(Denied):
        guard.call("http", "request", {"url": server.url("/other/1"), "method": "DELETE"})
    guard.close()
    approving = Guard.from_text(policy_text(server.port, 1, extra), approver=lambda req: True)
    server.hits.clear()
    r = approving.call("http", "request", {"url": server.url("/items/1"), "method": "DELETE"})
    assert r.value["status"] == 200 and server.hits[0]["method"] == "DELETE"
    approving.close()


def test_query_and_header_constraints(server: LoopbackServer) -> None:
    extra = f"""    - id: search
      host: 127.0.0.1
      scheme: http
      port: {server.port}
      path: /search
      query: {{q: {{length: {{max: 20}}}}}}
      headers: {{X-Client: {{one_of: [agent]}}}}
"""
    text = policy_text(server.port, 1, extra).replace("      methods: [GET, HEAD, POST]\n", "")
    text = text.replace(
        "      host: 127.0.0.1\n      scheme: http\n      port",
        "      host: 127.0.0.2\n      scheme: http\n      port",
        1,
    )
    guard = _guard(text)
    ok = {"url": server.url("/search?q=short"), "headers": {"X-Client": "agent"}}
    assert guard.call("http", "request", ok).value["status"] == 200
    with pytest.raises(Denied):
        guard.call("http", "request", {**ok, "url": server.url("/search?q=" + "x" * 30)})
    with pytest.raises(Denied):
        guard.call("http", "request", {**ok, "headers": {"X-Client": "other"}})
    with pytest.raises(Denied):
        guard.call("http", "request", {"url": server.url("/search?q=short")})
    guard.close()


def test_static_hosts_map_in_the_policy(server: LoopbackServer) -> None:
    text = f"""
version: 1
http:
  hosts: {{api.internal.test: 127.0.0.1}}
  allow:
    - {{id: api, host: api.internal.test, scheme: http, port: {server.port}, addresses: [127.0.0.1]}}
"""
    with Guard.from_text(text) as guard:
        r = guard.call("http", "request", {"url": f"http://api.internal.test:{server.port}/x"})
        assert r.value["status"] == 200


def test_named_internal_host_needs_an_exact_address(server: LoopbackServer) -> None:
    text = f"""
version: 1
http:
  hosts: {{api.internal.test: 127.0.0.1}}
  allow:
    - {{id: api, host: api.internal.test, scheme: http, port: {server.port}}}
"""
    with Guard.from_text(text) as guard, pytest.raises(HTTPError, match="loopback address"):
        guard.call("http", "request", {"url": f"http://api.internal.test:{server.port}/x"})


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        ({"url": 42}, "must be a non-empty string"),
        ({"url": "http://x.test/", "headers": ["a"]}, "must be a mapping"),
        ({"url": "http://x.test/", "headers": {"Host": "evil"}}, "set by stockade"),
        ({"url": "http://x.test/", "headers": {"X-A": "a\r\nB: c"}}, "line break"),
        ({"url": "http://x.test/", "body": "a", "json": {}}, "not both"),
        ({"url": "http://x.test/", "body": b"bytes"}, "must be a string"),
        ({"url": "http://x.test/", "body": "x" * 70000}, "the limit is 65536"),
        ({"url": "http://x.test/", "params": {"a": {"b": 1}}}, "strings or numbers"),
        ({"url": "http://x.test/", "method": "HEAD", "body": "x"}, "no body"),
    ],
)
def test_bad_arguments_are_denied_as_invalid(args: dict[str, Any], reason: str) -> None:
    text = "version: 1\nhttp:\n  max_request_bytes: 64KiB\n  allow: [{host: '*', scheme: http}]\n"
    with Guard.from_text(text) as guard, pytest.raises(Denied) as info:
        guard.call("http", "request", args)
    assert info.value.rule == "http:invalid"
    assert reason in str(info.value)


class _BrokenResolver:
    def resolve(self, host: str, port: int) -> list[str]:
        raise RuntimeError("resolver exploded")


def test_a_failing_resolver_fails_closed(server: LoopbackServer) -> None:
    guard = _guard(policy_text(server.port, 1))
    tool = guard.capability("http")
    assert isinstance(tool, HTTPTool)
    tool.use_resolver(_BrokenResolver())
    server.hits.clear()
    with pytest.raises(ToolError, match="RuntimeError"):
        guard.call("http", "request", {"url": f"http://api.legit.test:{server.port}/"})
    assert server.hits == []
    guard.close()


def test_check_without_canonical_arguments_denies() -> None:
    policy = Policy.from_text("version: 1\nhttp: {allow: [{host: a.test}]}\n")
    tool = HTTPTool(policy)
    decision = tool.check(ToolCall("http", "request", {"url": "https://a.test/"}, session="s"))
    assert decision is not None and decision.rule == "http:invalid"
    with pytest.raises(HTTPError, match="proxy only"):
        tool.execute(
            ToolCall("http", "connect", {"host": "a.test", "port": 443}, session="s"), None
        )  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ("allow: [{host: a.test, methods: [FETCH]}]", "unknown method `FETCH`"),
        ("allow: [{host: a.test, port: 70000}]", "expected a value <= 65535"),
        ("allow: [{host: 2130706433}]", "expected a string"),
        ("allow: [{host: '0x7f.1'}]", "not a canonical IP address"),
        ("allow: [{host: a.test, addresses: [10.0.0.0/8]}]", "ranges are not allowed"),
        ("allow: [{host: a.test, addresses: [0.0.0.0]}]", "cannot be allowed"),
        ("allow: [{host: a.test, addresses: ['::ffff:127.0.0.1']}]", "cannot be allowed"),
        ("allow: [{host: a.test, path: 'v1/**'}]", "must start with `/`"),
        ("allow: [{host: a.test, scheme: ftp}]", "unknown value `ftp`"),
        ("allow: [{host: 'a.*.test'}]", "bad host pattern"),
        ("allow: [{host: a.test, colour: red}]", "unknown key `colour`"),
        ("allow: [{host: a.test, query: {a.b: x}}]", "invalid query name"),
        ("secrets: [{name: k, host: a.test, env: K, attach: header}]", "needs `header`"),
        ("secrets: [{name: k, host: a.test, attach: bearer}]", "exactly one of `env` or `file`"),
        ("secrets: [{name: K!, host: a.test, env: K, attach: bearer}]", "invalid secret name"),
        (
            "secrets: [{name: k, host: a.test, env: K, attach: header, header: Host}]",
            "cannot carry a secret",
        ),
        (
            "secrets: [{name: k, host: a, env: K, attach: bearer}, "
            "{name: k, host: b, env: K, attach: bearer}]",
            "duplicate secret name",
        ),
        ("hosts: {a.test: not-an-ip}", "not an IP address"),
        ("max_redirects: 50", "expected a value <= 20"),
        ("timeout: 0", "longer than 0"),
        ("content_types: ['text/[']", "bad content type pattern"),
    ],
)
def test_section_errors_are_located(section: str, message: str) -> None:
    text = f"version: 1\nhttp:\n  {section}\n"
    with pytest.raises(PolicyError) as info:
        Policy.from_text(text, source="p.yaml")
    problem = info.value.problems[0]
    assert message in problem.message
    assert problem.file == "p.yaml" and problem.line >= 2


def test_entries_become_ordinary_rules() -> None:
    policy = Policy.from_text(
        """
version: 1
http:
  allow:
    - {id: docs, host: [docs.example.com, "*.docs.example.com"], path: /v1/**}
    - {id: up, host: up.example.com, methods: [POST], tunnel: true, reason: uploads}
    - {id: no-admin, host: "*", path: /admin/**, effect: deny}
"""
    )
    ids = [r.id for r in policy.rules]
    assert ids == ["http:docs", "http:up", "http:up:tunnel", "http:no-admin"]
    up = next(r for r in policy.rules if r.id == "http:up")
    assert up.when["method"] == {"one_of": ["POST"]} and up.reason == "uploads"
    assert up.when["port"] == {"one_of": [443]}
    tool = HTTPTool(policy)

    def decide(url: str, m: str = "GET") -> str:
        call = ToolCall("http", "request", {"url": url, "method": m}, session="s")
        return policy.decide(tool.prepare(call)).rule

    assert decide("https://a.docs.example.com/v1/x") == "http:docs"
    assert decide("https://docs.example.com/v2/x") == "default-deny"
    assert decide("https://docs.example.com/admin/x") == "http:no-admin"
    assert decide("https://up.example.com/", "POST") == "http:up"
    assert decide("https://up.example.com/", "GET") == "default-deny"
    connect = tool.prepare(
        ToolCall("http", "connect", {"host": "UP.example.com", "port": 443}, session="s")
    )
    assert policy.decide(connect).rule == "http:up:tunnel"


def test_async_call(server: LoopbackServer) -> None:
    import asyncio

    guard = _guard(policy_text(server.port, 1))

    async def main() -> Any:
        return await guard.acall("http", "request", {"url": server.url("/async")})

    result = asyncio.run(main())
    assert result.value["status"] == 200
    with pytest.raises(Denied):
        asyncio.run(guard.acall("http", "request", {"url": "http://169.254.169.254/"}))
    guard.close()


def test_a_failing_own_check_denies(
    server: LoopbackServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The tool's own check raising is a stage failure: the call is denied, nothing sent."""
    guard = _guard(policy_text(server.port, 1))
    tool = guard.capability("http")
    assert isinstance(tool, HTTPTool)

    def explode(host: str, port: int) -> None:
        raise RuntimeError("check exploded")

    monkeypatch.setattr(tool, "_check_host", explode)
    server.hits.clear()
    with pytest.raises(Denied) as info:
        guard.call("http", "request", {"url": server.url("/")})
    assert info.value.rule == "error:capability"
    assert server.hits == []
    guard.close()


def test_policy_explain_lines() -> None:
    from stockade.policy.explain import explain_lines

    policy = Policy.from_text(
        """
version: 1
http:
  allow:
    - {id: docs, host: docs.example.com, path: /v1/**}
    - {id: up, host: up.example.com, methods: [POST, DELETE], tunnel: true}
    - {id: inner, host: api.internal.test, scheme: http, port: 8080, addresses: [10.0.0.5]}
  secrets:
    - {name: up-key, host: up.example.com, env: UP_KEY, attach: bearer}
"""
    )
    lines = explain_lines(policy)
    assert "[high] http: may POST/DELETE https://up.example.com (443) /**" in lines
    assert any("tunnel (CONNECT) to `up.example.com`" in line for line in lines)
    assert any("may reach the internal address(es) 10.0.0.5" in line for line in lines)
    assert any("<SECRET_UP_KEY>" in line for line in lines)


class _RecordingScanner:
    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []

    def scan_arguments(self, call: ToolCall, session: Any) -> Any:
        from stockade.model import Decision
        from stockade.stages import ArgumentScan

        self.seen.append(dict(call.args))
        decision = None
        if "card 4111" in str(call.args.get("body", "")):
            decision = Decision.deny("scan:pii", "a card number is leaving")
        return ArgumentScan(call=call, masked_args=call.args, decision=decision)


class _RecordingFlow:
    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []

    def check(self, call: ToolCall, session: Any) -> Any:
        from stockade.stages import FlowVerdict

        self.seen.append(dict(call.args))
        return FlowVerdict()

    def observe(self, call: ToolCall, value: Any, labels: Any, session: Any) -> None:
        self.seen.append({"observed": [lab.source for lab in labels]})

    def user_said(self, session: Any, text: str) -> None:
        pass


def test_outbound_checks_see_url_and_body(server: LoopbackServer) -> None:
    """The argument scanner and the flow stage see the request's url, method, headers, body."""
    scanner, flow = _RecordingScanner(), _RecordingFlow()
    guard = Guard.from_text(policy_text(server.port, 1), scanner=scanner, flow=flow)
    url = server.url("/a/../items")
    guard.call("http", "request", {"url": url, "method": "POST", "json": {"n": 1}})
    assert scanner.seen[0]["url"] == url and scanner.seen[0]["json"] == {"n": 1}
    canonical = flow.seen[0]
    assert canonical["url"] == server.url("/items")
    assert canonical["body"] == '{"n":1}' and canonical["method"] == "POST"
    assert flow.seen[1] == {"observed": [f"http:{server.url('/items')}"]}
    server.hits.clear()
    with pytest.raises(Denied, match="scan:pii"):
        guard.call(
            "http", "request", {"url": url, "method": "POST", "body": "card 4111 1111 1111 1111"}
        )
    assert server.hits == []
    guard.close()


def test_redirect_hops_are_decided_and_audited_like_calls(server: LoopbackServer) -> None:
    scanner, audit = _RecordingScanner(), MemoryAuditSink()
    guard = Guard.from_text(policy_text(server.port, 1), scanner=scanner, audit=audit)
    r = guard.call("http", "request", {"url": server.url("/hops/2")})
    assert r.meta["http_redirects"] == [server.url("/hops/1"), server.url("/hops/0")]
    # Each hop is scanned as given and again in canonical form (the guard scans
    # prepared arguments too); every hop is scanned, in order.
    assert list(dict.fromkeys(a["url"] for a in scanner.seen)) == [
        server.url("/hops/2"),
        server.url("/hops/1"),
        server.url("/hops/0"),
    ]
    kinds = [(e.kind, e.args.get("url")) for e in audit.events]
    assert kinds == [
        ("decision", server.url("/hops/2")),
        ("decision", server.url("/hops/1")),
        ("decision", server.url("/hops/0")),
        ("outcome", server.url("/hops/2")),
    ]
    guard.close()
