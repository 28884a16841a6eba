"""Benchmark: start-to-exit of `true` in the sandbox vs a plain subprocess.

Measured in the same run, interleaved so machine load hits every figure alike:

- ``plain``: ``subprocess.run(["/bin/true"])``;
- ``bwrap_only``: the sandbox's bubblewrap command line (namespaces, binds,
  seccomp off) running ``true`` directly, no launcher;
- ``sandbox``: ``Sandbox.run(["/bin/true"])`` with every layer (bubblewrap,
  seccomp, the Landlock/rlimit launcher, the pids cgroup when root);
- ``guard``: ``guard.call("exec", "run", ...)``: the whole pipeline around it;
- ``sandbox_none``: ``sandbox: none`` (launcher and rlimits only).

Each figure is the median of ``--runs`` runs after a warm-up.

    .venv/bin/python bench/exec.py          # figures
    .venv/bin/python bench/exec.py --json   # one JSON object
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from stockade import Guard
from stockade.policy import Policy
from stockade.stages import MemoryAuditSink
from stockade.tools.sandbox import Sandbox, SandboxConfig


def _ms(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1000.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--runs", type=int, default=40, help="runs per figure (default 40)")
    args = parser.parse_args()
    logging.getLogger("stockade.exec").setLevel(logging.ERROR)  # the sandbox: none warning

    with tempfile.TemporaryDirectory(prefix="stockade-bench-exec-") as tmp:
        ws = Path(tmp)
        sandbox = Sandbox(SandboxConfig(workspace=ws))
        none = Sandbox(SandboxConfig(workspace=ws, mode="none"))
        policy = Policy.from_text(f'version: 1\nexec: {{workspace: {ws}, commands: ["true"]}}\n')
        guard = Guard(policy, audit=MemoryAuditSink())
        bwrap_only = [*sandbox._prefix, "--", "/bin/true"]
        cases: dict[str, Callable[[], object]] = {
            "plain": lambda: subprocess.run(["/bin/true"], check=True),
            "bwrap_only": lambda: subprocess.run(bwrap_only, check=True, env={}),
            "sandbox": lambda: sandbox.run(["/bin/true"]),
            "guard": lambda: guard.call("exec", "run", {"argv": ["true"]}),
            "sandbox_none": lambda: none.run(["/bin/true"]),
        }
        for fn in cases.values():  # warm-up
            fn()
        samples: dict[str, list[float]] = {name: [] for name in cases}
        for _ in range(args.runs):
            for name, fn in cases.items():
                samples[name].append(_ms(fn))
        guard.close()
    med = {name: statistics.median(xs) for name, xs in samples.items()}
    result = {
        "plain_true_ms": round(med["plain"], 2),
        "bwrap_only_true_ms": round(med["bwrap_only"], 2),
        "sandbox_true_ms": round(med["sandbox"], 2),
        "guard_exec_true_ms": round(med["guard"], 2),
        "sandbox_none_true_ms": round(med["sandbox_none"], 2),
        "added_ms": round(med["sandbox"] - med["plain"], 2),
        "launcher_ms": round(med["sandbox"] - med["bwrap_only"], 2),
        "ratio": round(med["sandbox"] / med["plain"], 2),
        "runs": args.runs,
        "landlock_abi": sandbox.layers["landlock"],
        "pids_cgroup": sandbox.layers["pids_cgroup"],
        "load_average_1m": round(os.getloadavg()[0], 2),
    }
    if args.json:
        print(json.dumps(result, sort_keys=True))
        return 0
    print(f"exec: start-to-exit of `true`, median of {args.runs} runs")
    print(f"  plain subprocess          {result['plain_true_ms']:8.2f} ms")
    print(f"  bubblewrap only           {result['bwrap_only_true_ms']:8.2f} ms")
    print(f"  sandbox (all layers)      {result['sandbox_true_ms']:8.2f} ms")
    print(f"  through the guard         {result['guard_exec_true_ms']:8.2f} ms")
    print(f"  sandbox: none (rlimits)   {result['sandbox_none_true_ms']:8.2f} ms")
    print(f"  added by the sandbox      {result['added_ms']:8.2f} ms  (x{result['ratio']})")
    print(f"  of which the launcher     {result['launcher_ms']:8.2f} ms")
    print(f"  load average (1 min)      {result['load_average_1m']:8.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
