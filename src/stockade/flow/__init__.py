"""stockade.flow: provenance labels, argument provenance and flow rules.

The session remembers what it read (:mod:`stockade.flow.index`), with the
labels of each piece; a later call whose arguments carry untrusted data into
a sensitive parameter, or confidential data to an external sink, is denied
or sent for approval (:mod:`stockade.flow.checker`). See ``docs/flow.md``.

>>> from stockade import Guard
>>> guard = Guard.from_text('''
... version: 1
... flow:
...   rules:
...     - {id: payee, tool: payments, args: [recipient], forbid: untrusted, effect: deny}
... ''')
>>> guard.flow.config.rules[0].id
'payee'
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from stockade.flow.checker import ProvenanceChecker, ValueProvenance
from stockade.flow.config import FlowConfig, FlowRule, LabelRule, TrifectaRule, parse_section
from stockade.flow.index import Match, Piece, SessionIndex
from stockade.flow.store import IndexStore, MemoryIndexStore

if TYPE_CHECKING:
    from stockade.policy import Policy

__all__ = [
    "FlowConfig",
    "FlowRule",
    "IndexStore",
    "LabelRule",
    "Match",
    "MemoryIndexStore",
    "Piece",
    "ProvenanceChecker",
    "SessionIndex",
    "TrifectaRule",
    "ValueProvenance",
    "flow_from_policy",
    "parse_section",
]


def flow_from_policy(policy: Policy) -> ProvenanceChecker | None:
    """The flow checker for ``policy``'s ``flow:`` section (``None`` without one)."""
    config = policy.section("flow")
    if config is None:
        return None
    if not isinstance(config, FlowConfig):  # pragma: no cover - the parser always gives one
        raise TypeError("the flow section was not parsed by stockade.flow")
    return ProvenanceChecker(config)
