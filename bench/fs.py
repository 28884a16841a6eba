"""Benchmark: the guarded fs tool against plain Python file I/O, in the same run.

    .venv/bin/python bench/fs.py           # figures for people
    .venv/bin/python bench/fs.py --json    # one JSON object

Each figure is the median over several runs of the mean time per call. The
guard uses the in-memory audit sink, no scanners and no flow rules, so the
overhead shown is the fs tool and the pipeline, excluding the audit store.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from stockade import Guard, Policy
from stockade.model import ToolCall
from stockade.stages import MemoryAuditSink, NoFlow, NoScanner
from stockade.tools.base import Context
from stockade.tools.fs import FSTool

PAYLOAD = os.urandom(2048).hex().encode()  # 4 KB of text


def per_call_us(fn: Callable[[], Any], calls: int, runs: int) -> float:
    """Median over ``runs`` of the mean microseconds per call."""
    for _ in range(min(200, calls)):
        fn()
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        samples.append((time.perf_counter() - start) / calls * 1e6)
    return statistics.median(samples)


def policy(root: Path, state: Path | None) -> Policy:
    journal = f"  journal: {{path: '{state}', blob_budget: 4GiB}}\n" if state else ""
    return Policy.from_text(
        "version: 1\nrules:\n  - {id: noop, tool: noop, effect: allow}\n"
        f"fs:\n  root: '{root}'\n"
        "  allow: {read: ['**'], list: ['**'], write: ['**']}\n"
        "  limits: {session_read_bytes: null, session_write_bytes: null, "
        "session_changes: null}\n" + journal
    )


def guard_for(p: Policy) -> Guard:
    return Guard(p, audit=MemoryAuditSink(), scanner=NoScanner(), flow=NoFlow())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--calls", type=int, default=2000, help="calls per run")
    parser.add_argument("--runs", type=int, default=7, help="runs per figure")
    args = parser.parse_args()
    calls, runs = args.calls, args.runs

    base = Path(tempfile.mkdtemp(prefix="stockade-bench-fs-"))
    try:
        root = base / "root"
        (root / "docs").mkdir(parents=True)
        (root / "docs" / "file.txt").write_bytes(PAYLOAD)
        (root / "many").mkdir()
        for i in range(20):
            (root / "many" / f"f{i:02}.txt").write_bytes(b"x")
        plain_file = root / "docs" / "file.txt"
        out: dict[str, Any] = {"file_bytes": len(PAYLOAD), "calls": calls, "runs": runs}

        guard = guard_for(policy(root, None))
        tool = guard.capability("fs")
        assert isinstance(tool, FSTool)
        session = guard.session("bench")
        ctx = Context(session)

        def plain_read() -> bytes:
            with open(plain_file, "rb") as fh:
                return fh.read()

        @guard.tool("noop")
        def noop() -> bytes:
            return PAYLOAD

        pipeline = per_call_us(lambda: guard.call("noop", "call", {}, session=session), calls, runs)
        out["pipeline_noop_us"] = round(pipeline, 2)
        read_call = ToolCall("fs", "read", {"path": "docs/file.txt"}, session="bench")
        plain = per_call_us(plain_read, calls, runs)
        guarded = per_call_us(
            lambda: guard.call("fs", "read", {"path": "docs/file.txt"}, session=session),
            calls,
            runs,
        )
        engine = per_call_us(lambda: tool.execute(read_call, ctx), calls, runs)
        out.update(
            read_plain_us=round(plain, 2),
            read_guarded_us=round(guarded, 2),
            read_engine_us=round(engine, 2),
            read_overhead_us=round(guarded - plain, 2),
            read_overhead_beyond_pipeline_us=round(guarded - pipeline - plain, 2),
            read_ratio_vs_plain=round(guarded / plain, 2),
        )

        def plain_write() -> None:
            with open(root / "docs" / "plain-out.txt", "wb") as fh:
                fh.write(PAYLOAD)

        text = PAYLOAD.decode()
        wplain = per_call_us(plain_write, calls // 2, runs)
        wguard = per_call_us(
            lambda: guard.call(
                "fs", "write", {"path": "docs/out.txt", "content": text}, session=session
            ),
            calls // 2,
            runs,
        )
        out.update(
            write_plain_us=round(wplain, 2),
            write_guarded_us=round(wguard, 2),
            write_overhead_us=round(wguard - wplain, 2),
            write_ratio_vs_plain=round(wguard / wplain, 2),
        )

        jguard = guard_for(policy(root, base / "journal"))
        jcalls = max(50, calls // 4)
        counter = iter(range(10**9))
        wjournal = per_call_us(
            lambda: jguard.call(
                "fs",
                "write",
                {"path": "docs/journaled.txt", "content": f"{next(counter)}{text}"},
                session=session.id,
            ),
            jcalls,
            runs,
        )
        out.update(
            write_journaled_us=round(wjournal, 2),
            write_journaled_overhead_us=round(wjournal - wplain, 2),
        )
        jguard.close()
        out["journal_durable"] = False

        lplain = per_call_us(lambda: sorted(os.listdir(root / "many")), calls, runs)
        lguard = per_call_us(
            lambda: guard.call("fs", "list", {"path": "many"}, session=session), calls // 2, runs
        )
        out.update(
            list_plain_us=round(lplain, 2),
            list_guarded_us=round(lguard, 2),
            list_overhead_us=round(lguard - lplain, 2),
            list_ratio_vs_plain=round(lguard / lplain, 2),
            list_entries=20,
        )
        guard.close()
    finally:
        shutil.rmtree(base, ignore_errors=True)

    if args.json:
        print(json.dumps(out, sort_keys=True))
        return 0
    print(f"fs benchmark: {len(PAYLOAD)}-byte file, {runs} runs of {calls} calls, median")
    print(
        f"  read   plain {out['read_plain_us']:8.2f} us   guarded {out['read_guarded_us']:8.2f} us"
        f"   overhead {out['read_overhead_us']:7.2f} us   x{out['read_ratio_vs_plain']}"
    )
    print(
        f"         engine alone (no pipeline) {out['read_engine_us']:.2f} us; "
        f"the pipeline around a no-op tool {out['pipeline_noop_us']:.2f} us; "
        f"fs beyond the pipeline {out['read_overhead_beyond_pipeline_us']:.2f} us"
    )
    print(
        f"  write  plain {out['write_plain_us']:8.2f} us   guarded {out['write_guarded_us']:8.2f} us"
        f"   overhead {out['write_overhead_us']:7.2f} us   x{out['write_ratio_vs_plain']}"
        "   (atomic: temp file + rename)"
    )
    print(f"         with the journal (SQLite + blob) {out['write_journaled_us']:.2f} us")
    print(
        f"  list   plain {out['list_plain_us']:8.2f} us   guarded {out['list_guarded_us']:8.2f} us"
        f"   overhead {out['list_overhead_us']:7.2f} us   x{out['list_ratio_vs_plain']}"
        f"   ({out['list_entries']} entries)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
