"""Tool-description corpus: poisoned descriptions blocked, ordinary ones passed.

Both the scanner the proxy uses (the scanners part when installed) and the
proxy's built-in fallback must block every attack and pass every legitimate
description.
"""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from exfil_scenario import ATTACKS

from stockade.integrations.mcp import builtin_description_scan, scan_tool_description

CORPUS: dict[str, Any] = yaml.safe_load(
    (ATTACKS / "tool-descriptions.yaml").read_text(encoding="utf-8")
)
SCANS = {"proxy": scan_tool_description, "builtin": builtin_description_scan}


@pytest.mark.parametrize("scan", sorted(SCANS))
@pytest.mark.parametrize("case", CORPUS["attacks"], ids=lambda c: c["name"])
def test_poisoned_descriptions_are_found(scan: str, case: dict[str, Any]) -> None:
    others = ["tool_under_test", *case.get("others", [])]
    findings = SCANS[scan]("tool_under_test", case["description"], others)
    assert findings, case["name"]


@pytest.mark.parametrize("scan", sorted(SCANS))
@pytest.mark.parametrize("case", CORPUS["legitimate"], ids=lambda c: c["name"])
def test_ordinary_descriptions_pass(scan: str, case: dict[str, Any]) -> None:
    others = ["read_file", "read_text_file", "write_file", "tool_under_test"]
    assert SCANS[scan]("tool_under_test", case["description"], others) == []
