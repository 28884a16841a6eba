"""``stockade audit init|verify|tail|query|proof|export|report``.

Every command finds the log from ``--policy FILE`` (its ``audit:`` section)
or from ``--store PATH|URL`` (plus ``--origin`` for PostgreSQL and ``--keys``
or ``--public-key`` where a key is needed).

``verify`` exits 0 when the log checks, 3 when something is invalid (a
changed, moved or inserted record, a bad signature or root), 4 when records or
checkpoints are missing, 5 when the sequence has a gap, 2 when it could not
run.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import sys
import time
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

from stockade.audit import AuditConfig, open_store
from stockade.audit.checkpoint import Checkpoint, read_mirror
from stockade.audit.keys import create_keys, key_id, load_public_key, load_signing_key
from stockade.audit.record import StoredRecord
from stockade.audit.store import Query, Store
from stockade.audit.verify import VerifyReport, verify_log
from stockade.cli import open_output, write_output
from stockade.errors import AuditError, AuditIntegrityError, ConfigurationError

__all__ = ["EXIT_CODES", "register"]

#: exit codes of ``audit verify`` by error kind
EXIT_CODES = {"invalid": 3, "missing": 4, "gap": 5}

_DURATION = {"s": 1, "m": 60, "h": 3600, "d": 86400}


# -- finding the log ----------------------------------------------------------------


def _config(args: argparse.Namespace) -> AuditConfig:
    if args.policy:
        from stockade.policy import Policy

        section = Policy.from_file(args.policy).section("audit")
        if not isinstance(section, AuditConfig):
            raise ConfigurationError(f"policy `{args.policy}` has no audit section")
        config = section
    elif args.store:
        if args.store.startswith(("postgresql://", "postgres://")):
            if not args.origin:
                raise ConfigurationError(
                    "a PostgreSQL store needs --origin; " + _origins_hint(args.store)
                )
            config = AuditConfig(url=args.store, origin=args.origin)
        else:
            config = AuditConfig(path=Path(args.store), origin=args.origin or "")
        config = replace(config, keys_dir=Path(args.keys) if args.keys else Path("audit-keys"))
    else:
        raise ConfigurationError("say which log: --policy FILE or --store PATH|URL")
    if args.origin and args.policy:
        config = replace(config, origin=args.origin)
    if args.keys and args.policy:
        config = replace(config, keys_dir=Path(args.keys))
    return config


def _origins_hint(url: str) -> str:
    """Which origins the PostgreSQL store at ``url`` holds, for the --origin message."""
    try:
        from stockade.audit.store_postgres import list_origins

        origins = list_origins(url)
    except (AuditError, ConfigurationError) as exc:
        return f"could not list its origins ({exc})"
    if not origins:
        return "it holds no origins yet"
    listed = ", ".join(f"`{_clean(name, 80)}` ({size} records)" for name, size in origins)
    return f"it holds: {listed}"


def _public_key(args: argparse.Namespace, config: AuditConfig) -> Any:
    path = Path(args.public_key) if args.public_key else config.key_paths.public
    return load_public_key(path)


def _reader(args: argparse.Namespace) -> tuple[AuditConfig, Store]:
    config = _config(args)
    try:
        return config, open_store(config, readonly=True)
    except AuditError as exc:
        raise ConfigurationError(str(exc)) from exc


# -- output helpers -----------------------------------------------------------------


def _clean(value: Any, width: int) -> str:
    """Printable text only: records hold attacker-chosen strings (no terminal escapes)."""
    text = "".join(ch if ch.isprintable() else "?" for ch in str(value))
    return text if len(text) <= width else text[: width - 1] + "~"


def _when(t: float) -> str:
    return _dt.datetime.fromtimestamp(t, tz=_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _print_records(records: Iterable[StoredRecord], as_json: bool, out: Any) -> int:
    n = 0
    if not as_json:
        out.write(
            f"{'seq':>7}  {'time (UTC)':<20}  {'kind':<8}  {'session':<16}  "
            f"{'tool.action':<22}  {'decision':<8}  rule\n"
        )
    for r in records:
        n += 1
        d = r.parsed()
        if as_json:
            out.write(json.dumps(r.as_export(), sort_keys=True, ensure_ascii=False) + "\n")
            continue
        out.write(
            f"{r.seq:>7}  {_when(float(d.get('time', 0))):<20}  {_clean(d.get('kind', ''), 8):<8}  "
            f"{_clean(d.get('session', ''), 16):<16}  "
            f"{_clean(str(d.get('tool', '')) + '.' + str(d.get('action', '')), 22):<22}  "
            f"{_clean(d.get('decision', ''), 8):<8}  {_clean(d.get('rule', ''), 40)}\n"
        )
    out.flush()
    return n


class _Time(float):
    """Seconds since the epoch that remember how they were written (for messages)."""

    text: str

    def __new__(cls, value: float, text: str) -> _Time:
        self = super().__new__(cls, value)
        self.text = text
        return self


def _time_arg(text: str) -> _Time:
    """An ISO 8601 time, seconds since the epoch, or a duration ago (``15m``, ``2h``, ``1d``)."""
    t = text.strip()
    if t and t[-1] in _DURATION and t[:-1].replace(".", "", 1).isdigit():
        return _Time(time.time() - float(t[:-1]) * _DURATION[t[-1]], text)
    try:
        return _Time(float(t), text)
    except ValueError:
        pass
    try:
        parsed = _dt.datetime.fromisoformat(t.replace("Z", "+00:00"))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(
            f"expected an ISO time, epoch seconds or a duration such as 15m, got `{text}`"
        ) from exc
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=_dt.timezone.utc)
    return _Time(parsed.timestamp(), text)


def _count(text: str) -> int:
    """A count of records: a whole number, zero or more."""
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got `{text}`") from None
    if n < 0:
        raise argparse.ArgumentTypeError(f"expected a count of 0 or more, got `{text}`")
    return n


def _query(args: argparse.Namespace, **extra: Any) -> Query:
    fields: dict[str, Any] = {
        "session": getattr(args, "session", None),
        "tool": getattr(args, "tool", None),
        "decision": getattr(args, "decision", None),
        "rule": getattr(args, "rule", None),
        "kind": getattr(args, "kind", None),
        "since": getattr(args, "since", None),
        "until": getattr(args, "until", None),
    }
    fields.update(extra)
    since, until = fields["since"], fields["until"]
    if since is not None and until is not None and since >= until:
        raise ConfigurationError(
            f"--since `{_clean(getattr(since, 'text', since), 40)}` ({_when(since)}) is not "
            f"before --until `{_clean(getattr(until, 'text', until), 40)}` ({_when(until)}): "
            "no record could match"
        )
    return Query(**fields)


# -- commands -------------------------------------------------------------------


def _init(args: argparse.Namespace) -> int:
    config = _config(args)
    if not config.origin:
        import socket

        config = replace(config, origin=socket.gethostname() or "stockade")
    paths = config.key_paths
    existed = paths.exist()
    create_keys(paths)
    store = open_store(config)
    store.close()
    kid = key_id(load_signing_key(paths.signing).public_key())
    print(f"audit log `{config.store_location}` ready (origin `{config.origin}`)")
    print(f"{'kept existing' if existed else 'created'} keys in `{paths.signing.parent}`")
    print(f"public key: {paths.public} (key id {kid}); give it to whoever runs verify")
    print(f"hmac key:   {paths.hmac} (keep it apart from the log)")
    return 0


def _run_verify(args: argparse.Namespace, config: AuditConfig, store: Store) -> VerifyReport:
    mirror: list[Checkpoint] = []
    mirror_file = Path(args.mirror) if args.mirror else config.mirror_file
    absent = mirror_file is not None and not args.mirror and not mirror_file.exists()
    if mirror_file is not None and not absent:
        mirror = read_mirror(mirror_file)
    report = verify_log(store, _public_key(args, config), mirror=mirror, strict=args.strict)
    if absent and report.checkpoints:
        # a log with checkpoints whose configured mirror is gone: cut together?
        message = f"the policy's checkpoint mirror `{mirror_file}` is missing"
        if args.strict:
            raise AuditIntegrityError(message, kind="missing", seq=None)
        report.warnings.append(message + "; checked without it")
    return report


def _verify(args: argparse.Namespace) -> int:
    config, store = _reader(args)
    try:
        report = _run_verify(args, config, store)
    except AuditIntegrityError as exc:
        if args.json:
            print(json.dumps({"ok": False, "kind": exc.kind, "seq": exc.seq, "error": str(exc)}))
        else:
            at = f" at seq {exc.seq}" if exc.seq is not None else ""
            print(f"audit log BAD ({exc.kind}{at}): {exc}", file=sys.stderr)
        return EXIT_CODES[exc.kind]
    finally:
        store.close()
    if args.json:
        print(json.dumps(report.as_dict()))
        return 0
    print(
        f"audit log ok: origin `{report.origin}`, {report.records} records, "
        f"{report.checkpoints} checkpoints, signed up to {report.signed_size}, "
        f"root {report.root.hex()[:16]}"
    )
    if report.mirrored:
        print(f"checked against {report.mirrored} mirrored checkpoints")
    for warning in report.warnings:
        print(f"warning: {warning}")
    return 0


def _tail(args: argparse.Namespace) -> int:
    _, store = _reader(args)
    try:
        last = list(store.query(Query(limit=args.lines, newest_first=True)))[::-1]
        _print_records(last, args.json, sys.stdout)
        newest = list(store.query(Query(limit=1, newest_first=True)))
        after = newest[0].seq if newest else -1
        polls = 0
        while args.follow and (args.max_polls is None or polls < args.max_polls):
            time.sleep(args.interval)
            polls += 1
            new = list(store.query(Query(after_seq=after, limit=1000)))
            for r in new:
                _print_records([r], True, sys.stdout) if args.json else _print_line(r)
            if new:
                after = new[-1].seq
    finally:
        store.close()
    return 0


def _print_line(r: StoredRecord) -> None:
    import io

    buf = io.StringIO()
    _print_records([r], False, buf)
    sys.stdout.write(buf.getvalue().split("\n", 1)[1])
    sys.stdout.flush()


def _query_cmd(args: argparse.Namespace) -> int:
    _, store = _reader(args)
    try:
        n = _print_records(store.query(_query(args, limit=args.limit)), args.json, sys.stdout)
    finally:
        store.close()
    if not args.json:
        print(f"({n} records)", file=sys.stderr)
    return 0


def _proof(args: argparse.Namespace) -> int:
    from stockade.audit.proof import prove_consistency, prove_inclusion

    _, store = _reader(args)
    try:
        if args.inclusion is not None:
            result = prove_inclusion(store, args.inclusion, args.size)
        else:
            old, new = args.consistency
            result = prove_consistency(store, old, new)
    finally:
        store.close()
    print(json.dumps(result, indent=2))
    return 0


def _export(args: argparse.Namespace) -> int:
    from stockade.audit.export import write_jsonl, write_otel

    _, store = _reader(args)
    try:
        with open_output(args.output) as out:
            records = store.query(_query(args))
            if args.format == "jsonl":
                n = write_jsonl(records, out)
            else:
                n = write_otel(records, out, service=args.service)
    finally:
        store.close()
    what = "records" if args.format == "jsonl" else "spans"
    print(f"exported {n} {what}" + (f" to {args.output}" if args.output else ""), file=sys.stderr)
    return 0


def _report(args: argparse.Namespace) -> int:
    from stockade.audit.report import render_report

    config, store = _reader(args)
    try:
        try:
            r = _run_verify(args, config, store)
            verified = (
                f"verified: {r.records} records, signed up to {r.signed_size}, "
                f"root {r.root.hex()[:16]}"
            )
            ok = True
        except AuditIntegrityError as exc:
            verified, ok = f"VERIFICATION FAILED ({exc.kind} at seq {exc.seq}): {exc}", False
        except ConfigurationError as exc:
            verified, ok = f"not verified: {exc}", False
        page = render_report(
            store.query(_query(args)),
            origin=store.origin,
            location=config.store_location,
            verified=verified,
            verified_ok=ok,
        )
    finally:
        store.close()
    write_output(args.html, page)
    print(f"report written to {args.html}")
    return 0


# -- the parser ---------------------------------------------------------------------


def _location(p: argparse.ArgumentParser, *, key: bool = False) -> None:
    g = p.add_argument_group("which log")
    g.add_argument("--policy", metavar="FILE", help="use the audit: section of this policy")
    g.add_argument("--store", metavar="PATH|URL", help="a SQLite file or a postgresql:// URL")
    g.add_argument("--origin", help="the log's origin (needed for PostgreSQL)")
    g.add_argument("--keys", metavar="DIR", help="the keys folder (default: ./audit-keys)")
    if key:
        g.add_argument(
            "--public-key", metavar="FILE", help="the public key to check signatures with"
        )


def _filters(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("filters")
    g.add_argument("--session", help="only this session")
    g.add_argument("--tool", help="only this tool")
    g.add_argument("--decision", choices=("allow", "deny", "ask"), help="only this decision")
    g.add_argument("--rule", help="only records decided by this rule id")
    g.add_argument("--kind", choices=("decision", "outcome", "approval"), help="record kind")
    g.add_argument(
        "--since", type=_time_arg, metavar="TIME", help="ISO time, epoch seconds or 15m/2h/1d ago"
    )
    g.add_argument("--until", type=_time_arg, metavar="TIME", help="as --since; exclusive")


def register(subparsers: Any) -> None:
    """Add ``stockade audit ...`` to the command line."""
    audit = subparsers.add_parser(
        "audit",
        help="create, verify, search, prove and export the audit log",
        description="The audit log: every decision of the guard, append-only, in a Merkle "
        "tree with signed checkpoints.",
    )
    sub = audit.add_subparsers(dest="audit_command", metavar="SUBCOMMAND")
    audit.set_defaults(func=lambda a: (audit.print_help(), 2)[1])

    p = sub.add_parser(
        "init",
        help="create the signing and hmac keys and the store",
        description="Create the Ed25519 signing key (mode 0600), its public key, the HMAC key "
        "for raw arguments (mode 0600) and the store. Existing keys are kept.",
    )
    _location(p)
    p.set_defaults(func=_init)

    p = sub.add_parser(
        "verify",
        help="check every record, hash, root and signature",
        description="Check every record's hash chain, every signed checkpoint's signature and "
        "root, and the mirror's checkpoints. Exit 0 ok, 3 invalid, 4 missing, 5 gap, "
        "2 could not run; the message names the first bad sequence number.",
    )
    _location(p, key=True)
    p.add_argument("--mirror", metavar="FILE", help="also check against this checkpoint mirror")
    p.add_argument(
        "--strict",
        action="store_true",
        help="fail (missing) when records after the last checkpoint are not signed yet",
    )
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=_verify)

    p = sub.add_parser(
        "tail",
        help="show the latest records",
        description="Show the last records; --follow keeps printing new ones as they are written.",
    )
    _location(p)
    p.add_argument("-n", "--lines", type=_count, default=10, help="how many (default 10)")
    p.add_argument("-f", "--follow", action="store_true", help="keep printing new records")
    p.add_argument("--interval", type=float, default=0.5, help="poll interval in seconds")
    p.add_argument("--max-polls", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--json", action="store_true", help="JSON lines")
    p.set_defaults(func=_tail)

    p = sub.add_parser(
        "query",
        help="search records by session, tool, decision, rule, time",
        description="Print the records that match every filter given, oldest first.",
    )
    _location(p)
    _filters(p)
    p.add_argument("--limit", type=_count, default=None, help="at most this many records")
    p.add_argument("--json", action="store_true", help="JSON lines instead of a table")
    p.set_defaults(func=_query_cmd)

    p = sub.add_parser(
        "proof",
        help="print an inclusion or consistency proof",
        description="Print an RFC 6962 proof (JSON) against a signed checkpoint: that record "
        "SEQ is in the log, or that the log at OLD records is a prefix of the log at NEW.",
    )
    _location(p)
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--inclusion", type=int, metavar="SEQ", help="prove record SEQ is included")
    what.add_argument(
        "--consistency", type=int, nargs=2, metavar=("OLD", "NEW"), help="prove OLD is a prefix"
    )
    p.add_argument("--size", type=int, help="the checkpoint size (default: the latest)")
    p.set_defaults(func=_proof)

    p = sub.add_parser(
        "export",
        help="export records as JSON lines or OpenTelemetry spans",
        description="Write records as JSON lines, or as OTLP/JSON spans following the "
        "OpenTelemetry GenAI conventions (one `execute_tool {tool}` span per call).",
    )
    _location(p)
    _filters(p)
    p.add_argument("--format", choices=("jsonl", "otel"), default="jsonl", help="output format")
    p.add_argument("-o", "--output", metavar="FILE", help="write here instead of stdout")
    p.add_argument("--service", default="stockade", help="otel service.name")
    p.set_defaults(func=_export)

    p = sub.add_parser(
        "report",
        help="write a self-contained HTML report",
        description="Verify the log and write one HTML page (no scripts, no external assets): "
        "timeline, denials by rule, calls per tool and session, slowest calls.",
    )
    _location(p, key=True)
    _filters(p)
    p.add_argument("--html", metavar="FILE", required=True, help="where to write the page")
    p.add_argument("--mirror", metavar="FILE", help="also verify against this mirror")
    p.add_argument("--strict", action="store_true", help=argparse.SUPPRESS)
    p.set_defaults(func=_report)
