"""Benchmark: provenance check time per call against growing session content.

A session reads synthetic mail-like content (prose with addresses, URLs,
IBANs and numbers; untrusted and confidential pieces) of 10 KB, 1 MB and
10 MB; then a typical guarded call (a recipient, an IBAN, a 40-word body) is
checked many times. The baseline is the same check on a session that read
nothing, measured in the same run. ``check_p50_us_*`` are wall-clock medians;
``check_p50_cpu_us_*`` the same checks in CPU time of this process, which a
busy shared machine disturbs less. Memory is what the index keeps per byte
of content (the index's arrays and piece records).

    .venv/bin/python bench/flow.py          # figures
    .venv/bin/python bench/flow.py --json   # one JSON object
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import statistics
import time
from typing import Any

from stockade import Guard, Integrity, Label
from stockade.flow import ProvenanceChecker
from stockade.model import Confidentiality, ToolCall
from stockade.stages import MemoryAuditSink, NoScanner

POLICY = """
version: 1
rules:
  - {id: all, tool: "*", effect: allow}
flow:
  confidential: secret
  external: [mail]
  index: {session_bytes: 64MB, total_bytes: 512MB}
  rules:
    - {id: payee, tool: pay, args: [iban], forbid: untrusted, effect: deny}
    - {id: mail-to, tool: mail, args: [to], forbid: untrusted, effect: deny}
    - {id: secrets-out, sink: external, forbid: confidential, effect: deny}
"""

PIECE = 100_000


def _vocab(rng: random.Random) -> list[str]:
    letters = "abcdefghijklmnopqrstuvwxyz"
    return ["".join(rng.choice(letters) for _ in range(rng.randint(2, 10))) for _ in range(20000)]


def _content(rng: random.Random, vocab: list[str], size: int) -> str:
    out: list[str] = []
    n = 0
    while n < size:
        r = rng.random()
        if r < 0.02:
            w = f"{rng.choice(vocab)}.{rng.choice(vocab)}@{rng.choice(vocab)}.example"
        elif r < 0.03:
            w = f"https://{rng.choice(vocab)}.example/{rng.choice(vocab)}?id={rng.randint(1, 10**6)}"
        elif r < 0.035:
            digits = "".join(str(rng.randint(0, 9)) for _ in range(18))
            w = f"DE{rng.randint(10, 99)} " + " ".join(digits[i : i + 4] for i in range(0, 18, 4))
        elif r < 0.04:
            w = str(rng.randint(10**7, 10**9))
        else:
            w = rng.choice(vocab)
        out.append(w)
        n += len(w) + 1
    return " ".join(out)


def _fill(
    checker: ProvenanceChecker, guard: Guard, sid: str, size: int, seed: int
) -> tuple[int, float]:
    """Let session ``sid`` read ``size`` bytes; return the bytes and the seconds
    spent observing them (content generation not counted)."""
    rng = random.Random(seed)
    vocab = _vocab(rng)
    session = guard.session(sid)
    done = 0
    spent = 0.0
    i = 0
    while done < size:
        n = min(PIECE, size - done)
        text = _content(rng, vocab, n)
        untrusted = i % 2 == 0
        label = Label(
            f"mail:msg-{i}",
            Integrity.UNTRUSTED if untrusted else Integrity.TRUSTED,
            Confidentiality.INTERNAL if untrusted else Confidentiality.SECRET,
        )
        call = ToolCall("inbox", "read", {}, session=sid)
        t0 = time.perf_counter()
        checker.observe(call, text, (label,), session)
        spent += time.perf_counter() - t0
        done += len(text)
        i += 1
    t0 = time.perf_counter()
    checker.store.get(sid).compact()
    return done, spent + time.perf_counter() - t0


def _call(sid: str, rng: random.Random) -> ToolCall:
    body = " ".join(
        rng.choice(["please", "find", "the", "invoice", "attached", "thanks"]) for _ in range(40)
    )
    return ToolCall(
        "mail",
        "call",
        {"to": "jane.doe@partner.example", "iban": "DE44 5001 0517 5407 3249 31", "body": body},
        session=sid,
    )


def _p50(checker: ProvenanceChecker, guard: Guard, sid: str, runs: int) -> tuple[float, float]:
    """Median wall-clock and CPU time of one check, in microseconds."""
    rng = random.Random(7)
    session = guard.session(sid)
    calls = [_call(sid, rng) for _ in range(runs)]
    wall: list[float] = []
    cpu: list[float] = []
    for call in calls:
        c0 = time.process_time()
        t0 = time.perf_counter()
        checker.check(call, session)
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return statistics.median(wall) * 1e6, statistics.median(cpu) * 1e6


def _guard() -> Guard:
    # Only the flow stage is measured: other stages are the plain defaults.
    return Guard.from_text(POLICY, scanner=NoScanner(), audit=MemoryAuditSink())


def run(runs: int = 300, rounds: int = 3) -> dict[str, Any]:
    """Measure and return the figures.

    The sessions are filled once; then, in each of ``rounds`` rounds, every
    session (and the empty baseline) gets ``runs`` checks; each figure is the
    median over rounds of the per-round median.
    """
    guard = _guard()
    checker = guard.flow
    assert isinstance(checker, ProvenanceChecker)
    results: dict[str, Any] = {}
    sizes = {"10kb": 10_000, "1mb": 1_000_000, "10mb": 10_000_000}
    for name, size in sizes.items():
        gc.collect()
        got, elapsed = _fill(checker, guard, f"s-{name}", size, seed=len(name) * 7919)
        results[f"observe_mb_per_s_{name}"] = round(got / elapsed / 1e6, 3)
        if name == "10mb":
            index = checker.store.get(f"s-{name}")
            results["bytes_per_content_byte"] = round(index.nbytes() / got, 3)
            results["content_bytes_10mb"] = got
    per_round: dict[str, list[float]] = {}
    for _ in range(rounds):
        for sid, key in [("empty", "baseline_check_p50_us_empty")] + [
            (f"s-{n}", f"check_p50_us_{n}") for n in sizes
        ]:
            wall, cpu = _p50(checker, guard, sid, runs)
            per_round.setdefault(key, []).append(wall)
            per_round.setdefault(key.replace("p50_us", "p50_cpu_us"), []).append(cpu)
    for key, values in per_round.items():
        results[key] = round(statistics.median(values), 1)
    base = results["baseline_check_p50_us_empty"]
    for n in sizes:
        results[f"ratio_{n}_vs_empty"] = round(results[f"check_p50_us_{n}"] / base, 2)
    results["rounds"] = rounds
    results["checks_per_round"] = runs
    return results


def main() -> None:
    """Print the figures (or one JSON object with ``--json``)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--runs", type=int, default=300, help="checks per size and round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds (default 3)")
    args = parser.parse_args()
    results = run(args.runs, args.rounds)
    if args.json:
        print(json.dumps(results, sort_keys=True))
        return
    for key, value in sorted(results.items()):
        print(f"{key:32} {value}")


if __name__ == "__main__":
    main()
