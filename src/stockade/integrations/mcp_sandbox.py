"""An MCP server inside the exec sandbox, spoken to over its stdio pipes.

Used by the proxy when the policy says ``mcp: {sandbox: true}``. The server
runs in a fresh :class:`~stockade.tools.sandbox.Sandbox` (bubblewrap, seccomp,
Landlock, resource limits, no network, an environment built from an
allow-list): ``mcp.sandbox_workspace`` is its only writable place, mounted
at ``/workspace``; ``mcp.sandbox_read`` adds read-only folders (where the
server's own files are, e.g. a ``node_modules``) to the system folders.
The command names inside paths: ``node /opt/srv/index.js /workspace``.

:func:`sandboxed_stdio` is a transport for the MCP SDK client: JSON-RPC
messages, one per line, over the sandboxed child's stdin and stdout.
"""

from __future__ import annotations

import subprocess
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager, suppress
from functools import partial
from typing import IO, Any

import anyio
import anyio.to_thread

from stockade.errors import ConfigurationError, ExecError, IntegrationError
from stockade.integrations.mcp_config import MCPConfig

__all__ = ["sandbox_command", "sandbox_for", "sandboxed_stdio"]


def sandbox_for(config: MCPConfig, env: dict[str, str]) -> Any:
    """The sandbox the ``mcp:`` section asks for (raise when it cannot be had)."""
    from stockade.tools.sandbox import DEFAULT_SYSTEM_PATHS, Limits, Sandbox, SandboxConfig

    if config.sandbox_workspace is None:
        raise ConfigurationError("`mcp.sandbox: true` needs `mcp.sandbox_workspace`")
    limits = Limits(
        cpu=config.sandbox_cpu, timeout=float(config.sandbox_cpu), memory=config.sandbox_memory
    )
    return Sandbox(
        SandboxConfig(
            workspace=config.sandbox_workspace,
            system_paths=DEFAULT_SYSTEM_PATHS + tuple(config.sandbox_read),
            limits=limits,
            env=env,
        )
    )


def sandbox_command(command: Sequence[str], config: MCPConfig) -> list[str]:
    """The command with its program resolved to an absolute path the sandbox can run."""
    from stockade.tools.exec import resolve_program
    from stockade.tools.sandbox import DEFAULT_SYSTEM_PATHS

    try:
        program = resolve_program(command[0], DEFAULT_SYSTEM_PATHS + tuple(config.sandbox_read))
    except ExecError as exc:
        raise ConfigurationError(f"cannot run the MCP server in the sandbox: {exc}") from exc
    return [program, *command[1:]]


def _write(stream: IO[bytes], data: bytes) -> None:
    stream.write(data)
    stream.flush()


@asynccontextmanager
async def sandboxed_stdio(sandbox: Any, argv: Sequence[str]) -> AsyncIterator[tuple[Any, Any]]:
    """Start ``argv`` in ``sandbox``; yield the SDK's (read, write) message streams.

    The whole process tree is killed when the context ends.
    """
    import mcp_types as types
    from mcp.shared.message import SessionMessage

    try:
        proc = await anyio.to_thread.run_sync(
            partial(sandbox.popen, list(argv), stderr=subprocess.DEVNULL)
        )
    except ExecError as exc:
        raise IntegrationError(f"the sandbox could not start the MCP server: {exc}") from exc
    read_send, read_recv = anyio.create_memory_object_stream[SessionMessage | Exception](0)
    write_send, write_recv = anyio.create_memory_object_stream[SessionMessage](0)
    stdout, stdin = proc.stdout, proc.stdin

    async def reader() -> None:
        async with read_send:
            while True:
                line = await anyio.to_thread.run_sync(stdout.readline, abandon_on_cancel=True)
                if not line:
                    return
                text = line.decode("utf-8", "replace").strip()
                if not text:
                    continue
                item: SessionMessage | Exception
                try:
                    item = SessionMessage(
                        types.jsonrpc_message_adapter.validate_json(text, by_name=False)
                    )
                except ValueError as exc:
                    item = exc
                try:
                    await read_send.send(item)
                except (anyio.ClosedResourceError, anyio.BrokenResourceError):
                    return

    async def writer() -> None:
        try:
            async with write_recv:
                async for message in write_recv:
                    data = message.message.model_dump_json(by_alias=True, exclude_unset=True)
                    await anyio.to_thread.run_sync(_write, stdin, (data + "\n").encode())
        except (OSError, anyio.ClosedResourceError, anyio.BrokenResourceError):
            await read_send.aclose()

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(reader)
            tg.start_soon(writer)
            try:
                yield read_recv, write_send
            finally:
                with anyio.CancelScope(shield=True):
                    await anyio.to_thread.run_sync(proc.kill)
                tg.cancel_scope.cancel()
    finally:
        for stream in (read_recv, write_send):
            with suppress(Exception):
                await stream.aclose()
        for pipe in (stdin, stdout):
            with suppress(Exception):
                pipe.close()
