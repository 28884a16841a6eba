"""Benchmark: the guarded fs tool against plain Python file I/O, in the same run.

    .venv/bin/python bench/fs.py           # figures for people
    .venv/bin/python bench/fs.py --json    # one JSON object

Each figure is the median over several runs of the mean time per call; the
functions compared take turns within each run, and overheads and ratios are
the medians of the per-run differences and ratios. The
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
from stockade.model import AuditEvent, ToolCall
from stockade.stages import NoFlow, NoScanner
from stockade.tools.base import Context
from stockade.tools.fs import FSTool

PAYLOAD = os.urandom(2048).hex().encode()  # 4 KB of text


def interleaved(fns: dict[str, Callable[[], Any]], calls: int, runs: int) -> dict[str, list[float]]:
    """Mean microseconds per call of each function, ``runs`` times, the functions
    taking turns within each run (so a busy moment hits all of them alike)."""
    for fn in fns.values():
        for _ in range(min(100, calls)):
            fn()
    names = list(fns)
    samples: dict[str, list[float]] = {n: [] for n in names}
    samples.update({n + ":cpu": [] for n in names})
    for r in range(runs):
        k = r % len(names)
        for name in names[k:] + names[:k]:
            fn = fns[name]
            start, cpu = time.perf_counter(), time.thread_time()
            for _ in range(calls):
                fn()
            samples[name + ":cpu"].append((time.thread_time() - cpu) / calls * 1e6)
            samples[name].append((time.perf_counter() - start) / calls * 1e6)
    return samples


def summary(samples: dict[str, list[float]], guarded: str, plain: str) -> dict[str, float]:
    """Medians, and the median of the per-run differences and ratios."""
    g, p = samples[guarded], samples[plain]
    return {
        "guarded": round(statistics.median(g), 2),
        "plain": round(statistics.median(p), 2),
        "overhead": round(statistics.median(a - b for a, b in zip(g, p, strict=True)), 2),
        "ratio": round(statistics.median(a / b for a, b in zip(g, p, strict=True)), 2),
    }


def policy(root: Path, state: Path | None) -> Policy:
    journal = f"  journal: {{path: '{state}', blob_budget: 4GiB}}\n" if state else ""
    return Policy.from_text(
        "version: 1\nrules:\n  - {id: noop, tool: noop, effect: allow}\n"
        f"fs:\n  root: '{root}'\n"
        "  allow: {read: ['**'], list: ['**'], write: ['**']}\n"
        "  limits: {session_read_bytes: null, session_write_bytes: null, "
        "session_changes: null}\n" + journal
    )


class DropSink:
    """An audit sink that numbers the records and keeps none: no store."""

    def __init__(self) -> None:
        self.seq = 0

    def append(self, event: AuditEvent) -> int:
        self.seq += 1
        return self.seq

    def close(self) -> None:
        pass


def guard_for(p: Policy) -> Guard:
    return Guard(p, audit=DropSink(), scanner=NoScanner(), flow=NoFlow())


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

        @guard.tool("noop")
        def noop() -> bytes:
            return PAYLOAD

        def plain_read() -> bytes:
            with open(plain_file, "rb") as fh:
                return fh.read()

        read_call = ToolCall("fs", "read", {"path": "docs/file.txt"}, session="bench")
        reads = interleaved(
            {
                "plain": plain_read,
                "guarded": lambda: guard.call(
                    "fs", "read", {"path": "docs/file.txt"}, session=session
                ),
                "engine": lambda: tool.execute(read_call, ctx),
                "noop": lambda: guard.call("noop", "call", {}, session=session),
            },
            calls,
            runs,
        )
        r = summary(reads, "guarded", "plain")
        rc = summary(reads, "guarded:cpu", "plain:cpu")
        out.update(
            read_plain_cpu_us=rc["plain"],
            read_guarded_cpu_us=rc["guarded"],
            read_overhead_cpu_us=rc["overhead"],
            read_ratio_vs_plain_cpu=rc["ratio"],
            read_engine_cpu_us=round(statistics.median(reads["engine:cpu"]), 2),
            pipeline_noop_cpu_us=round(statistics.median(reads["noop:cpu"]), 2),
        )
        out.update(
            read_plain_us=r["plain"],
            read_guarded_us=r["guarded"],
            read_overhead_us=r["overhead"],
            read_ratio_vs_plain=r["ratio"],
            read_engine_us=round(statistics.median(reads["engine"]), 2),
            pipeline_noop_us=round(statistics.median(reads["noop"]), 2),
            read_overhead_beyond_pipeline_us=round(
                statistics.median(
                    g - n - p
                    for g, n, p in zip(reads["guarded"], reads["noop"], reads["plain"], strict=True)
                ),
                2,
            ),
        )

        def plain_write() -> None:
            with open(root / "docs" / "plain-out.txt", "wb") as fh:
                fh.write(PAYLOAD)

        text = PAYLOAD.decode()
        jguard = guard_for(policy(root, base / "journal"))
        counter = iter(range(10**9))
        writes = interleaved(
            {
                "plain": plain_write,
                "guarded": lambda: guard.call(
                    "fs", "write", {"path": "docs/out.txt", "content": text}, session=session
                ),
                "journaled": lambda: jguard.call(
                    "fs",
                    "write",
                    {"path": "docs/journaled.txt", "content": f"{next(counter)}{text}"},
                    session=session.id,
                ),
            },
            max(50, calls // 4),
            runs,
        )
        w = summary(writes, "guarded", "plain")
        j = summary(writes, "journaled", "plain")
        wc = summary(writes, "guarded:cpu", "plain:cpu")
        jc = summary(writes, "journaled:cpu", "plain:cpu")
        out.update(
            write_plain_cpu_us=wc["plain"],
            write_guarded_cpu_us=wc["guarded"],
            write_overhead_cpu_us=wc["overhead"],
            write_journaled_cpu_us=jc["guarded"],
        )
        out.update(
            write_plain_us=w["plain"],
            write_guarded_us=w["guarded"],
            write_overhead_us=w["overhead"],
            write_ratio_vs_plain=w["ratio"],
            write_journaled_us=j["guarded"],
            write_journaled_overhead_us=j["overhead"],
            journal_durable=False,
        )
        jguard.close()

        lists = interleaved(
            {
                "plain": lambda: sorted(os.listdir(root / "many")),
                "guarded": lambda: guard.call("fs", "list", {"path": "many"}, session=session),
            },
            calls // 2,
            runs,
        )
        lst = summary(lists, "guarded", "plain")
        lc = summary(lists, "guarded:cpu", "plain:cpu")
        out.update(
            list_plain_cpu_us=lc["plain"],
            list_guarded_cpu_us=lc["guarded"],
            list_overhead_cpu_us=lc["overhead"],
        )
        out.update(
            list_plain_us=lst["plain"],
            list_guarded_us=lst["guarded"],
            list_overhead_us=lst["overhead"],
            list_ratio_vs_plain=lst["ratio"],
            list_entries=20,
        )
        guard.close()
    finally:
        shutil.rmtree(base, ignore_errors=True)

    if args.json:
        print(json.dumps(out, sort_keys=True))
        return 0
    print(f"fs benchmark: {len(PAYLOAD)}-byte file, {runs} runs of {calls} calls, median")
    print("  wall clock (µs per call)          plain   guarded  overhead   ratio")
    for name, extra in (("read", ""), ("write", " atomic"), ("list", " 20 entries")):
        print(
            f"  {name + extra:30} {out[name + '_plain_us']:9.1f} {out[name + '_guarded_us']:9.1f}"
            f" {out[name + '_overhead_us']:9.1f}   x{out[name + '_ratio_vs_plain']}"
        )
    print("  CPU time of this thread (µs per call, less disturbed by other processes)")
    for name in ("read", "write", "list"):
        print(
            f"  {name:30} {out[name + '_plain_cpu_us']:9.1f} {out[name + '_guarded_cpu_us']:9.1f}"
            f" {out[name + '_overhead_cpu_us']:9.1f}"
        )
    print(
        f"  read: engine alone {out['read_engine_us']:.1f} (cpu {out['read_engine_cpu_us']:.1f}),"
        f" the pipeline around a no-op tool {out['pipeline_noop_us']:.1f}"
        f" (cpu {out['pipeline_noop_cpu_us']:.1f})"
    )
    print(
        f"  write with the journal (SQLite, blobs inline, not durable) "
        f"{out['write_journaled_us']:.1f} (cpu {out['write_journaled_cpu_us']:.1f})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
