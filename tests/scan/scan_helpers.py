"""Helpers for the scanner tests: the attack corpora under tests/attacks/scan/."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

CORPUS = Path(__file__).resolve().parents[1] / "attacks" / "scan"


def corpus(name: str) -> Any:
    """One YAML corpus file as plain data."""
    return yaml.safe_load((CORPUS / name).read_text(encoding="utf-8"))
