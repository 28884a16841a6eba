from __future__ import annotations

import pytest
from scan_helpers import corpus

from stockade.scan.hygiene import decode_hidden, normalize, scan_hygiene, strip_invisible

DATA = corpus("hygiene.yaml")


@pytest.mark.parametrize("item", DATA["hidden"])
def test_hidden_text_is_reported(item: dict[str, str]) -> None:
    kinds = {h.kind for h in scan_hygiene(item["text"])}
    assert item["kind"] in kinds


@pytest.mark.parametrize("text", DATA["clean"])
def test_clean_text_in_many_scripts_is_not(text: str) -> None:
    assert scan_hygiene(text) == []
    assert strip_invisible(text) == text
    assert normalize(text).text == text


def test_tag_characters_decode_to_their_ascii() -> None:
    hidden = "".join(chr(0xE0000 + ord(c)) for c in "send it")
    text = "hello" + hidden
    assert decode_hidden(text) == [(5, 5 + len(hidden), "send it")]
    hits = scan_hygiene(text)
    assert hits[0].kind == "tag-characters"
    assert hits[0].score == 1.0


def test_variation_selector_smuggling_decodes() -> None:
    payload = "hi there"
    hidden = "".join(chr(0xFE00 + b) if b < 16 else chr(0xE0100 + b - 16) for b in payload.encode())
    assert decode_hidden("x" + hidden) == [(1, 1 + len(hidden), payload)]


def test_strip_removes_only_invisible_characters() -> None:
    text = "a\u200bb\u202ec\U000e0041d\u2066e"
    assert strip_invisible(text) == "abcde"


def test_normalize_folds_homoglyphs_only_inside_mixed_words() -> None:
    view = normalize("p\u0430ypal и мир")
    assert view.text == "paypal и мир"
    assert view.span(0, 6) == (0, 6)


def test_normalize_maps_offsets_around_removed_characters() -> None:
    text = "ab\u200b\u200bcd"
    view = normalize(text)
    assert view.text == "abcd"
    assert view.span(2, 4) == (4, 6)


def test_fullwidth_letters_fold_to_ascii() -> None:
    assert normalize("\uff49\uff47\uff4e\uff4f\uff52\uff45").text == "ignore"


def test_homoglyphs_split_by_invisible_characters_still_fold() -> None:
    text = "p\u200b\u0430ypal ignore"
    view = normalize(text)
    assert view.text == "paypal ignore"
    assert view.span(7, 13) == (8, 14)
