"""Benchmark the scanners: rules throughput, classifier speed, load time, detection quality.

    .venv/bin/python bench/scan.py [--json] [--data /work/shared/data/injection]

Throughput is single-threaded (per core), the median of several runs, with a
baseline measured in the same run (a lower-cased keyword search, the usual
quick filter). Detection is measured on the training script's held-out test
split (built from ``--data``; never used for training or tuning) and compared
with the keyword baseline on the same texts. Without the data folder only the
speed figures are printed.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import sysconfig
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "scripts"))

from stockade.scan import classifier  # noqa: E402
from stockade.scan.config import ScanConfig  # noqa: E402
from stockade.scan.hygiene import scan_hygiene  # noqa: E402
from stockade.scan.injection import InjectionRules  # noqa: E402
from stockade.scan.stage import Scanner  # noqa: E402

KEYWORDS = (
    "ignore previous instructions",
    "ignore all previous instructions",
    "ignore the above",
    "disregard previous",
    "system prompt",
    "you are now",
    "jailbreak",
    "do anything now",
)


def keyword_baseline(text: str) -> bool:
    low = text.lower()
    return any(k in low for k in KEYWORDS)


def median_time(fn: Callable[[], object], runs: int = 5) -> float:
    """Median CPU seconds of this process: per-core cost, fair on a busy shared machine."""
    times = []
    for _ in range(runs):
        t = time.process_time()
        fn()
        times.append(time.process_time() - t)
    return max(statistics.median(times), 1e-9)


def corpus_text(limit: int = 4_000_000) -> str:
    """Benign prose and code: the standard library's sources and our docs."""
    parts: list[str] = [p.read_text() for p in sorted((ROOT / "docs").glob("*.md"))]
    lib = Path(sysconfig.get_paths()["stdlib"])
    for p in sorted(lib.glob("*.py")):
        parts.append(p.read_text(encoding="utf-8", errors="replace"))
        if sum(map(len, parts)) > limit:
            break
    return "".join(parts)[:limit]


def speed() -> dict[str, Any]:
    text = corpus_text()
    mb = len(text.encode()) / 1e6
    rules = InjectionRules()

    def run_rules() -> None:
        rules.scan(text)
        scan_hygiene(text)

    t_rules = median_time(run_rules)
    t_base = median_time(lambda: keyword_baseline(text))
    scanner = Scanner(ScanConfig(model=False))
    t_all = median_time(lambda: scanner.scan_text(text, mask=False, clean=False), runs=3)

    def load() -> None:
        classifier._CACHE.clear()
        classifier.load_model()

    t_load = median_time(load)
    model = classifier.load_model()
    assert model is not None
    docs = [text[i * 1000 : (i + 1) * 1000] for i in range(300)]
    t_model = median_time(lambda: [model.score(d) for d in docs], runs=3)
    return {
        "rules_mb_per_s": round(mb / t_rules, 1),
        "rules_baseline_keyword_mb_per_s": round(mb / t_base, 1),
        "rules_vs_keyword_ratio": round(t_base / t_rules, 3),
        "all_scanners_mb_per_s": round(mb / t_all, 1),
        "model_docs_per_s": round(len(docs) / t_model, 1),
        "model_load_ms": round(t_load * 1000, 2),
        "model_file_kb": round(
            (ROOT / "src/stockade/scan/models/injection.bin").stat().st_size / 1024, 1
        ),
        "corpus_mb": round(mb, 2),
    }


def quality(data: Path) -> dict[str, Any]:
    import train_injection

    test = train_injection.build(data)["test"]
    model = classifier.load_model()
    assert model is not None
    rules = InjectionRules()
    direct = {"direct"}
    benign_docs = {"email", "long-benign", "code", "table", "so-code", "long-doc"}

    def rates(flag: Callable[[str], bool]) -> dict[str, float]:
        hits: dict[str, list[bool]] = {"direct": [], "indirect": [], "docs": [], "prompts": []}
        tp = fp = 0
        for text, y, group in test:
            f = flag(text)
            tp += int(f and y == 1)
            fp += int(f and y == 0)
            if group in direct:
                hits["direct"].append(f)
            elif group.startswith("indirect"):
                hits["indirect"].append(f)
            elif group in benign_docs:
                hits["docs"].append(f)
            elif group == "prompt":
                hits["prompts"].append(f)
        r = {k: round(sum(v) / max(1, len(v)), 4) for k, v in hits.items()}
        r["precision"] = round(tp / max(1, tp + fp), 4)
        return r

    m = rates(lambda t: model.score(t) >= 0.5)
    both = rates(lambda t: model.score(t) >= 0.5 or rules.scan(t).score >= 0.5)
    rule_only = rates(lambda t: rules.scan(t).score >= 0.5)
    base = rates(keyword_baseline)
    return {
        "recall_direct": m["direct"],
        "recall_indirect": m["indirect"],
        "fpr_benign_docs": m["docs"],
        "fpr_benign_prompts": m["prompts"],
        "precision": m["precision"],
        "combined_recall_direct": both["direct"],
        "combined_recall_indirect": both["indirect"],
        "combined_fpr_benign_docs": both["docs"],
        "combined_fpr_benign_prompts": both["prompts"],
        "rules_recall_direct": rule_only["direct"],
        "rules_recall_indirect": rule_only["indirect"],
        "rules_fpr_benign_docs": rule_only["docs"],
        "baseline_keyword_recall_direct": base["direct"],
        "baseline_keyword_recall_indirect": base["indirect"],
        "baseline_keyword_fpr_benign_docs": base["docs"],
        "test_rows": len(test),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--data", type=Path, default=Path("/work/shared/data/injection"))
    args = parser.parse_args()
    out = speed()
    if args.data.is_dir():
        out.update(quality(args.data))
    if args.json:
        print(json.dumps(out, sort_keys=True))
    else:
        for key, value in out.items():
            print(f"{key:36} {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
