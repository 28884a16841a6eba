"""Red team regression: scanners see the canonical URL, not the raw one (R11, fixed in b4cb8e1)."""

from __future__ import annotations

import pytest

from stockade import Guard, MemoryAuditSink
from stockade.model import Effect

GH = "ghp_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8"  # GitHub token shape (fake)


def _guard() -> Guard:
    return Guard.from_text(
        """
version: 1
http:
  allow:
    - {id: api, host: api.example.com, methods: [GET, POST]}
scan: {model: false, block: {arguments: [secrets]}}
""",
        audit=MemoryAuditSink(),
    )


def _encoded(text: str, only: int | None = None) -> str:
    if only is None:
        return "".join(f"%{ord(c):02X}" for c in text)
    return text[:only] + f"%{ord(text[only]):02X}" + text[only + 1 :]


@pytest.mark.parametrize(
    "url",
    [
        f"https://api.example.com/?k={_encoded(GH)}",
        f"https://api.example.com/?k={_encoded(GH, only=10)}",  # one escaped letter
        f"https://api.example.com/{_encoded(GH)}",
    ],
)
def test_percent_encoded_secret_in_url_is_blocked(url: str) -> None:
    # Stage 1 (argument scan) runs before stage 2 (HTTPTool.prepare), so the
    # scanner sees `%67hp_...` while the policy, the flow stage and the wire
    # get the canonical `ghp_...` (prepare decodes unreserved escapes and the
    # query). docs/http.md says the scanners "see exactly these values".
    guard = _guard()
    plain = guard.decide("http", "request", {"url": f"https://api.example.com/?k={GH}"})
    assert plain.effect is Effect.DENY  # control: the plain secret is blocked
    decision = guard.decide("http", "request", {"url": url})
    assert decision.effect is Effect.DENY, decision


def test_percent_encoded_canary_in_url_is_denied() -> None:
    # The same gap lets a leaked system prompt's canary out unnoticed.
    guard = Guard.from_text(
        "version: 1\nhttp:\n  allow:\n    - {id: api, host: api.example.com}\n"
        "scan: {model: false}\n",
        audit=MemoryAuditSink(),
    )
    token = guard.canary()
    plain = guard.decide("http", "request", {"url": f"https://api.example.com/?q={token}"})
    assert plain.rule == "scan:canary"  # control
    url = f"https://api.example.com/?q={_encoded(token)}"
    assert guard.decide("http", "request", {"url": url}).rule == "scan:canary"
