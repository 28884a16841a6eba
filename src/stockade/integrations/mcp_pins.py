"""What the MCP proxy trusts about a tool: pins of its listing, and a scan of its description.

Pins: per server, its name and version and, per tool, SHA-256 digests of the
tool's name, description, input schema, title, annotations and output schema,
kept in a JSON file (:class:`PinStore`); :meth:`PinStore.compare` says what
changed since.

Pin files written before titles, annotations and output schemas were pinned
(format 1) keep working for tools that have none of them; a tool that has one
is blocked until it is pinned again (its pin does not say what was approved).

Description scan: hidden instructions, invisible characters, secret paths and
instructions about other tools (:func:`scan_tool_description`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import tempfile
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stockade.errors import ConfigurationError
from stockade.model import Finding
from stockade.policy.matchers import re2_compile

__all__ = [
    "PinCheck",
    "PinStore",
    "ToolFingerprint",
    "builtin_description_scan",
    "scan_tool_description",
]


# -- fingerprints and pins ----------------------------------------------------------


def _sha(value: Any) -> str:
    data = json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(data.encode("utf-8", "surrogatepass")).hexdigest()


_NO_TEXT = _sha("")
_NOTHING = _sha(None)

# The parts of a pin: (key in the pin file, words in messages, digest of "absent").
# The last three came with pin format 2; a format-1 entry lacks their keys.
_PARTS = (
    ("description", "description", None),
    ("input_schema", "input schema", None),
    ("title", "title", _NO_TEXT),
    ("annotations", "annotations", _NOTHING),
    ("output_schema", "output schema", _NOTHING),
)


@dataclass(frozen=True)
class ToolFingerprint:
    """What is pinned of one tool: digests of its name, description, input schema,
    title, annotations (``readOnlyHint``, ``destructiveHint``...) and output schema.
    """

    name: str
    description: str
    input_schema: str
    title: str = _NO_TEXT
    annotations: str = _NOTHING
    output_schema: str = _NOTHING

    @classmethod
    def of(
        cls,
        name: str,
        description: str | None,
        input_schema: Any,
        *,
        title: str | None = None,
        annotations: Mapping[str, Any] | None = None,
        output_schema: Any = None,
    ) -> ToolFingerprint:
        """The fingerprint of a tool as listed by the server.

        ``annotations`` is the JSON form of the tool's annotations (no or empty
        annotations are the same); an absent title is the empty title.
        """
        return cls(
            name,
            _sha(description or ""),
            _sha(input_schema or {}),
            _sha(title or ""),
            _sha(dict(annotations) if annotations else None),
            _sha(output_schema),
        )

    @property
    def digest(self) -> str:
        """One digest over all parts (over the first three when the others are absent)."""
        base = [self.name, self.description, self.input_schema]
        extra = [self.title, self.annotations, self.output_schema]
        if extra == [_NO_TEXT, _NOTHING, _NOTHING]:
            return _sha(base)  # the digest format 1 wrote for the same tool
        return _sha(base + extra)

    def as_dict(self) -> dict[str, str]:
        """The pin file's entry."""
        return {"digest": self.digest, **{key: getattr(self, key) for key, _, _ in _PARTS}}


@dataclass(frozen=True)
class PinCheck:
    """How a listing compares with the pins.

    ``first_use`` is true when the server had no pins; ``identity`` says how
    the server's identity changed (empty when it did not); ``changed`` maps a
    tool's name to what changed about it.
    """

    first_use: bool
    identity: str = ""
    changed: Mapping[str, str] = field(default_factory=dict)

    @property
    def clean(self) -> bool:
        """Whether nothing changed since the pins were taken."""
        return not self.identity and not self.changed


class PinStore:
    """The pin file: per server, its identity and each tool's fingerprint.

    The file is JSON, written atomically (a temporary file renamed over it).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def load(self) -> dict[str, Any]:
        """The whole file (an empty store when it does not exist)."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {"version": 1, "servers": {}}
        except OSError as exc:
            raise ConfigurationError(f"cannot read the pin file `{self.path}`") from exc
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ConfigurationError(f"the pin file `{self.path}` is not valid JSON") from exc
        if not isinstance(data, dict) or not isinstance(data.get("servers"), dict):
            raise ConfigurationError(f"the pin file `{self.path}` has no `servers` object")
        return data

    def server(self, key: str) -> dict[str, Any] | None:
        """The pins of one server, if any."""
        entry = self.load()["servers"].get(key)
        return entry if isinstance(entry, dict) else None

    def record(
        self, key: str, identity: Mapping[str, str], tools: Sequence[ToolFingerprint]
    ) -> None:
        """Pin ``tools`` and ``identity`` for server ``key`` (replacing earlier pins)."""
        data = self.load()
        data["version"] = 2
        data["servers"][key] = {
            "identity": dict(identity),
            "tools": {t.name: t.as_dict() for t in tools},
        }
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".pins-", dir=self.path.parent)
        except OSError as exc:
            raise ConfigurationError(self._cannot_write(exc)) from exc
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(data, fh, indent=2, sort_keys=True)
                fh.write("\n")
            os.replace(tmp, self.path)
        except BaseException as exc:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            if isinstance(exc, OSError):
                raise ConfigurationError(self._cannot_write(exc)) from exc
            raise

    def _cannot_write(self, exc: OSError) -> str:
        reason = (exc.strerror or type(exc).__name__).lower()
        return f"cannot write the pin file `{self.path}`: {reason}"

    def compare(
        self, key: str, identity: Mapping[str, str], tools: Sequence[ToolFingerprint]
    ) -> PinCheck:
        """Compare a listing with the pins of server ``key``."""
        entry = self.server(key)
        if entry is None:
            return PinCheck(first_use=True)
        pinned_id = entry.get("identity") or {}
        id_changes = [
            f"{k} `{pinned_id.get(k, '')}` → `{identity.get(k, '')}`"
            for k in sorted(set(pinned_id) | set(identity))
            if pinned_id.get(k, "") != identity.get(k, "")
        ]
        pinned_tools = entry.get("tools") or {}
        changed: dict[str, str] = {}
        for fp in tools:
            old = pinned_tools.get(fp.name)
            if not isinstance(old, dict):
                changed[fp.name] = "the tool is new since the server was pinned"
                continue
            parts: list[str] = []
            unpinned: list[str] = []
            for part, words, absent in _PARTS:
                now = getattr(fp, part)
                if part not in old and absent is not None:
                    # a format-1 pin: fine while the tool has none of this part
                    if now != absent:
                        unpinned.append(words)
                elif old.get(part) != now:
                    parts.append(words)
            what = []
            if parts:
                what.append(f"its {_and(parts)} changed since it was pinned")
            if unpinned:
                what.append(
                    f"its {_and(unpinned)} {'is' if len(unpinned) == 1 else 'are'} not in its pin "
                    "(pinned by an older stockade)"
                )
            if what:
                changed[fp.name] = "; ".join(what)
        return PinCheck(first_use=False, identity="; ".join(id_changes), changed=changed)


def _and(words: Sequence[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


# -- description scanning -----------------------------------------------------------

_HIDDEN = [
    (r"<\s*/?\s*(important|system|instructions?|secret|hidden|admin)\s*>", "instruction tag"),
    (
        r"ignore\s+(all\s+|any\s+)?(the\s+)?(previous|prior|above|earlier)\s+instructions",
        "override of earlier instructions",
    ),
    (
        r"(do\s+not|don'?t|never)\s+(tell|inform|mention|reveal|show|notify)\b[^.]{0,40}"
        r"\b(user|human|anyone)",
        "secrecy towards the user",
    ),
    (
        r"\b(before|after|when|whenever)\s+(using|calling|running|invoking)\s+(this|any|the|other)\b"
        r"[^.]{0,120}\b(read|send|include|pass|upload|forward|attach|add)\b",
        "instructions to act around the tool's use",
    ),
    (
        r"(~/\.ssh|id_rsa|id_ed25519|\.aws/credentials|/etc/passwd|/etc/shadow|\.env\b|mcp\.json"
        r"|credentials\.json|\.netrc|\.npmrc|\.pypirc)",
        "reference to credential files",
    ),
    (
        r"\b(send|upload|forward|post|exfiltrate|transmit)\b[^.]{0,80}\bhttps?://",
        "data sent to a URL",
    ),
    (
        r"\b(read|open|cat|load|include|attach|pass|send)\s+(the\s+)?(content|contents|file|text)s?"
        r"\s+of\s+(the\s+file\s+)?[`'\"]?(~|/|\.\.?/|\$\w)",
        "instruction to read a named file",
    ),
    (r"<!--", "hidden comment"),
    (r"\bsystem\s+prompt\b", "reference to the system prompt"),
    (r"\byou\s+(must|should)\s+(always|first|also|never)\b", "imperative aimed at the model"),
]
_HIDDEN_RX = [(re2_compile("(?i)(?s)" + p), why) for p, why in _HIDDEN]


def _invisible(text: str) -> list[tuple[int, str]]:
    out = []
    for i, ch in enumerate(text):
        cp = ord(ch)
        cat = unicodedata.category(ch)
        if (
            cat == "Cf"
            or 0xE0000 <= cp <= 0xE007F
            or 0xFE00 <= cp <= 0xFE0F
            or 0xE0100 <= cp <= 0xE01EF
        ):
            out.append((i, f"invisible character U+{cp:04X}"))
        elif cat == "Cc" and ch not in "\n\t\r":
            out.append((i, f"control character U+{cp:04X}"))
    return out


def scan_tool_description(
    name: str,
    description: str,
    other_tools: Sequence[str] = (),
    input_schema: Mapping[str, Any] | None = None,
) -> list[Finding]:
    """Findings in a tool's description: hidden instructions, invisible text, other tools.

    The proxy's built-in checks (:func:`builtin_description_scan`) and, when
    installed, the scanners part (``stockade.scan.tools.scan_tool_description``,
    which also reads the input schema): a finding from either blocks the tool.

    >>> [f.kind for f in builtin_description_scan("add", "Adds numbers.\\u200b")]
    ['invisible-text']
    """
    external: Any = None
    try:
        from stockade.scan import tools as scan_tools
    except ImportError:
        pass
    else:
        external = getattr(scan_tools, "scan_tool_description", None)
    findings = builtin_description_scan(name, description, other_tools)
    if external is not None:
        found = external(name, description, dict(input_schema or {}), list(other_tools))
        findings.extend(f for f in found if isinstance(f, Finding))
    return findings


def builtin_description_scan(
    name: str, description: str, other_tools: Sequence[str] = ()
) -> list[Finding]:
    """The proxy's own description checks, used when the scanners part is missing."""
    findings: list[Finding] = []
    for pos, why in _invisible(description)[:5]:
        findings.append(
            Finding("mcp-description", "invisible-text", pos, pos + 1, 1.0, why, where=name)
        )
    visible = "".join(ch for ch in description if unicodedata.category(ch) != "Cf")
    for rx, why in _HIDDEN_RX:
        m = rx.search(visible)
        if m is not None:
            findings.append(
                Finding(
                    "mcp-description",
                    "hidden-instruction",
                    m.start(),
                    m.end(),
                    0.9,
                    why,
                    where=name,
                )
            )
    for other in other_tools:
        if other == name or len(other) < 3:
            continue
        pattern = re.escape(other)
        cross = re2_compile(
            rf"(?i)(?s)\b(when|whenever|before|after|while|instead\s+of)\b[^.]{{0,80}}\b{pattern}\b"
            rf"|\b{pattern}\b[^.]{{0,80}}\b(must|should|always|never)\b"
        )
        m = cross.search(visible)
        if m is not None:
            findings.append(
                Finding(
                    "mcp-description",
                    "cross-tool-reference",
                    m.start(),
                    m.end(),
                    0.8,
                    f"instructions about another tool `{other}`",
                    where=name,
                )
            )
    return findings
