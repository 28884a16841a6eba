from __future__ import annotations

import pytest
from scan_helpers import corpus

from stockade.scan.pii import PIIScanner

DATA = corpus("pii.yaml")
SCANNER = PIIScanner()


@pytest.mark.parametrize("item", DATA["pii"], ids=lambda i: i["kind"])
def test_valid_values_are_found_whole(item: dict[str, str]) -> None:
    text = item["text"].replace("{value}", item["value"])
    hits = SCANNER.scan(text)
    assert [(h.kind, text[h.start : h.end]) for h in hits] == [(item["kind"], item["value"])]


@pytest.mark.parametrize("text", DATA["benign"])
def test_look_alikes_are_not_pii(text: str) -> None:
    assert SCANNER.scan(text) == []


@pytest.mark.parametrize(
    "text",
    [
        "card 4111 1111 1111 1112",  # fails Luhn
        "IBAN DE89 3704 0044 0532 0130 01",  # fails mod 97
        "SSN 000-12-3456",
        "DNI 54362315Z",  # wrong check letter
    ],
)
def test_checksums_are_validated(text: str) -> None:
    assert SCANNER.scan(text) == []


def test_kinds_can_be_limited() -> None:
    text = "ada@example.org 203.0.113.42"
    assert [h.kind for h in PIIScanner(kinds=["ip"]).scan(text)] == ["ip"]


def test_regions_decide_national_phone_numbers() -> None:
    text = "ruf an: 030 901820"
    assert [h.kind for h in PIIScanner(regions=["DE"]).scan(text)] == ["phone"]
