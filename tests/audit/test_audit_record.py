"""Canonical records, the HMAC of raw arguments, and what is never stored."""

from __future__ import annotations

import json
import math

import pytest
from audit_helpers import event

from stockade.audit.record import ArgsHMAC, StoredRecord, canonical_json, encode_event
from stockade.errors import AuditError, AuditIntegrityError
from stockade.model import Decision, Effect, ShadowDecision


def test_canonical_json_is_stable() -> None:
    a = canonical_json({"b": [1, {"y": 2, "x": "é"}], "a": None})
    assert a == '{"a":null,"b":[1,{"x":"é","y":2}]}'.encode()
    assert canonical_json({"a": None, "b": [1, {"x": "é", "y": 2}]}) == a


def test_canonical_json_handles_odd_values_without_repr() -> None:
    class Secretive:
        def __repr__(self) -> str:
            return "sk-live-LEAK"

    out = canonical_json({"n": math.nan, "o": Secretive(), "b": b"\x00\x01", "t": (1, 2)})
    assert b"LEAK" not in out
    data = json.loads(out)
    assert data["o"] == "<Secretive>" and data["n"] == "nan" and data["t"] == [1, 2]
    assert data["b"]["bytes"] == 2


def test_record_fields_and_version() -> None:
    hmac = ArgsHMAC(b"k" * 32)
    ev = event(4)
    data = encode_event(ev, "laptop", hmac)
    record = json.loads(data)
    assert record["v"] == 1 and record["origin"] == "laptop"
    assert record["decision"] == "deny" and record["rule"] == "fs-secrets"
    assert record["args"]["token"] == "<SECRET:1>"
    assert record["labels"][0]["source"] == "fs:notes"
    assert record["findings"][0]["kind"] == "api-key"
    assert list(record) == sorted(record)


def test_raw_arguments_are_never_stored_but_can_be_confirmed() -> None:
    hmac = ArgsHMAC(b"k" * 32)
    ev = event(1)
    raw = dict(ev.raw_args)
    data = encode_event(ev, "o", hmac)
    assert b"RAWSECRET" not in data
    assert ev.raw_args == {}  # cleared so nothing downstream can write it
    tag = json.loads(data)["args_hmac"]
    hmac.check(raw, tag)
    with pytest.raises(AuditIntegrityError):
        hmac.check({**raw, "token": "guess"}, tag)
    with pytest.raises(AuditIntegrityError):
        ArgsHMAC(b"j" * 32).check(raw, tag)
    assert "k" not in repr(hmac).replace("key", "")


def test_short_hmac_key_is_refused() -> None:
    with pytest.raises(AuditError, match="at least 32 bytes"):
        ArgsHMAC(b"short")


def test_shadow_and_extra_are_recorded() -> None:
    ev = event(1)
    ev.decision = Decision(
        Effect.ALLOW, "mode:shadow", "shadow", ShadowDecision(Effect.DENY, "r", "why")
    )
    ev.extra = {"approved": True}
    record = json.loads(encode_event(ev, "o", ArgsHMAC(b"k" * 32)))
    assert record["shadow"] == {"decision": "deny", "rule": "r", "reason": "why"}
    assert record["extra"] == {"approved": True}


def test_stored_record_parsing_errors() -> None:
    with pytest.raises(AuditIntegrityError) as info:
        StoredRecord("o", 3, b"{not json").parsed()
    assert info.value.seq == 3 and info.value.kind == "invalid"
    with pytest.raises(AuditIntegrityError):
        StoredRecord("o", 3, b"[1]").parsed()
    assert StoredRecord("o", 3, b'{"a":1}').as_export() == {"seq": 3, "a": 1}


def test_nul_and_lone_surrogates_cannot_make_the_log_refuse_a_record() -> None:
    hmac = ArgsHMAC(b"k" * 32)
    ev = event(1)
    ev.args = {"q": "a\x00b\ud800c", "\x00key": 1}
    ev.raw_args = {"q": "a\x00b\ud800c"}
    data = encode_event(ev, "o", hmac)
    data.decode("utf-8")  # strictly valid UTF-8
    record = json.loads(data)
    assert record["args"] == {"q": "a\ufffdb\ufffdc", "\ufffdkey": 1}
    hmac.check({"q": "a\x00b\ud800c"}, record["args_hmac"])
    with pytest.raises(AuditIntegrityError):  # the HMAC keeps the exact raw value
        hmac.check({"q": "a\ufffdb\ufffdc"}, record["args_hmac"])
    assert canonical_json({"k": "\\u0000 is text"}) == b'{"k":"\\\\u0000 is text"}'


def test_hmac_of_raw_values_json_cannot_hold() -> None:
    hmac = ArgsHMAC(b"k" * 32)
    raw = {"blob": b"\x00\xff", "n": float("inf"), "s": {1, 2}, "nested": [{"x": object()}]}
    tag = hmac.digest(raw)
    hmac.check(dict(raw), tag)
    with pytest.raises(AuditIntegrityError):
        hmac.check({**raw, "blob": b"\x00\xfe"}, tag)
    assert hmac.digest({1: "a", "1": "b"}) != hmac.digest({"1": "a"})  # mixed key types


def test_redact_secrets_masks_every_string_and_leaves_clean_values_alone() -> None:
    from stockade.audit.record import redact_secrets

    token = "ghp_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8"
    value = {
        "body": {f"key {token}": ["x", f"Authorization: token {token}"]},
        "n": 3,
        "aws": "AKIAIOSFODNN7EXAMPLE",
    }
    masked = redact_secrets(value)
    text = json.dumps(masked)
    assert token not in text and "AKIAIOSFODNN7EXAMPLE" not in text
    assert "[REDACTED:GITHUB-TOKEN]" in text and masked["n"] == 3
    from types import MappingProxyType

    proxied = redact_secrets({"a": MappingProxyType({"k": token})})
    assert token not in json.dumps(proxied)
    twins = redact_secrets({f"x {token}": 1, "x ghp_" + "Z" * 36: 2})
    assert len(twins) == 2  # two keys masked alike are both kept
    clean = {"path": "notes/a.txt", "n": [1, 2]}
    assert redact_secrets(clean) is clean  # nothing found: the same object back
