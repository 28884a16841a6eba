"""Signed checkpoints: (origin, size, root, time) under an Ed25519 signature.

A checkpoint says "the log ``origin`` had ``size`` records with Merkle root
``root`` at ``time``". The log writes one every N records and every T seconds
even when idle, so a verifier can tell how fresh the last signature is, and
can copy each one to a mirror (a file or a command) off the log: a log cut
back together with its checkpoints is then still caught against the mirror.

The signed bytes are ``b"stockade-audit-checkpoint/v1\\n"`` followed by the
canonical JSON of ``{v, origin, size, root, time}`` (root in hex).
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from stockade.audit.keys import key_id
from stockade.audit.record import canonical_json
from stockade.errors import AuditError, AuditIntegrityError

__all__ = ["CHECKPOINT_CONTEXT", "Checkpoint", "Mirror", "read_mirror"]

log = logging.getLogger("stockade.audit")

#: what every signed checkpoint body starts with (domain separation)
CHECKPOINT_CONTEXT = b"stockade-audit-checkpoint/v1\n"


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """One signed statement of the log's size and root."""

    origin: str
    size: int
    root: bytes
    time: float
    key_id: str
    signature: bytes

    def body(self) -> bytes:
        """The bytes the signature covers."""
        return _body(self.origin, self.size, self.root, self.time)

    @classmethod
    def sign(
        cls, key: Ed25519PrivateKey, *, origin: str, size: int, root: bytes, time: float
    ) -> Checkpoint:
        """Sign a new checkpoint."""
        t = round(time, 6)
        sig = key.sign(_body(origin, size, root, t))
        return cls(origin, size, root, t, key_id(key.public_key()), sig)

    def verify(self, public: Ed25519PublicKey) -> None:
        """Raise :class:`AuditIntegrityError` unless the signature checks under ``public``."""
        try:
            public.verify(self.signature, self.body())
        except InvalidSignature as exc:
            raise AuditIntegrityError(
                f"checkpoint at size {self.size} has a bad signature",
                kind="invalid",
                seq=max(self.size - 1, 0),
            ) from exc

    def as_dict(self) -> dict[str, Any]:
        """Plain data: what mirrors and ``export`` write."""
        return {
            "v": 1,
            "origin": self.origin,
            "size": self.size,
            "root": self.root.hex(),
            "time": self.time,
            "key_id": self.key_id,
            "signature": self.signature.hex(),
        }

    def to_line(self) -> str:
        """One line of JSON (no newline)."""
        return canonical_json(self.as_dict()).decode("utf-8")

    @classmethod
    def from_dict(cls, d: Any) -> Checkpoint:
        """Parse :meth:`as_dict` output; raise :class:`AuditIntegrityError` when malformed."""
        try:
            return cls(
                origin=str(d["origin"]),
                size=int(d["size"]),
                root=bytes.fromhex(d["root"]),
                time=float(d["time"]),
                key_id=str(d.get("key_id", "")),
                signature=bytes.fromhex(d["signature"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise AuditIntegrityError("a checkpoint is malformed", kind="invalid") from exc


def _body(origin: str, size: int, root: bytes, time: float) -> bytes:
    data = {"v": 1, "origin": origin, "size": size, "root": root.hex(), "time": time}
    return CHECKPOINT_CONTEXT + canonical_json(data)


class Mirror:
    """A second place for checkpoints: a file (one JSON line each) or a command.

    A command gets the checkpoint line on its standard input (for example
    ``["logger", "-t", "stockade"]`` or an upload script); it runs without a
    shell. A mirror that fails is logged and does not stop the log: the
    records and checkpoints are safe in the store, the mirror is a copy.
    """

    def __init__(
        self, *, file: Path | None = None, command: Sequence[str] = (), timeout: float = 10.0
    ) -> None:
        if (file is None) == (not command):
            raise AuditError("a mirror needs exactly one of a file or a command")
        self.file = file
        self.command = tuple(command)
        self.timeout = timeout

    def write(self, checkpoint: Checkpoint) -> None:
        """Copy one checkpoint; raise :class:`AuditError` when that fails."""
        line = checkpoint.to_line() + "\n"
        if self.file is not None:
            try:
                fd = os.open(self.file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
                try:
                    os.write(fd, line.encode("utf-8"))
                    os.fsync(fd)
                finally:
                    os.close(fd)
            except OSError as exc:
                raise AuditError(
                    f"cannot write checkpoint mirror `{self.file}`: {exc.strerror}"
                ) from exc
            return
        try:
            done = subprocess.run(  # noqa: S603 - argv from the policy, no shell
                self.command,
                input=line.encode("utf-8"),
                capture_output=True,
                timeout=self.timeout,
                check=False,
            )
        except (OSError, subprocess.SubprocessError) as exc:
            raise AuditError(f"checkpoint mirror command failed: {type(exc).__name__}") from exc
        if done.returncode != 0:
            raise AuditError(f"checkpoint mirror command exited with {done.returncode}")


def read_mirror(path: Path) -> list[Checkpoint]:
    """The checkpoints in a mirror file; a torn last line (crash mid-write) is skipped."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise AuditError(f"cannot read checkpoint mirror `{path}`: {exc.strerror}") from exc
    out: list[Checkpoint] = []
    lines = text.split("\n")
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except ValueError as exc:
            if i == len(lines) - 1:  # the last line had no newline yet: a torn write
                break
            raise AuditIntegrityError(
                f"checkpoint mirror `{path}` line {i + 1} is not JSON", kind="invalid"
            ) from exc
        out.append(Checkpoint.from_dict(data))
    return out
