"""DANGER: the HTTP tool without its address check. Unguarded raw pieces.

Everything here lets a request reach loopback, private, link-local and cloud
metadata addresses. It exists so tests can show that the policy layer of the
``http`` tool blocks an attack on its own (with the engine layer switched
off), and for benchmarks. You MUST NOT use it in an agent's process; use
:class:`stockade.tools.http.HTTPTool` through a :class:`stockade.Guard`,
whose transport checks every address it connects to.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

import httpcore

from stockade.errors import HTTPError
from stockade.tools.http import HTTPTool
from stockade.tools.http_transport import (
    AddressPolicy,
    Resolver,
    SafeTransport,
    SystemResolver,
)

__all__ = ["UncheckedBackend", "disable_address_checks", "install_backend"]


class UncheckedBackend(httpcore.NetworkBackend):
    """Resolves with ``resolver`` and connects to whatever it answers. DANGER."""

    def __init__(
        self, resolver: Resolver | None = None, inner: httpcore.NetworkBackend | None = None
    ) -> None:
        self.resolver: Resolver = resolver or SystemResolver()
        self._inner = inner or httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        """Connect to the first answer for ``host``, whatever it is."""
        h = host.strip("[]")
        try:
            targets = [str(ipaddress.ip_address(h))]
        except ValueError:
            targets = self.resolver.resolve(h, port)
        return self._inner.connect_tcp(targets[0], port, timeout, local_address, socket_options)

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        """Not supported."""
        raise HTTPError("unix sockets are not supported")

    def sleep(self, seconds: float) -> None:
        """Sleep."""
        self._inner.sleep(seconds)


def install_backend(tool: HTTPTool, backend: httpcore.NetworkBackend) -> None:
    """Make ``tool`` connect through ``backend`` from now on. DANGER: no check unless
    ``backend`` is a :class:`~stockade.tools.http_transport.CheckedBackend`."""
    tool.close()
    tool._transport = SafeTransport(AddressPolicy(), _backend=backend)


def disable_address_checks(tool: HTTPTool, resolver: Resolver | None = None) -> None:
    """Switch off the engine layer of ``tool``: it connects to any address. DANGER."""
    install_backend(tool, UncheckedBackend(resolver or tool.resolver))
