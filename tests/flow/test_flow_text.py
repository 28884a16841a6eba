"""Canonical text, words and tokens that matter."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stockade.flow.text import canon, host_of, skeleton, skeleton_map, tokens, value_text, words


@pytest.mark.parametrize(
    ("raw", "want"),
    [
        ("Drop@Evil.Example", "drop@evil.example"),
        ("drop%40evil.example", "drop@evil.example"),
        ("drop%2540evil.example", "drop@evil.example"),  # double encoding
        ("drop&#64;evil&period;example", "drop@evil.example"),
        ("ｄｒｏｐ", "drop"),  # fullwidth, NFKC
        ("ev\u200bil\u2060.example\ufeff", "evil.example"),  # invisible characters
        ("STRASSE Straße", "strasse strasse"),  # case folding
        ("%E2%82%AC 5", "€ 5"),  # UTF-8 percent-encoding
    ],
)
def test_canon(raw: str, want: str) -> None:
    assert canon(raw) == want


def test_skeleton_and_map() -> None:
    assert skeleton("GB33-BUKB 2020") == "gb33bukb2020"
    skel, offsets = skeleton_map("a-bc d")
    assert skel == "abcd"
    assert offsets == [0, 2, 3, 5]


def test_words_offsets() -> None:
    assert list(words("rm -rf ~/x")) == [(0, 2, "rm"), (4, 6, "rf"), (9, 10, "x")]


def test_tokens_kinds() -> None:
    text = canon(
        "mail drop@evil.example, see https://cdn.evil.example/a?b=1 iban DE89 3704 0044 0532 "
        "0130 00 acct 4000-1234-5678-9010 path /etc/cron.d/x and host files.example.org"
    )
    kinds = {(t.kind, t.text) for t in tokens(text)}
    assert ("email", "drop@evil.example") in kinds
    assert ("host", "evil.example") in kinds
    assert ("host", "cdn.evil.example") in kinds
    assert ("iban", "de89 3704 0044 0532 0130 00") in kinds
    assert ("number", "4000-1234-5678-9010") in kinds
    assert ("path", "/etc/cron.d/x") in kinds
    assert ("host", "files.example.org") in kinds
    for tok in tokens(text):
        assert text[tok.start : tok.end] == tok.text


@pytest.mark.parametrize(
    ("value", "host"),
    [
        ("https://user@cdn.evil.example:8080/x", "cdn.evil.example"),
        ("Bob <bob@example.com>", "example.com"),
        ("files.example.org/path", "files.example.org"),
        ("just words", None),
    ],
)
def test_host_of(value: str, host: str | None) -> None:
    assert host_of(canon(value)) == host


def test_value_text() -> None:
    assert value_text("x") == "x"
    assert value_text(b"caf\xc3\xa9") == "café"
    assert value_text({"a": [1, "b"]}) == '{"a": [1, "b"]}'
    assert "1" in value_text({1, 2})  # not JSON: its str()


@given(st.text(max_size=200))
def test_canon_is_idempotent_enough(text: str) -> None:
    once = canon(text)
    # a second pass changes nothing that matching looks at
    assert skeleton(once) == skeleton(canon(once)) or "%" in once or "&" in once


@given(st.text(max_size=300))
def test_tokens_never_fail_and_stay_in_bounds(text: str) -> None:
    c = canon(text)
    for tok in tokens(c):
        assert 0 <= tok.start <= tok.end <= len(c)
