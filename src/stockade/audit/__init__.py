"""stockade.audit: an append-only, signed, verifiable log of every decision.

The policy's ``audit:`` section (see ``docs/audit.md``)::

    audit:
      path: state/audit.db          # SQLite (the default: audit.db next to the policy)
      # url: postgresql://host/db   # PostgreSQL instead, for fleets
      origin: laptop-1              # the log's identity (default: the host name)
      keys: state/audit-keys        # signing + hmac keys (default: audit-keys next to the policy)
      create_keys: true             # make missing keys on first use (default: false)
      checkpoint: {every: 1000, interval: 10s}
      mirror: {file: state/checkpoints.jsonl}
      durability: process           # or power (SQLite: fsync every commit)
      required: true                # a record that cannot be stored denies the call

Relative paths are relative to the policy file's folder. Without an
``audit:`` section the guard keeps its in-memory sink (not tamper-evident).
"""

from __future__ import annotations

import logging
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stockade.audit.checkpoint import Checkpoint, Mirror
from stockade.audit.keys import KeyPaths, create_keys, load_hmac_key, load_signing_key
from stockade.audit.log import AuditLog
from stockade.audit.record import ArgsHMAC, canonical_json
from stockade.audit.store import Query, Store, hide_password
from stockade.audit.verify import VerifyReport, verify_log
from stockade.errors import AuditError, ConfigurationError
from stockade.model import AuditEvent

if TYPE_CHECKING:
    from stockade.policy import Policy
    from stockade.policy.node import Node
    from stockade.policy.policy import SectionContext

__all__ = [
    "ArgsHMAC",
    "AuditConfig",
    "AuditLog",
    "Checkpoint",
    "Mirror",
    "Query",
    "Store",
    "VerifyReport",
    "canonical_json",
    "open_log",
    "open_store",
    "parse_section",
    "sink_from_policy",
    "verify_log",
]

log = logging.getLogger("stockade.audit")

_KEYS = (
    "path",
    "url",
    "origin",
    "keys",
    "hmac_key",
    "create_keys",
    "checkpoint",
    "mirror",
    "durability",
    "required",
)


@dataclass(frozen=True)
class AuditConfig:
    """The parsed ``audit:`` section, paths made absolute."""

    path: Path | None = None
    url: str | None = None
    origin: str = ""
    keys_dir: Path = Path("audit-keys")
    hmac_key: Path | None = None
    create_keys: bool = False
    checkpoint_every: int = 1000
    checkpoint_interval: float = 10.0
    mirror_file: Path | None = None
    mirror_command: tuple[str, ...] = ()
    durability: str = "process"
    required: bool = True

    @property
    def key_paths(self) -> KeyPaths:
        """Where the signing, public and hmac keys are."""
        return KeyPaths.in_dir(self.keys_dir, self.hmac_key)

    @property
    def mirror(self) -> Mirror | None:
        """The checkpoint mirror, if one is configured."""
        if self.mirror_file is not None:
            return Mirror(file=self.mirror_file)
        if self.mirror_command:
            return Mirror(command=self.mirror_command)
        return None

    @property
    def store_location(self) -> str:
        """The SQLite path or the PostgreSQL URL with any password hidden."""
        if self.url:
            return hide_password(self.url)
        return str(self.path)


def _resolve(base: Path, value: str) -> Path:
    p = Path(value).expanduser()
    return p if p.is_absolute() else (base / p)


def parse_section(node: Node, ctx: SectionContext) -> AuditConfig:
    """Parse the policy's ``audit:`` section (relative paths: the policy's folder)."""
    m = node.mapping(allowed=_KEYS)
    base = ctx.base_dir
    if "path" in m and "url" in m:
        m["url"].fail("give either `path` (SQLite) or `url` (PostgreSQL), not both")
    url = None
    path = None
    if "url" in m:
        url = m["url"].string()
        if not url.startswith(("postgresql://", "postgres://")):
            m["url"].fail("expected a postgresql:// URL")
    else:
        path = _resolve(base, m["path"].string() if "path" in m else "audit.db")
    origin = m["origin"].string() if "origin" in m else socket.gethostname() or "stockade"
    if any(c in origin for c in "\n\r\t") or len(origin) > 200:
        m["origin"].fail("expected a short origin name without control characters")
    every, interval = 1000, 10.0
    if "checkpoint" in m:
        cm = m["checkpoint"].mapping(allowed=("every", "interval"))
        if "every" in cm:
            every = cm["every"].integer(minimum=1)
        if "interval" in cm:
            interval = cm["interval"].duration()
    mirror_file: Path | None = None
    mirror_command: tuple[str, ...] = ()
    if "mirror" in m:
        mm = m["mirror"].mapping(allowed=("file", "command"))
        if ("file" in mm) == ("command" in mm):
            m["mirror"].fail("expected exactly one of `file` or `command`")
        if "file" in mm:
            mirror_file = _resolve(base, mm["file"].string())
        else:
            mirror_command = tuple(mm["command"].strings())
    return AuditConfig(
        path=path,
        url=url,
        origin=origin,
        keys_dir=_resolve(base, m["keys"].string() if "keys" in m else "audit-keys"),
        hmac_key=_resolve(base, m["hmac_key"].string()) if "hmac_key" in m else None,
        create_keys=m["create_keys"].boolean() if "create_keys" in m else False,
        checkpoint_every=every,
        checkpoint_interval=interval,
        mirror_file=mirror_file,
        mirror_command=mirror_command,
        durability=(
            m["durability"].string(choices=("process", "power")) if "durability" in m else "process"
        ),
        required=m["required"].boolean() if "required" in m else True,
    )


def open_store(config: AuditConfig, *, readonly: bool = False) -> Store:
    """Open the store the config names; raise :class:`AuditError`."""
    if config.url:
        from stockade.audit.store_postgres import PostgresStore

        return PostgresStore(config.url, config.origin, readonly=readonly)
    from stockade.audit.store_sqlite import SQLiteStore

    assert config.path is not None
    return SQLiteStore(config.path, config.origin, durability=config.durability, readonly=readonly)


def open_log(config: AuditConfig, *, redact_secrets: bool = False) -> AuditLog:
    """Open the log for appending: keys (created when ``create_keys``), store, checkpoints.

    ``redact_secrets``: mask secrets in records before they are written (for a
    guard without the scan stage; see :func:`sink_from_policy`).
    """
    paths = config.key_paths
    if config.create_keys and not paths.exist():
        create_keys(paths)
    signing = load_signing_key(paths.signing)
    hmac_key = load_hmac_key(paths.hmac)
    try:
        store = open_store(config)
    except AuditError as exc:
        raise ConfigurationError(str(exc)) from exc
    return AuditLog(
        store,
        signing_key=signing,
        hmac_key=hmac_key,
        checkpoint_every=config.checkpoint_every,
        checkpoint_interval=config.checkpoint_interval,
        mirror=config.mirror,
        redact_secrets=redact_secrets,
    )


class UnavailableSink:
    """Stands in for a store that could not be opened when audit is not required.

    Every append raises :class:`AuditError`; the guard logs it and goes on
    (only because the policy says ``required: false``).
    """

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def append(self, event: AuditEvent) -> int:
        """Refuse the event."""
        event.raw_args = {}
        raise AuditError(f"the audit store is unavailable: {self.reason}")

    def close(self) -> None:
        """Nothing to release."""


def sink_from_policy(policy: Policy) -> AuditLog | UnavailableSink | None:
    """The audit sink for a policy's ``audit:`` section; ``None`` when it has none.

    With ``required: true`` (the default) a store or key that cannot be opened
    raises :class:`ConfigurationError`, so a guard never starts without its log.
    """
    config: Any = policy.section("audit")
    if config is None:
        return None
    if not isinstance(config, AuditConfig):
        raise ConfigurationError("the policy's audit section was not parsed by stockade.audit")
    try:
        # Without a `scan:` section no scanner masks the arguments for the
        # record: the log masks secrets itself, so none is ever stored in clear.
        return open_log(config, redact_secrets=policy.section("scan") is None)
    except ConfigurationError as exc:
        if config.required:
            raise
        log.error("audit store unavailable, continuing because audit is not required: %s", exc)
        return UnavailableSink(str(exc))
