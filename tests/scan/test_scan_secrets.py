from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from scan_helpers import corpus

from stockade.scan.secrets import scan_secrets
from stockade.scan.vault import Vault, mask_text

DATA = corpus("secrets.yaml")


def _masked(text: str) -> str:
    hits = scan_secrets(text)
    out, _ = mask_text(text, hits, {"secrets": "redact"}, vault=Vault(), session="s")
    return out


def _no_part_survives(secret: str, masked: str) -> None:
    # no 6-character piece of the secret is left anywhere in the output
    pieces = {secret[i : i + 6] for i in range(max(1, len(secret) - 5))}
    assert not [p for p in pieces if p in masked], masked


@pytest.mark.parametrize("item", DATA["secrets"], ids=lambda i: i["kind"])
def test_each_format_is_found_whole(item: dict[str, str]) -> None:
    text = item["text"].replace("{secret}", item["secret"])
    hits = scan_secrets(text)
    assert item["kind"] in {h.kind for h in hits}
    spans = [text[h.start : h.end] for h in hits]
    assert any(item["secret"] in s for s in spans), spans
    _no_part_survives(item["secret"], _masked(text))


@pytest.mark.parametrize("text", DATA["benign"])
def test_code_hashes_and_placeholders_are_not_secrets(text: str) -> None:
    assert scan_secrets(text) == []


def _pem(key: object, fmt: serialization.PrivateFormat) -> str:
    return key.private_bytes(  # type: ignore[attr-defined, no-any-return]
        serialization.Encoding.PEM, fmt, serialization.NoEncryption()
    ).decode()


@pytest.mark.parametrize(
    ("key", "fmt"),
    [
        (rsa.generate_private_key(public_exponent=65537, key_size=1024), "TraditionalOpenSSL"),
        (ec.generate_private_key(ec.SECP256R1()), "PKCS8"),
        (ed25519.Ed25519PrivateKey.generate(), "OpenSSH"),
    ],
)
def test_private_keys_are_masked_from_begin_to_end(key: object, fmt: str) -> None:
    pem = _pem(key, getattr(serialization.PrivateFormat, fmt))
    text = f"config:\n{pem}\nrest of the file"
    masked = _masked(text)
    assert "PRIVATE KEY" not in masked
    assert masked.startswith("config:\n") and masked.endswith("rest of the file")
    for line in pem.splitlines()[1:-1]:
        if len(line) >= 8:
            assert line not in masked


def test_a_truncated_private_key_loses_its_whole_body() -> None:
    pem = _pem(rsa.generate_private_key(65537, 1024), serialization.PrivateFormat.PKCS8)
    cut = "\n".join(pem.splitlines()[:8])  # no END line
    masked = _masked("leaked: " + cut)
    for line in cut.splitlines():
        assert line not in masked


def test_a_private_key_inside_json_with_escaped_newlines() -> None:
    pem = _pem(ec.generate_private_key(ec.SECP256R1()), serialization.PrivateFormat.PKCS8)
    text = '{"private_key": "' + pem.replace("\n", "\\n") + '", "x": 1}'
    masked = _masked(text)
    body = pem.splitlines()[1]
    assert body not in masked
    assert masked.endswith('", "x": 1}')


def test_several_secrets_in_one_text_are_all_masked() -> None:
    items = DATA["secrets"][:6]
    text = "\n".join(i["text"].replace("{secret}", i["secret"]) for i in items)
    masked = _masked(text)
    for i in items:
        _no_part_survives(i["secret"], masked)
