"""The http section and tool as a user meets them: every section problem at once,
unknown arguments refused, a missing credential that names its source."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from http_support import LoopbackServer, policy_text

from stockade import Guard, MemoryAuditSink, Policy
from stockade.errors import Denied, HTTPError, PolicyError
from stockade.model import ToolCall
from stockade.tools.http import HTTPTool

STOCKADE = Path(sys.executable).parent / "stockade"

THREE_ERRORS = """version: 1
http:
  timeout: forever
  max_response_bytes: lots
  allow:
    - host: "exa mple.com"
"""


def test_every_problem_of_the_section_is_reported() -> None:
    with pytest.raises(PolicyError) as info:
        Policy.from_text(THREE_ERRORS, source="p.yaml")
    found = [(p.line, p.key) for p in info.value.problems]
    assert found == [
        (3, "http.timeout"),
        (4, "http.max_response_bytes"),
        (6, "http.allow[0].host"),
    ]


def test_policy_check_prints_all_three(tmp_path: Path) -> None:
    policy = tmp_path / "p.yaml"
    policy.write_text(THREE_ERRORS)
    done = subprocess.run(
        [str(STOCKADE), "policy", "check", str(policy)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1
    lines = done.stderr.splitlines()
    assert len(lines) == 3
    assert "http.timeout: expected a duration" in lines[0]
    assert "http.max_response_bytes: expected a size" in lines[1]
    assert "http.allow[0].host: bad host pattern" in lines[2]


def test_problems_across_entries_secrets_and_hosts_are_all_reported() -> None:
    text = """version: 1
http:
  allow:
    - {host: a.test, methods: [FETCH]}
    - {host: b.test}
    - {host: c.test, port: 0}
  secrets:
    - {name: k, host: a.test, attach: bearer}
    - {name: k2, host: a.test, env: K, attach: header}
  hosts: {a.test: not-an-ip, b.test: 10.0.0.1, c.test: also-not}
  max_redirects: 50
"""
    with pytest.raises(PolicyError) as info:
        Policy.from_text(text, source="p.yaml")
    messages = [p.message for p in info.value.problems]
    assert len(messages) == 7, messages
    for part in (
        "unknown method `FETCH`",
        "expected a value >= 1",
        "exactly one of `env` or `file`",
        "needs `header`",
        "`not-an-ip` is not an IP address",
        "`also-not` is not an IP address",
        "expected a value <= 20",
    ):
        assert any(part in m for m in messages), (part, messages)


# -- unknown arguments --------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "names"),
    [
        ({"timeout": 999999}, "`timeout`"),
        ({"foo": 1, "timeout": 2}, "`foo`, `timeout`"),
        ({"follow_redirects": False}, "`follow_redirects`"),
        ({"scheme": "http"}, "`scheme`"),
    ],
)
def test_unknown_arguments_are_refused(args: dict[str, object], names: str) -> None:
    server = LoopbackServer()
    guard = Guard.from_text(policy_text(server.port, 1), audit=MemoryAuditSink())
    try:
        with pytest.raises(Denied, match=f"tool `http` has no argument {names}"):
            guard.call("http", "request", {"url": server.url("/hello"), **args})
        assert server.hits == []
        # the known ones still work
        r = guard.call("http", "request", {"url": server.url("/hello"), "method": "GET"})
        assert r.value["status"] == 200
    finally:
        guard.close()
        server.close()


def test_prepare_refuses_unknown_connect_arguments() -> None:
    guard = Guard.from_text(policy_text(1, 1), audit=MemoryAuditSink())
    tool = guard.capability("http")
    assert isinstance(tool, HTTPTool)
    call = ToolCall("http", "connect", {"host": "a.test", "port": 443, "path": "/"}, session="s")
    with pytest.raises(HTTPError, match="has no argument `path`"):
        tool.prepare(call)
    guard.close()


# -- where a credential comes from ------------------------------------------------------


def _secret_guard(port: int, how: str) -> Guard:
    extra = f"""  secrets:
    - {{name: api-token, host: 127.0.0.1, schemes: [http], {how}, attach: bearer}}
"""
    return Guard.from_text(policy_text(port, 1, extra), audit=MemoryAuditSink())


def test_missing_env_secret_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STOCKADE_API_TOKEN_UNSET", raising=False)
    server = LoopbackServer()
    guard = _secret_guard(server.port, "env: STOCKADE_API_TOKEN_UNSET")
    try:
        with pytest.raises(HTTPError) as info:
            guard.call("http", "request", {"url": server.url("/")})
        assert str(info.value) == (
            "secret `api-token` is not available: environment variable "
            "`STOCKADE_API_TOKEN_UNSET` is not set or empty"
        )
        assert server.hits == []
    finally:
        guard.close()
        server.close()


def test_missing_file_secret_names_the_file(tmp_path: Path) -> None:
    server = LoopbackServer()
    path = tmp_path / "api.token"
    guard = _secret_guard(server.port, f"file: {path}")
    try:
        with pytest.raises(HTTPError) as info:
            guard.call("http", "request", {"url": server.url("/")})
        assert str(info.value) == (
            f"secret `api-token` cannot be read from file `{path}`: no such file or directory"
        )
        path.write_text("\n")
        with pytest.raises(HTTPError, match=f"file `{path}` is empty"):
            guard.call("http", "request", {"url": server.url("/")})
        # mounted later: the next request carries it, and the message never held a value
        path.write_text("tok-123456\n")
        assert guard.call("http", "request", {"url": server.url("/")}).value["status"] == 200
        assert server.hits[-1]["headers"]["authorization"] == "Bearer tok-123456"
    finally:
        guard.close()
        server.close()


def test_policy_check_warns_about_a_missing_secret_file(tmp_path: Path) -> None:
    policy = tmp_path / "p.yaml"
    policy.write_text(
        """version: 1
http:
  allow: [{host: api.example.com}]
  secrets:
    - name: api-token
      host: api.example.com
      file: secrets/api.token
      attach: bearer
    - {name: other, host: api.example.com, env: STOCKADE_X, attach: header, header: X-Key}
"""
    )
    run = [str(STOCKADE), "policy", "check", str(policy)]
    done = subprocess.run(run, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "ok" in done.stdout
    missing = tmp_path / "secrets" / "api.token"
    assert done.stderr.strip() == (
        f"{policy}:7:13: http.secrets[0].file: warning: secret `api-token` reads "
        f"`{missing}`, which is not a file now; requests that need it fail until it exists"
    )
    missing.parent.mkdir()
    missing.write_text("tok\n")
    done = subprocess.run(run, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stderr == ""


def test_unreadable_secret_file_gives_the_os_reason(tmp_path: Path) -> None:
    guard = _secret_guard(1, f"file: {tmp_path}")
    tool = guard.capability("http")
    assert isinstance(tool, HTTPTool)
    with pytest.raises(HTTPError, match=f"cannot be read from file `{tmp_path}`: is a directory"):
        tool.config.secrets[0].load()
    guard.close()
