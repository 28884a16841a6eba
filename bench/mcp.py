"""Benchmark: the MCP proxy's added latency against talking to the server directly.

Both paths use the official SDK client over stdio in the same run:

- direct: client -> the SDK test server (``tests/integrations/mcp_test_server.py``);
- proxy:  client -> ``stockade mcp-proxy`` (policy decision, argument and
  result scan, in-memory audit) -> the same server.

Each run makes ``--calls`` sequential ``tools/call`` requests to ``echo``;
figures are medians over ``--runs`` runs. ``--json`` prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# This file is named like the SDK: keep its folder off the import path.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import anyio  # noqa: E402
from mcp import Client, StdioServerParameters  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SERVER = ROOT / "tests" / "integrations" / "mcp_test_server.py"
POLICY = """version: 1
rules:
  - {id: echo, tool: echo, effect: allow, when: {text: {length: {max: 200}}}}
mcp:
  pin_file: PINS
"""


async def _measure(params: StdioServerParameters, calls: int) -> list[float]:
    times: list[float] = []
    async with Client(params, cache=None) as client:
        await client.call_tool("echo", {"text": "warm-up"})
        for i in range(calls):
            start = time.perf_counter()
            res = await client.call_tool("echo", {"text": f"hello {i}"})
            times.append(time.perf_counter() - start)
            if res.is_error:
                raise SystemExit(f"call failed: {res.content}")
    return times


async def _guard_only(calls: int) -> list[float]:
    """The guard pipeline alone (in process) around an async no-op tool, for scale."""
    from stockade import Guard

    guard = Guard.from_text(POLICY.split("mcp:")[0])

    @guard.tool()
    async def echo(text: str) -> str:
        return text

    times: list[float] = []
    for i in range(calls):
        start = time.perf_counter()
        await guard.acall("echo", "call", {"text": f"hello {i}"})
        times.append(time.perf_counter() - start)
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=300, help="calls per run")
    parser.add_argument("--runs", type=int, default=3, help="runs per path")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        policy = Path(tmp) / "policy.yaml"
        policy.write_text(POLICY.replace("PINS", str(Path(tmp) / "pins.json")), encoding="utf-8")
        server = [str(SERVER), tmp]
        direct = StdioServerParameters(command=sys.executable, args=server)
        proxy = StdioServerParameters(
            command=sys.executable,
            args=[
                "-m",
                "stockade.cli",
                "mcp-proxy",
                "--policy",
                str(policy),
                "--",
                sys.executable,
                *server,
            ],
        )
        direct_runs: list[list[float]] = []
        proxy_runs: list[list[float]] = []
        guard_runs: list[list[float]] = []
        for _ in range(args.runs):  # interleaved so both see the same machine load
            direct_runs.append(anyio.run(_measure, direct, args.calls))
            proxy_runs.append(anyio.run(_measure, proxy, args.calls))
            guard_runs.append(anyio.run(_guard_only, args.calls))
    direct_cps = statistics.median(len(r) / sum(r) for r in direct_runs)
    proxy_cps = statistics.median(len(r) / sum(r) for r in proxy_runs)
    direct_p50 = statistics.median(statistics.median(r) for r in direct_runs)
    proxy_p50 = statistics.median(statistics.median(r) for r in proxy_runs)
    result: dict[str, Any] = {
        "calls_per_run": args.calls,
        "runs": args.runs,
        "direct_calls_per_s": round(direct_cps, 1),
        "proxy_calls_per_s": round(proxy_cps, 1),
        "direct_p50_us": round(direct_p50 * 1e6, 1),
        "proxy_p50_us": round(proxy_p50 * 1e6, 1),
        "added_latency_us": round((proxy_p50 - direct_p50) * 1e6, 1),
        "throughput_ratio": round(proxy_cps / direct_cps, 3),
        "guard_pipeline_p50_us": round(
            statistics.median(statistics.median(r) for r in guard_runs) * 1e6, 1
        ),
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(f"MCP tools/call over stdio, {args.calls} calls x {args.runs} runs (median)")
        print(
            f"  direct: {result['direct_calls_per_s']:>8} calls/s  p50 {result['direct_p50_us']} us"
        )
        print(
            f"  proxy:  {result['proxy_calls_per_s']:>8} calls/s  p50 {result['proxy_p50_us']} us"
        )
        print(
            f"  added latency (p50): {result['added_latency_us']} us; "
            f"proxy throughput = {result['throughput_ratio']}x direct"
        )
        print(f"  the guard pipeline alone (in process): {result['guard_pipeline_p50_us']} us")
    return 0


if __name__ == "__main__":
    sys.exit(main())
