"""The audit log's keys: an Ed25519 signing key and a separate HMAC key.

``stockade audit init`` (or a policy with ``create_keys: true``) makes, in the
keys folder:

- ``audit-signing.key``: the Ed25519 private key (PEM, PKCS#8), mode 0600;
- ``audit-signing.pub``: its public key (PEM), what ``verify`` needs;
- ``audit-hmac.key``: 32 random bytes (hex), mode 0600, for the HMAC of raw
  arguments. Keep it apart from the log (``hmac_key:`` in the policy may point
  elsewhere): whoever holds it can test guesses of raw argument values.

A private key file that others can read is refused, as ssh does.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from stockade.errors import ConfigurationError

__all__ = [
    "HMAC_KEY_FILE",
    "PUBLIC_KEY_FILE",
    "SIGNING_KEY_FILE",
    "KeyPaths",
    "create_keys",
    "key_id",
    "load_hmac_key",
    "load_public_key",
    "load_signing_key",
]

SIGNING_KEY_FILE = "audit-signing.key"
PUBLIC_KEY_FILE = "audit-signing.pub"
HMAC_KEY_FILE = "audit-hmac.key"


@dataclass(frozen=True)
class KeyPaths:
    """Where the three key files are."""

    signing: Path
    public: Path
    hmac: Path

    @classmethod
    def in_dir(cls, keys_dir: Path, hmac_key: Path | None = None) -> KeyPaths:
        """The default file names in ``keys_dir`` (the HMAC key may live elsewhere)."""
        return cls(
            keys_dir / SIGNING_KEY_FILE,
            keys_dir / PUBLIC_KEY_FILE,
            hmac_key or keys_dir / HMAC_KEY_FILE,
        )

    def exist(self) -> bool:
        """Whether all three files are there."""
        return self.signing.exists() and self.public.exists() and self.hmac.exists()


def key_id(public: Ed25519PublicKey) -> str:
    """A short name for a public key: the first 8 bytes of SHA-256 of its raw form, hex."""
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def _write_new(path: Path, data: bytes, mode: int) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        reason = (exc.strerror or type(exc).__name__).lower()
        raise ConfigurationError(
            f"cannot create the keys folder `{path.parent}`: {reason}"
        ) from exc
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except FileExistsError as exc:
        raise ConfigurationError(f"key file `{path}` already exists; not overwriting") from exc
    except OSError as exc:
        raise ConfigurationError(f"cannot create key file `{path}`: {exc.strerror}") from exc
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.chmod(path, mode)


def create_keys(paths: KeyPaths) -> None:
    """Create the keys that are missing; an existing key is kept, never replaced."""
    if not paths.signing.exists():
        if paths.public.exists():
            raise ConfigurationError(
                f"public key `{paths.public}` exists without its private key; move it away first"
            )
        private = Ed25519PrivateKey.generate()
        pem = private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        _write_new(paths.signing, pem, 0o600)
        pub = private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        _write_new(paths.public, pub, 0o644)
    elif not paths.public.exists():
        pub = (
            load_signing_key(paths.signing)
            .public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        _write_new(paths.public, pub, 0o644)
    if not paths.hmac.exists():
        _write_new(paths.hmac, secrets.token_hex(32).encode("ascii") + b"\n", 0o600)


def _read_private(path: Path, what: str) -> bytes:
    try:
        st = path.stat()
        if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise ConfigurationError(
                f"{what} `{path}` is readable by others (mode {stat.S_IMODE(st.st_mode):o}); "
                "run `chmod 600` on it"
            )
        return path.read_bytes()
    except FileNotFoundError as exc:
        raise ConfigurationError(
            f"{what} `{path}` does not exist; run `stockade audit init` first"
        ) from exc
    except OSError as exc:
        raise ConfigurationError(f"cannot read {what} `{path}`: {exc.strerror}") from exc


def load_signing_key(path: Path) -> Ed25519PrivateKey:
    """The Ed25519 private key in ``path``; raise :class:`ConfigurationError`."""
    data = _read_private(path, "signing key")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise ConfigurationError(f"`{path}` is not a PEM private key") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigurationError(f"`{path}` is not an Ed25519 private key")
    return key


def load_public_key(path: Path) -> Ed25519PublicKey:
    """The Ed25519 public key in ``path``; raise :class:`ConfigurationError`."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigurationError(f"cannot read public key `{path}`: {exc.strerror}") from exc
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise ConfigurationError(f"`{path}` is not a PEM public key") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise ConfigurationError(f"`{path}` is not an Ed25519 public key")
    return key


def load_hmac_key(path: Path) -> bytes:
    """The HMAC key in ``path`` (hex text); raise :class:`ConfigurationError`."""
    text = _read_private(path, "hmac key").strip()
    try:
        key = bytes.fromhex(text.decode("ascii"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ConfigurationError(f"`{path}` is not a hex hmac key") from exc
    if len(key) < 32:
        raise ConfigurationError(f"hmac key `{path}` is shorter than 32 bytes")
    return key
