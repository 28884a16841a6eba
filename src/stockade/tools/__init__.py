"""The built-in tools: fs, http, sql, exec. Safe by default.

Each tool module owns its policy section (``parse_section``) and builds its
capability from it; :func:`capabilities_from_policy` collects the tools a
policy configures.
"""

from __future__ import annotations

import importlib

from stockade.policy import Policy
from stockade.tools.base import Capability, Context, FunctionCapability

__all__ = ["Capability", "Context", "FunctionCapability", "capabilities_from_policy"]

#: section name -> module whose ``capability_from_policy(policy)`` builds the tool
_TOOL_MODULES = {
    "fs": "stockade.tools.fs",
    "http": "stockade.tools.http",
    "sql": "stockade.tools.sql",
    "exec": "stockade.tools.exec",
}


def capabilities_from_policy(policy: Policy) -> list[Capability]:
    """The built-in tools the policy's sections configure."""
    caps: list[Capability] = []
    for section, module_name in _TOOL_MODULES.items():
        if policy.section(section) is None:
            continue
        module = importlib.import_module(module_name)
        caps.extend(module.capability_from_policy(policy))
    return caps
