"""``stockade scan PATH|-``: run the scanners over files, folders or standard input.

Exit codes: 0 every file was checked and nothing was found at or above the
threshold, 1 something was found, 2 the scan could not run (bad path, bad
policy, bad option) or could not check every file (one over ``--max-size``,
one that could not be read). A run that left a file unchecked never exits 0;
when it also found something it exits 2 (the findings are still printed), as
``grep`` does, so ``2`` always means "incomplete".
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
_DEFAULT_MAX_SIZE = 10 << 20


def _size(text: str) -> int:
    """``--max-size``: a whole number of bytes, at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"`{text}` is not a whole number of bytes") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"`{text}` bytes: the size must be at least 1")
    return value


def _threshold(text: str) -> float:
    """``--threshold``: a score from 0 to 1."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"`{text}` is not a number") from None
    if not 0.0 <= value <= 1.0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"`{text}` is outside 0..1")
    return value


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
        type=_threshold,
        default=None,
        metavar="SCORE",
        help="lowest score (0 to 1) reported and counted for the exit code "
        "(default: the policy's scan threshold, else 0.5)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument(
        "--policy",
        metavar="FILE",
        help="take the scan settings (threshold, model, links allow-list, PII) from a policy; "
        "--threshold and --model/--no-model given on the command line win",
    )
    p.add_argument(
        "--model",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="the classifier next to the rules; --no-model for rules only "
        "(default: the policy's scan model, else on)",
    )
    p.add_argument(
        "--max-size",
        type=_size,
        default=_DEFAULT_MAX_SIZE,
        metavar="BYTES",
        help="files (named or in folders) and stdin larger than this are not scanned; "
        "they are named as skipped and the run exits 2 (default 10 MiB)",
    )
    p.set_defaults(func=_handler)


def _files(paths: list[str]) -> Iterator[tuple[str, Path | None]]:
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
                    if f.is_file() and not f.is_symlink():
                        yield str(f), f
        elif path.is_file():
            yield raw, path
        else:
            raise StockadeError(f"no such file or folder `{raw}`")


def _read(path: Path | None, max_size: int) -> str | dict[str, Any]:
    """The text of a file (``None``: stdin), or why it was not scanned.

    The second case is the JSON entry of a skipped file: ``reason`` is
    ``binary``, ``too-large`` (with ``size``, ``None`` for stdin, which is
    not read past the limit) or ``unreadable`` (with ``error``). At most
    ``max_size + 1`` bytes are read, so a file that grows after its size was
    looked at is still caught.
    """
    if path is None:
        data: bytes
        stream = getattr(sys.stdin, "buffer", None)
        if stream is not None:
            data = stream.read(max_size + 1)
        else:  # a text stream without bytes underneath (a test's stand-in)
            data = sys.stdin.read(max_size + 1).encode("utf-8")
        if len(data) > max_size:
            return {"reason": "too-large", "size": None}
        return data.decode("utf-8", "replace")
    try:
        with path.open("rb") as f:
            size = os.fstat(f.fileno()).st_size
            data = b"" if size > max_size else f.read(max_size + 1)
    except OSError as exc:
        return {"reason": "unreadable", "error": exc.strerror or type(exc).__name__}
    if size > max_size or len(data) > max_size:
        return {"reason": "too-large", "size": max(size, len(data))}
    if b"\0" in data[:_BINARY_PROBE]:
        return {"reason": "binary"}
    return data.decode("utf-8", "replace")


def _skip_message(name: str, skip: dict[str, Any], max_size: int) -> str:
    if skip["reason"] == "unreadable":
        return f"stockade scan: cannot read `{name}`: {skip['error']}"
    if skip["size"] is None:  # stdin, not read past the limit
        return f"stockade scan: not scanned `{name}`: over --max-size {max_size}, not read further"
    return f"stockade scan: not scanned `{name}`: {skip['size']} bytes, over --max-size {max_size}"


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
        # the policy's values stand unless the command line names its own
        if args.threshold is not None:
            config = replace(config, threshold=args.threshold)
        if args.model is not None:
            config = replace(config, model=args.model)
        scanner = Scanner(replace(config, vault_path=None, vault_key_env=None))
        files = list(_files(args.paths))
    except PolicyError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return 2
    except (StockadeError, OSError) as exc:
        print(f"stockade scan: {exc}", file=sys.stderr)
        return 2
    show_progress = sys.stderr.isatty() and len(files) > 1
    report: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    scanned = 0
    for i, (name, path) in enumerate(files, 1):
        text = _read(path, args.max_size)
        if isinstance(text, dict):
            skipped.append({"path": name, **text})
            if text["reason"] != "binary":
                nl = "\n" if show_progress else ""
                print(nl + _skip_message(name, text, args.max_size), file=sys.stderr)
            continue
        scanned += 1
        result = scanner.scan_text(text, names, mask=False, clean=False)
        for h in result.hits:
            if h.score < config.threshold:
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
    # binary files are out of the scanners' reach by design and are only
    # counted; a file skipped for any other reason leaves the run incomplete
    complete = all(s["reason"] == "binary" for s in skipped)
    if args.json:
        print(
            json.dumps(
                {
                    "findings": report,
                    "files_scanned": scanned,
                    "files_skipped": len(skipped),
                    "skipped": skipped,
                    "complete": complete,
                },
                indent=2,
            )
        )
    else:
        _table(report, scanned, skipped)
    if not complete:
        return 2
    return 1 if report else 0


def _table(report: list[dict[str, Any]], scanned: int, skipped: list[dict[str, Any]]) -> None:
    if report:
        width = min(60, max(len(f"{r['path']}:{r['line']}") for r in report))
        for r in report:
            where = f"{r['path']}:{r['line']}"
            print(f"{where:<{width}}  {r['score']:.2f}  {r['scanner']}/{r['kind']}  {r['reason']}")
    counts: dict[str, int] = {}
    for s in skipped:
        counts[s["reason"]] = counts.get(s["reason"], 0) + 1
    why = ", ".join(f"{n} {reason}" for reason, n in sorted(counts.items()))
    summary = f"{len(report)} finding(s) in {scanned} file(s); {len(skipped)} skipped"
    if why:
        summary += f" ({why})"
    if any(reason != "binary" for reason in counts):
        summary += "; incomplete: not every file was scanned"
    print(summary, file=sys.stderr)
