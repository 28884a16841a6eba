"""Shared pieces of the flow tests: a guard with plain labelled tools."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from stockade import ApprovalRequired, Denied, Guard, Label
from stockade.model import Confidentiality, Integrity
from stockade.policy import Policy

ATTACKS = Path(__file__).resolve().parents[1] / "attacks" / "flow"

#: read tools and the labels they put on their results (the policy may relabel)
READ_TOOLS: dict[str, tuple[str, Label]] = {
    "inbox": ("read", Label("mail:inbox")),
    "downloads": ("read", Label("fs:downloads")),
    "web": ("fetch", Label("http:https://news.example/page")),
    "files": ("read", Label("fs:workspace")),
    "contacts": ("lookup", Label("contacts")),
    "customers": ("query", Label("sql:customers", Integrity.TRUSTED, Confidentiality.INTERNAL)),
}
#: tools that act, and whether they are external
SINKS: dict[str, tuple[str, bool]] = {
    "mail": ("send", True),
    "payments": ("pay", False),
    "fs": ("write", False),
    "shell": ("run", False),
    "http": ("get", False),
    "upload": ("post", False),
}


class Harness:
    """A guard under a policy with every scenario tool registered."""

    def __init__(self, policy: Policy, **kwargs: Any) -> None:
        self.guard = Guard(policy, **kwargs)
        self.content: dict[str, str] = {}
        self.sent: list[tuple[str, dict[str, Any]]] = []
        for name, (action, label) in READ_TOOLS.items():
            self.guard.tool(name, action=action, labels=[label])(self._reader())
        for name, (action, external) in SINKS.items():
            self.guard.tool(name, action=action, external=external)(self._sink(name))

    def _reader(self) -> Callable[..., str]:
        def read(id: str) -> str:
            return self.content[id]

        return read

    def _sink(self, name: str) -> Callable[..., str]:
        def act(**args: Any) -> str:
            self.sent.append((name, args))
            return "done"

        return act

    def read(self, tool: str, text: str, session: Any) -> None:
        """Let the agent read ``text`` through the read tool ``tool``."""
        key = f"c{len(self.content)}"
        self.content[key] = text
        action = READ_TOOLS[tool][0]
        self.guard.call(tool, action, {"id": key}, session=session)

    def outcome(
        self, tool: str, action: str, args: dict[str, Any], session: Any
    ) -> tuple[str, str]:
        """Run a call; return (allow|deny|ask, rule)."""
        try:
            result = self.guard.call(tool, action, args, session=session)
        except Denied as exc:
            return "deny", exc.rule
        except ApprovalRequired as exc:
            return "ask", exc.decision.rule
        return "allow", result.decision.rule


def load_policy(name: str = "policy.yaml") -> Policy:
    """A policy from tests/attacks/flow."""
    return Policy.from_file(ATTACKS / name)
