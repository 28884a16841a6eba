"""stockade: a least-privilege, policy-checked, audited fence around an LLM agent's tools.

>>> from stockade import Guard
>>> guard = Guard.from_text("version: 1")

See the README for the first steps and ``docs/`` for the reference.
"""

from stockade.errors import (
    ApprovalError,
    ApprovalRequired,
    AuditError,
    AuditIntegrityError,
    ConfigurationError,
    Denied,
    ExecError,
    FSError,
    HTTPError,
    IntegrationError,
    JournalError,
    PolicyError,
    PolicyProblem,
    RateLimited,
    SandboxUnavailable,
    ScanError,
    SQLError,
    StockadeError,
    ToolError,
)
from stockade.guard import Guard, GuardedTool
from stockade.model import (
    Confidentiality,
    Decision,
    Effect,
    Finding,
    Integrity,
    Label,
    Output,
    Result,
    ToolCall,
)
from stockade.policy import Policy
from stockade.session import MemorySessionStore, RedisSessionStore, Session, SessionStore
from stockade.stages import Approval, ApprovalRequest, MemoryAuditSink
from stockade.tools.base import Capability, Context

__version__ = "0.1.0"

__all__ = [
    "Approval",
    "ApprovalError",
    "ApprovalRequest",
    "ApprovalRequired",
    "AuditError",
    "AuditIntegrityError",
    "Capability",
    "Confidentiality",
    "ConfigurationError",
    "Context",
    "Decision",
    "Denied",
    "Effect",
    "ExecError",
    "FSError",
    "Finding",
    "Guard",
    "GuardedTool",
    "HTTPError",
    "IntegrationError",
    "Integrity",
    "JournalError",
    "Label",
    "MemoryAuditSink",
    "MemorySessionStore",
    "Output",
    "Policy",
    "PolicyError",
    "PolicyProblem",
    "RateLimited",
    "RedisSessionStore",
    "Result",
    "SQLError",
    "SandboxUnavailable",
    "ScanError",
    "Session",
    "SessionStore",
    "StockadeError",
    "ToolCall",
    "ToolError",
    "__version__",
]
