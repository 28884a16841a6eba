"""stockade.approvals: human decisions for ``ask``.

An ``ask`` decision goes to the guard's approver: a terminal prompt
(:class:`TerminalApprover`), a Python callback
(:class:`stockade.stages.CallbackApprover`, or any function given as
``Guard(approver=fn)``), or a durable queue that other processes answer
(:class:`QueueApprover` on an :class:`ApprovalQueue`, answered with
``stockade approvals approve|deny``). Without an approver, ``ask`` raises
:class:`stockade.ApprovalRequired`. See ``docs/approvals.md``.

The ``approvals:`` policy section picks one:

.. code-block:: yaml

    approvals:
      approver: queue                 # terminal | queue
      queue: sqlite:///approvals.db   # or postgresql://...
      timeout: 5m                     # how long a request waits, then it is refused
      scope_ttl: 8h                   # how long a session-scoped approval lasts
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from stockade.approvals.queue import ApprovalQueue, QueueApprover, QueuedRequest
from stockade.approvals.render import render_request, scope_key
from stockade.approvals.terminal import ScopeMemory, TerminalApprover
from stockade.stages import Approver

if TYPE_CHECKING:
    from stockade.policy import Policy
    from stockade.policy.node import Node
    from stockade.policy.policy import SectionContext

__all__ = [
    "ApprovalQueue",
    "ApprovalsConfig",
    "QueueApprover",
    "QueuedRequest",
    "ScopeMemory",
    "TerminalApprover",
    "approver_from_policy",
    "parse_section",
    "render_request",
    "scope_key",
]


@dataclass(frozen=True)
class ApprovalsConfig:
    """The parsed ``approvals:`` section."""

    approver: str
    queue: str | None = None
    table: str = "stockade_approvals"
    timeout: float = 300.0
    poll: float = 0.5
    scope_ttl: float = 8 * 3600.0
    name: str | None = None
    base_dir: Path | None = None


_KEYS = ("approver", "queue", "table", "timeout", "poll", "scope_ttl", "name")


def parse_section(node: Node, ctx: SectionContext) -> ApprovalsConfig:
    """Parse the ``approvals:`` section of a policy."""
    m = node.mapping(allowed=_KEYS, required=("approver",))
    approver = m["approver"].string(choices=("terminal", "queue"))
    queue = m["queue"].string() if "queue" in m else None
    if approver == "queue" and queue is None:
        node.fail("`approver: queue` needs `queue: sqlite:///PATH` or `queue: postgresql://...`")
    if queue is not None and not queue.startswith(("sqlite:///", "postgresql://", "postgres://")):
        m["queue"].fail(
            f"unknown queue `{queue.split(':', 1)[0]}`; expected sqlite:/// or postgresql://"
        )
    table = m["table"].string() if "table" in m else "stockade_approvals"
    if not table.replace("_", "").isalnum() or not table[0].isalpha():
        m["table"].fail(f"bad table name `{table}`; letters, digits and _ only")
    timeout = m["timeout"].duration() if "timeout" in m else 300.0
    if timeout <= 0:
        m["timeout"].fail("expected a timeout longer than 0 seconds")
    return ApprovalsConfig(
        approver=approver,
        queue=queue,
        table=table,
        timeout=timeout,
        poll=m["poll"].duration() if "poll" in m else 0.5,
        scope_ttl=m["scope_ttl"].duration() if "scope_ttl" in m else 8 * 3600.0,
        name=m["name"].string() if "name" in m else None,
        base_dir=ctx.base_dir,
    )


def queue_from_config(config: ApprovalsConfig) -> ApprovalQueue:
    """The queue an ``approvals:`` section names."""
    if config.queue is None:
        from stockade.errors import ConfigurationError

        raise ConfigurationError("the approvals section names no queue")
    return ApprovalQueue(config.queue, table=config.table, base_dir=config.base_dir)


def approver_from_policy(policy: Policy) -> Approver | None:
    """The approver the policy's ``approvals:`` section asks for (``None`` without one)."""
    config = policy.section("approvals")
    if not isinstance(config, ApprovalsConfig):
        return None
    if config.approver == "terminal":
        return TerminalApprover(name=config.name, timeout=config.timeout)
    return QueueApprover(queue_from_config(config), timeout=config.timeout, poll=config.poll)
