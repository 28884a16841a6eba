"""The shared exfiltration scenario: data, a real local upload server, and the tools.

Every integration test loads ``tests/attacks/integrations/exfiltration.yaml``
and must allow its legitimate calls and refuse its attacks, with no attack
ever reaching the upload server.
"""

from __future__ import annotations

import json
import posixpath
import threading
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

from stockade import Guard, Output, ToolCall, ToolError
from stockade.tools.base import Capability, Context

ATTACKS = Path(__file__).resolve().parents[1] / "attacks" / "integrations"
SCENARIO_FILE = ATTACKS / "exfiltration.yaml"


@dataclass
class Sink:
    """A real HTTP server on 127.0.0.1 that records what is uploaded to it."""

    url: str
    received: list[dict[str, Any]] = field(default_factory=list)


@contextmanager
def run_sink() -> Iterator[Sink]:
    """Start the upload server in a thread; stop it afterwards."""
    received: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("content-length", "0"))
            received.append({"path": self.path, "body": self.rfile.read(length).decode()})
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"stored")

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Sink(f"http://127.0.0.1:{server.server_address[1]}", received)
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def load(sink_url: str) -> dict[str, Any]:
    """The scenario with ``{sink}`` filled in."""
    text = SCENARIO_FILE.read_text(encoding="utf-8")
    data: dict[str, Any] = yaml.safe_load(text)

    def fill(value: Any) -> Any:
        if isinstance(value, str):
            return value.replace("{sink}", sink_url)
        if isinstance(value, dict):
            return {k: fill(v) for k, v in value.items()}
        if isinstance(value, list):
            return [fill(v) for v in value]
        return value

    return {k: (v if k == "policy" else fill(v)) for k, v in data.items()}


def write_files(root: Path, files: dict[str, str]) -> None:
    """Create the scenario's files under ``root``."""
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text, encoding="utf-8")


def canonical(path: Any) -> str:
    """A relative path with `.` and `..` resolved; refuse one that leaves the root."""
    if not isinstance(path, str) or not path or "\x00" in path:
        raise ToolError("`path` must be a non-empty string")
    norm = posixpath.normpath(path)
    if norm.startswith(("/", "..")):
        raise ToolError(f"path `{path}` leaves the workspace")
    return norm


def post(url: str, body: str) -> str:
    """POST ``body`` to ``url`` with the standard library; return the reply."""
    req = urllib.request.Request(url, data=body.encode(), method="POST")
    with urllib.request.urlopen(req, timeout=10) as resp:
        return str(resp.read().decode())


class ReadFile(Capability):
    """Read a text file in the workspace (paths canonicalised before the policy decides)."""

    actions = frozenset({"call"})

    def __init__(self, root: Path) -> None:
        self.name = "read_file"
        self.root = root

    def prepare(self, call: ToolCall) -> ToolCall:
        return call.with_args({**call.args, "path": canonical(call.args.get("path"))})

    def execute(self, call: ToolCall, ctx: Context) -> Output:
        return Output((self.root / call.args["path"]).read_text(encoding="utf-8"))

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "actions": ["call"],
            "description": "Read a text file in the workspace.",
            "parameters": {
                "type": "object",
                "properties": {"path": {"type": "string"}},
                "required": ["path"],
                "additionalProperties": False,
            },
        }


class Upload(Capability):
    """Upload a workspace file to a URL (a real HTTP POST)."""

    actions = frozenset({"call"})
    external = True

    def __init__(self, root: Path) -> None:
        self.name = "upload"
        self.root = root

    def prepare(self, call: ToolCall) -> ToolCall:
        return call.with_args({**call.args, "path": canonical(call.args.get("path"))})

    def execute(self, call: ToolCall, ctx: Context) -> Output:
        body = (self.root / call.args["path"]).read_text(encoding="utf-8")
        return Output(post(str(call.args["url"]), body))

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "actions": ["call"],
            "description": "Upload a workspace file to a URL.",
            "parameters": {
                "type": "object",
                "properties": {"url": {"type": "string"}, "path": {"type": "string"}},
                "required": ["url", "path"],
                "additionalProperties": False,
            },
        }


def make_guard(root: Path, policy: str, **kwargs: Any) -> Guard:
    """A guard with the scenario's policy and its two tools over ``root``."""
    return Guard.from_text(policy, capabilities=[ReadFile(root), Upload(root)], **kwargs)


def dumps(value: Any) -> str:
    """JSON text for tool-call arguments."""
    return json.dumps(value)
