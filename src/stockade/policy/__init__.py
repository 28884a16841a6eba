"""The policy language: load, validate, compile, explain, decide.

See ``docs/policy.md`` for the reference.
"""

from stockade.policy.node import Node
from stockade.policy.policy import (
    SECTION_PARSERS,
    BudgetSpec,
    LimitSpec,
    Policy,
    SectionContext,
    SessionsSpec,
)
from stockade.policy.rules import RuleSpec

__all__ = [
    "SECTION_PARSERS",
    "BudgetSpec",
    "LimitSpec",
    "Node",
    "Policy",
    "RuleSpec",
    "SectionContext",
    "SessionsSpec",
]
