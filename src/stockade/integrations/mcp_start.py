"""Starting an MCP server: its stderr passed on (with the last lines kept), and why a start failed.

The SDK reports a server that dies before the handshake as an exception group
around ``MCPError: Connection closed``; :func:`start_failure` turns that into
one line that says what happened, with the last lines the server wrote on
stderr (:class:`StderrTail` passes its stderr on to ours and keeps them).

>>> start_failure(ConnectionResetError(), ["boom"])
'it closed the connection before the MCP handshake; its last stderr lines: `boom`'
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import unicodedata
from collections import deque
from typing import TextIO

from stockade.errors import StockadeError

__all__ = ["StderrTail", "start_failure"]

_KEEP = 5  # stderr lines kept for the message
_WIDTH = 200  # characters kept of each


class StderrTail:
    """A pipe for a child's stderr: a thread copies it to ours and keeps the last lines.

    Give :attr:`file` to the child; call :meth:`spawned` once it started (or
    failed to), so the pipe ends when the child closes its stderr.
    """

    def __init__(self) -> None:
        read_fd, write_fd = os.pipe()
        self.file: TextIO = os.fdopen(write_fd, "w", encoding="utf-8", errors="replace")
        self._read = os.fdopen(read_fd, "rb")
        self._lines: deque[str] = deque(maxlen=_KEEP)
        self._thread = threading.Thread(target=self._copy, name="mcp-stderr", daemon=True)
        self._thread.start()

    def _copy(self) -> None:
        with self._read:
            for raw in self._read:
                text = raw.decode("utf-8", "replace")
                with contextlib.suppress(Exception):
                    sys.stderr.write(text)
                    sys.stderr.flush()
                line = "".join(ch for ch in text.strip() if unicodedata.category(ch)[0] != "C")
                if line:
                    self._lines.append(line[:_WIDTH])

    def spawned(self) -> None:
        """Close our copy of the pipe's write end (the child holds its own)."""
        with contextlib.suppress(OSError):
            self.file.close()

    def lines(self, wait: float = 0.0) -> list[str]:
        """The last lines seen; ``wait`` seconds at most for the child's stderr to end."""
        if wait:
            self._thread.join(wait)
        return list(self._lines)


def _leaves(exc: BaseException) -> list[BaseException]:
    subs = getattr(exc, "exceptions", None)  # an exception group (3.11+ or the backport)
    if isinstance(subs, tuple) and subs:
        return [leaf for sub in subs for leaf in _leaves(sub)]
    return [exc]


def start_failure(exc: BaseException, stderr: list[str]) -> str:
    """What went wrong when a server did not start, in one line (without the command)."""
    leaf = _leaves(exc)[0]
    text = str(leaf)
    if isinstance(leaf, ConnectionError) or "connection closed" in text.lower():
        what = "it closed the connection before the MCP handshake"
    elif isinstance(leaf, OSError) and leaf.strerror:  # it could not be spawned at all
        return leaf.strerror[0].lower() + leaf.strerror[1:]
    elif isinstance(leaf, StockadeError):
        what = text
    elif isinstance(leaf, TimeoutError):
        what = "it did not answer the MCP handshake in time"
    else:
        what = f"{type(leaf).__name__}: {text[:_WIDTH]}" if text else type(leaf).__name__
    if stderr:
        return what + "; its last stderr lines: " + " / ".join(f"`{s}`" for s in stderr)
    return what + "; it wrote nothing on stderr"
