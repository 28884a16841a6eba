"""The flow scene of `stockade demo` plays as scripted."""

from __future__ import annotations

import io
from pathlib import Path

from stockade.demo import run_demo


def test_flow_scene(tmp_path: Path) -> None:
    out = io.StringIO()
    assert run_demo(out, workspace=tmp_path, scenes=("flow",), color=False) == 0
    text = out.getvalue()
    assert "DENY  [flow:payee]" in text
    assert "DENY  [flow:recipient]" in text
    assert "ASK   [flow:trifecta]" in text
    assert (
        "iban: `gb33 bukb 2020 1555 5555 55` (chars 0-27) came from result #1 of mailbox.list"
        in text
    )
    assert "came from result #4 of clients.list (tool:clients trusted/secret)" in text
    assert "unexpected" not in text
