"""``stockade approvals list|approve|deny``: answer the approval queue from a shell.

The queue is ``--queue URL``, else ``$STOCKADE_APPROVALS_QUEUE``, else the
``approvals.queue`` of ``--policy FILE``. The approver's name is ``--as
NAME``, else the login name; it goes into the queue and the audit log.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
import time
from typing import Any

from stockade.approvals.queue import ApprovalQueue, QueuedRequest
from stockade.approvals.render import render_request
from stockade.errors import ApprovalError, ConfigurationError

__all__ = ["register"]

_ENV = "STOCKADE_APPROVALS_QUEUE"


def register(subparsers: Any) -> None:
    """Add ``approvals`` and its subcommands to the ``stockade`` command."""
    parser = subparsers.add_parser(
        "approvals",
        help="list, approve and refuse calls waiting in the approval queue",
        description=(
            "Answer the durable approval queue that guarded agents wait on "
            "(`approvals: {approver: queue, queue: ...}` in their policy). "
            f"The queue is --queue URL, else ${_ENV}, else the approvals.queue of --policy FILE."
        ),
    )
    sub = parser.add_subparsers(dest="approvals_command", metavar="SUBCOMMAND")

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--queue", metavar="URL", help="sqlite:///PATH or postgresql://...")
        p.add_argument("--policy", metavar="FILE", help="take the queue from this policy")
        p.add_argument(
            "--table", default=None, metavar="NAME", help="queue table (default from the policy)"
        )

    lst = sub.add_parser(
        "list",
        help="show requests waiting for an answer",
        description="Show pending requests: the call, why it was asked and where each "
        "argument value came from (! marks untrusted or confidential stretches).",
    )
    common(lst)
    lst.add_argument("--all", action="store_true", help="also show answered and expired ones")
    lst.add_argument("--json", action="store_true", help="print JSON")
    lst.set_defaults(func=_list)

    for name, approved in (("approve", True), ("deny", False)):
        p = sub.add_parser(
            name,
            help=f"{'approve' if approved else 'refuse'} a waiting request",
            description=(
                f"{'Approve' if approved else 'Refuse'} the request ID (from `approvals list`). "
                "Fails when it is unknown, already answered or expired."
            ),
        )
        common(p)
        p.add_argument("id", metavar="ID", help="request id")
        p.add_argument(
            "--as", dest="approver", metavar="NAME", help="your name (default: login name)"
        )
        p.add_argument("--reason", default="", help="why (kept in the queue and audit log)")
        if approved:
            p.add_argument(
                "--scope",
                choices=("call", "session"),
                default="call",
                help="call: this request only; session: also the same tool with the same "
                "arguments in the same session (default call)",
            )
        p.set_defaults(func=_answer, approved=approved)
    parser.set_defaults(func=lambda a: _help(parser))


def _help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def _queue(args: argparse.Namespace) -> ApprovalQueue:
    url = args.queue or os.environ.get(_ENV)
    table = args.table
    base_dir = None
    if not url and args.policy:
        from stockade.approvals import ApprovalsConfig
        from stockade.policy import Policy

        config = Policy.from_file(args.policy).section("approvals")
        if isinstance(config, ApprovalsConfig) and config.queue:
            url = config.queue
            table = table or config.table
            base_dir = config.base_dir
    if not url:
        raise ConfigurationError(f"no approval queue: give --queue URL, ${_ENV} or --policy FILE")
    return ApprovalQueue(url, table=table or "stockade_approvals", base_dir=base_dir)


def _list(args: argparse.Namespace) -> int:
    with _queue(args) as queue:
        rows = queue.recent() if args.all else queue.pending()
    if args.json:
        print(json.dumps([r.as_dict() for r in rows], indent=2, default=str))
        return 0
    if not rows:
        print("no requests waiting" if not args.all else "no requests")
        return 0
    for row in rows:
        print(_summary(row))
        print(render_request(row.call(), row.rule, row.reason, row.args, row.provenance))
        print()
    return 0


def _summary(row: QueuedRequest) -> str:
    now = time.time()
    if row.status == "pending":
        state = f"pending, expires in {max(0, int(row.expires - now))}s"
    else:
        state = row.status + (f" by {row.approver}" if row.approver else "")
        if row.scope == "session" and row.status == "approved":
            state += " for the session"
    return f"[{row.id}] {row.tool}.{row.action} ({state})"


def _answer(args: argparse.Namespace) -> int:
    approver = args.approver or _login()
    with _queue(args) as queue:
        try:
            row = queue.answer(
                args.id,
                approved=args.approved,
                approver=approver,
                reason=args.reason,
                scope=getattr(args, "scope", "call"),
            )
        except ApprovalError as exc:
            print(f"stockade: {exc}", file=sys.stderr)
            return 1
    verb = "approved" if args.approved else "refused"
    extra = " for the session" if row.scope == "session" and args.approved else ""
    print(f"{verb} [{row.id}] {row.tool}.{row.action}{extra} as {approver}")
    return 0


def _login() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        print("stockade: cannot tell your login name; give --as NAME", file=sys.stderr)
        raise ConfigurationError("no approver name: give --as NAME") from None
