"""Audit records: one canonical JSON document per pipeline outcome.

A record is UTF-8 JSON with sorted keys, no insignificant whitespace and a
format version ``v``. Its bytes are the Merkle leaf, so the same event always
gives the same bytes and any edit changes the leaf hash.

The arguments are stored as the scanners masked them. The raw arguments are
never stored: the record keeps ``args_hmac``, an HMAC-SHA256 of their canonical
JSON under a key kept apart from the log, so a raw value can be confirmed later
(:meth:`ArgsHMAC.check`) by whoever holds that key.

The record does not hold its own sequence number: the sequence number is the
leaf's index in the tree, bound by the tree and by the per-row hash chain.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from stockade.errors import AuditError, AuditIntegrityError
from stockade.model import AuditEvent

__all__ = [
    "RECORD_VERSION",
    "ArgsHMAC",
    "StoredRecord",
    "canonical_json",
    "encode_event",
]

#: the record format version written in every record's ``v``
RECORD_VERSION = 1


# NUL and every surrogate code point map to U+FFFD (a valid pair never reaches
# here: Python strings hold astral characters as one code point)
_UNSTORABLE = {0: 0xFFFD, **dict.fromkeys(range(0xD800, 0xE000), 0xFFFD)}


def _text(value: str) -> str:
    """A string every store can hold: no NUL, no lone surrogate (both become U+FFFD)."""
    return value.translate(_UNSTORABLE)


def _plain(value: Any) -> Any:
    """JSON-able, storable data; other values become their type name (never their ``repr``)."""
    if isinstance(value, str):
        return _text(value)
    if value is None or isinstance(value, (bool, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, Mapping):
        return {_text(str(k)): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, bytes):
        return {"bytes": len(value), "sha256": hashlib.sha256(value).hexdigest()}
    return f"<{type(value).__name__}>"


# one encoder for every record (json.dumps would build a new one per call)
_dumps = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
).encode


def canonical_json(obj: Any) -> bytes:
    """Canonical JSON bytes: sorted keys, compact, UTF-8, no NaN.

    Values JSON cannot hold become their type name; NUL characters and lone
    surrogates become U+FFFD (no store takes them, and an attacker must not be
    able to make the log refuse a record).

    >>> canonical_json({"b": 1, "a": [True, None]})
    b'{"a":[true,null],"b":1}'
    """
    try:
        text = _dumps(obj)
        if "\\u0000" not in text:
            return text.encode("utf-8")
    except (TypeError, ValueError):  # not JSON data (UnicodeEncodeError is a ValueError)
        pass
    return _dumps(_plain(obj)).encode("utf-8")


def _raw_json(obj: Any) -> bytes:
    """Canonical JSON of raw arguments for the HMAC: nothing replaced, nothing lost."""
    try:
        text = _dumps(obj)
    except (TypeError, ValueError):
        text = json.dumps(
            _plain_raw(obj), sort_keys=True, separators=(",", ":"), ensure_ascii=False
        )
    return text.encode("utf-8", "surrogatepass")


def _plain_raw(value: Any) -> Any:
    if value is None or isinstance(value, (str, bool, int, float)):
        return value if not isinstance(value, float) or math.isfinite(value) else str(value)
    if isinstance(value, Mapping):
        return {str(k): _plain_raw(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain_raw(v) for v in value]
    if isinstance(value, bytes):
        return {"bytes": value.hex()}
    return f"<{type(value).__name__}>"


class ArgsHMAC:
    """HMAC-SHA256 of raw arguments under a key kept apart from the log.

    >>> h = ArgsHMAC(b"k" * 32)
    >>> tag = h.digest({"to": "bob@example.com"})
    >>> h.check({"to": "bob@example.com"}, tag)
    """

    PREFIX = "hmac-sha256:"

    def __init__(self, key: bytes) -> None:
        if len(key) < 32:
            raise AuditError("the arguments hmac key must be at least 32 bytes")
        self._key = key

    def digest(self, raw_args: Mapping[str, Any]) -> str:
        """The tag stored in a record's ``args_hmac``."""
        return self.PREFIX + hmac.digest(self._key, _raw_json(dict(raw_args)), "sha256").hex()

    def check(self, raw_args: Mapping[str, Any], tag: str) -> None:
        """Raise :class:`AuditIntegrityError` unless ``raw_args`` give ``tag``."""
        if not hmac.compare_digest(self.digest(raw_args), tag):
            raise AuditIntegrityError(
                "the arguments do not match the record's hmac", kind="invalid"
            )

    def __repr__(self) -> str:
        return "ArgsHMAC(<key hidden>)"


def redact_secrets(value: Any) -> Any:
    """``value`` with every secret the secret detectors find replaced by
    ``[REDACTED:KIND]``, in every string, dict key and list item.

    For logs written without the scan stage (a policy with no ``scan:``
    section): the scanners' audit copy would otherwise be the only masking,
    and a record must never hold a secret in clear.
    """
    from stockade.scan._base import map_strings
    from stockade.scan.secrets import scan_secrets

    def one(text: str) -> str:
        hits = sorted(scan_secrets(text), key=lambda h: (h.start, -h.end))
        if not hits:
            return text
        out: list[str] = []
        pos = 0
        for hit in hits:
            if hit.start < pos:  # inside the span just masked
                continue
            out.append(text[pos : hit.start])
            out.append(f"[REDACTED:{hit.kind.upper()}]")
            pos = hit.end
        out.append(text[pos:])
        return "".join(out)

    def strings(v: Any, out: list[str]) -> list[str]:
        if isinstance(v, str):
            out.append(v)
        elif isinstance(v, Mapping):
            for k, x in v.items():
                strings(k, out)
                strings(x, out)
        elif isinstance(v, (list, tuple)):
            for x in v:
                strings(x, out)
        return out

    # One scan over all the strings, a line each, first: the detectors'
    # boundaries accept a line break where a string starts or ends, so a
    # secret in any string is found in the joined text too, and the common
    # record with none costs one scan instead of one per string.
    if not scan_secrets("\n".join(strings(value, []))):
        return value
    # The scanners' own mapper (keys too; two keys masked alike both kept), on
    # the plain JSON form the record would be written in anyway, so that a
    # mapping that is not a dict is masked too.
    return map_strings(_plain(value), lambda _path, text: one(text))


def encode_event(
    event: AuditEvent, origin: str, hasher: ArgsHMAC, *, redact: bool = False
) -> bytes:
    """The canonical record bytes of an event.

    ``event.raw_args`` go only into the HMAC; they are cleared afterwards so
    nothing downstream can write them by mistake. With ``redact``, secrets
    are masked in the arguments, the reason and the extras first (see
    :func:`redact_secrets`).
    """
    d = event.decision
    record: dict[str, Any] = {
        "v": RECORD_VERSION,
        "origin": origin,
        "kind": event.kind,
        "time": round(float(event.time), 6),
        "session": event.session,
        "principal": event.principal,
        "call_id": event.call_id,
        "tool": event.tool,
        "action": event.action,
        "args": event.args,
        "args_hmac": hasher.digest(event.raw_args),
        "decision": d.effect if d is not None else "",
        "rule": d.rule if d is not None else "",
        "reason": d.reason if d is not None else "",
        "mode": event.mode,
        # the enums are str subclasses: JSON writes their values
        "labels": [
            {"source": x.source, "integrity": x.integrity, "confidentiality": x.confidentiality}
            for x in event.labels
        ],
        "findings": [f.as_dict() for f in event.findings] if event.findings else [],
        "result_digest": event.result_digest,
        "result_size": event.result_size,
        "duration_ms": round(float(event.duration_ms), 3),
        "error_type": event.error_type,
    }
    if d is not None and d.shadow is not None:
        record["shadow"] = {
            "decision": d.shadow.effect.value,
            "rule": d.shadow.rule,
            "reason": d.shadow.reason,
        }
    if event.extra:
        record["extra"] = event.extra
    if redact:
        # one pass over everything free text can reach (most records have no secret)
        keys = [k for k in ("args", "reason", "extra", "labels", "findings") if k in record]
        bundle = [record[k] for k in keys]
        if "shadow" in record:
            bundle.append(record["shadow"]["reason"])
        masked = redact_secrets(bundle)
        if masked is not bundle:
            if "shadow" in record:
                record["shadow"]["reason"] = masked.pop()
            record.update(zip(keys, masked, strict=True))
    event.raw_args = {}
    return canonical_json(record)


@dataclass(frozen=True, slots=True)
class StoredRecord:
    """A record as read back from a store: its place and its bytes."""

    origin: str
    seq: int
    data: bytes

    def parsed(self) -> dict[str, Any]:
        """The record as a dict; raise :class:`AuditIntegrityError` if it is not JSON."""
        try:
            value = json.loads(self.data)
        except ValueError as exc:
            raise AuditIntegrityError(
                f"record {self.seq} is not valid JSON", kind="invalid", seq=self.seq
            ) from exc
        if not isinstance(value, dict):
            raise AuditIntegrityError(
                f"record {self.seq} is not a JSON object", kind="invalid", seq=self.seq
            )
        return value

    def as_export(self) -> dict[str, Any]:
        """The record with its origin and sequence number, for export and display."""
        return {"seq": self.seq, **self.parsed()}
