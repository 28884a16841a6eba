from __future__ import annotations

import pytest
from scan_helpers import corpus

from stockade.scan.output import Canaries, host_allowed, neutralize_links

DATA = corpus("links.yaml")
ALLOW = ["docs.example.com", "*.example.org"]


@pytest.mark.parametrize("text", DATA["neutralised"])
def test_outside_images_and_links_are_neutralised(text: str) -> None:
    out, hits = neutralize_links("before\n" + text + "\nafter", ALLOW)
    assert hits
    assert "evil.example/" not in out
    assert "removed" in out
    assert out.startswith("before\n") and out.endswith("\nafter")


@pytest.mark.parametrize("text", DATA["kept"])
def test_allowed_and_relative_links_stay(text: str) -> None:
    assert neutralize_links(text, ALLOW) == (text, [])


def test_link_text_is_kept_and_the_host_named() -> None:
    out, _ = neutralize_links("[the docs](https://evil.example/x)", ())
    assert out == "the docs [link removed: evil.example]"


def test_host_allowed() -> None:
    assert host_allowed("a.example.org", ALLOW)
    assert not host_allowed("example.org", ALLOW)
    assert not host_allowed("docs.example.com.evil", ALLOW)


def test_canaries_recognise_only_their_own_tokens() -> None:
    mine, theirs = Canaries(b"a" * 32), Canaries(b"b" * 32)
    token = mine.new()
    assert token != mine.new()
    assert [h.kind for h in mine.find(f"x {token} y")] == ["canary"]
    assert theirs.find(token) == []
    forged = token[:-1] + ("0" if token[-1] != "0" else "1")
    assert mine.find(forged) == []


def test_canaries_are_found_encoded() -> None:
    import base64

    c = Canaries(b"k" * 32)
    token = c.new()
    for encoded in (
        base64.b64encode(f"prompt: {token}".encode()).decode(),
        base64.urlsafe_b64encode(f"x{token}".encode()).decode(),
        f"prompt {token}".encode().hex(),
    ):
        hits = c.find(f"data={encoded}&x=1")
        assert [h.reason for h in hits] == ["encoded canary: leak"], encoded
    assert c.find(base64.b64encode(b"nothing to see here, just a long enough text").decode()) == []
