"""stockade.scan: injection, secrets, PII, hidden text, exfiltration links; masking.

Detectors guess, so by default they label and mask and never deny; a policy's
``block`` list says where a finding denies the call. Provenance (the flow
part) is the structural defence; these scanners are the second opinion.

>>> from stockade import Guard
>>> guard = Guard.from_text('''
... version: 1
... rules: [{id: r, tool: lookup, effect: allow}]
... scan: {model: false}
... ''')
>>> @guard.tool("lookup")
... def lookup(name: str) -> str:
...     return "ada's address is ada@example.org"
>>> lookup("ada")
"ada's address is <EMAIL_1>"

Pieces usable on their own: :class:`InjectionRules`, :func:`scan_hygiene`,
:func:`scan_secrets`, :class:`PIIScanner`, :class:`Vault`,
:func:`neutralize_links`, :mod:`stockade.scan.spotlighting`,
:func:`scan_tool_description`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from stockade.scan.config import ScanConfig, parse_section
from stockade.scan.hygiene import normalize, scan_hygiene, strip_invisible
from stockade.scan.injection import InjectionRules
from stockade.scan.output import Canaries, neutralize_links
from stockade.scan.pii import PIIScanner
from stockade.scan.secrets import scan_secrets
from stockade.scan.stage import Scanner
from stockade.scan.tools import scan_tool_description
from stockade.scan.vault import EncryptedFileStore, Vault

if TYPE_CHECKING:
    from stockade.policy import Policy

__all__ = [
    "Canaries",
    "EncryptedFileStore",
    "InjectionRules",
    "PIIScanner",
    "ScanConfig",
    "Scanner",
    "Vault",
    "neutralize_links",
    "normalize",
    "parse_section",
    "scan_hygiene",
    "scan_secrets",
    "scan_tool_description",
    "scanner_from_policy",
    "strip_invisible",
]


def scanner_from_policy(policy: Policy) -> Scanner | None:
    """The scan stage for ``policy``, or ``None`` when it has no ``scan:`` section."""
    config = policy.section("scan")
    if config is None:
        return None
    if not isinstance(config, ScanConfig):  # pragma: no cover - the loader guarantees it
        raise TypeError("the scan section did not parse into a ScanConfig")
    return Scanner(config)
