"""Secrets: provider key formats, private keys, JWTs, passwords in URLs, generic tokens.

Every hit spans the **whole** secret: all of a private key block from its
``BEGIN`` line to its ``END`` line (or to the end of the base64 body when the
``END`` line is cut off), all of a token including its prefix, the password of
a connection string. Scanners that report only a token's prefix or a key's
header line leave the rest recoverable once "masked"; this one does not.

>>> [h.kind for h in scan_secrets("key = AKIAIOSFODNN7EXAMPLQ")]
['aws-access-key']

The generic rule only fires on a high-entropy value assigned to a secret-ish
name (``api_key = ...``, ``"password": "..."``), and never on code
expressions, placeholders, or hex digests and UUIDs standing alone.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from stockade.scan._base import Encoded, Hit, Spans, compile_re2, compile_set, entropy

__all__ = ["SECRET_PATTERNS", "SecretPattern", "scan_secrets"]


@dataclass(frozen=True)
class SecretPattern:
    """A secret format: the finding kind, an RE2 pattern, and the group that is the secret.

    ``group`` 0 means the whole match.
    """

    kind: str
    pattern: str
    reason: str
    group: int = 0
    score: float = 1.0


_B = r"(?:^|[^A-Za-z0-9_])"  # a boundary that works for tokens starting with symbols

SECRET_PATTERNS: tuple[SecretPattern, ...] = (
    SecretPattern(
        "private-key",
        r"-----BEGIN[ A-Z0-9]{0,40}PRIVATE KEY(?: BLOCK)?-----"
        r"(?:[\s\S]*?-----END[ A-Z0-9]{0,40}PRIVATE KEY(?: BLOCK)?-----"
        r"|[A-Za-z0-9+/=\s:,.\\-]*)",
        "private key block",
    ),
    SecretPattern(
        "aws-access-key",
        r"\b((?:AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AROA|ANPA|ANVA|AIPA)[A-Z0-9]{16})\b",
        "AWS access key id",
        1,
    ),
    SecretPattern(
        "aws-secret-key",
        r"(?i)aws.{0,20}?(?:secret|private).{0,20}?[=:>]\s*[\"']?([A-Za-z0-9/+]{40})\b",
        "AWS secret access key",
        1,
    ),
    SecretPattern(
        "github-token",
        r"\b((?:ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{60,})",
        "GitHub token",
        1,
    ),
    SecretPattern("gitlab-token", r"\b(glpat-[A-Za-z0-9_-]{20,})", "GitLab token", 1),
    SecretPattern("slack-token", r"\b(xox[abposr]-[A-Za-z0-9-]{10,})", "Slack token", 1),
    SecretPattern(
        "slack-webhook",
        r"(https://hooks\.slack\.com/(?:services|workflows)/[A-Za-z0-9_/+-]{20,})",
        "Slack webhook URL",
        1,
    ),
    SecretPattern(
        "discord-webhook",
        r"(https://(?:ptb\.|canary\.)?discord(?:app)?\.com/api/webhooks/\d+/[A-Za-z0-9_-]{30,})",
        "Discord webhook URL",
        1,
    ),
    SecretPattern(
        "telegram-bot-token", r"\b(\d{8,10}:AA[A-Za-z0-9_-]{33})\b", "Telegram bot token", 1
    ),
    SecretPattern(
        "stripe-key", r"\b((?:sk|rk)_(?:live|test)_[A-Za-z0-9]{16,})\b", "Stripe secret key", 1
    ),
    SecretPattern(
        "openai-key",
        r"\b(sk-(?:proj-|svcacct-|admin-|None-)?[A-Za-z0-9_-]{20,}T3BlbkFJ[A-Za-z0-9_-]{20,}"
        r"|sk-(?:proj|svcacct|admin)-[A-Za-z0-9_-]{40,}|sk-[A-Za-z0-9]{48})",
        "OpenAI API key",
        1,
    ),
    SecretPattern(
        "anthropic-key",
        r"\b(sk-ant-(?:api|admin|sid)\d{2}-[A-Za-z0-9_-]{80,})",
        "Anthropic API key",
        1,
    ),
    SecretPattern("google-api-key", r"\b(AIza[0-9A-Za-z_-]{35})", "Google API key", 1),
    SecretPattern(
        "google-oauth-secret", r"\b(GOCSPX-[A-Za-z0-9_-]{28})", "Google OAuth client secret", 1
    ),
    SecretPattern("huggingface-token", r"\b(hf_[A-Za-z0-9]{34,40})\b", "Hugging Face token", 1),
    SecretPattern(
        "sendgrid-key", r"\b(SG\.[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{43})", "SendGrid API key", 1
    ),
    SecretPattern("twilio-key", r"\b(SK[0-9a-f]{32})\b", "Twilio API key", 1),
    SecretPattern("npm-token", r"\b(npm_[A-Za-z0-9]{36})\b", "npm token", 1),
    SecretPattern("pypi-token", r"\b(pypi-AgE[A-Za-z0-9_-]{50,})", "PyPI token", 1),
    SecretPattern("shopify-token", r"\b(shp(?:at|ca|pa|ss)_[a-fA-F0-9]{32})\b", "Shopify token", 1),
    SecretPattern("digitalocean-token", r"\b(do[opr]_v1_[a-f0-9]{64})\b", "DigitalOcean token", 1),
    SecretPattern(
        "azure-storage-key",
        r"(?i)AccountKey\s*=\s*([A-Za-z0-9+/]{80,90}={0,2})",
        "Azure storage account key",
        1,
    ),
    SecretPattern(
        "square-token", r"\b(sq0(?:atp|csp)-[A-Za-z0-9_-]{22,43})", "Square access token", 1
    ),
    SecretPattern("mailgun-key", r"\b(key-[0-9a-z]{32})\b", "Mailgun API key", 1),
    SecretPattern(
        "jwt",
        r"\b(eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*)",
        "JSON web token",
        1,
    ),
    SecretPattern(
        "url-password",
        r"\b[a-zA-Z][a-zA-Z0-9+.-]{1,30}://[^\s:/@'\"<>]+:([^\s@/'\"<>]+)@[^\s/'\"<>]",
        "password in a URL",
        1,
    ),
    SecretPattern(
        "connection-password",
        r"(?i)(?:^|[;\s\"'])(?:password|pwd)\s*=\s*([^;'\"\s),]{4,})",
        "password in a connection string",
        1,
    ),
)

_MAX_VALUE = 256  # longer values are not judged by shape: they count as secrets


def _short_re(pattern: str) -> re.Pattern[str]:
    """Python ``re`` for judging one short value (at most ``_MAX_VALUE`` characters).

    These fixed patterns have no nested quantifiers and only ever see a capped
    value, never the whole text; RE2's per-call overhead is ten times the
    work here.
    """
    flags = re.IGNORECASE if pattern.startswith("(?i)") else 0
    return re.compile(pattern.removeprefix("(?i)"), flags)


#: the generic rule: a secret-ish name, an assignment, a quoted or bare value
_GENERIC = compile_re2(
    r"(?i)([a-z0-9_.-]{0,40}(?:api[_.-]?key|apikey|secret|token|passw(?:or)?d|passwd|pwd|"
    r"access[_.-]?key|auth[_.-]?key|credentials?|private[_.-]?key|client[_.-]?secret|"
    r"session[_.-]?key|signing[_.-]?key|bearer)[a-z0-9_.-]{0,20})[\"']?\s*(?:[:=]|:=|=>|\s+is\s+)"
    r"\s*(?:\"([^\"\s]{8,})\"|'([^'\s]{8,})'|([^\s\"',;)}\]]{8,}))"
)
_BEARER = compile_re2(r"(?i)\b(?:authorization\s*:\s*)?bearer\s+([A-Za-z0-9._~+/=-]{16,})")
_PLACEHOLDER = _short_re(
    r"(?i)^(?:x{4,}|\*{3,}|\.{3,}|<[^>]*>|\$\{[^}]*\}?|\$[A-Z_][A-Z0-9_]*|%\(?[a-z_]+\)?s?|"
    r"\{\{[^}]*\}\}|\{[a-z_]*\}|(?:your|my|the|example|dummy|fake|test|sample|changeme|"
    r"placeholder|redacted|secret|password|passwd|pass|pwd|pw|token|none|null|nil|true|false|"
    r"undefined)[a-z_-]*|.*(?:example|xxxx|\.\.\.|redacted).*|"
    r"[\w.-]+\.(?:key|pem|json|txt|ya?ml|crt|cer|p12|pfx|env|ini|cfg|conf|toml|db|gpg|asc))$"
)
_WORDS = _short_re(r"[A-Z]?[a-z]+|[A-Z]+|[0-9]+")
_CODE_LIKE = _short_re(
    r"^(?:[A-Za-z_][A-Za-z_]*|[A-Za-z_][A-Za-z0-9_]*(?:(?:\.|->|::)[A-Za-z_][A-Za-z0-9_]*)+.*|"
    r"[A-Za-z_][A-Za-z0-9_.]*[(\[].*|(?:os\.environ|process\.env|getenv|env\.|self\.|this\.|"
    r"config\.|settings\.|ENV\[).*)$"
)
_HEXISH = _short_re(r"^(?:[0-9a-f]{32}|[0-9a-f]{40}|[0-9a-f]{64}|[0-9A-F]{32,64})$")
_UUID = _short_re(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")

#: kinds whose value may be a placeholder or a name rather than a secret
_CHECKED = frozenset({"connection-password", "url-password"})
_SET = compile_set([p.pattern for p in SECRET_PATTERNS])
_RX = [compile_re2(p.pattern) for p in SECRET_PATTERNS]
_PREFILTER = compile_re2(r"(?i)api|key|secret|token|passw|pwd|auth|credential|bearer|private")


def _classes(value: str) -> int:
    return (
        any(c.islower() for c in value)
        + any(c.isupper() for c in value)
        + any(c.isdigit() for c in value)
        + any(not c.isalnum() for c in value)
    )


def _is_identifier(value: str) -> bool:
    """A name such as ``Ed25519PrivateKey`` or ``max_retries2``: words, not noise.

    Split at case and digit boundaries, a name has few, long segments; a
    random token has many short ones.
    """
    if not value.replace("_", "").isalnum():
        return False
    segments = _WORDS.findall(value)
    return bool(segments) and len(value.replace("_", "")) / len(segments) >= 4


def _not_a_value(value: str) -> bool:
    if len(value) > _MAX_VALUE:
        return False
    return bool(_PLACEHOLDER.match(value) or _CODE_LIKE.match(value) or _is_identifier(value))


def _is_generic_secret(value: str) -> bool:
    if len(value) > _MAX_VALUE:
        return True
    if _classes(value) < 2 and not _HEXISH.match(value):
        return False
    if _not_a_value(value):
        return False
    if _UUID.match(value):
        return True  # a UUID assigned to a secret-ish name is an API key in many services
    if _HEXISH.match(value):
        return True  # same for a hex string right after `token =`
    if len(value) < 10 and _classes(value) < 3:
        return False
    return entropy(value) >= 3.0 and _classes(value) >= 2


def scan_secrets(text: str) -> list[Hit]:
    """Secrets in ``text``; each hit spans the whole secret value."""
    enc = Encoded(text)
    hits: list[Hit] = []
    taken: list[tuple[int, int]] = []
    matched = _SET.Match(enc.data) or []
    for i in sorted(matched):
        spec = SECRET_PATTERNS[i]
        for m in _RX[i].finditer(enc.data):
            s, e = enc.span(m, spec.group)
            if s < 0 or e <= s:
                continue
            if spec.kind in _CHECKED and _not_a_value(enc.group(m, spec.group)):
                continue
            hits.append(Hit("secrets", spec.kind, s, e, spec.score, spec.reason))
            taken.append((s, e))
    claimed = Spans(taken)
    if _PREFILTER.search(enc.data) is not None:
        for m in _GENERIC.finditer(enc.data):
            group = next(g for g in (2, 3, 4) if m.group(g) is not None)
            s, e = enc.span(m, group)
            if not claimed.free(s, e):
                continue
            if _is_generic_secret(enc.group(m, group)):
                hits.append(Hit("secrets", "generic-secret", s, e, 0.8, "value of a secret name"))
                claimed.add(s, e)
        for m in _BEARER.finditer(enc.data):
            s, e = enc.span(m, 1)
            value = enc.group(m, 1)
            if not claimed.free(s, e):
                continue
            if not _CODE_LIKE.match(value) and _classes(value) >= 2:
                hits.append(Hit("secrets", "bearer-token", s, e, 0.9, "bearer token"))
                claimed.add(s, e)
    hits.sort(key=lambda h: (h.start, -h.end))
    out: list[Hit] = []
    for h in hits:  # keep the widest of overlapping hits
        if out and h.start < out[-1].end:
            if h.end > out[-1].end:
                prev = out[-1]
                out[-1] = Hit(prev.scanner, prev.kind, prev.start, h.end, prev.score, prev.reason)
            continue
        out.append(h)
    return out
