"""The examples run and show the refusals they promise."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def run(name: str) -> str:
    out = subprocess.run(
        [sys.executable, str(EXAMPLES / name)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_openai_example() -> None:
    text = run("openai_tool_calls.py")
    assert "sent to bob@example.com" in text
    assert "call to `send_mail` refused by stockade" in text


def test_langchain_example() -> None:
    pytest.importorskip("langchain")
    text = run("langchain_agent.py")
    assert "approval asked: pay" in text
    assert "call to `upload` refused by stockade" in text
    assert "paid 120 EUR" in text
