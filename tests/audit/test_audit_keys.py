"""Key files: created with the right modes, never overwritten, refused when others can read."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from stockade.audit.keys import (
    KeyPaths,
    create_keys,
    key_id,
    load_hmac_key,
    load_public_key,
    load_signing_key,
)
from stockade.errors import ConfigurationError


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def test_create_keys_modes_and_reuse(tmp_path: Path) -> None:
    paths = KeyPaths.in_dir(tmp_path / "k")
    assert not paths.exist()
    create_keys(paths)
    assert paths.exist()
    assert _mode(paths.signing) == 0o600 and _mode(paths.hmac) == 0o600
    assert _mode(paths.public) == 0o644
    signing = load_signing_key(paths.signing)
    before = paths.signing.read_bytes()
    create_keys(paths)  # existing keys are kept
    assert paths.signing.read_bytes() == before
    assert key_id(load_public_key(paths.public)) == key_id(signing.public_key())
    assert len(load_hmac_key(paths.hmac)) == 32


def test_public_key_is_rebuilt_from_the_private_key(tmp_path: Path) -> None:
    paths = KeyPaths.in_dir(tmp_path)
    create_keys(paths)
    kid = key_id(load_public_key(paths.public))
    paths.public.unlink()
    create_keys(paths)
    assert key_id(load_public_key(paths.public)) == kid


def test_orphan_public_key_is_not_replaced(tmp_path: Path) -> None:
    paths = KeyPaths.in_dir(tmp_path)
    create_keys(paths)
    paths.signing.unlink()
    with pytest.raises(ConfigurationError, match="without its private key"):
        create_keys(paths)


def test_readable_private_key_is_refused(tmp_path: Path) -> None:
    paths = KeyPaths.in_dir(tmp_path)
    create_keys(paths)
    paths.signing.chmod(0o640)
    with pytest.raises(ConfigurationError, match="readable by others"):
        load_signing_key(paths.signing)
    paths.hmac.chmod(0o604)
    with pytest.raises(ConfigurationError, match="chmod 600"):
        load_hmac_key(paths.hmac)


def test_missing_and_malformed_keys(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="stockade audit init"):
        load_signing_key(tmp_path / "nope.key")
    bad = tmp_path / "bad.key"
    bad.write_text("not a key")
    bad.chmod(0o600)
    with pytest.raises(ConfigurationError, match="not a PEM private key"):
        load_signing_key(bad)
    with pytest.raises(ConfigurationError, match="not a PEM public key"):
        load_public_key(bad)
    with pytest.raises(ConfigurationError, match="not a hex hmac key"):
        load_hmac_key(bad)
    short = tmp_path / "short.key"
    short.write_text("abcd")
    short.chmod(0o600)
    with pytest.raises(ConfigurationError, match="shorter than 32 bytes"):
        load_hmac_key(short)
    with pytest.raises(ConfigurationError, match="cannot read public key"):
        load_public_key(tmp_path / "missing.pub")


def test_a_keys_folder_that_cannot_be_made_is_named(tmp_path: Path) -> None:
    (tmp_path / "keys").write_text("a file where the keys folder should be")
    with pytest.raises(ConfigurationError, match=r"cannot create the keys folder `.*keys`"):
        create_keys(KeyPaths.in_dir(tmp_path / "keys"))
