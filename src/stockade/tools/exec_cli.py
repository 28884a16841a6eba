"""``stockade sandbox``: check what sandboxing this machine offers; run a command.

- ``stockade sandbox check [--policy FILE]`` says whether bubblewrap, user
  namespaces, seccomp, Landlock, the pids cgroup (root) and the fast launcher
  are there, and with a policy, starts its ``exec:`` sandbox once and prints
  the layers it reports. Exit 0 when commands can run sandboxed, 1 when not.
- ``stockade sandbox run --policy FILE [--cwd DIR] -- PROGRAM [ARGS...]``
  runs one command through the guard (decided, audited and sandboxed as an
  agent's ``exec.run`` call) and prints how it ended. The exit status is the
  command's own, except: :data:`EXIT_DENIED` (3) when the guard denied it
  (the message names the program and its arguments, masked as the guard
  masks reasons; a program that is not found is denied too), 2 when it could
  not run (bad policy, no sandbox), 1 when stockade killed it (timeout,
  output, disk) or a signal ended it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from stockade.errors import Denied, PolicyError, StockadeError

__all__ = ["EXIT_DENIED", "register"]

#: ``stockade sandbox run``'s status when the guard denied the command (it never ran)
EXIT_DENIED = 3


def _check(args: argparse.Namespace) -> int:
    from stockade.tools.sandbox_host import _c_launcher, _PidsCgroup, probe

    p = probe()
    rows: list[tuple[str, str]] = [
        (
            "bubblewrap",
            f"{p.bwrap} ({'.'.join(map(str, p.bwrap_version))})" if p.bwrap else "missing",
        ),
        ("user namespaces", "ok" if p.userns else f"not working: {p.userns_error}"),
        ("seccomp table", p.seccomp_arch or "none for this architecture"),
        ("landlock ABI", str(p.landlock) if p.landlock else "none (the layer is skipped)"),
        (
            "C launcher",
            "compiled" if _c_launcher() else "no C compiler: the Python launcher is used",
        ),
    ]
    if os.geteuid() == 0:
        base = _PidsCgroup.base()
        rows.append(
            ("pids cgroup (root)", str(base) if base else "missing: root cannot run sandboxed")
        )
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    ok = bool(p.bwrap and p.userns and p.seccomp_arch)
    if os.geteuid() == 0:
        ok = ok and _PidsCgroup.base() is not None
    if args.policy:
        from stockade.tools.sandbox import Sandbox

        try:
            from stockade.policy import Policy

            sandbox = Sandbox.from_policy(Policy.from_file(args.policy))
            with sandbox:
                result = sandbox.run(
                    ["/bin/true"] if os.path.exists("/bin/true") else ["/usr/bin/true"]
                )
            print("policy sandbox  " + json.dumps(dict(result.layers), sort_keys=True))
            ok = ok or sandbox.config.mode == "none"
        except PolicyError as exc:
            for problem in exc.problems:
                print(problem, file=sys.stderr)
            return 2
        except StockadeError as exc:
            print(f"policy sandbox  cannot run: {exc}")
            return 1
    print("commands can run sandboxed" if ok else "commands cannot run sandboxed here")
    return 0 if ok else 1


def _masked(scanner: Any, guard: Any, call: dict[str, Any], text: str) -> str:
    """``text`` masked by the policy's result scanner, as the guard masks the
    reasons it gives (a secret on the command line is not printed back)."""
    from stockade.model import Output, ToolCall
    from stockade.stages import ResultScanner

    if not isinstance(scanner, ResultScanner):
        return text
    try:
        probe = ToolCall("exec", "run", call, session="cli")
        value = scanner.scan_result(probe, Output(text), guard.session("cli")).value
    except Exception:  # fail closed: show nothing rather than the raw text
        return "(the command is withheld: the result scanner failed on it)"
    return value if isinstance(value, str) else "(the command is withheld)"


def _run(args: argparse.Namespace) -> int:
    import shlex

    from stockade import Guard
    from stockade.policy import Policy
    from stockade.policy.policy import load_part

    argv: list[str] = list(args.argv)
    if argv and argv[0] == "--":
        argv = argv[1:]
    if not argv:
        print("stockade sandbox run: give the command after `--`", file=sys.stderr)
        return 2
    try:
        policy = Policy.from_file(args.policy)
        # the guard's own scanner, kept to mask what a denial message quotes
        scanner = load_part("stockade.scan:scanner_from_policy")(policy)
        guard = Guard(policy, scanner=scanner)
    except PolicyError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return 2
    call: dict[str, Any] = {"argv": argv, "cwd": args.cwd}
    try:
        with guard:
            result = guard.call("exec", "run", call, session="cli")
    except Denied as exc:
        command = _masked(scanner, guard, call, shlex.join(argv))
        where = "" if args.cwd in ("", ".") else f" in `{args.cwd}`"
        print(
            f"stockade: denied `{command}`{where} by {exc.rule}: {exc.decision.reason}",
            file=sys.stderr,
        )
        return EXIT_DENIED
    except StockadeError as exc:
        print(f"cannot run: {exc}", file=sys.stderr)
        return 2
    value = result.value
    sys.stdout.write(value["stdout"])
    sys.stderr.write(value["stderr"])
    print(f"stockade: {value['status']}", file=sys.stderr)
    code = value["exit_code"]
    if value["killed"] or value["signal"] or not isinstance(code, int):
        return 1
    return code


def register(subparsers: Any) -> None:
    """Add ``stockade sandbox check`` and ``stockade sandbox run``."""
    sandbox = subparsers.add_parser(
        "sandbox",
        help="check the command sandbox; run a command in it",
        description="The exec tool's OS sandbox (bubblewrap, seccomp, Landlock, limits).",
    )
    sub = sandbox.add_subparsers(dest="sandbox_command", metavar="SUBCOMMAND")
    check = sub.add_parser(
        "check",
        help="say what sandboxing this machine offers",
        description=(
            "Say whether bubblewrap, user namespaces, seccomp, Landlock, the pids cgroup "
            "(when root) and the C launcher are there. With --policy, start the policy's "
            "exec sandbox once and print the layers it reports. Exit 0 when commands can "
            "run sandboxed, 1 when they cannot, 2 for a bad policy."
        ),
    )
    check.add_argument("--policy", metavar="FILE", help="policy YAML file with an exec section")
    check.set_defaults(func=_check)
    run = sub.add_parser(
        "run",
        help="run one command through the guard and the sandbox",
        description=(
            "Run one command as an agent's exec.run call: the policy decides it, the audit "
            "records it, the sandbox runs it. Prints its output and how it ended. Exit "
            f"status: the command's own; {EXIT_DENIED} when the guard denied it (it did not "
            "run; the message names the program and its arguments, masked as the guard "
            "masks reasons); 2 when it could not run (bad policy, no sandbox); "
            "1 when stockade killed it (timeout, output or disk limit) or a "
            "signal ended it."
        ),
    )
    run.add_argument("--policy", required=True, metavar="FILE", help="policy YAML file")
    run.add_argument(
        "--cwd", default=".", metavar="DIR", help="working directory in the workspace (default .)"
    )
    run.add_argument("argv", nargs=argparse.REMAINDER, help="-- PROGRAM [ARGS...]")
    run.set_defaults(func=_run)
    sandbox.set_defaults(func=lambda _args: (sandbox.print_help(), 2)[1])
