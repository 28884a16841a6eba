"""The policy's ``scan:`` section, parsed into :class:`ScanConfig`.

.. code-block:: yaml

    scan:
      arguments: [secrets, pii]                       # scanners on outgoing arguments
      results: [hygiene, injection, secrets, pii, links]   # scanners on tool results
      threshold: 0.5          # injection score (rules and model) that makes a finding
      model: true             # the shipped classifier next to the rules
      block:                  # what denies the call instead of labelling/masking it
        arguments: [secrets]
        results: [injection, hidden-text]
      mask:                   # per finding kind or scanner: label | redact | hash | pseudonym
        email: pseudonym
        secrets: redact
        ip: label
      strip_invisible: true   # remove invisible characters from results
      links:
        allow: [docs.example.com, "*.example.org"]
      pii:
        kinds: [email, phone, card, iban, national-id, ip]
        regions: [US, GB, DE, FR]
        names: false          # names and addresses: needs the pii-names extra
      vault:                  # keep pseudonyms across processes (AES-GCM sealed)
        path: state/vault
        key_env: STOCKADE_VAULT_KEY

A canary token seen in a result or an argument always denies the call.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from stockade.scan.pii import PII_KINDS
from stockade.scan.secrets import SECRET_PATTERNS
from stockade.scan.vault import MASK_MODES

if TYPE_CHECKING:
    from stockade.policy.node import Node
    from stockade.policy.policy import SectionContext

__all__ = ["DEFAULT_MASK", "SCANNERS", "ScanConfig", "parse_section"]

#: scanner names a policy can switch on for arguments or results
SCANNERS = ("hygiene", "injection", "secrets", "pii", "links")

#: what each kind of finding becomes when the policy says nothing
DEFAULT_MASK: Mapping[str, str] = {
    "secrets": "redact",
    "email": "pseudonym",
    "name": "pseudonym",
    "address": "pseudonym",
    "phone": "pseudonym",
    "card": "pseudonym",
    "iban": "pseudonym",
    "national-id": "pseudonym",
    "ip": "label",
}

#: keys a ``mask:`` mapping may use: a scanner (all its kinds) or one kind
MASK_KEYS = (
    "secrets",
    "pii",
    *PII_KINDS,
    "name",
    "address",
    *sorted({p.kind for p in SECRET_PATTERNS} | {"generic-secret", "bearer-token"}),
)

#: names a ``block:`` list may use besides scanner names
BLOCK_KINDS = (
    "hidden-text",  # hygiene findings that decode to text, tag characters
    "override",
    "jailbreak",
    "role-marker",
    "tool-call",
    "addressed",
    "leak",
    "exfiltration",
    "classifier",
    *PII_KINDS,
)


@dataclass(frozen=True)
class ScanConfig:
    """What the scanners do, as the policy says (see the module docs for the YAML)."""

    arguments: frozenset[str] = frozenset({"secrets", "pii"})
    results: frozenset[str] = frozenset(SCANNERS)
    threshold: float = 0.5
    model: bool = True
    block_arguments: frozenset[str] = frozenset()
    block_results: frozenset[str] = frozenset()
    mask: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_MASK))
    strip_invisible: bool = True
    link_allow: tuple[str, ...] = ()
    pii_kinds: tuple[str, ...] = PII_KINDS
    phone_regions: tuple[str, ...] = ("US", "GB", "DE", "FR")
    pii_names: bool = False
    vault_path: Path | None = None
    vault_key_env: str | None = None


def _names(node: Node, allowed: tuple[str, ...]) -> frozenset[str]:
    out = set()
    for item in node.seq_or_one():
        name = item.string()
        if name not in allowed:
            item.fail(f"unknown name `{name}`; expected one of: {', '.join(allowed)}")
        out.add(name)
    return frozenset(out)


def parse_section(node: Node, ctx: SectionContext) -> ScanConfig:
    """Parse the ``scan:`` section (see the module docs)."""
    m = node.mapping(
        allowed=(
            "arguments",
            "results",
            "threshold",
            "model",
            "block",
            "mask",
            "strip_invisible",
            "links",
            "pii",
            "vault",
        )
    )
    defaults = ScanConfig()
    arguments = _names(m["arguments"], SCANNERS) if "arguments" in m else defaults.arguments
    results = _names(m["results"], SCANNERS) if "results" in m else defaults.results
    threshold = m["threshold"].number(minimum=0.0, maximum=1.0) if "threshold" in m else 0.5
    model = m["model"].boolean() if "model" in m else True
    block_args: frozenset[str] = frozenset()
    block_results: frozenset[str] = frozenset()
    if "block" in m:
        names = (*SCANNERS, *BLOCK_KINDS)
        b = m["block"]
        if b.is_mapping:
            bm = b.mapping(allowed=("arguments", "results"))
            block_args = _names(bm["arguments"], names) if "arguments" in bm else frozenset()
            block_results = _names(bm["results"], names) if "results" in bm else frozenset()
        else:
            block_args = block_results = _names(b, names)
    mask = dict(DEFAULT_MASK)
    if "mask" in m:
        for key, value in m["mask"].mapping(allowed=MASK_KEYS).items():
            mask[key] = value.string(choices=MASK_MODES)
    strip = m["strip_invisible"].boolean() if "strip_invisible" in m else True
    allow: tuple[str, ...] = ()
    if "links" in m:
        lm = m["links"].mapping(allowed=("allow",))
        if "allow" in lm:
            allow = tuple(h.lower().rstrip(".") for h in lm["allow"].strings(allow_empty=True))
    pii_kinds: tuple[str, ...] = PII_KINDS
    regions = defaults.phone_regions
    want_names = False
    if "pii" in m:
        pm = m["pii"].mapping(allowed=("kinds", "regions", "names"))
        want_names = pm["names"].boolean() if "names" in pm else False
        if "kinds" in pm:
            pii_kinds = tuple(sorted(_names(pm["kinds"], PII_KINDS)))
        if "regions" in pm:
            regions = tuple(r.upper() for r in pm["regions"].strings())
            for r in regions:
                if len(r) != 2 or not r.isalpha():
                    pm["regions"].fail(f"`{r}` is not a two-letter region code")
    vault_path: Path | None = None
    key_env: str | None = None
    if "vault" in m:
        vm = m["vault"].mapping(allowed=("path", "key_env"), required=("path", "key_env"))
        raw = Path(vm["path"].string())
        vault_path = raw if raw.is_absolute() else ctx.base_dir / raw
        key_env = vm["key_env"].string()
    return ScanConfig(
        arguments=arguments,
        results=results,
        threshold=threshold,
        model=model,
        block_arguments=block_args,
        block_results=block_results,
        mask=mask,
        strip_invisible=strip,
        link_allow=allow,
        pii_kinds=pii_kinds,
        phone_regions=regions,
        pii_names=want_names,
        vault_path=vault_path,
        vault_key_env=key_env,
    )
