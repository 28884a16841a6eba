"""Masking: redact, hash, or reversible pseudonyms kept per session in a vault.

``pseudonym`` mode replaces a value with ``<EMAIL_1>``: the model sees the
pseudonym, and a later tool call in the **same session** that carries it gets
the real value back (the argument scanner restores it before the policy
decides; the audit log keeps the pseudonym). The same value gets the same
pseudonym for the whole session; another session cannot resolve it.

>>> vault = Vault()
>>> vault.pseudonym("s1", "email", "ada@example.org")
'<EMAIL_1>'
>>> vault.restore("s1", "mail <EMAIL_1> now")[0]
'mail ada@example.org now'
>>> vault.restore("s2", "mail <EMAIL_1> now")[0]
'mail <EMAIL_1> now'

A persisted vault (:class:`EncryptedFileStore`) keeps each session's table in
its own file sealed with AES-GCM (``cryptography``), the session id bound as
associated data, so a file cannot be read without the key nor swapped to
another session unnoticed.

The vault MUST NOT be shared between tenants: whoever can name a session can
get its real values back through a tool call. A vault key MUST NOT be kept
in the policy file or next to the vault files.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import fcntl
import hashlib
import hmac
import json
import os
import secrets
import tempfile
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from stockade.errors import ConfigurationError, ScanError
from stockade.scan._base import Hit, compile_re2

__all__ = [
    "MASK_MODES",
    "EncryptedFileStore",
    "Entry",
    "Vault",
    "VaultStore",
    "key_from_env",
    "mask_text",
]

#: how a finding's text can be masked
MASK_MODES = ("label", "redact", "hash", "pseudonym")

_TOKEN = compile_re2(r"<([A-Z][A-Z0-9_]{0,40}?)_(\d{1,9})>")
_AAD = b"stockade-vault-v1:"


@dataclass(frozen=True)
class Entry:
    """One pseudonym: the real value, its kind, and where it was first seen."""

    value: str
    kind: str
    source: str = ""


@dataclass
class _Table:
    by_token: dict[str, Entry] = field(default_factory=dict)
    by_value: dict[tuple[str, str], str] = field(default_factory=dict)
    counters: dict[str, int] = field(default_factory=dict)
    dirty: bool = False

    def to_json(self) -> bytes:
        data = {
            "entries": {t: [e.value, e.kind, e.source] for t, e in self.by_token.items()},
            "counters": self.counters,
        }
        return json.dumps(data, separators=(",", ":")).encode("utf-8")

    @classmethod
    def from_json(cls, raw: bytes) -> _Table:
        data = json.loads(raw.decode("utf-8"))
        table = cls(counters={str(k): int(v) for k, v in data["counters"].items()})
        for token, (value, kind, source) in data["entries"].items():
            table.by_token[token] = Entry(value, kind, source)
            table.by_value[(kind, value)] = token
        return table


class VaultStore(Protocol):
    """Where a vault keeps each session's table between processes."""

    def load(self, session: str) -> bytes | None:
        """The sealed-then-opened table of ``session``, or ``None`` when there is none."""
        ...

    def save(self, session: str, data: bytes) -> None:
        """Keep ``data`` for ``session`` (replacing what was there)."""
        ...

    def lock(self, session: str) -> contextlib.AbstractContextManager[object]:
        """Hold the session's table against other writers (other processes too)."""
        ...


def key_from_env(name: str) -> bytes:
    """A 32-byte key from an environment variable holding hex or base64."""
    raw = os.environ.get(name)
    if not raw:
        raise ConfigurationError(f"the vault key variable `{name}` is not set")
    raw = raw.strip()
    key: bytes | None = None
    try:
        key = bytes.fromhex(raw)
    except ValueError:
        try:
            key = base64.b64decode(raw, validate=True)
        except (binascii.Error, ValueError):
            key = None
    if key is None or len(key) != 32:
        raise ConfigurationError(f"the vault key in `{name}` must be 32 bytes as hex or base64")
    return key


class EncryptedFileStore:
    """Session tables in files under ``directory``, sealed with AES-256-GCM.

    File names are keyed hashes of the session id, so a listing does not
    reveal session ids. A file that does not open (wrong key, altered,
    moved to another session's name) raises :class:`~stockade.errors.ScanError`,
    which denies the call that needed it.
    """

    def __init__(self, directory: str | Path, key: bytes) -> None:
        if len(key) != 32:
            raise ConfigurationError("a vault key must be 32 bytes")
        self.directory = Path(directory)
        self._aead = AESGCM(key)
        self._name_key = hmac.new(key, b"stockade-vault-names", hashlib.sha256).digest()
        try:
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise ConfigurationError(
                f"cannot create the vault folder `{self.directory}`: {exc.strerror}"
            ) from exc

    def _path(self, session: str) -> Path:
        digest = hmac.new(self._name_key, session.encode("utf-8"), hashlib.sha256).hexdigest()
        return self.directory / f"{digest[:40]}.vault"

    @contextlib.contextmanager
    def lock(self, session: str) -> Iterator[object]:
        """An exclusive ``flock`` on the session's lock file (held across processes)."""
        path = self._path(session).with_suffix(".lock")
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        except OSError as exc:
            raise ScanError(f"cannot lock the vault: {exc.strerror}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield fd
        finally:
            os.close(fd)  # closing releases the lock

    def load(self, session: str) -> bytes | None:
        """Open the sealed table of ``session``."""
        path = self._path(session)
        try:
            blob = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise ScanError(f"cannot read the vault: {exc.strerror}") from exc
        if len(blob) < 13:
            raise ScanError("a vault file is damaged")
        try:
            return self._aead.decrypt(blob[:12], blob[12:], _AAD + session.encode("utf-8"))
        except InvalidTag as exc:
            raise ScanError("a vault file does not authenticate (wrong key or altered)") from exc

    def save(self, session: str, data: bytes) -> None:
        """Seal and write the table atomically (write, fsync, rename)."""
        nonce = secrets.token_bytes(12)
        blob = nonce + self._aead.encrypt(nonce, data, _AAD + session.encode("utf-8"))
        path = self._path(session)
        try:
            fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".vault-")
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(blob)
                    fh.flush()
                    os.fsync(fh.fileno())
                os.replace(tmp, path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError as exc:
            raise ScanError(f"cannot write the vault: {exc.strerror}") from exc


class Vault:
    """Pseudonyms per session, optionally persisted in a :class:`VaultStore`.

    ``key`` keys the ``hash`` masking mode (a keyed hash, so a masked value
    cannot be confirmed by hashing guesses without the key); a random key is
    made when none is given.
    """

    def __init__(self, store: VaultStore | None = None, *, key: bytes | None = None) -> None:
        self._store = store
        self._tables: dict[str, _Table] = {}  # the tables themselves, without a store
        self._open: dict[str, _Table] = {}  # tables of open transactions, with a store
        self._lock = threading.RLock()
        self._key = key or secrets.token_bytes(32)

    @property
    def key(self) -> bytes:
        """The key behind the ``hash`` mode and canary tags."""
        return self._key

    def _load(self, session: str) -> _Table:
        assert self._store is not None
        raw = self._store.load(session)
        try:
            return _Table.from_json(raw) if raw is not None else _Table()
        except (ValueError, KeyError, TypeError) as exc:
            raise ScanError("a vault table is damaged") from exc

    @contextlib.contextmanager
    def transaction(self, session: str, *, write: bool = True) -> Iterator[_Table]:
        """The session's table, current and (with ``write``) locked against other processes.

        With a store nothing is cached between transactions: another worker may
        have added pseudonyms since. A writing transaction holds the store's
        lock for the session and saves the table once at the end.
        """
        with self._lock:
            if self._store is None:
                yield self._tables.setdefault(session, _Table())
                return
            if session in self._open:  # nested: the outer transaction saves
                yield self._open[session]
                return
            with self._store.lock(session) if write else contextlib.nullcontext():
                table = self._load(session)
                self._open[session] = table
                try:
                    yield table
                finally:
                    del self._open[session]
                if write and table.dirty:
                    self._store.save(session, table.to_json())

    def pseudonym(self, session: str, kind: str, value: str, source: str = "") -> str:
        """The pseudonym of ``value`` in ``session`` (the same value, the same pseudonym)."""
        with self.transaction(session) as table:
            token = table.by_value.get((kind, value))
            if token is not None:
                return token
            label = kind.upper().replace("-", "_")
            n = table.counters.get(label, 0) + 1
            table.counters[label] = n
            token = f"<{label}_{n}>"
            table.by_token[token] = Entry(value, kind, source)
            table.by_value[(kind, value)] = token
            table.dirty = True
            return token

    def lookup(self, session: str, token: str) -> Entry | None:
        """What ``token`` stands for in ``session``, if it is one of its pseudonyms."""
        with self.transaction(session, write=False) as table:
            return table.by_token.get(token)

    def origins(self, session: str, text: str) -> list[tuple[str, Entry]]:
        """The session's pseudonymised values that occur in ``text``, with where each was seen.

        For provenance checks on a call whose pseudonyms were already restored:
        the flow stage indexes what the model saw (``<EMAIL_1>``), the call
        carries the real value; this links the two.
        """
        with self.transaction(session, write=False) as table:
            return [(t, e) for t, e in table.by_token.items() if e.value and e.value in text]

    def restore(self, session: str, text: str) -> tuple[str, list[tuple[str, Entry]]]:
        """``text`` with the session's pseudonyms replaced by their values.

        Returns the new text and the ``(pseudonym, entry)`` pairs restored.
        Tokens that look like pseudonyms but are not in the session stay.
        """
        if "<" not in text or _TOKEN.search(text) is None:
            return text, []
        with self.transaction(session, write=False) as table:
            if not table.by_token:
                return text, []
            restored: list[tuple[str, Entry]] = []
            parts: list[str] = []
            pos = 0
            for m in _TOKEN.finditer(text):
                entry = table.by_token.get(m.group(0))
                if entry is None:
                    continue
                parts.append(text[pos : m.start()])
                parts.append(entry.value)
                restored.append((m.group(0), entry))
                pos = m.end()
            if not restored:
                return text, []
            parts.append(text[pos:])
            return "".join(parts), restored

    def defang(self, session: str, text: str) -> tuple[str, list[tuple[int, int]]]:
        """``text`` with the session's pseudonyms written literally made unresolvable.

        A tool result that already contains ``<EMAIL_1>`` did not get it from the
        vault: planted text could make the model send it back and get the real
        value. Such tokens become ``‹EMAIL_1›`` (same length, so offsets hold).
        """
        if "<" not in text or _TOKEN.search(text) is None:
            return text, []
        with self.transaction(session, write=False) as table:
            if not table.by_token:
                return text, []
            spans = [
                (m.start(), m.end()) for m in _TOKEN.finditer(text) if m.group(0) in table.by_token
            ]
        if not spans:
            return text, []
        chars = list(text)
        for s, e in spans:
            chars[s], chars[e - 1] = "\u2039", "\u203a"
        return "".join(chars), spans

    def hashed(self, kind: str, value: str) -> str:
        """The ``hash`` mode's stand-in: a keyed hash, stable across sessions."""
        tag = hmac.new(self._key, f"{kind}\0{value}".encode(), hashlib.sha256).hexdigest()[:12]
        return f"<{kind.upper().replace('-', '_')}#{tag}>"


def mask_text(
    text: str,
    hits: Iterable[Hit],
    mode_of: dict[str, str],
    *,
    vault: Vault,
    session: str,
    source: str = "",
    default: str = "redact",
) -> tuple[str, list[tuple[Hit, bool]]]:
    """Replace each hit's span by its kind's mode; return the text and ``(hit, masked)``.

    ``mode_of`` maps a finding kind (or a scanner name, then ``default``) to one
    of :data:`MASK_MODES`. Overlapping hits are merged into the first one.
    """
    ordered = sorted(hits, key=lambda h: (h.start, -h.end))
    done: list[tuple[Hit, bool]] = []
    spans: list[tuple[int, int, Hit, str]] = []  # merged spans to mask, with the first hit
    for hit in ordered:
        mode = mode_of.get(hit.kind) or mode_of.get(hit.scanner) or default
        if mode == "label":
            done.append((hit, False))
            continue
        done.append((hit, True))
        if spans and hit.start < spans[-1][1]:
            s, e, first, m = spans[-1]
            spans[-1] = (s, max(e, hit.end), first, m)
        else:
            spans.append((hit.start, hit.end, hit, mode))
    out: list[str] = []
    pos = 0
    # one transaction for the whole text: the table is read, locked and written once,
    # and saved before the masked text leaves (so every pseudonym in it resolves)
    with contextlib.ExitStack() as stack:
        if any(mode == "pseudonym" for *_, mode in spans):
            stack.enter_context(vault.transaction(session))
        for start, end, first, mode in spans:
            value = text[start:end]
            if mode == "pseudonym":
                stand_in = vault.pseudonym(session, first.kind, value, source)
            elif mode == "hash":
                stand_in = vault.hashed(first.kind, value)
            else:
                stand_in = f"[REDACTED:{first.kind.upper()}]"
            out.append(text[pos:start])
            out.append(stand_in)
            pos = end
    out.append(text[pos:])
    return "".join(out), done
