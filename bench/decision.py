"""Decision latency: policies of 10, 100 and 1000 rules; cedarpy on the same 20 rules; a guarded no-op.

    python bench/decision.py          # figures
    python bench/decision.py --json   # one JSON object

Every figure is the median over ``--rounds`` rounds of per-call latencies
(p50 and p99 within a round). The Cedar policy is decided by cedarpy with a
pre-parsed PolicySet and Entities (its fastest use) in the same run, so the
ratio holds on a noisy machine.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

from stockade import Guard, MemoryAuditSink, Policy, ToolCall

TOOLS = ("fs", "http", "mail", "db", "calendar", "tickets", "wiki", "crm", "payments", "shell")


def make_rules(n: int) -> list[str]:
    """``n`` rules spread over tools, with the usual constraint kinds."""
    rules = []
    for i in range(n):
        tool = f"{TOOLS[i % len(TOOLS)]}{i // (len(TOOLS) * 10) or ''}"
        kind = i % 5
        rid = f"r{i}"
        if kind == 0:
            rules.append(
                f"  - {{id: {rid}, tool: {tool}, action: read, effect: allow, "
                f"when: {{path: {{glob: 'dir{i}/**'}}}}}}"
            )
        elif kind == 1:
            rules.append(
                f"  - {{id: {rid}, tool: {tool}, action: get, effect: allow, "
                f"when: {{host: {{host: ['api{i}.example.com', '*.cdn{i}.example.net']}}}}}}"
            )
        elif kind == 2:
            rules.append(
                f"  - {{id: {rid}, tool: {tool}, action: send, effect: allow, "
                f"when: {{to: {{regex: '[a-z.]+@team{i}\\\\.example\\\\.com'}}}}}}"
            )
        elif kind == 3:
            rules.append(
                f"  - {{id: {rid}, tool: {tool}, action: pay, effect: ask, "
                f"when: {{amount: {{min: {i}, max: {i + 1000}}}, "
                f"currency: {{one_of: [EUR, USD]}}}}}}"
            )
        else:
            rules.append(
                f"  - {{id: {rid}, tool: {tool}, action: delete, effect: deny, "
                f"when: {{path: {{glob: ['**/.env*', 'secret{i}/**']}}}}}}"
            )
    return rules


def make_policy(n: int) -> Policy:
    return Policy.from_text("version: 1\nrules:\n" + "\n".join(make_rules(n)) + "\n")


def make_calls(n: int, count: int, seed: int = 7) -> list[ToolCall]:
    rnd = random.Random(seed)
    calls = []
    for _ in range(count):
        i = rnd.randrange(n)
        tool = f"{TOOLS[i % len(TOOLS)]}{i // (len(TOOLS) * 10) or ''}"
        kind = i % 5
        hit = rnd.random() < 0.7
        if kind == 0:
            args: dict[str, Any] = {"path": f"dir{i}/a/b.md" if hit else "etc/passwd"}
            action = "read"
        elif kind == 1:
            args = {"host": f"x.cdn{i}.example.net" if hit else "169.254.169.254"}
            action = "get"
        elif kind == 2:
            args = {"to": f"bob@team{i}.example.com" if hit else "eve@evil.example"}
            action = "send"
        elif kind == 3:
            args = {"amount": i + 5, "currency": "EUR" if hit else "BTC"}
            action = "pay"
        else:
            args = {"path": "x/.env" if hit else "notes/a.md"}
            action = "delete"
        calls.append(ToolCall(tool, action, args, session="bench"))
    return calls


def latencies(fn: Callable[[Any], Any], items: list[Any]) -> list[float]:
    """Per-item latency in microseconds."""
    out = []
    clock = time.perf_counter_ns
    for item in items:
        t0 = clock()
        fn(item)
        out.append((clock() - t0) / 1000.0)
    return out


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def rounds(fn: Callable[[], list[float]], n: int) -> tuple[float, float]:
    """Median over rounds of (p50, p99)."""
    p50s, p99s = [], []
    for _ in range(n):
        lat = fn()
        p50s.append(pct(lat, 0.50))
        p99s.append(pct(lat, 0.99))
    return statistics.median(p50s), statistics.median(p99s)


CEDAR_20 = """
permit(principal, action == Action::"fs.read", resource) when { context.path like "notes/*" };
permit(principal, action == Action::"fs.list", resource) when { context.path like "notes/*" };
permit(principal, action == Action::"fs.write", resource) when { context.path like "drafts/*" };
permit(principal, action == Action::"fs.delete", resource) when { context.path like "tmp/*" };
forbid(principal, action, resource) when { context has path && context.path like "*.env*" };
forbid(principal, action, resource) when { context has path && context.path like "*.pem" };
permit(principal, action == Action::"http.get", resource) when { context.host == "api.example.com" };
permit(principal, action == Action::"http.get", resource) when { context.host like "*.cdn.example.net" };
permit(principal, action == Action::"http.post", resource) when { context.host == "hooks.example.com" };
forbid(principal, action, resource) when { context has host && context.host == "169.254.169.254" };
permit(principal, action == Action::"mail.send", resource) when { context.to like "*@example.com" };
permit(principal, action == Action::"mail.draft", resource);
permit(principal, action == Action::"payments.pay", resource) when { context.amount <= 100 && context.currency == "EUR" };
permit(principal, action == Action::"payments.refund", resource) when { context.amount <= 50 };
permit(principal, action == Action::"calendar.read", resource);
permit(principal, action == Action::"calendar.create", resource) when { context.duration <= 120 };
permit(principal, action == Action::"tickets.comment", resource);
forbid(principal, action == Action::"tickets.delete", resource);
permit(principal, action == Action::"wiki.read", resource);
permit(principal, action == Action::"db.query", resource) when { context.table == "orders" };
"""

STOCKADE_20 = """
version: 1
rules:
  - {id: r1, tool: fs, action: read, effect: allow, when: {path: {glob: "notes/**"}}}
  - {id: r2, tool: fs, action: list, effect: allow, when: {path: {glob: "notes/**"}}}
  - {id: r3, tool: fs, action: write, effect: allow, when: {path: {glob: "drafts/**"}}}
  - {id: r4, tool: fs, action: delete, effect: allow, when: {path: {glob: "tmp/**"}}}
  - {id: r5, tool: "*", effect: deny, when: {path: {glob: "**/*.env*"}}}
  - {id: r6, tool: "*", effect: deny, when: {path: {glob: "**/*.pem"}}}
  - {id: r7, tool: http, action: get, effect: allow, when: {host: {host: api.example.com}}}
  - {id: r8, tool: http, action: get, effect: allow, when: {host: {host: "*.cdn.example.net"}}}
  - {id: r9, tool: http, action: post, effect: allow, when: {host: {host: hooks.example.com}}}
  - {id: r10, tool: http, effect: deny, when: {host: {equals: "169.254.169.254"}}}
  - {id: r11, tool: mail, action: send, effect: allow, when: {to: {regex: ".*@example\\\\.com"}}}
  - {id: r12, tool: mail, action: draft, effect: allow}
  - {id: r13, tool: payments, action: pay, effect: allow, when: {amount: {max: 100}, currency: {equals: EUR}}}
  - {id: r14, tool: payments, action: refund, effect: allow, when: {amount: {max: 50}}}
  - {id: r15, tool: calendar, action: read, effect: allow}
  - {id: r16, tool: calendar, action: create, effect: allow, when: {duration: {max: 120}}}
  - {id: r17, tool: tickets, action: comment, effect: allow}
  - {id: r18, tool: tickets, action: delete, effect: deny}
  - {id: r19, tool: wiki, action: read, effect: allow}
  - {id: r20, tool: db, action: query, effect: allow, when: {table: {equals: orders}}}
"""

CALLS_20: list[tuple[str, str, dict[str, Any]]] = [
    ("fs", "read", {"path": "notes/a.md"}),
    ("fs", "read", {"path": "notes/.env"}),
    ("fs", "delete", {"path": "tmp/x"}),
    ("http", "get", {"host": "api.example.com"}),
    ("http", "get", {"host": "169.254.169.254"}),
    ("http", "post", {"host": "evil.example"}),
    ("mail", "send", {"to": "bob@example.com"}),
    ("mail", "send", {"to": "eve@evil.example"}),
    ("payments", "pay", {"amount": 50, "currency": "EUR"}),
    ("payments", "pay", {"amount": 500, "currency": "EUR"}),
    ("calendar", "create", {"duration": 30}),
    ("tickets", "delete", {}),
    ("db", "query", {"table": "orders"}),
    ("db", "query", {"table": "users"}),
]


def bench_cedar(n_calls: int, n_rounds: int) -> tuple[float | None, list[tuple[str, str]]]:
    try:
        import cedarpy
    except ImportError:
        return None, []
    policies = cedarpy.PolicySet.from_str(CEDAR_20)
    entities = cedarpy.Entities.from_json_str("[]")
    requests = [
        {
            "principal": 'Agent::"bot"',
            "action": f'Action::"{t}.{a}"',
            "resource": f'Tool::"{t}"',
            "context": args,
        }
        for t, a, args in CALLS_20
    ]
    items = [requests[i % len(requests)] for i in range(n_calls)]
    p50, _ = rounds(
        lambda: latencies(lambda r: cedarpy.is_authorized(r, policies, entities), items), n_rounds
    )
    answers = [
        (f"{t}.{a}", cedarpy.is_authorized(r, policies, entities).decision.value.lower())
        for (t, a, _), r in zip(CALLS_20, requests, strict=True)
    ]
    return p50, answers


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--calls", type=int, default=20000, help="decisions per round")
    ap.add_argument("--rounds", type=int, default=5, help="rounds (the median is reported)")
    args = ap.parse_args(argv)

    out: dict[str, Any] = {}
    for n in (10, 100, 1000):
        policy = make_policy(n)
        calls = make_calls(n, args.calls)
        p50, p99 = rounds(lambda: latencies(policy.decide, calls), args.rounds)
        out[f"decision_p50_us_{n}"] = round(p50, 2)
        out[f"decision_p99_us_{n}"] = round(p99, 2)

    ours = Policy.from_text(STOCKADE_20)
    our_calls = [ToolCall(t, a, args_, session="b") for t, a, args_ in CALLS_20]
    items = [our_calls[i % len(our_calls)] for i in range(args.calls)]
    ours_p50, _ = rounds(lambda: latencies(ours.decide, items), args.rounds)
    cedar_p50, cedar_answers = bench_cedar(args.calls // 4, args.rounds)
    out["stockade_p50_us_20"] = round(ours_p50, 2)
    out["cedarpy_p50_us"] = round(cedar_p50, 2) if cedar_p50 is not None else None
    out["speedup_vs_cedarpy"] = round(cedar_p50 / ours_p50, 1) if cedar_p50 else None
    if cedar_answers:
        ours_answers = [(f"{c.tool}.{c.action}", ours.decide(c).effect.value) for c in our_calls]
        out["cedar_agrees"] = ours_answers == cedar_answers

    guard = Guard.from_text(
        "version: 1\nrules: [{id: noop, tool: noop, effect: allow}]", audit=MemoryAuditSink()
    )

    @guard.tool("noop")
    def noop() -> None:
        return None

    def one(_: object) -> None:
        guard.call("noop", "call", None, session="bench")
        if len(guard.audit.events) > 50000:  # type: ignore[attr-defined]
            guard.audit.events.clear()  # type: ignore[attr-defined]

    noop_p50, noop_p99 = rounds(lambda: latencies(one, list(range(args.calls // 4))), args.rounds)
    out["noop_call_p50_us"] = round(noop_p50, 2)
    out["noop_call_p99_us"] = round(noop_p99, 2)

    if args.json:
        print(json.dumps(out, sort_keys=True))
    else:
        print(f"decision latency (median of {args.rounds} rounds of {args.calls} decisions)")
        for n in (10, 100, 1000):
            print(
                f"  {n:>5} rules: p50 {out[f'decision_p50_us_{n}']:8.2f} us   "
                f"p99 {out[f'decision_p99_us_{n}']:8.2f} us"
            )
        print(
            f"20-rule policy: stockade p50 {out['stockade_p50_us_20']:.2f} us, "
            f"cedarpy p50 {out['cedarpy_p50_us']} us, "
            f"speedup {out['speedup_vs_cedarpy']}x (same answers: {out.get('cedar_agrees')})"
        )
        print(
            f"guarded no-op call, in-memory sinks: p50 {out['noop_call_p50_us']:.2f} us, "
            f"p99 {out['noop_call_p99_us']:.2f} us"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
