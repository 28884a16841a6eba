"""The data every stage of the pipeline passes along.

A :class:`ToolCall` goes in, a :class:`Decision` says what happens to it, a
:class:`Result` comes out. All of them are immutable; a stage that changes a
call (a capability canonicalising a path, a scanner restoring a pseudonym)
returns a new one with :meth:`ToolCall.with_args`.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "AuditEvent",
    "Confidentiality",
    "Decision",
    "Effect",
    "Finding",
    "Integrity",
    "Label",
    "Output",
    "Result",
    "ShadowDecision",
    "ToolCall",
    "new_call_id",
]


def new_call_id() -> str:
    """A fresh, unguessable call id (128 random bits, hex)."""
    return os.urandom(16).hex()


class Effect(str, enum.Enum):
    """What a decision does with a call. Only ``ALLOW`` allows."""

    ALLOW = "allow"
    DENY = "deny"
    ASK = "ask"

    def __str__(self) -> str:
        return self.value


# The order in which effects win when several rules or stages have a say.
_STRENGTH = {Effect.ALLOW: 0, Effect.ASK: 1, Effect.DENY: 2}


def stronger(a: Effect, b: Effect) -> bool:
    """Return whether ``a`` is more restrictive than ``b`` (deny > ask > allow)."""
    return _STRENGTH[a] > _STRENGTH[b]


@dataclass(frozen=True, slots=True)
class ToolCall:
    """One request by an agent to use a tool.

    ``tool`` and ``action`` name what is used (``fs``/``read``), ``args`` the
    arguments as the agent gave them (after canonicalisation, once a capability
    has prepared the call), ``session`` the conversation it belongs to,
    ``principal`` the agent or user it acts for.
    """

    tool: str
    action: str
    args: Mapping[str, Any]
    session: str
    call_id: str = field(default_factory=new_call_id)
    principal: str = ""

    def with_args(self, args: Mapping[str, Any]) -> ToolCall:
        """Return a copy of this call with ``args`` in place of its arguments."""
        return ToolCall(
            self.tool, self.action, dict(args), self.session, self.call_id, self.principal
        )


@dataclass(frozen=True, slots=True)
class ShadowDecision:
    """What shadow-mode rules (or a policy in shadow mode) would have decided."""

    effect: Effect
    rule: str
    reason: str


@dataclass(frozen=True, slots=True)
class Decision:
    """A three-valued decision that names the rule behind it and why.

    ``effect`` is what is enforced. ``shadow`` is set when rules in shadow
    mode would have decided differently: it is recorded, never enforced.
    """

    effect: Effect
    rule: str
    reason: str
    shadow: ShadowDecision | None = None

    @property
    def allowed(self) -> bool:
        """Whether the call may go ahead without asking anybody."""
        return self.effect is Effect.ALLOW

    @classmethod
    def deny(cls, rule: str, reason: str) -> Decision:
        """A deny decision."""
        return cls(Effect.DENY, rule, reason)

    @classmethod
    def ask(cls, rule: str, reason: str) -> Decision:
        """An ask decision."""
        return cls(Effect.ASK, rule, reason)


class Integrity(str, enum.Enum):
    """Whether content can be trusted to carry instructions."""

    TRUSTED = "trusted"
    UNTRUSTED = "untrusted"


class Confidentiality(str, enum.Enum):
    """How widely content may be shared."""

    PUBLIC = "public"
    INTERNAL = "internal"
    SECRET = "secret"  # noqa: S105 - a label name, not a password


@dataclass(frozen=True, slots=True)
class Label:
    """Provenance of a piece of content: where it came from and how far to trust it.

    >>> Label("http:https://example.com/page", Integrity.UNTRUSTED)
    Label(source='http:https://example.com/page', integrity=<Integrity.UNTRUSTED: 'untrusted'>, confidentiality=<Confidentiality.INTERNAL: 'internal'>)
    """  # noqa: E501

    source: str
    integrity: Integrity = Integrity.TRUSTED
    confidentiality: Confidentiality = Confidentiality.INTERNAL

    def as_dict(self) -> dict[str, str]:
        """The label as plain JSON-able data."""
        return {
            "source": self.source,
            "integrity": self.integrity.value,
            "confidentiality": self.confidentiality.value,
        }


@dataclass(frozen=True, slots=True)
class Finding:
    """Something a scanner found: what, where (character span), how sure.

    ``masked`` says whether the finding's text was replaced before the content
    went on; ``detail`` never holds the found value itself.
    """

    scanner: str
    kind: str
    start: int = 0
    end: int = 0
    score: float = 1.0
    reason: str = ""
    masked: bool = False
    where: str = "result"

    def as_dict(self) -> dict[str, Any]:
        """The finding as plain JSON-able data."""
        return {
            "scanner": self.scanner,
            "kind": self.kind,
            "start": self.start,
            "end": self.end,
            "score": round(self.score, 4),
            "reason": self.reason,
            "masked": self.masked,
            "where": self.where,
        }


@dataclass(frozen=True, slots=True)
class Output:
    """What a capability returns: the raw value and the labels it knows of."""

    value: Any
    labels: tuple[Label, ...] = ()
    meta: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Result:
    """What the model gets back from a guarded call.

    ``value`` has been scanned and masked; ``labels`` say where it came from;
    ``findings`` what the scanners saw; ``decision`` why it was allowed;
    ``audit_seq`` where its outcome stands in the audit log.
    """

    value: Any
    call: ToolCall
    decision: Decision
    labels: tuple[Label, ...] = ()
    findings: tuple[Finding, ...] = ()
    audit_seq: int | None = None
    meta: Mapping[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class AuditEvent:
    """One pipeline outcome, as the pipeline hands it to the audit sink.

    ``kind`` is ``decision`` (written before a capability runs, so a store
    that cannot take it stops the call), ``outcome`` (after it ran),
    ``approval`` (a human or callback answered an ``ask``).

    ``args`` are masked; ``raw_args`` are only there so the sink can keep a
    keyed HMAC of them and MUST NOT be written anywhere.
    """

    kind: str
    time: float
    session: str
    principal: str
    call_id: str
    tool: str
    action: str
    args: Mapping[str, Any]
    decision: Decision | None = None
    mode: str = "enforce"
    labels: tuple[Label, ...] = ()
    findings: tuple[Finding, ...] = ()
    result_digest: str = ""
    result_size: int = 0
    duration_ms: float = 0.0
    error_type: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    raw_args: Mapping[str, Any] = field(default_factory=dict, repr=False)
