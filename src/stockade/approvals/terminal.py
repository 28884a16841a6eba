"""Approve calls at a terminal.

:class:`TerminalApprover` prints the call, why it was asked, and each
argument with the provenance of its value (the untrusted parts marked), then
reads one answer: ``y`` approves this call, ``s`` approves this exact call
for the rest of the session, anything else (or no answer in time) refuses.

By default it talks to the controlling terminal (``/dev/tty``), not to the
agent's standard streams, so an agent that writes to stdin cannot answer for
the human.
"""

from __future__ import annotations

import getpass
import os
import select
import threading
import time
from typing import IO, Any

from stockade.approvals.render import render_request, scope_key
from stockade.errors import ConfigurationError
from stockade.stages import Approval, ApprovalRequest

__all__ = ["ScopeMemory", "TerminalApprover"]


class ScopeMemory:
    """Session-scoped approvals kept in memory: "this tool with these
    arguments for this session", for ``ttl`` seconds."""

    def __init__(self, ttl: float = 8 * 3600.0, max_entries: int = 10_000) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._grants: dict[str, tuple[str, float]] = {}
        self._lock = threading.Lock()

    def remember(self, request: ApprovalRequest, approver: str) -> None:
        """Remember that ``approver`` approved this call for its session."""
        with self._lock:
            if len(self._grants) >= self.max_entries:
                self._grants.pop(next(iter(self._grants)))
            self._grants[scope_key(request.call)] = (approver, time.monotonic() + self.ttl)

    def recall(self, request: ApprovalRequest) -> str | None:
        """The approver of a live session-scoped approval of this call, if any."""
        with self._lock:
            entry = self._grants.get(scope_key(request.call))
            if entry is None:
                return None
            if entry[1] < time.monotonic():
                del self._grants[scope_key(request.call)]
                return None
            return entry[0]


class TerminalApprover:
    """Asks a human at a terminal.

    ``stream`` is a read/write text stream (default: ``/dev/tty`` opened at
    each request); ``name`` the approver's identity in the audit log (default
    ``<login>@tty``); ``timeout`` seconds to wait for an answer (refuse after).

    >>> import io
    >>> approver = TerminalApprover(input=io.StringIO("y\\n"), output=io.StringIO(), name="ada")
    """

    def __init__(
        self,
        *,
        input: IO[str] | None = None,
        output: IO[str] | None = None,
        name: str | None = None,
        timeout: float | None = 300.0,
        color: bool | None = None,
        memory: ScopeMemory | None = None,
    ) -> None:
        if (input is None) != (output is None):
            raise ConfigurationError("give both input and output streams, or neither")
        self._input = input
        self._output = output
        self.name = name or f"{_login()}@tty"
        self.timeout = timeout
        self._color = color
        self.memory = memory or ScopeMemory()
        self._lock = threading.Lock()

    def approve(self, request: ApprovalRequest) -> Approval:
        """Show the request and read the answer."""
        remembered = self.memory.recall(request)
        if remembered is not None:
            return Approval(True, remembered, "remembered for this session", scope="session")
        with self._lock:  # one question at a time on one terminal
            if self._input is not None and self._output is not None:
                return self._ask(request, self._input, self._output)
            try:
                fd = os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY)
            except OSError as exc:
                raise ConfigurationError(
                    "the terminal approver needs a terminal (/dev/tty) and there is none"
                ) from exc
            # a terminal is not seekable: one text stream each way
            with (
                os.fdopen(fd, "r", encoding="utf-8") as inp,
                os.fdopen(os.dup(fd), "w", encoding="utf-8") as out,
            ):
                return self._ask(request, inp, out)

    def _ask(self, request: ApprovalRequest, inp: IO[str], out: IO[str]) -> Approval:
        color = self._color if self._color is not None else _isatty(out)
        text = render_request(
            request.call,
            request.decision.rule,
            request.decision.reason,
            request.args,
            request.provenance,
            color=color,
        )
        out.write("\n" + text + "\n")
        out.write("approve? [y] this call / [s] this call for the session / [N] refuse: ")
        out.flush()
        line = _readline(inp, self.timeout)
        if line is None:
            out.write("\nno answer in time: refused\n")
            out.flush()
            return Approval(False, self.name, "no answer in time")
        answer = line.strip().lower()
        if answer in ("y", "yes"):
            return Approval(True, self.name, "approved at the terminal")
        if answer in ("s", "session"):
            self.memory.remember(request, self.name)
            return Approval(True, self.name, "approved at the terminal for the session", "session")
        return Approval(False, self.name, "refused at the terminal")


def _login() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no login name in this environment
        return f"uid{os.getuid()}"


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def _readline(stream: IO[str], timeout: float | None) -> str | None:
    """One line from ``stream``; ``None`` on timeout or end of input.

    A stream with a file descriptor is read straight from the descriptor, a
    byte at a time, so no line typed ahead waits unseen in a buffer.
    """
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):
        fd = -1
    if fd < 0:
        line = stream.readline()
        return line if line else None
    deadline = None if timeout is None else time.monotonic() + timeout
    data = bytearray()
    while not data.endswith(b"\n") and len(data) < 4096:
        wait = None if deadline is None else max(0.0, deadline - time.monotonic())
        ready, _, _ = select.select([fd], [], [], wait)
        if not ready:
            return None
        chunk = os.read(fd, 1)
        if not chunk:
            break
        data += chunk
    return data.decode("utf-8", "replace") if data else None
