"""Personal data: e-mail, phone, payment cards, IBANs, national IDs, IP addresses.

Candidates are found with RE2 (linear time), then validated where a check
exists, so look-alike numbers in code and logs stay quiet:

- payment cards: Luhn (python-stdnum) and a known issuer prefix and length;
- IBAN: ISO 7064 mod 97 (python-stdnum);
- national IDs with check digits (python-stdnum): US SSN, Spanish DNI,
  Italian codice fiscale, Brazilian CPF, French NIR, Indian Aadhaar, Swedish
  personnummer;
- phone numbers: libphonenumber's validity rules (``phonenumbers``) for the
  regions given (numbers written with ``+`` or ``00`` need none);
- IP addresses: the standard library's parser.

>>> [h.kind for h in PIIScanner().scan("write to ada@example.org or +44 20 7946 0958")]
['email', 'phone']

Names and street addresses need a language model; they are not in the core
(see :mod:`stockade.scan.names`, an optional extra).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import phonenumbers
from stdnum import iban as _iban
from stdnum import luhn as _luhn
from stdnum.br import cpf as _cpf
from stdnum.es import dni as _dni
from stdnum.fr import nir as _nir
from stdnum.in_ import aadhaar as _aadhaar
from stdnum.it import codicefiscale as _cf
from stdnum.se import personnummer as _pnr
from stdnum.us import ssn as _ssn

from stockade.scan._base import Encoded, Hit, Spans, compile_re2, compile_set

__all__ = ["PII_KINDS", "PIIScanner"]

#: every kind this module reports
PII_KINDS = ("email", "card", "iban", "national-id", "ip", "phone")

_EMAIL_P = (
    r"\b[A-Za-z0-9][A-Za-z0-9._%+-]{0,63}@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)"
    r"{1,8}[A-Za-z]{2,24}\b"
)
_NOT_TLD = frozenset({"png", "jpg", "jpeg", "gif", "svg", "webp", "js", "css", "ts", "py", "md"})
_CARD_P = r"\b\d(?:[ -]?\d){12,18}\b"
_IBAN_P = r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?\b"
_IPV4_P = r"\b(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?:\.(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}\b"
_IPV6_P = r"(?i)(?:\b[0-9a-f]{1,4}|)(?::[0-9a-f]{0,4}){2,7}(?:%[0-9a-z]+)?"
_PHONE_P = r"(?:\+|\b00)?\(?\d[\d ().\-/]{5,20}\d\b"
_EMAIL, _CARD, _IBAN, _IPV4, _IPV6, _PHONE = (
    compile_re2(p) for p in (_EMAIL_P, _CARD_P, _IBAN_P, _IPV4_P, _IPV6_P, _PHONE_P)
)
#: distinct phone candidates checked with libphonenumber per text (about 50 µs each)
_PHONE_BUDGET = 2000
_VERSION_WORD = compile_re2(r"(?i)\b(?:version|ver\.?|release|v)\s*$")
_DATE = compile_re2(r"\b(?:19|20)\d\d[-./](?:0?[1-9]|1[0-2])[-./](?:[0-2]?\d|3[01])\b")
_IDS: tuple[tuple[str, str, Callable[[str], bool]], ...] = (
    ("us-ssn", r"\b\d{3}-\d{2}-\d{4}\b", _ssn.is_valid),
    ("es-dni", r"\b\d{8}-?[A-Z]\b", _dni.is_valid),
    ("it-codice-fiscale", r"\b[A-Z]{6}\d{2}[A-Z]\d{2}[A-Z]\d{3}[A-Z]\b", _cf.is_valid),
    ("br-cpf", r"\b\d{3}\.\d{3}\.\d{3}-\d{2}\b", _cpf.is_valid),
    (
        "fr-nir",
        r"\b[12] ?\d{2} ?(?:0[1-9]|1[0-2]) ?(?:\d{2}|2[AB]) ?\d{3} ?\d{3} ?\d{2}\b",
        _nir.is_valid,
    ),
    ("in-aadhaar", r"\b[2-9]\d{3} \d{4} \d{4}\b", _aadhaar.is_valid),
    ("se-personnummer", r"\b(?:19|20)?\d{6}[-+]\d{4}\b", _pnr.is_valid),
)
_ID_RX = [(kind, compile_re2(p), check) for kind, p, check in _IDS]
#: one pass says which candidate patterns occur at all (in most texts: none)
_PREFILTER = compile_set(
    [_EMAIL_P, _CARD_P, _IBAN_P, _IPV4_P, _IPV6_P, _PHONE_P, *(p for _, p, _ in _IDS)]
)
_FIRST_ID = 6


def _card_ok(digits: str) -> bool:
    n = len(digits)
    brand_ok = (
        (digits[0] == "4" and n in (13, 16, 19))
        or (51 <= int(digits[:2]) <= 55 and n == 16)
        or (2221 <= int(digits[:4]) <= 2720 and n == 16)
        or (digits[:2] in ("34", "37") and n == 15)
        or (
            (digits[:4] == "6011" or digits[:2] == "65" or 644 <= int(digits[:3]) <= 649)
            and 16 <= n <= 19
        )
        or (3528 <= int(digits[:4]) <= 3589 and 16 <= n <= 19)
        or ((digits[:2] in ("36", "38", "39") or 300 <= int(digits[:3]) <= 305) and 14 <= n <= 19)
        or (digits[:2] == "62" and 16 <= n <= 19)
    )
    return bool(brand_ok) and bool(_luhn.is_valid(digits))


def _word_char(text: str, i: int) -> bool:
    return 0 <= i < len(text) and (text[i].isalnum() or text[i] == "_")


class PIIScanner:
    """Finds personal data in text; configured once, called many times.

    ``kinds`` limits what is looked for (default: all of :data:`PII_KINDS`);
    ``regions`` are the ISO country codes used to read phone numbers written
    without a country prefix.
    """

    def __init__(
        self, kinds: Iterable[str] = PII_KINDS, regions: Iterable[str] = ("US", "GB", "DE", "FR")
    ) -> None:
        self.kinds = frozenset(kinds)
        self.regions = tuple(regions)

    def scan(self, text: str) -> list[Hit]:
        """Personal data in ``text``; overlapping candidates go to the most specific kind."""
        enc = Encoded(text)
        present = set(_PREFILTER.Match(enc.data) or ())
        if not present:
            return []
        hits: list[Hit] = []
        taken = Spans()

        def add(kind: str, s: int, e: int, reason: str, score: float = 1.0) -> None:
            hits.append(Hit("pii", kind, s, e, score, reason))
            taken.add(s, e)

        if "email" in self.kinds and 0 in present:
            for s, e, value in _iter(_EMAIL, enc):
                if value.rsplit(".", 1)[-1].lower() not in _NOT_TLD:
                    add("email", s, e, "e-mail address")
        if "card" in self.kinds and 1 in present:
            for s, e, value in _iter(_CARD, enc):
                digits = value.replace(" ", "").replace("-", "")
                if taken.free(s, e) and _card_ok(digits):
                    add("card", s, e, "payment card number (Luhn)")
        if "iban" in self.kinds and 2 in present:
            for s, e, value in _iter(_IBAN, enc):
                if taken.free(s, e) and _iban.is_valid(value):
                    add("iban", s, e, "IBAN (mod 97)")
        if "national-id" in self.kinds:
            for i, (kind, rx, check) in enumerate(_ID_RX):
                if _FIRST_ID + i not in present:
                    continue
                for s, e, value in _iter(rx, enc):
                    if taken.free(s, e) and check(value):
                        add("national-id", s, e, f"{kind} (checked)")
        if "ip" in self.kinds:
            self._ips(enc, present, taken, add)
        if "phone" in self.kinds and 5 in present:
            self._phones(enc, taken, add)
        hits.sort(key=lambda h: h.start)
        return hits

    def _ips(self, enc: Encoded, present: set[int], taken: Spans, add: Callable[..., None]) -> None:
        text = enc.text
        if 3 in present:
            for s, e, _ in _iter(_IPV4, enc):
                before = text[max(0, s - 1) : s]
                after = text[e : e + 2]
                if before in ("v", "V", ".") or (after[:1] == "." and after[1:2].isdigit()):
                    continue  # a version number or a longer dotted identifier
                if _VERSION_WORD.search(text[max(0, s - 12) : s]) is not None:
                    continue
                if taken.free(s, e):
                    add("ip", s, e, "IPv4 address", 0.8)
        if 4 in present:
            for s, e, value in _iter(_IPV6, enc):
                hexdigits = sum(c in "0123456789abcdefABCDEF" for c in value)
                if value.count(":") < 2 or hexdigits < 4 or not any(c.isdigit() for c in value):
                    continue
                if _word_char(text, s - 1) or _word_char(text, e):
                    continue
                try:
                    ipaddress.IPv6Address(value.split("%", 1)[0])
                except ValueError:
                    continue
                if taken.free(s, e):
                    add("ip", s, e, "IPv6 address", 0.8)

    def _phones(self, enc: Encoded, taken: Spans, add: Callable[..., None]) -> None:
        text = enc.text
        checked: dict[str, bool] = {}
        budget = _PHONE_BUDGET
        for s, e, cand in _iter(_PHONE, enc):
            digits = sum(c.isdigit() for c in cand)
            international = cand.startswith(("+", "00"))
            if not 7 <= digits <= 15 or not taken.free(s, e):
                continue
            if not international and not any(c in cand for c in " ()-./"):
                continue  # a bare run of digits is an id, not a phone number
            before = text[s - 1] if s > 0 else " "
            after = text[e] if e < len(text) else " "
            if before.isalnum() or before in "-_:./" or after.isalnum() or after in "-_:/":
                continue  # part of a longer token: a UUID, a path, a version
            if _DATE.search(cand) is not None or cand.count(".") >= 3:
                continue  # a date, an OID or a version
            valid = checked.get(cand)
            if valid is None:
                if budget <= 0:
                    continue  # hostile or huge input: stop paying for libphonenumber
                budget -= 1
                valid = checked[cand] = self._valid_phone(cand)
            if valid:
                add("phone", s, e, "phone number", 0.9)

    def _valid_phone(self, cand: str) -> bool:
        regions = ("ZZ",) if cand.startswith("+") else self.regions
        for region in regions:
            try:
                number = phonenumbers.parse(cand, None if region == "ZZ" else region)
            except phonenumbers.NumberParseException:
                continue
            if phonenumbers.is_valid_number(number):
                return True
        return False


def _iter(rx: Any, enc: Encoded) -> Iterator[tuple[int, int, str]]:
    """Matches on the encoded text as (character start, character end, text)."""
    for m in rx.finditer(enc.data):
        s, e = enc.span(m)
        yield s, e, enc.group(m)
