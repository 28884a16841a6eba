"""The ``exec`` tool: commands run in the OS sandbox, allowed by command rules.

The policy's ``exec:`` section names the workspace, the sandbox, the network
mode, the resource limits and the commands an agent may run::

    exec:
      workspace: ./work              # the only writable place (/workspace inside)
      sandbox: bwrap                 # default; `none` = resource limits only (warned)
      network: none                  # or `proxy`: only stockade's forward proxy
      shell: false                   # `true` or `ask` lets `exec.shell` run a script
      limits: {timeout: 30s, cpu: 10s, memory: 1GiB, processes: 64,
               file_size: 64MiB, open_files: 256, output: 1MiB, tmp_size: 64MiB,
               disk_growth: 1GiB}
      env: {LANG: C.UTF-8}
      pass_env: [TZ]                 # copied from stockade's environment when set
      expose_git: false              # `.git` is hidden from commands unless true
      max_entries: 20000             # workspace entries walked per run; more = refused
      commands:
        - {program: ls}                                  # any arguments
        - {program: git, line: {regex: "status( --short)?|log -n [0-9]+"}}
        - {program: wc, args: {regex: "-[lwc]|[A-Za-z0-9._/-]+"}, cwd: {glob: "docs/**"}}

Each command becomes an ordinary allow rule (``exec:<id>``) on the canonical
call, so it is decided, explained and audited like every other rule. The
canonical arguments ``prepare`` produces:

- ``program``: the program's absolute path after resolution (a bare name is
  looked up in the sandbox's ``PATH``; symlinks are resolved), so
  ``/bin/ls``, ``ls`` and ``/usr/bin/../bin/ls`` are one program;
- ``argv``: the arguments after the program (``args`` constraints apply to
  every one of them);
- ``line``: the arguments joined with shell quoting (``shlex.join``), for
  patterns over the whole command line;
- ``cwd``: the working directory relative to the workspace (``.`` for its root).

Actions: ``run`` (``argv`` list, optional ``cwd``, ``stdin``, ``timeout``) and
``shell`` (``script``, optional ``cwd``, ``stdin``, ``timeout``: only when the
section says ``shell: true`` or ``ask``; the whole script still runs in the
sandbox).

At each run the sandbox hides what the fs deny lists cover, ``.git`` and,
with a network, confidential files (see ``docs/exec.md``); a networked
command that names a confidential file is denied (``exec:confidential-egress``).
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import re
import shlex
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from stockade.errors import ExecError
from stockade.model import Confidentiality, Decision, Effect, Integrity, Label, Output, ToolCall
from stockade.policy.node import Node
from stockade.policy.rules import RuleSpec, parse_constraint
from stockade.tools.base import Capability, Context
from stockade.tools.fs import FSConfig, FSTool
from stockade.tools.sandbox import (
    DEFAULT_SYSTEM_PATHS,
    WORKSPACE,
    Limits,
    Sandbox,
    SandboxConfig,
)

__all__ = [
    "SEARCH_PATH",
    "SHELLS",
    "CommandRule",
    "ExecConfig",
    "ExecTool",
    "capability_from_policy",
    "parse_section",
    "resolve_program",
]

#: where a bare program name is looked up (the sandbox's PATH)
SEARCH_PATH = ("/usr/local/bin", "/usr/bin", "/bin", "/usr/sbin", "/sbin")

#: programs that are shells: running one counts as ``shell``, allowed or not
SHELLS = frozenset({"sh", "bash", "dash", "zsh", "ksh", "mksh", "fish", "csh", "tcsh", "busybox"})

_SECTION_KEYS = (
    "workspace",
    "sandbox",
    "network",
    "proxy",
    "shell",
    "limits",
    "env",
    "pass_env",
    "system_paths",
    "commands",
    "expose_git",
    "max_entries",
)
_LIMIT_KEYS = (
    "timeout",
    "cpu",
    "memory",
    "processes",
    "file_size",
    "open_files",
    "output",
    "tmp_size",
    "disk_growth",
)
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_PROXY = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):([0-9]{1,5})$")
_COMMAND_KEYS = ("id", "program", "args", "line", "cwd", "effect", "reason")
#: how many words of a command, and how long a word, are looked at as paths
_MAX_WORDS = 4096
_MAX_PATH = 4096
_CONF_RANK = {Confidentiality.PUBLIC: 0, Confidentiality.INTERNAL: 1, Confidentiality.SECRET: 2}


@dataclass(frozen=True)
class CommandRule:
    """One allowed command as written in the section (it is compiled as a rule)."""

    id: str
    program: str
    effect: Effect
    args: Mapping[str, Any] | None = None
    line: Mapping[str, Any] | None = None
    cwd: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class ExecConfig:
    """The parsed ``exec:`` section."""

    sandbox: SandboxConfig
    shell: str = "deny"  # deny | allow | ask
    shell_program: str = "/bin/sh"
    commands: tuple[CommandRule, ...] = ()
    proxy: str = ""
    expose_git: bool = False
    max_entries: int = 20000


def resolve_program(name: str, system_paths: tuple[str, ...] = DEFAULT_SYSTEM_PATHS) -> str:
    """The absolute, symlink-free path of a program the sandbox can run.

    A bare name is looked up in :data:`SEARCH_PATH`; a path must be absolute.
    Raise :class:`ExecError` when it is not found, not executable, or not under
    the system paths bound into the sandbox.
    """
    if not name or "\x00" in name:
        raise ExecError("empty program name")
    if "/" in name:
        if not name.startswith("/"):
            raise ExecError(f"give the program `{name}` by name or by absolute path")
        candidates = [name]
    else:
        candidates = [f"{d}/{name}" for d in SEARCH_PATH]
    for candidate in candidates:
        real = os.path.realpath(candidate)
        if os.path.isfile(real) and os.access(real, os.X_OK):
            roots = [os.path.realpath(p) for p in system_paths]
            if not any(real == r or real.startswith(r.rstrip("/") + "/") for r in roots):
                raise ExecError(f"program `{name}` is outside the sandbox's system paths")
            return real
    raise ExecError(f"program `{name}` not found")


def _path_candidates(word: str) -> list[str]:
    """The paths one word may name: itself, after ``@`` (curl) and after ``=`` (``--file=x``)."""
    out = [word]
    if word.startswith("@"):
        out.append(word[1:])
    if "=" in word:
        out.append(word.split("=", 1)[1].removeprefix("@"))
    # HOME is the workspace: `~/x` and `$HOME/x` in a script name /workspace/x
    for home in ("~", "$HOME", "${HOME}"):
        out.extend(WORKSPACE + w[len(home) :] for w in list(out) if w.startswith(home + "/"))
    return out


def _script_words(script: str) -> list[str]:
    """The words of a shell script (redirections split off), best effort."""
    lexer = shlex.shlex(script, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    try:
        return list(lexer)
    except ValueError:
        return re.split(r"[\s;&|<>()`$'\"]+", script)


def _beneath(path: str, root: str) -> str | None:
    """``path`` relative to ``root`` (``.`` for the root itself), or ``None`` outside it."""
    if path == root:
        return "."
    prefix = root.rstrip("/") + "/"
    return path[len(prefix) :] if path.startswith(prefix) else None


# -- the policy section ----------------------------------------------------------


def parse_section(node: Node, ctx: Any) -> ExecConfig:
    """Parse the ``exec:`` section; add one allow rule per command (ids ``exec:...``)."""
    m = node.mapping(allowed=_SECTION_KEYS, required=("workspace",))
    ws_text = m["workspace"].string()
    workspace = Path(ws_text)
    if not workspace.is_absolute():
        workspace = Path(ctx.base_dir) / workspace
    mode = m["sandbox"].string(choices=("bwrap", "none")) if "sandbox" in m else "bwrap"
    network = m["network"].string(choices=("none", "proxy")) if "network" in m else "none"
    proxy = m["proxy"].string() if "proxy" in m else ""
    if proxy and network != "proxy":
        m["proxy"].fail("`proxy` is only used with `network: proxy`")
    if proxy and not _PROXY.match(proxy):
        m["proxy"].fail(f"expected the proxy as `host:port`, got `{proxy}`")
    shell = "deny"
    if "shell" in m:
        snode = m["shell"]
        if isinstance(snode.value, bool):
            shell = "allow" if snode.boolean() else "deny"
        else:
            shell = snode.string(choices=("ask",))
    limits = _parse_limits(m["limits"]) if "limits" in m else Limits()
    env: dict[str, str] = {}
    if "env" in m:
        for key, value in m["env"].mapping().items():
            if not _ENV_NAME.match(key):
                m["env"].fail(f"invalid environment variable name `{key}`", key=key)
            env[key] = value.string(nonempty=False)
    pass_env: tuple[str, ...] = ()
    if "pass_env" in m:
        pass_env = tuple(m["pass_env"].strings())
        for key in pass_env:
            if not _ENV_NAME.match(key):
                m["pass_env"].fail(f"invalid environment variable name `{key}`")
    system_paths = (
        tuple(m["system_paths"].strings()) if "system_paths" in m else DEFAULT_SYSTEM_PATHS
    )
    for p in system_paths:
        if not p.startswith("/"):
            m["system_paths"].fail(f"system path `{p}` must be absolute")
    sandbox = SandboxConfig(
        workspace=workspace,
        mode=mode,  # type: ignore[arg-type]
        network=network,  # type: ignore[arg-type]
        limits=limits,
        system_paths=system_paths,
        env=env,
        pass_env=pass_env,
    )
    commands: list[CommandRule] = []
    seen: set[str] = set()
    if "commands" in m:
        for i, cnode in enumerate(m["commands"].seq()):
            cmd = _parse_command(cnode, i, system_paths)
            if cmd.id in seen:
                cnode.fail(f"duplicate command id `{cmd.id}`")
            seen.add(cmd.id)
            commands.append(cmd)
            when: dict[str, Mapping[str, Any]] = {"program": {"equals": cmd.program}}
            if cmd.args is not None:
                when["argv"] = cmd.args
            if cmd.line is not None:
                when["line"] = cmd.line
            if cmd.cwd is not None:
                when["cwd"] = cmd.cwd
            ctx.add_rule(
                RuleSpec(
                    id=cmd.id,
                    tools=("exec",),
                    actions=("run",),
                    effect=cmd.effect,
                    mode=ctx.mode,
                    when=when,
                    reason=f"the exec section allows `{cmd.program}`",
                    origin=f"{cnode.file}:{cnode.line}:{cnode.column}",
                    node=cnode,
                )
            )
    shell_program = "/bin/sh"
    if shell != "deny":
        try:
            shell_program = resolve_program("/bin/sh", system_paths)
        except ExecError as exc:
            m["shell"].fail(str(exc))
        ctx.add_rule(
            RuleSpec(
                id="exec:shell",
                tools=("exec",),
                actions=("shell",),
                effect=Effect.ALLOW if shell == "allow" else Effect.ASK,
                mode=ctx.mode,
                reason="the exec section allows shell scripts (run in the sandbox)",
                origin=f"{m['shell'].file}:{m['shell'].line}:{m['shell'].column}",
                node=m["shell"],
            )
        )
    expose_git = m["expose_git"].boolean() if "expose_git" in m else False
    max_entries = 20000
    if "max_entries" in m:
        max_entries = m["max_entries"].integer()
        if max_entries < 1:
            m["max_entries"].fail("`max_entries` must be at least 1")
    return ExecConfig(
        sandbox=sandbox,
        shell=shell,
        shell_program=shell_program,
        commands=tuple(commands),
        proxy=proxy,
        expose_git=expose_git,
        max_entries=max_entries,
    )


def _parse_limits(node: Node) -> Limits:
    m = node.mapping(allowed=_LIMIT_KEYS)
    base = Limits()
    values: dict[str, Any] = {}
    for key in ("timeout", "cpu"):
        if key in m:
            seconds = m[key].duration()
            if seconds <= 0:
                m[key].fail(f"expected a `{key}` longer than 0 seconds")
            values[key] = seconds if key == "timeout" else max(1, round(seconds))
    for key in ("memory", "file_size", "output", "tmp_size", "disk_growth"):
        if key in m:
            size = m[key].size()
            if size <= 0:
                m[key].fail(f"expected a `{key}` greater than 0")
            values[key] = size
    for key in ("processes", "open_files"):
        if key in m:
            values[key] = m[key].integer(minimum=1, maximum=1_000_000)
    return replace(base, **values)


def _parse_command(node: Node, index: int, system_paths: tuple[str, ...]) -> CommandRule:
    if isinstance(node.value, bool):
        node.fail("expected a program name, got a boolean (quote `true` and `false`)")
    if isinstance(node.value, str):
        node = Node({"program": node}, node.file, node.line, node.column, node.path)
    m = node.mapping(allowed=_COMMAND_KEYS, required=("program",))
    name = m["program"].string()
    try:
        program = resolve_program(name, system_paths)
    except ExecError as exc:
        m["program"].fail(str(exc))
    base = posixpath.basename(name)
    cid = m["id"].string() if "id" in m else base
    if not cid.startswith("exec:"):
        cid = f"exec:{cid}"
    if posixpath.basename(program) in SHELLS or base in SHELLS:
        m["program"].fail(
            f"`{name}` is a shell; allow scripts with `shell: true` (they run in the sandbox)"
        )
    effect = Effect(m["effect"].string(choices=("allow", "ask"))) if "effect" in m else Effect.ALLOW

    def constraint(key: str) -> Mapping[str, Any] | None:
        return parse_constraint(m[key]) if key in m else None

    return CommandRule(
        id=cid,
        program=program,
        effect=effect,
        args=constraint("args"),
        line=constraint("line"),
        cwd=constraint("cwd"),
    )


# -- the capability ----------------------------------------------------------------


class ExecTool(Capability):
    """Runs allowed commands in the sandbox. Build with :func:`capability_from_policy`.

    The sandbox is set up at the first call: a machine without bubblewrap or
    user namespaces fails that call with
    :class:`~stockade.errors.SandboxUnavailable` (the policy must say
    ``sandbox: none`` to run without one).
    """

    name = "exec"
    actions = frozenset({"run", "shell"})

    def __init__(self, config: ExecConfig, *, policy: Any = None) -> None:
        self.config = config
        self._policy = policy
        self._sandbox: Sandbox | None = None
        self._lock = threading.Lock()
        self._fs: FSTool | None = None
        # With a network, what a command sends leaves the machine: the flow
        # stage (trifecta, `sink: external` rules) treats the call as a sink.
        self.external = config.sandbox.network == "proxy"

    # -- prepare / check ----------------------------------------------------------

    def prepare(self, call: ToolCall) -> ToolCall:
        """Resolve the program, canonicalise the working directory and the arguments."""
        args = dict(call.args)
        out: dict[str, Any] = {"cwd": self._cwd(args.get("cwd", "."))}
        if call.action == "run":
            argv = args.get("argv")
            if isinstance(argv, str):
                raise ExecError("`argv` must be a list of strings, not a command line")
            if not isinstance(argv, (list, tuple)) or not argv:
                raise ExecError("`argv` must be a non-empty list of strings")
            if not all(isinstance(a, str) and "\x00" not in a for a in argv):
                raise ExecError("`argv` must be a list of strings without NUL characters")
            out["program"] = resolve_program(argv[0], self.config.sandbox.system_paths)
            out["argv"] = list(argv[1:])
            out["line"] = shlex.join(argv[1:])
        else:
            script = args.get("script")
            if not isinstance(script, str) or not script or "\x00" in script:
                raise ExecError("`script` must be a non-empty string")
            out["program"] = self.config.shell_program
            out["script"] = script
        if "stdin" in args:
            if not isinstance(args["stdin"], str):
                raise ExecError("`stdin` must be a string")
            out["stdin"] = args["stdin"]
        if "timeout" in args:
            t = args["timeout"]
            if isinstance(t, bool) or not isinstance(t, (int, float)) or not t > 0:
                raise ExecError("`timeout` must be a positive number of seconds")
            out["timeout"] = min(float(t), self.config.sandbox.limits.timeout)
        unknown = set(args) - {"argv", "script", "cwd", "stdin", "timeout"}
        if unknown:
            raise ExecError(f"unknown argument `{sorted(unknown)[0]}`")
        return call.with_args(out)

    def _cwd(self, value: Any) -> str:
        if not isinstance(value, str) or "\x00" in value:
            raise ExecError("`cwd` must be a string")
        text = value or "."
        if text == WORKSPACE or text.startswith(WORKSPACE + "/"):
            text = text[len(WORKSPACE) :].lstrip("/") or "."
        rel = posixpath.normpath(text)
        if rel == ".." or rel.startswith(("/", "../")):
            raise ExecError(f"the working directory `{value}` is outside the workspace")
        return rel

    def check(self, call: ToolCall) -> Decision | None:
        """No shell unless the section allows one; nothing the fs section denies.

        Every word of the command (each ``argv`` element, the words of a
        script, the part after ``@`` or ``=``, and ``cwd``) that names an
        existing path beneath the fs tool's root is judged as ``fs.read`` (a
        folder as ``fs.list``) would be: the built-in deny list, the section's
        ``deny``, what is on disk (hard links, devices) and the policy's fs
        rules. A script can still open files by computed names: see
        ``docs/exec.md``.
        """
        program = str(call.args.get("program", ""))
        is_shell = call.action == "shell" or posixpath.basename(program) in SHELLS
        if is_shell and self.config.shell == "deny":
            return Decision.deny(
                "exec:no-shell", "the exec section allows no shell (set `shell: true` to allow)"
            )
        fs = self._fs_tool()
        if fs is None:
            return None
        try:
            named = self._named_paths(call, fs)
        except ExecError as exc:
            return Decision.deny("exec:fs-deny", str(exc))
        for lexical, real, is_dir in named:
            decision = self._fs_decision(fs, call, lexical, real, is_dir)
            if decision is not None:
                return decision
        if self.external:
            for lexical, real, is_dir in named:
                decision = self._egress_decision(fs, lexical, real, is_dir)
                if decision is not None:
                    return decision
        return None

    def _egress_decision(
        self, fs: FSTool, lexical: str, real: str, is_dir: bool
    ) -> Decision | None:
        """A networked command must not be handed a confidential file (R10b):
        what it reads can leave in the same run, before any label is added."""
        for path in dict.fromkeys((lexical, real)):
            if path == ".":
                continue
            names = (path, f"{path}/_") if is_dir else (path,)
            if any(fs.label(name).confidentiality is Confidentiality.SECRET for name in names):
                return Decision.deny(
                    "exec:confidential-egress",
                    f"the command names `{path}`, which is confidential, "
                    "and the exec section has network access",
                )
        return None

    def _fs_tool(self) -> FSTool | None:
        """The fs tool of the same policy (without its journal), to judge paths; or ``None``."""
        if self._policy is None:
            return None
        section = self._policy.section("fs")
        if not isinstance(section, FSConfig):
            return None
        with self._lock:
            if self._fs is None:
                self._fs = FSTool(replace(section, journal=None), policy=self._policy)
            return self._fs

    def _named_paths(self, call: ToolCall, fs: FSTool) -> list[tuple[str, str, bool]]:
        """``(lexical, real, is_dir)`` paths relative to the fs root that the command names."""
        workspace = os.path.realpath(self.config.sandbox.workspace)
        root = os.path.realpath(fs.config.root)
        cwd = str(call.args.get("cwd", "."))
        if call.action == "shell":
            words = _script_words(str(call.args.get("script", "")))
        else:
            words = [str(a) for a in call.args.get("argv", [])]
        found: dict[tuple[str, str], bool] = {}
        candidates = ["."] if cwd == "." else [WORKSPACE + "/" + cwd]
        if len(words) > _MAX_WORDS:
            raise ExecError(f"the command has more than {_MAX_WORDS} words to check as paths")
        for word in words:
            candidates.extend(_path_candidates(word))
        for cand in candidates:
            if not cand or len(cand) > _MAX_PATH or "\x00" in cand:
                continue
            if cand == WORKSPACE or cand.startswith(WORKSPACE + "/"):
                host = workspace + cand[len(WORKSPACE) :]
            elif cand.startswith("/"):
                host = cand  # `sandbox: none` sees the host's paths
            else:
                host = os.path.join(workspace, cwd, cand)
            host = os.path.normpath(host)
            if not os.path.lexists(host):
                continue
            real = os.path.realpath(host)
            lexical_rel = _beneath(os.path.normpath(host), root)
            real_rel = _beneath(real, root)
            if real_rel is None and lexical_rel is None:
                continue
            key = (lexical_rel or real_rel or ".", real_rel or lexical_rel or ".")
            found[key] = os.path.isdir(real)
        return [(lex, real, is_dir) for (lex, real), is_dir in found.items()]

    def _fs_decision(
        self, fs: FSTool, call: ToolCall, lexical: str, real: str, is_dir: bool
    ) -> Decision | None:
        for path in dict.fromkeys((lexical, real)):
            if path == ".":
                continue
            # A folder counts as denied when what it holds is (`.ssh` for `**/.ssh/**`).
            names = (path, f"{path}/_") if is_dir else (path,)
            if any(fs.section_denied(name) for name in names):
                return Decision.deny(
                    "exec:fs-deny",
                    f"the command names `{path}`, which the fs section denies "
                    "(built-in deny list or `deny`)",
                )
        if real == ".":
            return None
        action = "list" if is_dir else "read"
        on_disk = fs.check(
            ToolCall("fs", action, {"path": real}, session=call.session, principal=call.principal)
        )
        if on_disk is not None and on_disk.effect is not Effect.ALLOW:
            return Decision(
                on_disk.effect, "exec:fs-deny", f"the command names `{real}`: {on_disk.reason}"
            )
        if self._policy is None:
            return None
        for path in dict.fromkeys((real, lexical)):
            if path == ".":
                continue
            probe = ToolCall(
                "fs", action, {"path": path}, session=call.session, principal=call.principal
            )
            ruled = self._policy.decide(probe)
            if ruled.effect is Effect.DENY:
                return Decision.deny(
                    "exec:fs-deny",
                    f"the command names `{path}`, which `fs.{action}` may not read "
                    f"(rule `{ruled.rule}`)",
                )
            if ruled.effect is Effect.ASK:
                return Decision.ask(
                    "exec:fs-ask",
                    f"the command names `{path}`; `fs.{action}` asks first (rule `{ruled.rule}`)",
                )
        return None

    def _workspace_view(self) -> tuple[list[tuple[str, bool]], list[tuple[str, Label]]]:
        """What the sandbox must hide beneath the workspace, and the fs labels of
        the files it leaves visible (``(path relative to the fs root, label)``).

        Hidden: what the fs built-in deny list or the fs section's ``deny``
        covers, ``.git`` (unless ``expose_git: true``), files with more than one
        hard link (unless fs allows ``hardlinks``) and, with network access,
        confidential files. Symbolic links are left as they are (their target
        is judged under its own name). More than ``max_entries`` entries raise
        :class:`ExecError`: the run is refused rather than half-checked.
        """
        fs = self._fs_tool()
        workspace = os.path.realpath(self.config.sandbox.workspace)
        if fs is None:
            fs = FSTool(FSConfig(root=Path(workspace)))
        root = os.path.realpath(fs.config.root)
        hide: list[tuple[str, bool]] = []
        visible: list[tuple[str, Label]] = []
        count = 0
        stack = [""]
        while stack:
            rel_dir = stack.pop()
            host_dir = os.path.join(workspace, rel_dir) if rel_dir else workspace
            try:
                with os.scandir(host_dir) as it:
                    entries = sorted(it, key=lambda e: e.name)
            except OSError as exc:
                raise ExecError(
                    f"cannot look through the workspace folder `{rel_dir or '.'}`"
                ) from exc
            for entry in entries:
                count += 1
                if count > self.config.max_entries:
                    raise ExecError(
                        f"the workspace holds more than {self.config.max_entries} entries "
                        "(`max_entries`): the run is refused"
                    )
                rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
                fs_rel = _beneath(os.path.join(host_dir, entry.name), root) or rel
                try:
                    if entry.is_symlink():
                        continue
                    is_dir = entry.is_dir(follow_symlinks=False)
                    nlink = 1 if is_dir else entry.stat(follow_symlinks=False).st_nlink
                except OSError as exc:
                    raise ExecError(f"cannot look at the workspace entry `{rel}`") from exc
                if entry.name == ".git" and not self.config.expose_git:
                    hide.append((rel, is_dir))
                    continue
                probe = f"{fs_rel}/_" if is_dir else fs_rel
                denied = fs.section_denied(fs_rel) or fs.section_denied(probe)
                secret = fs.label(probe).confidentiality is Confidentiality.SECRET
                if denied or (self.external and secret):
                    hide.append((rel, is_dir))
                elif is_dir:
                    stack.append(rel)
                elif nlink > 1 and entry.is_file(follow_symlinks=False) and not fs.config.hardlinks:
                    hide.append((rel, False))
                else:
                    visible.append((fs_rel, fs.label(fs_rel)))
        return hide, visible

    def _output_label(
        self, call: ToolCall, program: str, visible: tuple[tuple[str, Label], ...] = ()
    ) -> tuple[Label, ...]:
        """``exec:<program>`` (untrusted), as confidential as the most confidential
        file the command named or could read, followed by those files' fs labels.

        A folder the command names counts as every visible file beneath it
        (``grep -r x hr``); the working directory counts so when the command
        names no other path (``grep -r x``) or is a shell script (which may
        compute names).
        """
        fs = self._fs_tool()
        labels: list[Label] = []
        seen: set[tuple[Integrity, Confidentiality]] = set()

        def add(label: Label) -> None:
            kind = (label.integrity, label.confidentiality)
            if kind not in seen:
                seen.add(kind)
                labels.append(label)

        if fs is not None:
            named = self._named_paths(call, fs)
            root = os.path.realpath(fs.config.root)
            cwd_host = os.path.realpath(
                os.path.join(self.config.sandbox.workspace, str(call.args.get("cwd", ".")))
            )
            cwd_rel = _beneath(cwd_host, root)
            others = [n for n in named if n[1] != cwd_rel]
            reach = [real for _lex, real, is_dir in others if is_dir]
            if cwd_rel is not None and (call.action == "shell" or not others):
                reach.append(cwd_rel)
            for _lexical, real, _is_dir in named:
                add(fs.label(real))
            for path, label in visible:
                if any(r == "." or path == r or path.startswith(r + "/") for r in reach):
                    add(label)
        conf = max(
            (lb.confidentiality for lb in labels),
            key=_CONF_RANK.__getitem__,
            default=Confidentiality.INTERNAL,
        )
        if _CONF_RANK[conf] < _CONF_RANK[Confidentiality.INTERNAL]:
            conf = Confidentiality.INTERNAL
        return (Label(f"exec:{program}", Integrity.UNTRUSTED, conf), *labels)

    # -- execute ------------------------------------------------------------------

    @property
    def _own_proxy(self) -> bool:
        """Whether each run starts its own proxy (``network: proxy`` without ``proxy:``)."""
        return self.config.sandbox.network == "proxy" and not self.config.proxy

    def sandbox(self) -> Sandbox:
        """The sandbox (set up at the first use; raise ``SandboxUnavailable`` if it cannot be).

        With ``network: proxy`` and no ``proxy:`` address there is no shared
        sandbox: every run gets its own, whose proxy decides in the calling
        guard and session (raise :class:`ExecError`).
        """
        if self._own_proxy:
            raise ExecError(
                "with `network: proxy` each run has its own sandbox and proxy, "
                "bound to the calling session"
            )
        with self._lock:
            if self._sandbox is None:
                config = self.config.sandbox
                if config.network == "proxy":
                    config = replace(config, proxy_address=self._proxy_address())
                self._sandbox = Sandbox(config)
            return self._sandbox

    def _proxy_address(self) -> tuple[str, int]:
        host, _, port = self.config.proxy.rpartition(":")
        try:
            return host.strip("[]") or "127.0.0.1", int(port)
        except ValueError:
            raise ExecError(f"bad proxy address `{self.config.proxy}`") from None

    @contextlib.contextmanager
    def _run_sandbox(self, ctx: Context) -> Iterator[Sandbox]:
        """The sandbox for one run.

        With the built-in proxy, a proxy and a sandbox for this run alone: the
        proxy asks the *calling* guard, in the calling session, about every
        request, so the session's flow rules (provenance, trifecta), limits,
        budgets and audit log cover what the command sends. Both are closed
        when the run ends.
        """
        if not self._own_proxy:
            yield self.sandbox()
            return
        from stockade.tools.http_proxy import start_proxy

        guard = ctx.session.guard
        if guard.capability("http") is None:
            raise ExecError("network `proxy` needs an `http` section in the policy")
        with (
            start_proxy(guard, "127.0.0.1", 0, session=ctx.session) as proxy,
            Sandbox(replace(self.config.sandbox, proxy_address=proxy.address)) as sandbox,
        ):
            yield sandbox

    def execute(self, call: ToolCall, ctx: Context) -> Output:
        """Run the prepared call in the sandbox; report how it ended and which layers held."""
        with self._run_sandbox(ctx) as sandbox:
            return self._execute(sandbox, call)

    def _execute(self, sandbox: Sandbox, call: ToolCall) -> Output:
        args = call.args
        program = str(args["program"])
        if call.action == "shell":
            argv = [program, "-c", str(args["script"])]
        else:
            argv = [program, *[str(a) for a in args.get("argv", [])]]
        limits = self.config.sandbox.limits
        if "timeout" in args:
            limits = replace(limits, timeout=float(args["timeout"]))
        stdin = args.get("stdin")
        hide, visible = self._workspace_view()
        result = sandbox.run(
            argv,
            cwd=str(args.get("cwd", ".")),
            stdin=stdin.encode("utf-8") if isinstance(stdin, str) else None,
            limits=limits,
            hide=hide if self.config.sandbox.mode == "bwrap" else (),
        )
        value = result.as_dict()
        meta = {
            "sandbox": dict(result.layers),
            "exec": {
                "exit_code": result.exit_code,
                "signal": result.signal,
                "killed": result.killed or None,
                "truncated": result.truncated,
                "disk_exceeded": result.disk_exceeded,
                "status": result.describe(),
            },
        }
        return Output(
            value=value, labels=self._output_label(call, program, tuple(visible)), meta=meta
        )

    def describe(self) -> Mapping[str, Any]:
        """The actions, their JSON schemas and descriptions, for integrations."""
        lim = self.config.sandbox.limits
        net = (
            "only HTTP(S) through stockade's proxy (HTTP_PROXY is set)"
            if self.config.sandbox.network == "proxy"
            else "no network"
        )
        where = (
            f"in a sandbox: the workspace (/workspace, also HOME) is the only writable place, "
            f"{net}, at most {lim.timeout:g}s, {lim.cpu}s of CPU, {lim.output} bytes of output "
            f"and {lim.disk_growth} bytes of workspace growth"
        )
        common: dict[str, Any] = {
            "cwd": {"type": "string", "description": "working directory inside the workspace"},
            "stdin": {"type": "string", "description": "text given on standard input"},
            "timeout": {"type": "number", "exclusiveMinimum": 0, "description": "seconds"},
        }
        return {
            "name": self.name,
            "actions": sorted(self.actions),
            "description": f"run commands {where}",
            "descriptions": {
                "run": (
                    f"Run a program with arguments {where}. Give `argv` as a list: the "
                    "program by name or absolute path, then its arguments (no shell). "
                    "Returns exit_code, signal, killed, truncated, disk_exceeded, stdout, "
                    "stderr, status."
                ),
                "shell": f"Run a /bin/sh script {where}, if the policy allows scripts.",
            },
            "schemas": {
                "run": {
                    "type": "object",
                    "properties": {
                        "argv": {"type": "array", "items": {"type": "string"}, "minItems": 1},
                        **common,
                    },
                    "required": ["argv"],
                    "additionalProperties": False,
                },
                "shell": {
                    "type": "object",
                    "properties": {"script": {"type": "string", "minLength": 1}, **common},
                    "required": ["script"],
                    "additionalProperties": False,
                },
            },
        }

    def close(self) -> None:
        """Release the shared sandbox, if any (a run's own proxy ends with the run)."""
        if self._sandbox is not None:
            self._sandbox.close()
            self._sandbox = None
        if self._fs is not None:
            self._fs.close()
            self._fs = None


def capability_from_policy(policy: Any) -> list[Capability]:
    """The ``exec`` tool the policy's section configures (none without a section)."""
    config = policy.section("exec")
    if not isinstance(config, ExecConfig):
        return []
    return [ExecTool(config, policy=policy)]
