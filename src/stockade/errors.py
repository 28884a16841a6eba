"""The whole exception tree of stockade.

Only these exceptions leave stockade; foreign ones are mapped where they enter
(``raise X from exc``)::

    StockadeError
    ├── PolicyError               a policy file that does not load or validate
    ├── ConfigurationError        a guard, store or tool set up wrongly
    ├── Denied                    the call is not allowed (decision, rule, audit seq)
    │   └── RateLimited           a rate limit or budget is spent
    ├── ApprovalRequired          "ask" with no approver to ask
    ├── ApprovalError             the approval queue could not take or give a request
    ├── ToolError                 a capability could not do what was asked
    │   ├── FSError
    │   ├── JournalError      the change journal could not record or undo
    │   ├── HTTPError
    │   ├── SQLError
    │   ├── ExecError
    │   │   └── SandboxUnavailable
    │   └── IntegrationError
    ├── ScanError                 a scanner could not run
    └── AuditError                the audit store could not take or give a record
        └── AuditIntegrityError   verification failed (kind: invalid / missing / gap)

Messages are lowercase, one line, no trailing period, user input in backticks,
and never contain a secret or a PII value.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from stockade.model import Decision

__all__ = [
    "ApprovalError",
    "ApprovalRequired",
    "AuditError",
    "AuditIntegrityError",
    "ConfigurationError",
    "Denied",
    "ExecError",
    "FSError",
    "HTTPError",
    "IntegrationError",
    "JournalError",
    "PolicyError",
    "PolicyProblem",
    "RateLimited",
    "SQLError",
    "SandboxUnavailable",
    "ScanError",
    "StockadeError",
    "ToolError",
]


class StockadeError(Exception):
    """Root of every exception stockade raises."""


@dataclass(frozen=True)
class PolicyProblem:
    """One thing wrong with a policy file, with where it is.

    ``line`` and ``column`` are 1-based; ``key`` is the dotted path of the
    offending key (``rules[2].when.path``).
    """

    file: str
    line: int
    column: int
    key: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}:{self.column}"
        return f"{where}: {self.key}: {self.message}" if self.key else f"{where}: {self.message}"


class PolicyError(StockadeError):
    """A policy that does not load or validate; ``problems`` lists each one."""

    def __init__(self, problems: Sequence[PolicyProblem]) -> None:
        self.problems = tuple(problems)
        first = str(self.problems[0]) if self.problems else "invalid policy"
        more = len(self.problems) - 1
        super().__init__(first + (f" (and {more} more)" if more > 0 else ""))


class ConfigurationError(StockadeError):
    """A guard, store, tool or approver that is set up wrongly."""


class Denied(StockadeError):
    """The call was not allowed.

    ``decision`` is the decision that denied it (its ``rule`` names the rule or
    the failing stage), ``audit_seq`` the sequence number of its audit record
    when the audit store took one.
    """

    def __init__(
        self,
        message: str,
        *,
        decision: Decision,
        call_id: str = "",
        audit_seq: int | None = None,
    ) -> None:
        super().__init__(message)
        self.decision = decision
        self.call_id = call_id
        self.audit_seq = audit_seq

    @property
    def rule(self) -> str:
        """The id of the rule (or ``error:<stage>``) that denied the call."""
        return self.decision.rule


class RateLimited(Denied):
    """A rate limit or a session budget is spent."""


class ApprovalRequired(StockadeError):
    """The policy asks for approval and the guard has no approver to ask."""

    def __init__(
        self,
        message: str,
        *,
        decision: Decision,
        call_id: str = "",
        audit_seq: int | None = None,
    ) -> None:
        super().__init__(message)
        self.decision = decision
        self.call_id = call_id
        self.audit_seq = audit_seq


class ApprovalError(StockadeError):
    """The approval queue could not take or give a request (store down,
    unknown id, already answered, expired)."""


class ToolError(StockadeError):
    """A capability could not do what was asked (after it was allowed)."""


class FSError(ToolError):
    """The filesystem tool refused or failed an operation."""


class JournalError(ToolError):
    """The change journal could not record a prior state, or could not undo."""


class HTTPError(ToolError):
    """The HTTP egress tool refused or failed a request."""


class SQLError(ToolError):
    """The SQL tool refused or failed a query."""


class ExecError(ToolError):
    """The command tool refused or failed to run a command."""


class SandboxUnavailable(ExecError):
    """The OS sandbox the policy needs is missing; the message says how to install it."""


class IntegrationError(ToolError):
    """An integration (LangChain, MCP, OpenAI-style calls) failed at its boundary."""


class ScanError(StockadeError):
    """A scanner could not run on its input."""


class AuditError(StockadeError):
    """The audit store could not take or give a record."""


class AuditIntegrityError(AuditError):
    """Audit verification failed.

    ``kind`` is ``invalid`` (a hash, proof or signature does not check),
    ``missing`` (records or checkpoints that should be there are not) or
    ``gap`` (sequence numbers skip); ``seq`` is the first bad sequence number.
    """

    def __init__(
        self, message: str, *, kind: Literal["invalid", "missing", "gap"], seq: int | None = None
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.seq = seq
