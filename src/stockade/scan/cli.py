"""``stockade scan PATH|-``: run the scanners over files, folders or standard input.

A file with a NUL byte in its first 8 KiB is not skipped: when it is text
apart from its NUL bytes (a leading NUL hiding a key, UTF-16) it is scanned
as text; otherwise (an image, an archive, a database) its printable runs are
extracted the way ``strings`` does and scanned for secrets, PII, links and
the injection rules; the classifier reads only runs long enough to be prose
and the hygiene checks none (see :func:`_runs` and docs/scan.md).

Exit codes: 0 every file was checked and nothing was found at or above the
threshold, 1 something was found, 2 the scan could not run (bad path, bad
policy, bad option) or could not check every file (one over ``--max-size``,
one that could not be read). A run that left a file unchecked never exits 0;
when it also found something it exits 2 (the findings are still printed), as
``grep`` does, so ``2`` always means "incomplete".
"""

from __future__ import annotations

import argparse
import bisect
import codecs
import json
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import re2

from stockade.errors import PolicyError, StockadeError
from stockade.scan.config import SCANNERS, ScanConfig

if TYPE_CHECKING:
    from stockade.scan._base import Hit
    from stockade.scan.stage import Scanner

__all__ = ["register"]

_DEFAULT_SCANNERS = ("hygiene", "injection", "secrets")
_BINARY_PROBE = 8192
_DEFAULT_MAX_SIZE = 10 << 20
# the shortest printable run kept from a binary file, in characters: as long
# as the shortest e-mail address (`a@b.io`); every secret format is longer
_MIN_RUN = 6
# the shortest run the injection classifier reads (see _handler)
_MIN_PROSE = 32
# scanners that read a binary file's runs; hygiene is left out (random bytes
# decode to stray Cyrillic, Greek and zero-width characters, each a finding)
_RUN_SCANNERS = frozenset({"injection", "secrets", "pii", "links"})


def _latin1(pattern: bytes) -> Any:
    # byte patterns: RE2 must read \xc2 as a byte, not as the character U+00C2
    opts = re2.Options()
    opts.encoding = re2.Options.Encoding.LATIN1
    opts.max_mem = 64 << 20
    return re2.compile(pattern, opts)


# one printable character: tab, printable ASCII, or a well-formed UTF-8
# sequence of 2 to 4 bytes (no overlong forms, no surrogates)
_CHAR = (
    rb"(?:[\t\x20-\x7e]|[\xc2-\xdf][\x80-\xbf]|\xe0[\xa0-\xbf][\x80-\xbf]"
    rb"|[\xe1-\xec\xee\xef][\x80-\xbf]{2}|\xed[\x80-\x9f][\x80-\xbf]"
    rb"|\xf0[\x90-\xbf][\x80-\xbf]{2}|[\xf1-\xf3][\x80-\xbf]{3}|\xf4[\x80-\x8f][\x80-\xbf]{2})"
)
# a UTF-8 run (group 1) or an ASCII run in UTF-16 little-endian (group 2), as
# Windows programs and documents store their strings
_RUN = _latin1(rb"(%s{%d,})|((?:[\t\x20-\x7e]\x00){%d,})" % (_CHAR, _MIN_RUN, _MIN_RUN))
# control bytes that text does not contain (tab, newlines, form feed and ESC aside)
_CONTROL = _latin1(rb"[\x01-\x08\x0e-\x1a\x1c-\x1f\x7f]")


@dataclass
class _Runs:
    """The printable runs of a binary file, joined by newlines, and where each came from."""

    text: str = ""
    starts: list[int] = field(default_factory=list)  # offset of each run in ``text``
    offsets: list[int] = field(default_factory=list)  # byte offset of each run in the file
    wide: list[bool] = field(default_factory=list)  # UTF-16: two bytes a character

    def offset(self, start: int) -> int:
        """The byte offset in the file of the character at ``start`` in ``text``."""
        i = max(0, bisect.bisect_right(self.starts, start) - 1)
        k = max(0, start - self.starts[i])
        if self.wide[i]:
            return self.offsets[i] + 2 * k
        return self.offsets[i] + len(self.text[self.starts[i] : self.starts[i] + k].encode())

    def longer(self, n: int) -> _Runs:
        """Only the runs of at least ``n`` characters."""
        out = _Runs()
        parts: list[str] = []
        at = 0
        for i, start in enumerate(self.starts):
            end = self.starts[i + 1] - 1 if i + 1 < len(self.starts) else len(self.text)
            if end - start >= n:
                out.starts.append(at)
                out.offsets.append(self.offsets[i])
                out.wide.append(self.wide[i])
                parts.append(self.text[start:end])
                at += end - start + 1
        out.text = "\n".join(parts)
        return out


def _text_with_nuls(data: bytes) -> str | None:
    """``data`` as text when only its NUL bytes make it look binary, else ``None``.

    UTF-16 with a byte-order mark is decoded as such; anything else is text
    when, NUL bytes removed, it is strict UTF-8 without control bytes. The
    NULs are dropped, not replaced, so line numbers stay right and a key cut
    in two by a NUL is whole again.
    """
    for bom, codec in ((codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be")):
        if data.startswith(bom):
            try:
                return data[2:].decode(codec).replace("\0", "")
            except UnicodeDecodeError:
                return None
    rest = data.replace(b"\0", b"")
    if _CONTROL.search(rest):
        return None
    try:
        return rest.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _runs(data: bytes) -> _Runs:
    """The printable runs of at least ``_MIN_RUN`` characters, as ``strings`` finds them."""
    runs = _Runs()
    parts: list[str] = []
    at = 0
    for m in _RUN.finditer(data):
        wide = m.group(2) is not None
        run = m.group(2).decode("utf-16-le") if wide else m.group(1).decode("utf-8")
        runs.starts.append(at)
        runs.offsets.append(m.start())
        runs.wide.append(wide)
        parts.append(run)
        at += len(run) + 1
    runs.text = "\n".join(parts)
    return runs


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
            "followed; binary files by their printable runs) or standard input (`-`). "
            "Prints a table or JSON; exits 1 when a finding reaches the threshold."
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


def _read(path: Path | None, max_size: int) -> str | _Runs | dict[str, Any]:
    """The text of a file (``None``: stdin), its printable runs, or why it was not scanned.

    A file with a NUL byte in its first 8 KiB is binary: its text without the
    NULs when that is all that makes it binary, else its printable runs. The
    third case is the JSON entry of a skipped file: ``reason`` is
    ``too-large`` (with ``size``, ``None`` for stdin, which is not read past
    the limit) or ``unreadable`` (with ``error``). At most ``max_size + 1``
    bytes are read, so a file that grows after its size was looked at is
    still caught.
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
    else:
        try:
            with path.open("rb") as f:
                size = os.fstat(f.fileno()).st_size
                data = b"" if size > max_size else f.read(max_size + 1)
        except OSError as exc:
            return {"reason": "unreadable", "error": exc.strerror or type(exc).__name__}
        if size > max_size or len(data) > max_size:
            return {"reason": "too-large", "size": max(size, len(data))}
    if b"\0" in data[:_BINARY_PROBE]:
        text = _text_with_nuls(data)
        return _runs(data) if text is None else text
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
    scanned = binary = 0
    run_scanner: Scanner | None = None
    run_names = tuple(n for n in names if n in _RUN_SCANNERS)
    for i, (name, path) in enumerate(files, 1):
        text = _read(path, args.max_size)
        if isinstance(text, dict):
            skipped.append({"path": name, **text})
            nl = "\n" if show_progress else ""
            print(nl + _skip_message(name, text, args.max_size), file=sys.stderr)
            continue
        scanned += 1
        placed: list[tuple[Hit, dict[str, Any]]]
        if isinstance(text, _Runs):
            binary += 1
            if run_scanner is None:
                run_scanner = Scanner(replace(scanner.config, model=False))
            runs = text
            result = run_scanner.scan_text(runs.text, run_names, mask=False, clean=False)
            placed = [(h, {"line": None, "offset": runs.offset(h.start)}) for h in result.hits]
            if scanner.model is not None and "injection" in names:
                # the classifier reads prose: it gets the runs long enough to be
                # sentences, which random bytes practically never make
                prose = runs.longer(_MIN_PROSE)
                placed.extend(
                    (h, {"line": None, "offset": prose.offset(h.start)})
                    for h in scanner.model.scan(prose.text, config.threshold)
                )
        else:
            result = scanner.scan_text(text, names, mask=False, clean=False)
            placed = [(h, {"line": text.count("\n", 0, h.start) + 1}) for h in result.hits]
        for h, where in placed:
            if h.score < config.threshold:
                continue
            report.append(
                {
                    "path": name,
                    **where,
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
    complete = not skipped
    if args.json:
        print(
            json.dumps(
                {
                    "findings": report,
                    "files_scanned": scanned,
                    "files_binary": binary,
                    "files_skipped": len(skipped),
                    "skipped": skipped,
                    "complete": complete,
                },
                indent=2,
            )
        )
    else:
        _table(report, scanned, binary, skipped)
    if not complete:
        return 2
    return 1 if report else 0


def _where(r: dict[str, Any]) -> str:
    # a binary file's finding is placed by byte offset, a text file's by line
    return f"{r['path']}:{r['line']}" if r["line"] is not None else f"{r['path']}@{r['offset']}"


def _table(
    report: list[dict[str, Any]], scanned: int, binary: int, skipped: list[dict[str, Any]]
) -> None:
    if report:
        width = min(60, max(len(_where(r)) for r in report))
        for r in report:
            print(
                f"{_where(r):<{width}}  {r['score']:.2f}  {r['scanner']}/{r['kind']}  {r['reason']}"
            )
    counts: dict[str, int] = {}
    for s in skipped:
        counts[s["reason"]] = counts.get(s["reason"], 0) + 1
    why = ", ".join(f"{n} {reason}" for reason, n in sorted(counts.items()))
    summary = f"{len(report)} finding(s) in {scanned} file(s)"
    if binary:
        summary += f" ({binary} binary, by printable runs)"
    summary += f"; {len(skipped)} skipped"
    if why:
        summary += f" ({why})"
    if skipped:
        summary += "; incomplete: not every file was scanned"
    print(summary, file=sys.stderr)
