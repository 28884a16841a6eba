"""Benchmark: a guarded GET of 1 KB from a local server vs plain httpx, and the proxy.

Both clients fetch the same 1 KB JSON document from a keep-alive HTTP/1.1
server on 127.0.0.1 in this process. The guarded call is the whole pipeline
(canonical URL, rules, the tool's own check, audit records in memory, the
SSRF-safe transport, size and content-type checks); the baseline is a plain
``httpx.Client`` measured in the same run. The proxy figure is requests per
second through ``stockade proxy`` (one connection per request, as the proxy
closes after each response).

    .venv/bin/python bench/http.py          # figures
    .venv/bin/python bench/http.py --json   # one JSON object
"""

from __future__ import annotations

import os
import sys

# This file is bench/http.py: run as a script, its folder comes first on
# sys.path and would shadow the standard library's `http` package.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]

import argparse  # noqa: E402
import http.server  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from typing import Any  # noqa: E402

import httpx  # noqa: E402

from stockade import Guard  # noqa: E402
from stockade.tools.http_proxy import start_proxy  # noqa: E402

BODY = json.dumps({"data": "x" * 1000})[:1024].encode()


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go in two writes

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(BODY)))
        self.end_headers()
        self.wfile.write(BODY)


def _per_call(fn: Callable[[], Any], n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--runs", type=int, default=5, help="runs per figure (median)")
    parser.add_argument("--requests", type=int, default=300, help="requests per run")
    args = parser.parse_args()

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    url = f"http://127.0.0.1:{port}/doc.json"
    guard = Guard.from_text(
        f"""
version: 1
http:
  allow:
    - {{id: bench, host: 127.0.0.1, scheme: http, port: {port}}}
"""
    )
    plain = httpx.Client(trust_env=False)

    def baseline() -> None:
        r = plain.get(url)
        assert r.status_code == 200
        assert len(r.content) == len(BODY)

    def guarded() -> None:
        r = guard.call("http", "request", {"url": url})
        assert r.value["status"] == 200
        assert len(r.value["body"]) == len(BODY)

    for fn in (baseline, guarded):  # warm up pools and caches
        _per_call(fn, 20)
    base_runs, guard_runs = [], []
    for _ in range(args.runs):  # interleave so both see the same machine load
        base_runs.append(_per_call(baseline, args.requests))
        guard_runs.append(_per_call(guarded, args.requests))
    base, guarded_t = statistics.median(base_runs), statistics.median(guard_runs)

    proxy = start_proxy(guard, "127.0.0.1", 0)
    via = httpx.Client(proxy=proxy.url, trust_env=False)

    def proxied() -> None:
        assert via.get(url).status_code == 200

    _per_call(proxied, 20)
    n_proxy = max(50, args.requests // 2)
    proxy_runs = [1.0 / _per_call(proxied, n_proxy) for _ in range(args.runs)]
    via.close()
    proxy.close()
    plain.close()
    guard.close()
    server.shutdown()
    server.server_close()

    result = {
        "get_ratio_vs_httpx": round(guarded_t / base, 3),
        "httpx_get_us": round(base * 1e6, 1),
        "guarded_get_us": round(guarded_t * 1e6, 1),
        "guard_overhead_us": round((guarded_t - base) * 1e6, 1),
        "proxy_requests_per_s": round(statistics.median(proxy_runs), 1),
        "runs": args.runs,
        "requests_per_run": args.requests,
        "body_bytes": len(BODY),
    }
    if args.json:
        print(json.dumps(result))
        return
    print(f"GET 1 KB from 127.0.0.1, median of {args.runs} runs x {args.requests} requests")
    print(f"  plain httpx.Client      {result['httpx_get_us']:>9.1f} us/request")
    print(f"  guard.call http.request {result['guarded_get_us']:>9.1f} us/request")
    print(f"  ratio                   {result['get_ratio_vs_httpx']:>9.3f} (target <= 1.3)")
    print(f"proxy (plain HTTP, one connection per request): {result['proxy_requests_per_s']} req/s")


if __name__ == "__main__":
    main()
