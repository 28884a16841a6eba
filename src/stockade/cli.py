"""The ``stockade`` command.

Core commands live here (``policy check|explain|test``, ``demo``); each part
adds its own commands from a module with a ``register(subparsers)`` function
(listed in ``_PART_COMMANDS``), so the fs rules stay in ``tools/fs.py`` and the
audit commands in ``audit/``.

Exit codes: 0 success, 1 the thing checked is bad (policy errors of ``policy
check|explain|test``, failed cases, audit verification), 2 usage errors and
anything that could not run (a policy that does not load for any other
command, an output file that cannot be written), 141 when whoever reads the
output closed it early (``stockade audit query | head``): the code a shell
reports for a process ended by SIGPIPE, so pipelines behave as with any
other Unix tool.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

from stockade import __version__
from stockade.errors import PolicyError, StockadeError

__all__ = ["EXIT_BROKEN_PIPE", "OutputError", "main", "open_output", "write_output"]

#: exit status when stdout was closed by its reader: 128 + SIGPIPE (13), what
#: a shell shows for a tool that a closed pipe ended, without a traceback
EXIT_BROKEN_PIPE = 141

#: modules that add subcommands: each has ``register(subparsers) -> None`` and
#: sets ``func=handler`` (``handler(args) -> int``) on its parsers
_PART_COMMANDS = (
    "stockade.audit.cli",
    "stockade.tools.journal",
    "stockade.tools.http_proxy",
    "stockade.tools.sql_cli",
    "stockade.tools.exec_cli",
    "stockade.scan.cli",
    "stockade.approvals.cli",
    "stockade.integrations.mcp_cli",
    "stockade.server.cli",
)


class OutputError(StockadeError):
    """An output file a command was told to write could not be written.

    Raised by :func:`open_output` and :func:`write_output`; :func:`main` turns
    it into ``stockade: cannot write `PATH`: REASON`` and exit status 2. It
    never leaves the command line.
    """

    def __init__(self, path: str | os.PathLike[str], exc: OSError) -> None:
        reason = exc.strerror or str(exc)
        reason = reason[:1].lower() + reason[1:]
        super().__init__(f"cannot write `{os.fspath(path)}`: {reason}")
        self.path = os.fspath(path)


def write_output(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` to the file ``path``; :class:`OutputError` when it cannot."""
    try:
        Path(path).write_text(text, encoding="utf-8")
    except OSError as exc:
        raise OutputError(path, exc) from exc


@contextmanager
def open_output(path: str | os.PathLike[str] | None) -> Iterator[TextIO]:
    """The file ``path`` open for writing, or stdout when ``path`` is None.

    Opening, writing and closing the file raise :class:`OutputError`; errors
    writing to stdout are left as they are (a closed pipe is handled by
    :func:`main`).
    """
    if path is None:
        yield sys.stdout
        return
    try:
        out = open(path, "w", encoding="utf-8")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise OutputError(path, exc) from exc
    try:
        try:
            yield out
        finally:
            out.close()
    except OSError as exc:
        if isinstance(exc, BrokenPipeError):
            raise
        raise OutputError(path, exc) from exc


def _policy_check(args: argparse.Namespace) -> int:
    from stockade.policy.policy import check_policy_file

    failed = False
    for file in args.files:
        try:
            policy = check_policy_file(file)
        except PolicyError as exc:
            failed = True
            for problem in exc.problems:
                print(problem, file=sys.stderr)
            continue
        # A section may point out what is not an error now (a secret file not yet mounted).
        for section in policy.sections.values():
            warnings = getattr(section, "warnings", None)
            for warning in warnings() if callable(warnings) else ():
                print(warning, file=sys.stderr)
        sections = ", ".join(sorted(policy.sections)) or "no tool sections"
        print(f"{file}: ok ({len(policy.rules)} rules, {sections}, mode {policy.mode})")
    return 1 if failed else 0


def _policy_explain(args: argparse.Namespace) -> int:
    from stockade.policy import Policy
    from stockade.policy.explain import explain

    try:
        policy = Policy.from_file(args.file)
    except PolicyError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return 1
    lines = explain(policy)
    if args.json:
        print(json.dumps([line.as_dict() for line in lines], indent=2))
    else:
        print(f"{args.file}: what an agent under this policy may do, worst first")
        for line in lines:
            print(f"  [{line.risk}] {line.text}")
    return 0


def _policy_test(args: argparse.Namespace) -> int:
    from stockade.policy import Policy
    from stockade.policy.cases import case_guard, load_cases, run_cases

    try:
        policy = Policy.from_file(args.file)
        cases = load_cases(args.cases)
    except PolicyError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return 1
    failures = 0
    guard, notes = case_guard(policy)
    with guard:
        for note in notes:
            print(note)
        for outcome in run_cases(policy, cases, guard=guard):
            status = "ok  " if outcome.passed else "FAIL"
            if not outcome.passed:
                failures += 1
            print(f"{status} {outcome.case.name}: {outcome.detail}")
    print(f"{len(cases) - failures} passed, {failures} failed")
    return 1 if failures else 0


def _demo(args: argparse.Namespace) -> int:
    from stockade.demo import SCENES, run_demo

    scenes = tuple(args.scene) if args.scene else SCENES
    unknown = [s for s in scenes if s not in SCENES]
    if unknown:
        expected = ", ".join(SCENES)
        print(f"unknown scene `{unknown[0]}`; expected one of: {expected}", file=sys.stderr)
        return 2
    keep = Path(args.keep) if args.keep else None
    return run_demo(workspace=keep, scenes=scenes, color=False if args.no_color else None)


def build_parser() -> argparse.ArgumentParser:
    """The whole command-line interface."""
    parser = argparse.ArgumentParser(
        prog="stockade",
        description=(
            "Fence in what an LLM agent can do: default-deny policies for its tools, "
            "checked on every call, audited in a verifiable log."
        ),
        epilog="Start with `stockade demo`; see `stockade COMMAND --help` for each command.",
    )
    parser.add_argument("--version", action="version", version=f"stockade {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    demo = sub.add_parser(
        "demo",
        help="run a scripted agent against the bundled example policy",
        description=(
            "Run a scripted, LLM-free agent on a temporary workspace: it does a user's task "
            "through guarded tools, then follows an injected instruction; every call prints "
            "its decision, the rule and why. Exit 0 when every step ended as expected."
        ),
    )
    demo.add_argument(
        "--scene", action="append", metavar="NAME", help="play only this scene (repeatable)"
    )
    demo.add_argument(
        "--keep",
        metavar="DIR",
        help="use DIR as the workspace and keep it afterwards (audit log, report)",
    )
    demo.add_argument("--no-color", action="store_true", help="plain output")
    demo.set_defaults(func=_demo)

    policy = sub.add_parser(
        "policy",
        help="check, explain and test policy files",
        description="Check, explain and test policy files.",
    )
    psub = policy.add_subparsers(dest="policy_command", metavar="SUBCOMMAND")
    check = psub.add_parser(
        "check",
        help="validate policy files",
        description="Load and validate policy files; print every problem with file:line:column. "
        "Exit 1 when any file has problems.",
    )
    check.add_argument("files", nargs="+", metavar="FILE", help="policy YAML file")
    check.set_defaults(func=_policy_check)
    explain = psub.add_parser(
        "explain",
        help="say in plain words what a policy allows, worst first",
        description="List the effective permissions of a policy in plain words, the most "
        'dangerous first ("may delete any file under notes/").',
    )
    explain.add_argument("file", metavar="FILE", help="policy YAML file")
    explain.add_argument("--json", action="store_true", help="print JSON")
    explain.set_defaults(func=_policy_explain)
    ptest = psub.add_parser(
        "test",
        help="check expected decisions for sample calls",
        description="Decide each sample call in CASES (YAML: a list of {name, tool, action, "
        "args, principal, expect, rule}) as the guard would, without running anything "
        "(scan, the tool's own checks, rules, flow, limits), and compare with the expected "
        "decision and rule. Exit 1 when any case fails or there are none; for your own CI.",
    )
    ptest.add_argument("file", metavar="FILE", help="policy YAML file")
    ptest.add_argument("cases", metavar="CASES", help="YAML file of sample calls")
    ptest.set_defaults(func=_policy_test)
    policy.set_defaults(func=lambda a: _help(policy))

    for module_name in _PART_COMMANDS:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name and module_name.startswith(exc.name):
                continue  # that part has no commands (yet)
            raise
        register: Any = getattr(module, "register", None)
        if register is not None:
            register(sub)
    return parser


def _help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``stockade`` command."""
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    try:
        code = int(func(args))
        sys.stdout.flush()  # a closed pipe shows here, not at interpreter exit
        return code
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_BROKEN_PIPE
    except PolicyError as exc:
        # ``policy check|explain|test`` report their own policy's problems (1);
        # any other command was given a policy it could not run with
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return 2
    except StockadeError as exc:
        print(f"stockade: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _silence_stdout() -> None:
    """Point stdout at /dev/null after its reader went away, so that the
    interpreter's last flush does not fail a second time."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, ValueError, OSError):
        return  # not a real file (a test's capture): nothing is flushed at exit
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
    finally:
        os.close(devnull)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
