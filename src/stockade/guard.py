"""The one pipeline every tool call goes through.

>>> from stockade import Guard
>>> guard = Guard.from_text('''
... version: 1
... rules:
...   - {id: greet, tool: greet, effect: allow, when: {name: {regex: "[A-Za-z]{1,20}"}}}
... ''')
>>> @guard.tool()
... def greet(name: str) -> str:
...     return f"hello {name}"
>>> greet("ada")
'hello ada'

Nothing executes a capability except :meth:`Guard.call` (and its async twin
:meth:`Guard.acall`); the functions ``@guard.tool`` returns go through it too.
Any exception inside a check denies the call and is audited (fail closed).
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn, TypeVar

from stockade.errors import (
    ApprovalRequired,
    AuditError,
    ConfigurationError,
    Denied,
    RateLimited,
    StockadeError,
    ToolError,
)
from stockade.model import (
    AuditEvent,
    Decision,
    Effect,
    Finding,
    Label,
    Output,
    Result,
    ShadowDecision,
    ToolCall,
    new_call_id,
    stronger,
)
from stockade.policy import Policy
from stockade.policy.policy import load_part
from stockade.session import (
    MemorySessionStore,
    RedisSessionStore,
    Session,
    SessionStore,
    current_session,
)
from stockade.stages import (
    Approval,
    ApprovalRequest,
    Approver,
    ArgumentScan,
    ArgumentScanner,
    AuditSink,
    CallbackApprover,
    FlowChecker,
    FlowVerdict,
    MemoryAuditSink,
    NoFlow,
    NoScanner,
    ResultScan,
    ResultScanner,
)
from stockade.tools.base import Capability, Context, FunctionCapability

__all__ = ["Guard", "GuardedTool"]

log = logging.getLogger("stockade")
F = TypeVar("F", bound=Callable[..., Any])


class _StageFailure(Exception):
    def __init__(self, stage: str, error: BaseException) -> None:
        super().__init__(stage)
        self.stage = stage
        self.error = error


@dataclass(slots=True)
class _Checked:
    """A call that went through the checks, with everything the rest needs."""

    call: ToolCall
    session: Session
    capability: Capability | None
    masked_args: Mapping[str, Any]
    decision: Decision
    findings: tuple[Finding, ...] = ()
    provenance: Mapping[str, Any] = field(default_factory=dict)
    started: float = 0.0
    audit_seq: int | None = None
    restored: tuple[tuple[str, str], ...] = ()


def _from_part(target: str, policy: Policy) -> Any:
    """Ask a part (``module:function``) to build its stage from the policy."""
    return load_part(target)(policy)


class Guard:
    """The pipeline around an agent's tools, driven by one policy.

    Stages not given here are built from the policy's sections (an audit store
    from ``audit:``, scanners from ``scan:``, flow rules from ``flow:``, the
    fs/http/sql/exec tools from their sections), else plain defaults: an
    in-memory audit sink, no scanners, no flow rules, no approver (so an
    ``ask`` raises :class:`ApprovalRequired`).

    ``tools_from_policy=False`` builds none of the fs/http/sql/exec tools from
    the sections; only ``capabilities`` are registered (``stockade policy
    test`` builds the ones it can check without side effects itself).
    """

    def __init__(
        self,
        policy: Policy,
        *,
        audit: AuditSink | None = None,
        approver: Approver | Callable[[ApprovalRequest], bool | Approval] | None = None,
        sessions: SessionStore | None = None,
        scanner: ArgumentScanner | ResultScanner | None = None,
        flow: FlowChecker | None = None,
        capabilities: Iterable[Capability] = (),
        tools_from_policy: bool = True,
    ) -> None:
        self.policy = policy
        audit_cfg = policy.section("audit")
        self.audit_required: bool = bool(getattr(audit_cfg, "required", True))
        self.audit: AuditSink = (
            audit or _from_part("stockade.audit:sink_from_policy", policy) or (MemoryAuditSink())
        )
        found_scanner = scanner or _from_part("stockade.scan:scanner_from_policy", policy)
        self._arg_scanner: ArgumentScanner = (
            found_scanner if isinstance(found_scanner, ArgumentScanner) else NoScanner()
        )
        self._result_scanner: ResultScanner = (
            found_scanner if isinstance(found_scanner, ResultScanner) else NoScanner()
        )
        self.flow: FlowChecker = (
            flow or _from_part("stockade.flow:flow_from_policy", policy) or (NoFlow())
        )
        if approver is None:
            approver = _from_part("stockade.approvals:approver_from_policy", policy)
        if approver is not None and not isinstance(approver, Approver):
            approver = CallbackApprover(approver)
        self.approver: Approver | None = approver
        self.sessions: SessionStore = sessions or _session_store(policy)
        self._capabilities: dict[str, Capability] = {}
        if tools_from_policy:
            for cap in _from_part("stockade.tools:capabilities_from_policy", policy) or ():
                self.register(cap)
        for cap in capabilities:
            self.register(cap)
        self._default_session = Session(self, id="default")

    # -- construction -------------------------------------------------------

    @classmethod
    def from_file(cls, path: str | Path, **kwargs: Any) -> Guard:
        """A guard for the policy in ``path`` (see :class:`Guard` for ``kwargs``)."""
        return cls(Policy.from_file(path), **kwargs)

    @classmethod
    def from_text(cls, text: str, **kwargs: Any) -> Guard:
        """A guard for policy YAML given as text."""
        return cls(Policy.from_text(text), **kwargs)

    def register(self, capability: Capability) -> None:
        """Add a tool; its name must be new to this guard."""
        if not capability.name:
            raise ConfigurationError("a capability needs a name")
        if capability.name in self._capabilities:
            raise ConfigurationError(f"a tool named `{capability.name}` is already registered")
        self._capabilities[capability.name] = capability

    def capability(self, name: str) -> Capability | None:
        """The registered tool called ``name``, if any (for integrations that list tools)."""
        return self._capabilities.get(name)

    @property
    def tools(self) -> Mapping[str, Capability]:
        """The registered tools by name."""
        return dict(self._capabilities)

    def tool(
        self,
        name: str | None = None,
        *,
        action: str = "call",
        rename: Mapping[str, str] | None = None,
        labels: Iterable[Label] = (),
        external: bool = False,
    ) -> Callable[[Callable[..., Any]], GuardedTool]:
        """Turn a plain sync or async function into a guarded tool.

        The function's parameters become the policy's argument names (``rename``
        maps a parameter to another name). Calling the returned object goes
        through the whole pipeline and returns the scanned value.

        >>> guard = Guard.from_text("version: 1")
        >>> @guard.tool("mail", action="send", external=True)
        ... def send_mail(to: str, body: str) -> str: ...
        """

        def wrap(fn: Callable[..., Any]) -> GuardedTool:
            cap = FunctionCapability(
                fn,
                name=name or fn.__name__,
                action=action,
                rename=rename,
                labels=tuple(labels),
                external=external,
            )
            self.register(cap)
            return GuardedTool(self, cap)

        return wrap

    def canary(self) -> str:
        """A fresh canary token for a system prompt (needs a ``scan:`` section).

        The token seen later in a tool result or an outgoing argument means the
        prompt leaked: the call is denied and audited.
        """
        fn = getattr(self._result_scanner, "canary", None)
        if fn is None:
            raise ConfigurationError("canary tokens need a scanner: add a `scan:` section")
        token: str = fn()
        return token

    def session(self, id: str | None = None, principal: str = "") -> Session:
        """A session: one conversation of one agent (use it with ``with``)."""
        return Session(self, id=id, principal=principal)

    def close(self) -> None:
        """Release the tools and the audit store."""
        for cap in self._capabilities.values():
            cap.close()
        self.audit.close()
        close_store = getattr(self.sessions, "close", None)
        if callable(close_store):
            close_store()

    def __enter__(self) -> Guard:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the pipeline -------------------------------------------------------

    def call(
        self,
        tool: str,
        action: str,
        args: Mapping[str, Any] | None = None,
        *,
        session: Session | str | None = None,
        call_id: str | None = None,
    ) -> Result:
        """Run one tool call through the pipeline and return its result.

        Raise :class:`Denied` when it is not allowed (including any failure of a
        check, and ``args`` that are not a mapping: rule ``<tool>:invalid``),
        :class:`ApprovalRequired` when it needs an approver the guard
        does not have, :class:`ToolError` when the tool itself fails.
        """
        checked = self._checked(tool, action, args, session, call_id)
        output = self._execute(checked)
        return self._finish(checked, output)

    async def acall(
        self,
        tool: str,
        action: str,
        args: Mapping[str, Any] | None = None,
        *,
        session: Session | str | None = None,
        call_id: str | None = None,
    ) -> Result:
        """Async :meth:`call`; checks run inline, a blocking approver in a thread."""
        checked = self._check_only(tool, action, args, session, call_id)
        if checked.decision.effect is Effect.ASK:
            checked = await asyncio.to_thread(self._approve, checked)
        self._admit(checked)
        output = await self._aexecute(checked)
        return self._finish(checked, output)

    def decide(
        self,
        tool: str,
        action: str,
        args: Mapping[str, Any] | None = None,
        *,
        session: Session | str | None = None,
        call_id: str | None = None,
    ) -> Decision:
        """Decide a call without running it (for tools that run elsewhere).

        Runs every check, records the decision in the audit log and returns it,
        deny included (a failing check gives a deny with rule ``error:<stage>``);
        an ``ask`` is returned, not sent to the approver. A decision that the
        audit store could not record is a deny with rule ``error:audit``.
        """
        try:
            checked = self._check_only(tool, action, args, session, call_id)
            self._audit_decision(checked)
        except Denied as exc:
            return exc.decision
        return checked.decision

    def handle_tool_calls(
        self,
        message: Any,
        registry: Any = None,
        *,
        session: Session | str | None = None,
        conversation: Iterable[Any] | None = None,
    ) -> list[dict[str, Any]]:
        """Run the OpenAI-style tool calls in ``message``; return the tool messages.

        See :func:`stockade.integrations.openai.handle_tool_calls`.
        """
        from stockade.integrations.openai import handle_tool_calls

        return handle_tool_calls(
            self, message, registry, session=session, conversation=conversation
        )

    # -- stages ---------------------------------------------------------------

    def _session_of(self, session: Session | str | None) -> Session:
        if isinstance(session, Session):
            return session
        if isinstance(session, str):
            return Session(self, id=session)
        return current_session() or self._default_session

    def _stage(self, name: str, fn: Callable[..., Any], *args: Any) -> Any:
        try:
            return fn(*args)
        except (Denied, ApprovalRequired):
            raise
        except Exception as exc:
            raise _StageFailure(name, exc) from exc

    def _checked(
        self,
        tool: str,
        action: str,
        args: Mapping[str, Any] | None,
        session: Session | str | None,
        call_id: str | None,
    ) -> _Checked:
        checked = self._check_only(tool, action, args, session, call_id)
        if checked.decision.effect is Effect.ASK:
            checked = self._approve(checked)
        self._admit(checked)
        return checked

    def _check_only(
        self,
        tool: str,
        action: str,
        args: Mapping[str, Any] | None,
        session: Session | str | None,
        call_id: str | None,
    ) -> _Checked:
        s = self._session_of(session)
        # Arguments that are not a mapping (a string, a list of pairs) are an
        # invalid call like any other: denied as `<tool>:invalid` and audited
        # with no arguments, never turned into a dict by guesswork.
        bad_args = args is not None and not isinstance(args, Mapping)
        call = ToolCall(
            tool=tool,
            action=action,
            args={} if bad_args else dict(args or {}),
            session=s.id,
            call_id=call_id or new_call_id(),
            principal=s.principal,
        )
        checked = _Checked(call, s, self._capabilities.get(tool), call.args, _PENDING)
        checked.started = time.perf_counter()
        if bad_args:
            checked.decision = Decision.deny(
                f"{tool}:invalid",
                f"arguments must be a mapping of names to values, not `{type(args).__name__}`",
            )
            self._deny(checked)
        try:
            self._run_checks(checked)
        except _StageFailure as failure:
            self._fail(checked, failure)
        if checked.decision.effect is Effect.DENY:
            self._deny(checked)
        return checked

    def _run_checks(self, c: _Checked) -> None:
        scan: ArgumentScan = self._stage(
            "scan_arguments", self._arg_scanner.scan_arguments, c.call, c.session
        )
        c.call, c.masked_args, c.findings = scan.call, scan.masked_args, scan.findings
        c.restored = scan.restored
        decisions: list[Decision | None] = [scan.decision]
        cap = c.capability
        if cap is not None:
            if c.call.action not in cap.actions:
                c.decision = Decision.deny(
                    f"{cap.name}:unknown-action",
                    f"tool `{cap.name}` has no action `{c.call.action}`",
                )
                return
            before = c.call
            try:
                c.call = cap.prepare(c.call)
            except ToolError as exc:
                c.decision = Decision.deny(f"{cap.name}:invalid", str(exc))
                return
            except Exception as exc:
                raise _StageFailure("prepare", exc) from exc
            if c.call.args != before.args and not isinstance(self._arg_scanner, NoScanner):
                # Canonical arguments can show what the raw ones hid (a secret
                # percent-encoded in a URL): scan what will really be used, and
                # keep the audit's copy masked in that form.
                again: ArgumentScan = self._stage(
                    "scan_arguments", self._arg_scanner.scan_arguments, c.call, c.session
                )
                c.call, c.masked_args = again.call, again.masked_args
                seen = {(f.scanner, f.kind) for f in c.findings}
                c.findings += tuple(f for f in again.findings if (f.scanner, f.kind) not in seen)
                decisions.append(again.decision)
            decisions.append(self._stage("capability", cap.check, c.call))
        decision: Decision = self._stage("policy", self.policy.decide, c.call)
        for d in decisions:
            decision = _combine(decision, d)
        if decision.effect is not Effect.DENY:
            verdict: FlowVerdict = self._stage("flow", self.flow.check, c.call, c.session)
            c.provenance = verdict.provenance
            decision = _combine(decision, verdict.decision)
        if self.policy.mode == "shadow" and decision.effect is not Effect.ALLOW:
            decision = Decision(
                Effect.ALLOW,
                "mode:shadow",
                "the policy is in shadow mode: recorded, not enforced",
                ShadowDecision(decision.effect, decision.rule, decision.reason),
            )
        if decision.effect is not Effect.DENY:
            decision = _combine(decision, self._stage("limits", self._limits, c.call, c.session))
        c.decision = decision

    def _limits(self, call: ToolCall, session: Session) -> Decision | None:
        store = self.sessions
        budgets = self.policy.budgets
        if budgets.bytes is not None and store.get(f"bytes:{session.id}") >= budgets.bytes:
            return Decision.deny("budget:bytes", "the session's byte budget is spent")
        for lim in self.policy.limits:
            if not lim.applies(call):
                continue
            scope = {"session": session.id, "principal": call.principal, "global": "*"}[lim.per]
            if not store.hit(f"limit:{lim.id}:{scope}", lim.window, lim.calls):
                return Decision.deny(
                    f"limit:{lim.id}",
                    f"rate limit `{lim.id}`: {lim.calls} calls per {lim.window:g}s",
                )
        if budgets.calls is not None and store.add(f"calls:{session.id}", 1) > budgets.calls:
            return Decision.deny("budget:calls", "the session's call budget is spent")
        return None

    def _approve(self, c: _Checked) -> _Checked:
        if self.approver is None:
            c.decision = self._model_decision(c, c.decision)
            seq = self._audit_decision(c)
            raise ApprovalRequired(
                f"`{c.call.tool}.{c.call.action}` needs approval ({c.decision.rule}) "
                "and the guard has no approver",
                decision=c.decision,
                call_id=c.call.call_id,
                audit_seq=seq,
            )
        request = ApprovalRequest(c.call, c.decision, c.masked_args, c.provenance)
        try:
            answer: Approval = self.approver.approve(request)
            if not isinstance(answer, Approval) or type(answer.approved) is not bool:
                # only a real yes approves; anything else is a broken approver
                raise ConfigurationError(
                    f"the approver returned `{type(answer).__name__}`; it must return an Approval"
                )
        except Exception as exc:
            self._fail(c, _StageFailure("approval", exc))
        self._append(
            self._event(
                c,
                "approval",
                extra={
                    "approved": answer.approved,
                    "approver": answer.approver,
                    "approval_reason": answer.reason,
                    "scope": answer.scope,
                },
            ),
            required=False,
        )
        if answer.approved:
            c.decision = Decision(
                Effect.ALLOW, c.decision.rule, f"approved by {answer.approver}: {c.decision.reason}"
            )
        else:
            c.decision = Decision(
                Effect.DENY, c.decision.rule, f"refused by {answer.approver}: {c.decision.reason}"
            )
            self._deny(c)
        return c

    def _admit(self, c: _Checked) -> None:
        """Record the decision before the tool runs; a store that cannot take it stops the call."""
        if c.capability is None:
            c.decision = Decision.deny("no-such-tool", f"no tool `{c.call.tool}` is registered")
            self._deny(c)
        c.audit_seq = self._audit_decision(c)

    def _audit_decision(self, c: _Checked) -> int | None:
        try:
            return self._append(self._event(c, "decision"), required=True)
        except AuditError as exc:
            c.decision = Decision.deny(
                "error:audit", "the audit store could not record the decision"
            )
            raise Denied(
                "denied: the audit store could not record the decision",
                decision=c.decision,
                call_id=c.call.call_id,
            ) from exc

    def _execute(self, c: _Checked) -> Output:
        assert c.capability is not None
        try:
            return c.capability.execute(c.call, Context(c.session))
        except Exception as exc:
            raise self._tool_failed(c, exc) from exc

    async def _aexecute(self, c: _Checked) -> Output:
        assert c.capability is not None
        try:
            return await c.capability.aexecute(c.call, Context(c.session))
        except Exception as exc:
            raise self._tool_failed(c, exc) from exc

    def _model_text(self, c: _Checked, text: str) -> str:
        """``text`` about this call masked the way a result would be.

        Refusal and error messages reach the model too; after the argument
        scanner restored pseudonyms, a message that quotes an argument would
        otherwise hand back the real value behind ``<EMAIL_1>``.
        """
        if isinstance(self._result_scanner, NoScanner):
            return text
        if any(f.scanner == "vault" and f.kind == "pseudonym-restored" for f in c.findings):
            # A message built from restored values can quote a piece of one that
            # no detector recognises any more (a cut card number, half an
            # address): after a restore, the model gets no free text at all.
            return "details withheld: the call carried pseudonymised values"
        try:
            masked = self._result_scanner.scan_result(c.call, Output(text), c.session).value
        except Exception:
            return "details withheld (the result scanner failed on them)"
        return masked if isinstance(masked, str) else "details withheld"

    def _model_decision(self, c: _Checked, d: Decision) -> Decision:
        reason = self._model_text(c, d.reason)
        return d if reason == d.reason else Decision(d.effect, d.rule, reason, d.shadow)

    def _tool_failed(self, c: _Checked, exc: Exception) -> StockadeError:
        err: StockadeError
        if isinstance(exc, StockadeError):
            err = exc
            if err.args and isinstance(err.args[0], str):
                err.args = (self._model_text(c, err.args[0]), *err.args[1:])
        else:
            err = ToolError(f"tool `{c.call.tool}` failed: {type(exc).__name__}")
        event = self._event(c, "outcome", error_type=type(exc).__name__)
        try:
            self._append(event, required=True)
        except AuditError:
            log.error("audit store could not record the failure of call %s", c.call.call_id)
        return err

    def _finish(self, c: _Checked, output: Output) -> Result:
        try:
            scan: ResultScan = self._stage(
                "scan_result", self._result_scanner.scan_result, c.call, output, c.session
            )
            decision = _combine(c.decision, scan.decision)
            if decision.effect is not Effect.ALLOW:
                c.decision = decision
                self._deny(c, kind="outcome", findings=scan.findings)
            # Provenance indexes what the tool returned, not the masked view: the
            # argument scanner restores pseudonyms before the flow check, so the
            # flow stage compares real values with real values.
            self._stage("observe", self.flow.observe, c.call, output.value, scan.labels, c.session)
            digest, size = _digest(scan.value)
            if self.policy.budgets.bytes is not None:
                self._stage("limits", self.sessions.add, f"bytes:{c.session.id}", size)
        except _StageFailure as failure:
            self._fail(c, failure, kind="outcome")
        findings = c.findings + scan.findings
        event = self._event(
            c,
            "outcome",
            labels=scan.labels,
            findings=findings,
            digest=digest,
            size=size,
            extra=dict(output.meta),
        )
        try:
            seq = self._append(event, required=True)
        except AuditError as exc:
            c.decision = Decision.deny(
                "error:audit", "the audit store could not record the outcome"
            )
            raise Denied(
                "result withheld: the audit store could not record the outcome",
                decision=c.decision,
                call_id=c.call.call_id,
            ) from exc
        return Result(
            value=scan.value,
            call=c.call,
            decision=c.decision,
            labels=scan.labels,
            findings=findings,
            audit_seq=seq,
            meta=output.meta,
        )

    # -- denial and audit -------------------------------------------------------

    def _fail(self, c: _Checked, failure: _StageFailure, kind: str = "decision") -> NoReturn:
        error = failure.error
        what = type(error).__name__
        if isinstance(error, ConfigurationError) and error.args:
            # Set-up mistakes (a superuser database account, a missing key
            # file) carry the operator's fix in their own words and no data
            # from the call; anything else is named by its type only.
            what = f"{what}: {error.args[0]}"
        c.decision = Decision.deny(
            f"error:{failure.stage}", f"the {failure.stage} stage failed ({what})"
        )
        log.warning("stage %s failed for call %s: %s", failure.stage, c.call.call_id, what)
        self._deny(c, kind=kind, error_type=type(error).__name__, cause=error)

    def _deny(
        self,
        c: _Checked,
        *,
        kind: str = "decision",
        error_type: str = "",
        findings: tuple[Finding, ...] = (),
        cause: BaseException | None = None,
    ) -> NoReturn:
        seq: int | None = None
        c.decision = self._model_decision(c, c.decision)
        try:
            seq = self._append(
                self._event(c, kind, error_type=error_type, findings=c.findings + findings),
                required=True,
            )
        except AuditError:
            log.error("audit store could not record the denial of call %s", c.call.call_id)
        d = c.decision
        cls = RateLimited if d.rule.startswith(("limit:", "budget:")) else Denied
        err = cls(
            f"denied `{c.call.tool}.{c.call.action}` by {d.rule}: {d.reason}",
            decision=d,
            call_id=c.call.call_id,
            audit_seq=seq,
        )
        if cause is not None:
            raise err from cause
        raise err

    def _event(
        self,
        c: _Checked,
        kind: str,
        *,
        error_type: str = "",
        labels: tuple[Label, ...] = (),
        findings: tuple[Finding, ...] | None = None,
        digest: str = "",
        size: int = 0,
        extra: dict[str, Any] | None = None,
    ) -> AuditEvent:
        # ``extra`` is the event's own dict (callers pass a fresh one or none)
        extra = {} if extra is None else extra
        if c.provenance:
            extra.setdefault("provenance", c.provenance)
        if c.restored:
            # The record keeps the pseudonym view of the arguments; what the
            # tool echoes of them (fs's canonical path in its meta and labels)
            # holds the real values, so they go back to their pseudonyms here.
            extra = _pseudonymised(extra, c.restored)
            labels = tuple(
                Label(_pseudonymised(lb.source, c.restored), lb.integrity, lb.confidentiality)
                for lb in labels
            )
        return AuditEvent(
            kind=kind,
            time=time.time(),
            session=c.session.id,
            principal=c.call.principal,
            call_id=c.call.call_id,
            tool=c.call.tool,
            action=c.call.action,
            args=c.masked_args,
            decision=c.decision,
            mode=self.policy.mode,
            labels=labels,
            findings=c.findings if findings is None else findings,
            result_digest=digest,
            result_size=size,
            duration_ms=(time.perf_counter() - c.started) * 1000.0,
            error_type=error_type,
            extra=extra,
            raw_args=c.call.args,
        )

    def _append(self, event: AuditEvent, *, required: bool) -> int | None:
        try:
            return self.audit.append(event)
        except Exception as exc:
            if required and self.audit_required:
                if isinstance(exc, AuditError):
                    raise
                raise AuditError(f"audit store failed: {type(exc).__name__}") from exc
            log.error(
                "audit store failed (%s); continuing because audit is not required",
                type(exc).__name__,
            )
            return None

    def _user_said(self, session: Session, text: str) -> None:
        self.flow.user_said(session, text)


_NONE_DIGEST = hashlib.sha256(b"null").hexdigest()
_PENDING = Decision(Effect.DENY, "error:pending", "the checks did not finish")


def _combine(base: Decision, other: Decision | None) -> Decision:
    """The more restrictive of two decisions; shadow notes are kept."""
    if other is None:
        return base
    if stronger(other.effect, base.effect):
        return (
            other
            if other.shadow or not base.shadow
            else Decision(other.effect, other.rule, other.reason, base.shadow)
        )
    if other.shadow is not None and base.shadow is None:
        return Decision(base.effect, base.rule, base.reason, other.shadow)
    return base


def _pseudonymised(value: Any, restored: tuple[tuple[str, str], ...]) -> Any:
    """``value`` with every restored real value replaced by its pseudonym
    (longest first, so a value inside another does not split it)."""
    if isinstance(value, str):
        for real, token in sorted(restored, key=lambda p: -len(p[0])):
            if real:
                value = value.replace(real, token)
        return value
    if isinstance(value, Mapping):
        return {_pseudonymised(k, restored): _pseudonymised(v, restored) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_pseudonymised(v, restored) for v in value)
    return value


def _digest(value: Any) -> tuple[str, int]:
    if value is None:
        return _NONE_DIGEST, 0
    if isinstance(value, bytes):
        data = value
    elif isinstance(value, str):
        data = value.encode("utf-8", "surrogatepass")
    else:
        try:
            text = json.dumps(value, sort_keys=True, default=str, ensure_ascii=False)
        except (TypeError, ValueError):  # keys of mixed types, circular values
            text = repr(value)
        data = text.encode("utf-8", "surrogatepass")
    return hashlib.sha256(data).hexdigest(), len(data)


def _session_store(policy: Policy) -> SessionStore:
    store = policy.sessions.store
    if store == "memory":
        return MemorySessionStore()
    return RedisSessionStore(store, prefix=policy.sessions.prefix)


class GuardedTool:
    """A function turned into a guarded tool by ``@guard.tool``.

    Calling it runs the pipeline and returns the scanned value; :meth:`invoke`
    returns the whole :class:`Result`. The wrapped function itself is not
    reachable from here.
    """

    def __init__(self, guard: Guard, capability: FunctionCapability) -> None:
        self._guard = guard
        self._cap = capability
        self.name = capability.name
        self.action = capability.action
        self.__doc__ = capability.describe().get("description") or None
        self.is_async = capability.is_async

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        bound = self._cap.bind(*args, **kwargs)
        if self.is_async:
            return self._acall(bound)
        return self._guard.call(self.name, self.action, bound).value

    async def _acall(self, bound: Mapping[str, Any]) -> Any:
        return (await self._guard.acall(self.name, self.action, bound)).value

    def invoke(self, args: Mapping[str, Any], *, session: Session | str | None = None) -> Result:
        """Run the tool with policy-named arguments; return the whole result."""
        return self._guard.call(self.name, self.action, args, session=session)

    async def ainvoke(
        self, args: Mapping[str, Any], *, session: Session | str | None = None
    ) -> Result:
        """Async :meth:`invoke`."""
        return await self._guard.acall(self.name, self.action, args, session=session)

    @property
    def signature(self) -> inspect.Signature:
        """The wrapped function's signature (for schemas in integrations)."""
        return self._cap.signature

    def __repr__(self) -> str:
        return f"GuardedTool({self.name!r}, action={self.action!r})"
