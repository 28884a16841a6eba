"""The flow stage: decide a call from where its argument values came from.

:class:`ProvenanceChecker` implements the guard's ``FlowChecker``:

- ``observe`` indexes every result the session reads, with its labels (after
  the policy's label rules);
- ``user_said`` indexes the user's own words as trusted;
- ``check`` finds, for each argument a flow rule looks at, the stretches of
  its value that stand in earlier content, and applies the rules: arguments
  that must not carry untrusted (or confidential) data, and the lethal
  trifecta (a session that read untrusted and confidential content calling an
  external sink).

A stretch counts when it is at least a shingle of words or a token gram long
(see :mod:`stockade.flow.text`). The user's words excuse what they cover: a
value the user gave stays trusted even if it also stands in untrusted
content. A trusted stretch that strictly contains an untrusted one explains
it (``bob@example.com`` from the address book is not tainted by a web page
mentioning ``example.com``).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from stockade.flow.config import FlowConfig, FlowRule
from stockade.flow.index import Match, Piece, SessionIndex, rank
from stockade.flow.store import IndexStore, MemoryIndexStore
from stockade.flow.text import (
    GRAM,
    SHINGLE,
    canon,
    host_of,
    skeleton,
    tokens,
    value_text,
    words,
)
from stockade.model import (
    Confidentiality,
    Decision,
    Effect,
    Integrity,
    Label,
    ShadowDecision,
    ToolCall,
)
from stockade.stages import FlowVerdict

if TYPE_CHECKING:
    from stockade.session import Session

__all__ = ["ProvenanceChecker", "ValueProvenance"]

USER_LABEL = Label("user", Integrity.TRUSTED, Confidentiality.INTERNAL)
_MAX_SPANS = 16


@dataclass
class ValueProvenance:
    """Where one argument value came from.

    ``spans`` are the stretches found in earlier content (offsets into the
    value's canonical form); ``untrusted`` and ``confidential`` the ones that
    count against it after the user's words and longer trusted stretches
    excused what they cover; ``unknown`` the labels of content the session
    read but could not index (the value may come from there).
    """

    canonical: str
    spans: list[tuple[Match, Piece]] = field(default_factory=list)
    untrusted: list[tuple[Match, Piece]] = field(default_factory=list)
    confidential: list[tuple[Match, Piece]] = field(default_factory=list)
    unknown: list[Label] = field(default_factory=list)
    user_covered: bool = False
    threshold: Confidentiality = Confidentiality.SECRET

    @property
    def is_untrusted(self) -> bool:
        """Whether the value carries untrusted data (or may, from unindexed content)."""
        return bool(self.untrusted) or any(x.integrity is Integrity.UNTRUSTED for x in self.unknown)

    def confidentiality(self) -> Confidentiality | None:
        """The highest confidentiality the value carries, if any."""
        levels = [p.confidentiality for _, p in self.confidential]
        levels += [
            x.confidentiality
            for x in self.unknown
            if rank(x.confidentiality) >= rank(self.threshold)
        ]
        return max(levels, key=rank) if levels else None

    def describe(self) -> dict[str, Any]:
        """JSON-able description (offsets and sources, never the value's text)."""
        bad = {id(m) for m, _ in self.untrusted} | {id(m) for m, _ in self.confidential}
        spans = []
        for m, p in sorted(self.spans, key=lambda mp: (mp[0].start, -mp[0].end))[:_MAX_SPANS]:
            spans.append(
                {
                    "start": m.start,
                    "end": m.end,
                    "at": list(m.at),
                    "via": m.via,
                    "counts": id(m) in bad,
                    "many": m.many,
                    **p.describe(),
                }
            )
        level = self.confidentiality()
        out: dict[str, Any] = {
            "integrity": "untrusted" if self.is_untrusted else "trusted",
            "confidentiality": level.value if level is not None else None,
            "user": self.user_covered,
            "spans": spans,
        }
        if self.unknown:
            out["unindexed"] = [x.as_dict() for x in self.unknown]
        return out


class ProvenanceChecker:
    """Provenance tracking and flow rules, from a policy's ``flow:`` section.

    >>> from stockade import Guard
    >>> guard = Guard.from_text('''
    ... version: 1
    ... flow:
    ...   rules:
    ...     - {id: payee, tool: pay, args: [iban], forbid: untrusted, effect: deny}
    ... ''')
    >>> type(guard.flow).__name__
    'ProvenanceChecker'
    """

    def __init__(self, config: FlowConfig, store: IndexStore | None = None) -> None:
        self.config = config
        b = config.bounds
        self.store: IndexStore = store or MemoryIndexStore(
            max_session_bytes=b.session_bytes,
            max_sessions=b.sessions,
            max_total_bytes=b.total_bytes,
            idle=b.idle,
        )

    # -- remembering ------------------------------------------------------------

    def observe(
        self, call: ToolCall, value: Any, labels: Sequence[Label], session: Session
    ) -> None:
        """Index a result the session read, with its (relabelled) labels."""
        index = self.store.get(session.id)
        index.add(
            value_text(value),
            self.config.relabel(call, labels),
            tool=call.tool,
            action=call.action,
            call_id=call.call_id,
        )
        self.store.touch(session.id)

    def user_said(self, session: Session, text: str) -> None:
        """Index the user's own words as trusted."""
        self.store.get(session.id).add(text, (USER_LABEL,), tool="user", user=True)
        self.store.touch(session.id)

    # -- provenance -------------------------------------------------------------

    def provenance(self, session_id: str, value: Any) -> ValueProvenance:
        """Where ``value`` (a string, number, or a list/dict of them) came from
        in what session ``session_id`` read."""
        return _provenance(self.store.get(session_id), _as_text(value), self.config.confidential)

    # -- deciding ---------------------------------------------------------------

    def check(self, call: ToolCall, session: Session) -> FlowVerdict:
        """Apply the flow rules to ``call``; report each looked-at argument's provenance."""
        index = self.store.get(session.id)
        cap = session.guard.capability(call.tool) if session.guard is not None else None
        external = bool(cap is not None and cap.external) or self.config.is_external(call)
        cache: dict[tuple[str, str], ValueProvenance] = {}
        report: dict[str, Any] = {}
        fired: list[tuple[Decision, str]] = []

        def prov(path: str, text: str, part: str) -> ValueProvenance:
            key = (path, part)
            if key not in cache:
                subject = text
                if part == "host":
                    subject = host_of(canon(text)) or text
                cache[key] = _provenance(index, subject, self.config.confidential)
                report[path if part == "whole" else f"{path}#host"] = cache[key].describe()
            return cache[key]

        for rule in self.config.rules:
            if not rule.applies(call, external):
                continue
            names = rule.arg_names(call)
            leaves = [
                (path, text) for name in names for path, text in _leaves(name, call.args[name])
            ]
            bad = self._first_violation(rule, leaves, prov)
            if bad is None and len(leaves) > 1:
                bad = _split_violation(index, rule, leaves, self.config.confidential)
                if bad is not None:
                    report[bad[0]] = bad[1].describe()
            if bad is not None:
                fired.append((_rule_decision(rule, bad[0], bad[1]), rule.mode))
        tri = self.config.trifecta
        if tri is not None and external and tri.applies(call) and index.read_untrusted:
            level = index.read_confidentiality
            if level is not None and rank(level) >= rank(self.config.confidential):
                threshold = rank(self.config.confidential)
                sources = ", ".join(
                    f"`{s}`"
                    for s in sorted(
                        {
                            x.source
                            for x in index.read_labels
                            if x.integrity is Integrity.UNTRUSTED
                            or rank(x.confidentiality) >= threshold
                        }
                    )[:6]
                )
                reason = tri.reason or (
                    "the session read untrusted and confidential content "
                    f"({sources}); `{call.tool}` is an external sink"
                )
                fired.append((Decision(tri.effect, "flow:trifecta", reason), tri.mode))
        return FlowVerdict(decision=_combine(fired), provenance=report)

    def _first_violation(
        self,
        rule: FlowRule,
        leaves: list[tuple[str, str]],
        prov: Any,
    ) -> tuple[str, ValueProvenance] | None:
        for path, text in leaves:
            p = prov(path, text, rule.part)
            if _violates(rule, p):
                return path, p
        return None

    def drop(self, session_id: str) -> None:
        """Forget a finished session's provenance."""
        self.store.drop(session_id)


def _violates(rule: FlowRule, p: ValueProvenance) -> bool:
    if rule.forbid == "untrusted":
        return p.is_untrusted
    return p.confidentiality() is not None


#: characters taken from each side of a boundary between two arguments: a
#: stretch that crosses it counts when it covers a token (which a split value
#: is) or is 16 letters and digits long, so a little more than that suffices
_SEAM = 20


def _split_violation(
    index: SessionIndex,
    rule: FlowRule,
    leaves: list[tuple[str, str]],
    threshold: Confidentiality,
) -> tuple[str, ValueProvenance] | None:
    """A value split over two arguments: check the seam of each adjacent pair
    (the end of one joined to the start of the next) for token grams; it
    counts only when a counting stretch crosses the seam."""
    for (left_path, left), (right_path, right) in itertools.pairwise(leaves):
        a, b = canon(left)[-_SEAM:], canon(right)[:_SEAM]
        if not index.unindexed and not index.probe_seam(a, b):
            continue
        p = _provenance(index, a + b, threshold, shingles=False)
        spans = p.untrusted if rule.forbid == "untrusted" else p.confidential
        if any(m.start < len(a) < m.end for m, _ in spans) or (
            not spans and p.unknown and _violates(rule, p)
        ):
            return f"{left_path}+{right_path}", p
    return None


def _rule_decision(rule: FlowRule, path: str, p: ValueProvenance) -> Decision:
    spans = p.untrusted if rule.forbid == "untrusted" else p.confidential
    origins = sorted({_origin(piece) for _, piece in spans})
    if not origins and p.unknown:
        origins = ["content the session read past its index bound"]
    what = "untrusted" if rule.forbid == "untrusted" else "confidential"
    where = "; ".join(origins[:4])
    reason = f"argument `{path}` carries {what} data from {where}"
    if rule.reason:
        reason = f"{rule.reason}: {reason}"
    return Decision(rule.effect, f"flow:{rule.id}", reason)


def _origin(piece: Piece) -> str:
    sources = ", ".join(f"`{x.source}`" for x in piece.labels)
    return f"result #{piece.id} of `{piece.tool}.{piece.action}` ({sources})"


def _combine(fired: list[tuple[Decision, str]]) -> Decision | None:
    enforced = [d for d, mode in fired if mode == "enforce"]
    shadows = [d for d, mode in fired if mode == "shadow"]
    strongest: Decision | None = None
    for d in enforced:
        if strongest is None or (d.effect is Effect.DENY and strongest.effect is not Effect.DENY):
            strongest = d
    shadow: ShadowDecision | None = None
    for d in shadows:
        if shadow is None or (d.effect is Effect.DENY and shadow.effect is not Effect.DENY):
            shadow = ShadowDecision(d.effect, d.rule, d.reason)
    if strongest is not None:
        if shadow is not None:
            return Decision(strongest.effect, strongest.rule, strongest.reason, shadow)
        return strongest
    if shadow is not None:
        return Decision(Effect.ALLOW, shadow.rule, "shadow flow rule: recorded only", shadow)
    return None


def _leaves(name: str, value: Any) -> Iterator[tuple[str, str]]:
    """``(path, text)`` for each string or number inside an argument value."""
    if isinstance(value, str):
        yield name, value
    elif isinstance(value, bool) or value is None:
        return
    elif isinstance(value, (int, float)):
        yield name, str(value)
    elif isinstance(value, (bytes, bytearray)):
        yield name, bytes(value).decode("utf-8", "replace")
    elif isinstance(value, Mapping):
        for k, v in value.items():
            yield from _leaves(f"{name}.{k}#key", k)  # keys carry data too
            yield from _leaves(f"{name}.{k}", v)
    elif isinstance(value, (list, tuple, set, frozenset)):
        for i, v in enumerate(value):
            yield from _leaves(f"{name}[{i}]", v)
    else:
        yield name, value_text(value)


def _as_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return " ".join(text for _, text in _leaves("", value))


def _meaningful(c: str) -> bool:
    """Whether a canonical value is long enough to carry provenance."""
    if len(skeleton(c)) >= GRAM:
        return True
    return sum(1 for _ in words(c)) >= SHINGLE


def _merged(intervals: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for s, e in sorted(intervals):
        if out and s <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], e))
        else:
            out.append((s, e))
    return out


def _covered(m: Match, cover: list[tuple[int, int]]) -> bool:
    return any(s <= m.start and m.end <= e for s, e in cover)


def _provenance(
    index: SessionIndex, text: str, threshold: Confidentiality, *, shingles: bool = True
) -> ValueProvenance:
    c, found = index.matches(text, shingles=shingles)
    pieces = index.pieces
    spans = [(m, pieces[m.piece]) for m in found]
    p = ValueProvenance(canonical=c, spans=spans, threshold=threshold)
    user_cover = _merged([(m.start, m.end) for m, piece in spans if piece.user])
    p.user_covered = bool(user_cover) and _whole(c, user_cover)
    trusted = [(m.start, m.end) for m, piece in spans if not piece.user and not piece.untrusted]
    units = _units(c)
    # Many pieces often share the same stretch (a common domain in every
    # page): judge each distinct stretch once.
    counts: dict[tuple[int, int, str], bool] = {}
    explained: dict[tuple[int, int], bool] = {}
    level = rank(threshold)
    for m, piece in spans:
        if piece.user:
            continue
        key = (m.start, m.end, m.via)
        ok = counts.get(key)
        if ok is None:
            ok = counts[key] = not _covered(m, user_cover) and _counts(m, units, c)
        if not ok:
            continue
        if piece.untrusted:
            span = (m.start, m.end)
            longer = explained.get(span)
            if longer is None:
                longer = explained[span] = any(
                    s <= m.start and m.end <= e and (e - s) > (m.end - m.start) for s, e in trusted
                )
            if not longer:
                p.untrusted.append((m, piece))
        if rank(piece.confidentiality) >= level:
            p.confidential.append((m, piece))
    if index.unindexed and not p.user_covered and _meaningful(c):
        p.unknown = [
            x
            for x in index.unindexed
            if x.integrity is Integrity.UNTRUSTED or rank(x.confidentiality) >= rank(threshold)
        ]
    return p


#: a stretch this long counts even when it covers no whole unit of the value
LONG_WORDS = 6
LONG_SKELETON = 16


def _units(c: str) -> list[tuple[int, int]]:
    """The stretches of a canonical value that must be copied whole to count:
    the value itself and each token that matters in it, trimmed to letters
    and digits."""
    out = []
    for start, end in [(0, len(c)), *((t.start, t.end) for t in tokens(c))]:
        ws = [(s, e) for s, e, _ in words(c[start:end])]
        if ws:
            out.append((start + ws[0][0], start + ws[-1][1]))
    return out


def _counts(m: Match, units: list[tuple[int, int]], c: str) -> bool:
    """Whether a stretch is meaningful: it covers a whole unit, or it is long."""
    if any(m.start <= s and e <= m.end for s, e in units):
        return True
    if m.via == "words":
        return sum(1 for _ in words(c[m.start : m.end])) >= LONG_WORDS
    return len(skeleton(c[m.start : m.end])) >= LONG_SKELETON


def _whole(c: str, cover: list[tuple[int, int]]) -> bool:
    """Whether the intervals cover every letter and digit of ``c``."""
    return all(any(s <= start and end <= e for s, e in cover) for start, end, _ in words(c))
