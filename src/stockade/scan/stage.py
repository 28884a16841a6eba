"""The scanner stage: one object that scans arguments and results for the guard.

:class:`Scanner` implements both :class:`~stockade.stages.ArgumentScanner`
and :class:`~stockade.stages.ResultScanner`:

- **arguments**: a canary token denies the call; pseudonyms of the session
  are restored to real values (the policy and the tool see real values, the
  audit log keeps the pseudonyms); the configured scanners label, mask (in
  the audit copy) and, where the policy says, deny;
- **results**: a canary token withholds the result; secrets and PII are
  masked per kind; links and images to hosts outside the allow-list are
  neutralised; invisible characters are stripped; injection is scored by the
  rules and the shipped model; findings and labels go to the audit log and
  the flow stage; the policy's ``block`` list turns findings into a deny.

Detectors guess: by default they label and mask, and never deny.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from stockade.model import (
    Confidentiality,
    Decision,
    Finding,
    Integrity,
    Label,
    Output,
    ToolCall,
)
from stockade.scan._base import Hit, map_strings, number_text
from stockade.scan.config import ScanConfig
from stockade.scan.hygiene import scan_hygiene, strip_invisible
from stockade.scan.injection import combine_scores, default_rules
from stockade.scan.output import Canaries, neutralize_links
from stockade.scan.pii import PII_KINDS, PIIScanner
from stockade.scan.secrets import scan_secrets
from stockade.scan.vault import EncryptedFileStore, Vault, key_from_env, mask_text
from stockade.stages import ArgumentScan, ResultScan

if TYPE_CHECKING:
    from stockade.scan.classifier import InjectionModel
    from stockade.scan.names import NameScanner
    from stockade.session import Session

__all__ = ["Scanner", "TextScan"]

_HIDDEN = ("tag-characters", "variation-selectors")
_PII_KINDS = frozenset({*PII_KINDS, "name", "address"})


@dataclass
class TextScan:
    """What the scanners made of one string: the new text and the hits, by the input's offsets."""

    text: str
    hits: list[Hit] = field(default_factory=list)
    masked: set[int] = field(default_factory=set)
    injection_score: float = 0.0


class Scanner:
    """The scan stage, configured once from a :class:`ScanConfig`.

    ``model`` is the injection classifier (loaded from the package when the
    policy asks for it and none is given); ``vault`` keeps pseudonyms.
    """

    def __init__(
        self,
        config: ScanConfig | None = None,
        *,
        vault: Vault | None = None,
        model: InjectionModel | None = None,
    ) -> None:
        self.config = config or ScanConfig()
        if vault is None:
            if self.config.vault_path is not None and self.config.vault_key_env:
                key = key_from_env(self.config.vault_key_env)
                vault = Vault(EncryptedFileStore(self.config.vault_path, key), key=key)
            else:
                vault = Vault()
        self.vault = vault
        self.rules = default_rules()
        self.pii = PIIScanner(self.config.pii_kinds, self.config.phone_regions)
        self.name_scanner: NameScanner | None = None
        if self.config.pii_names:
            from stockade.scan.names import NameScanner

            self.name_scanner = NameScanner()
        self.canaries = Canaries(vault.key)
        if model is None and self.config.model:
            from stockade.scan.classifier import load_model

            model = load_model()
        self.model = model

    # -- public helpers ---------------------------------------------------------

    def canary(self) -> str:
        """A fresh canary token to place in a system prompt."""
        return self.canaries.new()

    def scan_text(
        self,
        text: str,
        scanners: Iterable[str] | None = None,
        *,
        session: str = "",
        source: str = "",
        mask: bool = True,
        clean: bool = True,
    ) -> TextScan:
        """Run ``scanners`` (default: the result scanners) over one text.

        With ``mask``, secrets and PII are masked per the policy's modes; with
        ``clean``, outside links are neutralised and invisible characters
        stripped (as configured). Hit offsets refer to ``text``.
        """
        names = frozenset(self.config.results if scanners is None else scanners)
        out = TextScan(text)
        canaries = self.canaries.find(text)
        if "hygiene" in names:
            out.hits.extend(scan_hygiene(text))
        if "injection" in names:
            report = self.rules.scan(text)
            hits = list(report.hits)
            scores = [report.score]
            if self.model is not None:
                model_hits = self.model.scan(text, self.config.threshold)
                hits.extend(model_hits)
                scores.extend(h.score for h in model_hits)
            out.injection_score = max(report.score, combine_scores(scores[1:]) if scores[1:] else 0)
            if report.score >= self.config.threshold or any(h.kind == "classifier" for h in hits):
                out.hits.extend(hits)
        # a canary is redacted too: the audit copy of a leaking call must not spread it
        maskable: list[Hit] = list(canaries)
        if "secrets" in names:
            maskable.extend(scan_secrets(text))
        if "pii" in names:
            maskable.extend(self.pii.scan(text))
            if self.name_scanner is not None:
                maskable.extend(self.name_scanner.scan(text))
        out.hits.extend(maskable)
        new = text
        if mask and maskable:
            new, done = mask_text(
                text,
                maskable,
                self._mode_map(),
                vault=self.vault,
                session=session,
                source=source,
                default="redact",
            )
            out.masked = {id(h) for h, m in done if m}
        if "links" in names:
            # report by the input's offsets; neutralise in the (maybe masked) output
            _, link_hits = neutralize_links(text, self.config.link_allow)
            out.hits.extend(link_hits)
            if clean and link_hits:
                new, _ = neutralize_links(new, self.config.link_allow)
                out.masked.update(id(h) for h in link_hits)
        if clean and "hygiene" in names and self.config.strip_invisible:
            stripped = strip_invisible(new)
            if stripped != new:
                out.masked.update(id(h) for h in out.hits if h.scanner == "hygiene")
            new = stripped
        out.text = new
        return out

    def _mode_map(self) -> dict[str, str]:
        # a kind named on its own wins; otherwise its scanner's entry (``secrets``, ``pii``)
        modes = dict(self.config.mask)
        modes.setdefault("secrets", "redact")
        modes.setdefault("pii", "pseudonym")
        modes["canary"] = "redact"
        return modes

    # -- the stage ------------------------------------------------------------------

    def _blocked(self, hits: list[Hit], block: frozenset[str], score: float) -> Hit | None:
        if not block:
            return None
        for h in hits:
            names = {h.scanner, h.kind}
            if h.scanner == "hygiene" and (h.kind in _HIDDEN or "hidden text" in h.reason):
                names.add("hidden-text")
            if h.scanner == "injection" and score < self.config.threshold:
                continue
            if names & block:
                return h
        return None

    def scan_arguments(self, call: ToolCall, session: Session) -> ArgumentScan:
        """Deny on a canary, restore pseudonyms, label and mask the audit copy."""
        findings: list[Finding] = []
        decision: Decision | None = None
        source = f"{call.tool}.{call.action}"
        cfg = self.config

        names: dict[str, str] = {}  # every text scanned -> its audit form (to name paths)

        def audit_copy(path: str, text: str) -> str:
            nonlocal decision
            result = self.scan_text(
                text, cfg.arguments, session=call.session, source=source, clean=False
            )
            for h in result.hits:
                findings.append(_finding(h, path, "arguments", id(h) in result.masked))
            if decision is None:
                decision = _decide(self, result, cfg.block_arguments, path, "argument")
            names.setdefault(text, result.text)
            return result.text

        # keys and long integers too: a JSON body `{"<secret>": 1}` is as much sent as a value
        masked_args = map_strings(dict(call.args), audit_copy, numbers=True)

        def name(key: object) -> str:
            # the restoring pass names paths by the audit copy's keys, never by real values
            text = key if isinstance(key, str) else number_text(key)
            return str(key) if text is None else names.get(text, "(key)")

        pairs: dict[str, str] = {}  # real value -> the pseudonym it came in as

        def restore(path: str, text: str) -> str:
            nonlocal decision
            new, restored = self.vault.restore(call.session, text)
            for token, entry in restored:
                if entry.value:
                    pairs[entry.value] = token
                findings.append(
                    Finding(
                        "vault",
                        "pseudonym-restored",
                        reason=f"{path}: {token} restored ({entry.kind}, seen in {entry.source})",
                        where="arguments",
                    )
                )
                # a value the policy blocks in arguments is blocked restored, too: else a
                # secret kept as a pseudonym could be sent out by its pseudonym
                group = "secrets" if entry.kind not in _PII_KINDS else "pii"
                if decision is None and {entry.kind, group} & cfg.block_arguments:
                    decision = Decision.deny(
                        f"scan:{group}",
                        f"argument `{path}` carries {token} ({entry.kind}), which the policy "
                        "blocks in arguments",
                    )
            return new

        real_args = map_strings(dict(call.args), restore, name=name)
        new_call = call.with_args(real_args) if real_args != dict(call.args) else call
        return ArgumentScan(new_call, masked_args, tuple(findings), decision, tuple(pairs.items()))

    def scan_result(self, call: ToolCall, output: Output, session: Session) -> ResultScan:
        """Mask, neutralise, strip and label a tool's output; deny on a canary or a block."""
        findings: list[Finding] = []
        decision: Decision | None = None
        cfg = self.config
        source = ",".join(lb.source for lb in output.labels) or f"{call.tool}.{call.action}"
        injection = hidden = secret = False
        # short texts already found clean (column names, repeated values): scanning is
        # deterministic for them, as only a text with `<` depends on the vault's state
        clean: set[str] = set()

        def one(path: str, text: str) -> str:
            nonlocal decision, injection, hidden, secret
            if text in clean:
                return text
            raw = text
            text, spoofed = self.vault.defang(call.session, text)
            for s, e in spoofed:
                reason = f"{path}: a pseudonym of this session written in the result"
                findings.append(
                    Finding("vault", "pseudonym-spoof", s, e, 0.9, reason.lstrip(": "), True)
                )
            result = self.scan_text(text, cfg.results, session=call.session, source=source)
            for h in result.hits:
                findings.append(_finding(h, path, "result", id(h) in result.masked))
                if h.scanner == "injection" and result.injection_score >= cfg.threshold:
                    injection = True
                elif h.scanner == "hygiene" and h.score >= 0.9:
                    hidden = True
                elif h.scanner == "secrets":
                    secret = True
            if decision is None:
                decision = _decide(self, result, cfg.block_results, path, "result")
            if not result.hits and result.text == raw and len(raw) <= 256 and "<" not in raw:
                clean.add(raw)
            return result.text

        value = output.value
        if isinstance(value, (bytes, bytearray)):
            try:
                value = map_strings(bytes(value).decode("utf-8"), one).encode("utf-8")
            except UnicodeDecodeError:
                value = output.value  # binary: nothing a model reads as text
        else:
            # keys and long integers too: a card number in a BIGINT column is still a card
            value = map_strings(_plain(value), one, numbers=True)
        labels = list(output.labels)
        if injection:
            labels.append(Label("scan:injection", Integrity.UNTRUSTED))
        if hidden:
            labels.append(Label("scan:hidden-text", Integrity.UNTRUSTED))
        if secret:
            labels.append(Label("scan:secrets", Integrity.TRUSTED, Confidentiality.SECRET))
        return ResultScan(value, tuple(labels), tuple(findings), decision)


def _plain(value: Any) -> Any:
    """``value`` with every object the scanners cannot look into turned into its text.

    A tool may return its own objects; what the model reads of them is their
    text, so that is what gets scanned and masked (scalars stay as they are).
    """
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, (bytes, bytearray)):
        # Bytes inside a structure reach the model as text; scan them as text
        # (the top level keeps bytes, see scan_result). Red-team R18.
        return bytes(value).decode("utf-8", "replace")
    if isinstance(value, dict):
        out: dict[Any, Any] = {}
        for k, v in value.items():
            key = _plain_key(k)
            base, n = key, 2
            while key in out:  # two objects with the same text: keep both
                key, n = f"{base}#{n}", n + 1
            out[key] = _plain(v)
        return out
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_plain(v) for v in value)
    return str(value)


def _plain_key(key: Any) -> Any:
    # a key the scanners cannot look into reaches the model as its text, like a value
    if key is None or isinstance(key, (str, bool, int, float)):
        return key
    return str(key)


def _finding(hit: Hit, path: str, where: str, masked: bool) -> Finding:
    f = hit.finding(where, masked=masked)
    if path:
        return Finding(
            f.scanner, f.kind, f.start, f.end, f.score, f"{path}: {f.reason}", f.masked, f.where
        )
    return f


def _decide(
    scanner: Scanner, result: TextScan, block: frozenset[str], path: str, what: str
) -> Decision | None:
    at = f" in {what} `{path}`" if path else f" in the {what}"
    if any(h.kind == "canary" for h in result.hits):
        return Decision.deny("scan:canary", f"a canary token{at}: the system prompt leaked")
    hit = scanner._blocked(result.hits, block, result.injection_score)
    if hit is not None:
        return Decision.deny(
            f"scan:{hit.scanner}", f"{hit.scanner} found {hit.kind}{at} ({hit.reason})"
        )
    return None
