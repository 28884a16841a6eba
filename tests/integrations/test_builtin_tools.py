"""The built-in tools (here: fs) through the OpenAI-style and LangChain integrations."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from stockade import Guard
from stockade.integrations.openai import ToolRegistry

pytest.importorskip("stockade.tools.fs")


def fs_guard(workspace: Path) -> Guard:
    (workspace / "notes").mkdir()
    (workspace / "notes" / "todo.md").write_text("ship it", encoding="utf-8")
    (workspace / ".env").write_text("TOKEN=hunter2", encoding="utf-8")
    return Guard.from_text(f"version: 1\nfs:\n  root: {workspace}\n  allow:\n    read: ['**']\n")


def call(name: str, args: dict[str, Any]) -> dict[str, Any]:
    fn = {"name": name, "arguments": json.dumps(args)}
    return {"role": "assistant", "tool_calls": [{"id": "1", "type": "function", "function": fn}]}


def test_fs_tool_through_openai_calls(workspace: Path) -> None:
    guard = fs_guard(workspace)
    registry = ToolRegistry.from_guard(guard)
    read = registry.get("fs_read")
    assert read is not None and set(read.parameters["properties"]) >= {"path"}
    (ok,) = guard.handle_tool_calls(call("fs_read", {"path": "notes/todo.md"}), registry)
    assert "ship it" in ok["content"]
    for args in ({"path": ".env"}, {"path": "../../etc/passwd"}, {"path": "notes/todo.md", "x": 1}):
        (answer,) = guard.handle_tool_calls(call("fs_read", args), registry)
        assert "refused by stockade" in answer["content"], answer
        assert "hunter2" not in answer["content"]
    (answer,) = guard.handle_tool_calls(call("fs_write", {"path": "notes/x", "content": "y"}))
    assert "refused by stockade" in answer["content"]


def test_fs_tool_as_langchain_tools(workspace: Path) -> None:
    pytest.importorskip("langchain")
    from stockade.integrations.langchain import tools

    guard = fs_guard(workspace)
    by_name = {t.name: t for t in tools(guard)}
    assert "fs_read" in by_name
    assert "ship it" in by_name["fs_read"].invoke({"path": "notes/todo.md"})
    assert "refused by stockade" in by_name["fs_read"].invoke({"path": ".env"})
