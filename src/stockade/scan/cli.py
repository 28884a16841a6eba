"""``stockade scan PATH|-``: run the scanners over files, folders or standard input.

Exit codes: 0 nothing found at or above the threshold, 1 something was,
2 the scan could not run (bad path, bad policy).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any, TextIO

from stockade.errors import PolicyError, StockadeError
from stockade.scan.config import SCANNERS, ScanConfig

__all__ = ["register"]

_DEFAULT_SCANNERS = ("hygiene", "injection", "secrets")
_BINARY_PROBE = 8192


def register(subparsers: Any) -> None:
    """Add ``stockade scan`` to the command line."""
    p = subparsers.add_parser(
        "scan",
        help="scan files, folders or stdin for injection, secrets, PII and hidden text",
        description=(
            "Run stockade's scanners over files (folders recursively, symlinks not "
            "followed, binary files skipped) or standard input (`-`). Prints a table "
            "or JSON; exits 1 when a finding reaches the threshold."
        ),
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="files, folders, or - for stdin")
    p.add_argument(
        "--scanners",
        default=",".join(_DEFAULT_SCANNERS),
        help=f"comma-separated scanners from {', '.join(SCANNERS)} "
        f"(default: {','.join(_DEFAULT_SCANNERS)})",
    )
    p.add_argument(
        "--threshold",
        type=float,
        default=0.5,
        help="lowest score reported and counted for the exit code (default 0.5)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--policy", help="take the scan settings (links allow-list, PII) from a policy")
    p.add_argument("--no-model", action="store_true", help="rules only, no classifier")
    p.add_argument(
        "--max-size", type=int, default=10 << 20, help="skip files larger than this many bytes"
    )
    p.set_defaults(func=_handler)


def _files(paths: list[str], max_size: int) -> Iterator[tuple[str, Path | None]]:
    for raw in paths:
        if raw == "-":
            yield "-", None
            continue
        path = Path(raw)
        if path.is_dir():
            for root, dirs, names in os.walk(path, followlinks=False):
                dirs[:] = sorted(d for d in dirs if d not in (".git", "__pycache__", ".venv"))
                for name in sorted(names):
                    f = Path(root) / name
                    if f.is_file() and not f.is_symlink() and f.stat().st_size <= max_size:
                        yield str(f), f
        elif path.is_file():
            yield raw, path
        else:
            raise StockadeError(f"no such file or folder `{raw}`")


def _read(path: Path | None) -> str | None:
    if path is None:
        return sys.stdin.read()
    data = path.read_bytes()
    if b"\0" in data[:_BINARY_PROBE]:
        return None
    return data.decode("utf-8", "replace")


def _progress(out: TextIO, done: int, total: int) -> None:
    width = 30
    filled = width * done // max(1, total)
    out.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} files")
    out.flush()


def _handler(args: argparse.Namespace) -> int:
    from stockade.scan.stage import Scanner

    names = tuple(n.strip() for n in args.scanners.split(",") if n.strip())
    bad = [n for n in names if n not in SCANNERS]
    if bad:
        print(f"unknown scanner `{bad[0]}`; expected: {', '.join(SCANNERS)}", file=sys.stderr)
        return 2
    try:
        config = ScanConfig()
        if args.policy:
            from stockade.policy import Policy

            section = Policy.from_file(args.policy).section("scan")
            if isinstance(section, ScanConfig):
                config = section
        config = replace(config, threshold=args.threshold, model=not args.no_model)
        scanner = Scanner(replace(config, vault_path=None, vault_key_env=None))
        files = list(_files(args.paths, args.max_size))
    except PolicyError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return 2
    except (StockadeError, OSError) as exc:
        print(f"stockade scan: {exc}", file=sys.stderr)
        return 2
    show_progress = sys.stderr.isatty() and len(files) > 1
    report: list[dict[str, Any]] = []
    scanned = skipped = 0
    for i, (name, path) in enumerate(files, 1):
        try:
            text = _read(path)
        except OSError as exc:
            print(f"\nstockade scan: cannot read `{name}`: {exc.strerror}", file=sys.stderr)
            skipped += 1
            continue
        if text is None:
            skipped += 1
            continue
        scanned += 1
        result = scanner.scan_text(text, names, mask=False, clean=False)
        for h in result.hits:
            if h.score < args.threshold:
                continue
            line = text.count("\n", 0, h.start) + 1
            report.append(
                {
                    "path": name,
                    "line": line,
                    "scanner": h.scanner,
                    "kind": h.kind,
                    "score": round(h.score, 3),
                    "reason": h.reason,
                }
            )
        if show_progress:
            _progress(sys.stderr, i, len(files))
    if show_progress:
        sys.stderr.write("\n")
    if args.json:
        print(
            json.dumps(
                {"findings": report, "files_scanned": scanned, "files_skipped": skipped},
                indent=2,
            )
        )
    else:
        _table(report, scanned, skipped)
    return 1 if report else 0


def _table(report: list[dict[str, Any]], scanned: int, skipped: int) -> None:
    if report:
        width = min(60, max(len(f"{r['path']}:{r['line']}") for r in report))
        for r in report:
            where = f"{r['path']}:{r['line']}"
            print(f"{where:<{width}}  {r['score']:.2f}  {r['scanner']}/{r['kind']}  {r['reason']}")
    print(f"{len(report)} finding(s) in {scanned} file(s); {skipped} skipped", file=sys.stderr)
