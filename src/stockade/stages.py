"""The interfaces of the pipeline's stages, and the plain defaults.

``Guard.call`` runs, in this order (see ``docs/design.md``)::

    ArgumentScanner.scan_arguments   findings, pseudonyms restored, may deny
    Capability.prepare / check       canonical arguments, the tool's own rules
    Policy.decide + limits           the compiled rule set, rate limits, budgets
    FlowChecker.check                provenance of argument values, may deny or ask
    Approver.approve                 only for "ask"
    AuditSink.append (decision)      a store that cannot take it stops the call
    Capability.execute               with its own engine-level limits
    ResultScanner.scan_result        labels, findings, masking
    FlowChecker.observe              remember what the session has read
    AuditSink.append (outcome)

Each is a small protocol; later parts (scan, flow, approvals, audit) plug in
their implementations. An exception inside any stage denies the call.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from stockade.errors import ConfigurationError
from stockade.model import AuditEvent, Decision, Finding, Label, Output, ToolCall

if TYPE_CHECKING:
    from stockade.session import Session

__all__ = [
    "Approval",
    "ApprovalRequest",
    "Approver",
    "ArgumentScan",
    "ArgumentScanner",
    "AuditSink",
    "CallbackApprover",
    "FlowChecker",
    "FlowVerdict",
    "MemoryAuditSink",
    "ResultScan",
    "ResultScanner",
]


# -- scanners -----------------------------------------------------------------


@dataclass(frozen=True)
class ArgumentScan:
    """What the argument scanner made of a call.

    ``call`` may differ from the input (pseudonyms replaced by real values);
    ``masked_args`` is what the audit log and approvers see; ``decision`` is
    set when a finding must stop the call (a canary, a secret to an outside host).
    ``restored`` pairs each real value put back into ``call`` with the pseudonym
    the model used, so the audit can keep the pseudonym wherever the tool
    echoes the value (its meta, the labels of what it touched).
    """

    call: ToolCall
    masked_args: Mapping[str, Any]
    findings: tuple[Finding, ...] = ()
    decision: Decision | None = None
    restored: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class ResultScan:
    """What the result scanner made of a capability's output.

    ``value`` is what the model will see (masked, neutralised, wrapped).
    """

    value: Any
    labels: tuple[Label, ...] = ()
    findings: tuple[Finding, ...] = ()
    decision: Decision | None = None


@runtime_checkable
class ArgumentScanner(Protocol):
    """Scans a call's arguments before the policy decides."""

    def scan_arguments(self, call: ToolCall, session: Session) -> ArgumentScan:
        """Return findings, the call to go on with, and maybe a decision."""
        ...


@runtime_checkable
class ResultScanner(Protocol):
    """Scans, labels and masks a capability's output before the model sees it."""

    def scan_result(self, call: ToolCall, output: Output, session: Session) -> ResultScan:
        """Return the value for the model, with labels and findings."""
        ...


class NoScanner:
    """The default when no scanner is configured: passes everything through."""

    def scan_arguments(self, call: ToolCall, session: Session) -> ArgumentScan:
        """Pass the call through unchanged."""
        return ArgumentScan(call=call, masked_args=call.args)

    def scan_result(self, call: ToolCall, output: Output, session: Session) -> ResultScan:
        """Pass the output through with the capability's own labels."""
        return ResultScan(value=output.value, labels=output.labels)


# -- flow ---------------------------------------------------------------------


@dataclass(frozen=True)
class FlowVerdict:
    """What the flow stage says of a call: maybe a decision, and where each
    argument's value came from (``provenance`` maps argument name to a
    JSON-able description, shown to approvers and written to the audit log)."""

    decision: Decision | None = None
    provenance: Mapping[str, Any] = field(default_factory=dict)


@runtime_checkable
class FlowChecker(Protocol):
    """Provenance tracking: what the session has read, and where it may flow."""

    def check(self, call: ToolCall, session: Session) -> FlowVerdict:
        """Decide on the call from the provenance of its arguments."""
        ...

    def observe(
        self, call: ToolCall, value: Any, labels: Sequence[Label], session: Session
    ) -> None:
        """Remember content the session has read, with its labels."""
        ...

    def user_said(self, session: Session, text: str) -> None:
        """Remember trusted input from the user."""
        ...


class NoFlow:
    """The default when no flow policy is configured: no opinion."""

    def check(self, call: ToolCall, session: Session) -> FlowVerdict:
        """No flow rules: no decision."""
        return FlowVerdict()

    def observe(
        self, call: ToolCall, value: Any, labels: Sequence[Label], session: Session
    ) -> None:
        """Nothing to remember."""

    def user_said(self, session: Session, text: str) -> None:
        """Nothing to remember."""


# -- approvals ----------------------------------------------------------------


@dataclass(frozen=True)
class ApprovalRequest:
    """A call the policy wants a human (or a callback) to approve.

    ``args`` are masked; ``provenance`` says where each argument value came from.
    """

    call: ToolCall
    decision: Decision
    args: Mapping[str, Any]
    provenance: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Approval:
    """An approver's answer. ``scope`` (``call``, ``session``) says how far it reaches.

    ``approved`` must be a real ``bool``; anything else (``"yes"``, ``1``)
    raises :class:`~stockade.errors.ConfigurationError`, so an approver that
    builds one denies its call instead of approving by truthiness.
    """

    approved: bool
    approver: str
    reason: str = ""
    scope: str = "call"

    def __post_init__(self) -> None:
        # The guard allows on a true ``approved``: ``"no"`` is true, so
        # anything but a real bool would approve by accident.
        if not isinstance(self.approved, bool):
            raise ConfigurationError(
                f"an Approval's `approved` is `{type(self.approved).__name__}`; it must be a bool"
            )


@runtime_checkable
class Approver(Protocol):
    """Answers "ask" decisions."""

    def approve(self, request: ApprovalRequest) -> Approval:
        """Return the answer for one request."""
        ...


class CallbackApprover:
    """Wraps a plain function ``fn(request) -> bool | Approval`` as an approver.

    >>> approver = CallbackApprover(lambda req: req.call.tool == "calendar")
    """

    def __init__(self, fn: Callable[[ApprovalRequest], bool | Approval], name: str = "callback"):
        self._fn = fn
        self._name = name

    def approve(self, request: ApprovalRequest) -> Approval:
        """Call the function; a bare boolean becomes an :class:`Approval`.

        Any other return value (``"yes"``, ``None``, ``1``) raises
        :class:`~stockade.errors.ConfigurationError` naming its type; the
        guard denies the call with that message.
        """
        answer = self._fn(request)
        if isinstance(answer, Approval):
            return answer
        if not isinstance(answer, bool):
            # truthiness would turn "no" into a yes: refuse, and the guard denies
            raise ConfigurationError(
                f"the approver returned `{type(answer).__name__}`; "
                "it must return a bool or an Approval"
            )
        return Approval(approved=answer, approver=self._name)


# -- audit --------------------------------------------------------------------


@runtime_checkable
class AuditSink(Protocol):
    """Takes pipeline outcomes. ``append`` returns the record's sequence number
    and raises when the record could not be stored (the guard then denies)."""

    def append(self, event: AuditEvent) -> int:
        """Store one event; return its sequence number."""
        ...

    def close(self) -> None:
        """Flush and release the store."""
        ...


class MemoryAuditSink:
    """Keeps the latest events in a list: for tests, the demo and short-lived scripts.

    It is not tamper-evident; use the SQLite or PostgreSQL store for that. It
    keeps at most ``max_events`` (the oldest go first; ``None`` keeps all): it
    is the guard's default sink, and a long-running agent must not grow a list
    without end, nor make the garbage collector walk millions of old events.
    Sequence numbers keep counting past what is dropped.
    """

    def __init__(self, max_events: int | None = 10_000) -> None:
        if max_events is not None and max_events < 1:
            raise ValueError("max_events must be at least 1 (or None for no bound)")
        self.events: list[AuditEvent] = []
        self.max_events = max_events
        self._next = 0
        self._lock = threading.Lock()

    def append(self, event: AuditEvent) -> int:
        """Keep the event (without its raw arguments) and return its sequence number."""
        event.raw_args = {}
        with self._lock:
            self.events.append(event)
            if self.max_events is not None and len(self.events) > self.max_events:
                # drop a quarter at a time, so trimming costs O(1) per event
                del self.events[: len(self.events) - self.max_events + self.max_events // 4]
            seq = self._next
            self._next += 1
            return seq

    def close(self) -> None:
        """Nothing to release."""


def now() -> float:
    """Wall-clock time for records (seconds since the epoch)."""
    return time.time()
