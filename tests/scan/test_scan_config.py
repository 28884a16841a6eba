from __future__ import annotations

from pathlib import Path

import pytest

from stockade.errors import PolicyError
from stockade.policy import Policy
from stockade.scan.config import ScanConfig


def load(section: str) -> ScanConfig:
    policy = Policy.from_text("version: 1\n" + section, base_dir=Path("/base"))
    config = policy.section("scan")
    assert isinstance(config, ScanConfig)
    return config


def test_defaults_label_and_mask_and_never_block() -> None:
    c = load("scan: {}")
    assert c.block_arguments == c.block_results == frozenset()
    assert c.mask["email"] == "pseudonym" and c.mask["secrets"] == "redact"
    assert c.results == {"hygiene", "injection", "secrets", "pii", "links"}
    assert c.threshold == 0.5 and c.model


def test_full_section() -> None:
    c = load(
        """
scan:
  arguments: [secrets]
  results: [injection, links]
  threshold: 0.7
  model: false
  block: [injection, hidden-text]
  mask: {email: hash, ip: redact}
  strip_invisible: false
  links: {allow: [Docs.Example.com., "*.example.org"]}
  pii: {kinds: [email, card], regions: [de, us]}
  vault: {path: state/vault, key_env: VK}
"""
    )
    assert c.arguments == {"secrets"} and c.results == {"injection", "links"}
    assert c.block_arguments == c.block_results == {"injection", "hidden-text"}
    assert c.mask["email"] == "hash" and c.mask["ip"] == "redact"
    assert c.link_allow == ("docs.example.com", "*.example.org")
    assert c.pii_kinds == ("card", "email") and c.phone_regions == ("DE", "US")
    assert c.vault_path == Path("/base/state/vault") and c.vault_key_env == "VK"
    assert not c.strip_invisible and not c.model and c.threshold == 0.7


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ("scan: {results: [virus]}", "unknown name `virus`"),
        ("scan: {mask: {email: scramble}}", "unknown value `scramble`"),
        ("scan: {threshold: 1.5}", "expected a value <= 1.0"),
        ("scan: {colour: red}", "unknown key `colour`"),
        ("scan: {block: {later: [pii]}}", "unknown key `later`"),
        ("scan: {vault: {path: x}}", "missing required key `key_env`"),
        ("scan: {pii: {regions: [USA]}}", "not a two-letter region code"),
    ],
)
def test_bad_sections_fail_with_a_location(section: str, message: str) -> None:
    with pytest.raises(PolicyError) as info:
        load(section)
    assert message in str(info.value)
    assert ":2:" in str(info.value)  # file:line:column of the offending node


def test_mask_keys_are_checked() -> None:
    assert load("scan: {mask: {github-token: hash, pii: label}}").mask["github-token"] == "hash"
    with pytest.raises(PolicyError) as info:
        load("scan: {mask: {emial: redact}}")
    assert "unknown key `emial`" in str(info.value)


def test_names_need_the_optional_extra() -> None:
    from stockade.errors import ConfigurationError
    from stockade.scan.stage import Scanner

    config = load("scan: {model: false, pii: {names: true}}")
    assert config.pii_names
    try:
        import presidio_analyzer  # noqa: F401
    except ImportError:
        with pytest.raises(ConfigurationError, match="pii-names extra"):
            Scanner(config)
    else:  # pragma: no cover - only where the extra and a spaCy model are installed
        assert Scanner(config).name_scanner is not None
