"""The filesystem tool: confined to one root, symlink-safe, journaled with undo.

Two independent layers stand between an agent and the disk:

- the **rule layer**: :meth:`FSTool.prepare` turns the agent's path into a
  canonical path relative to the root (or refuses it); the policy's ``fs:``
  section is compiled into ordinary rules on that path, per operation;
  :meth:`FSTool.check` adds the built-in deny list (secrets, keys, model
  weights) and looks at what is on disk (symlinks, hard links, devices);
- the **descriptor layer**: :class:`~stockade.hazmat.fs_resolver.Resolver`
  opens every path relative to a descriptor of the root with ``openat2``
  (``RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS``) and every operation acts on
  the descriptor it opened (``fstat``, ``pread``, ``*at`` calls, temp file +
  ``renameat2``), so nothing re-resolves a string after it was checked.

Policy section::

    fs:
      root: ${WORKSPACE}
      allow:
        read: ["**"]
        list: ["**"]
        write: ["notes/**", "drafts/**"]
        delete: ["notes/**"]
      ask:
        delete: ["**"]
      deny: ["private/**"]
      unlock: [".env.example"]
      labels: {untrusted: ["inbox/**"], confidential: ["hr/**"]}
      journal: {path: ${STATE}/fs-journal, blob_budget: 64MiB}

See ``docs/fs.md`` for every key, the decisions behind them and the dangers.
"""

from __future__ import annotations

import os
import re
import stat
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

from stockade.errors import ConfigurationError, FSError
from stockade.hazmat.fs_resolver import Resolver
from stockade.model import Confidentiality, Decision, Effect, Integrity, Label, Output, ToolCall
from stockade.policy import Policy
from stockade.policy.matchers import Matcher, PatternError, compile_glob
from stockade.policy.node import Node
from stockade.policy.policy import SectionContext
from stockade.policy.rules import RuleSpec
from stockade.tools.base import Capability, Context
from stockade.tools.fs_engine import FSEngine, check_file
from stockade.tools.fs_undo import FSRestorer
from stockade.tools.journal import Journal, Restorer

__all__ = [
    "ACTIONS",
    "BUILTIN_DENY",
    "BUILTIN_WRITE_DENY",
    "FSConfig",
    "FSLimits",
    "FSTool",
    "builtin_deny_group",
    "canonical_path",
    "capability_from_policy",
    "parse_section",
]

#: every operation, and the arguments each takes (name -> type)
ACTIONS: Mapping[str, Mapping[str, type]] = {
    "read": {"path": str, "offset": int, "length": int},
    "list": {"path": str},
    "glob": {"path": str, "pattern": str},
    "search": {"path": str, "pattern": str, "glob": str},
    "stat": {"path": str},
    "write": {"path": str, "content": str, "overwrite": bool},
    "append": {"path": str, "content": str},
    "edit": {"path": str, "old": str, "new": str},
    "mkdir": {"path": str, "parents": bool},
    "move": {"path": str, "dest": str},
    "delete": {"path": str, "recursive": bool},
}
MUTATING = frozenset({"write", "append", "edit", "mkdir", "move", "delete"})
_REQUIRED = {"glob": ("pattern",), "search": ("pattern",), "write": ("content",)}
_REQUIRED_MORE = {"append": ("content",), "edit": ("old", "new"), "move": ("dest",)}
#: actions whose `path` may be left out (the root); every other action needs one
_PATH_DEFAULTS_TO_ROOT = frozenset({"list", "glob", "search"})

#: the built-in deny list: group name -> globs on the lower-cased canonical path.
#: Only an ``unlock`` entry in the policy's fs section lifts one of these.
BUILTIN_DENY: Mapping[str, tuple[str, ...]] = {
    "environment file": ("**/.env*", "**/*.env"),
    "private key or certificate": (
        "**/*.{pem,key,p12,pfx,crt,cer,der,p8,ppk,jks,keystore}",
        "**/id_{rsa,dsa,ecdsa,ed25519}*",
    ),
    "ssh folder": ("**/.ssh/**",),
    "cloud credentials": (
        "**/.aws/**",
        "**/.azure/**",
        "**/.config/gcloud/**",
        "**/.kube/config",
        "**/.docker/config.json",
    ),
    "gnupg folder": ("**/.gnupg/**",),
    "git credentials": ("**/.git/config", "**/.git-credentials"),
    "credentials file": ("**/.netrc", "**/_netrc", "**/.pgpass", "**/.npmrc", "**/.pypirc"),
    "password store": (
        "**/.password-store/**",
        "**/*.{kdbx,kdb,keychain,keychain-db}",
        "**/.local/share/keyrings/**",
        "**/.vault-token",
    ),
    "model weights": (
        "**/*.{safetensors,gguf,ggml,pt,pth,ckpt,onnx}",
        "**/*model*/**/*.bin",
        "**/{checkpoints,weights}/**/*.bin",
        "**/pytorch_model*.bin",
        "**/.cache/huggingface/**",
    ),
}

#: changes (write, append, edit, mkdir, move, delete) are also denied here: these
#: files run code later (git hooks, shell start-up, CI jobs, editor tasks).
BUILTIN_WRITE_DENY: Mapping[str, tuple[str, ...]] = {
    "git internals (hooks run code)": ("**/.git/**",),
    "shell start-up file": (
        "**/.{bashrc,bash_profile,bash_login,profile,zshrc,zprofile,zshenv}",
        "**/.config/fish/config.fish",
    ),
    "code that runs later": (
        "**/.config/autostart/**",
        "**/.github/workflows/**",
        "**/.gitlab-ci.yml",
        "**/.vscode/{tasks,settings,launch}.json",
    ),
}

# A path can only match a built-in glob if it holds one of these (lower-case)
# substrings or ends in one of these extensions; checking that first keeps the
# regex off the common path. Keep them in step with BUILTIN_DENY (a test
# checks a sample of every glob).
_DENY_ANCHORS = (
    ".env", "id_", ".ssh", ".aws", ".azure", "gcloud", ".kube", ".docker", ".gnupg", ".git",
    "netrc", "pgpass", "npmrc", "pypirc", "password-store", "keyrings", "vault-token", "model",
    ".bin", "huggingface",
)  # fmt: skip
_DENY_EXTENSIONS = frozenset(
    [
        "pem", "key", "p12", "pfx", "crt", "cer", "der", "p8", "ppk", "jks", "keystore", "kdbx",
        "kdb", "keychain", "keychain-db", "safetensors", "gguf", "ggml", "pt", "pth", "ckpt",
        "onnx",
    ]
)  # fmt: skip


# Literal alternatives only: no backtracking, so Python's re is safe here.
_ANCHOR_RX = re.compile("|".join(re.escape(a) for a in _DENY_ANCHORS))


def _maybe_denied(low: str) -> bool:
    """Cheap and sound: ``False`` means no built-in glob can match ``low``."""
    if _ANCHOR_RX.search(low) is not None:
        return True
    name = low.rpartition("/")[2]
    return "." in name and name.rpartition(".")[2] in _DENY_EXTENSIONS


_BUILTIN_GROUPS: list[tuple[str, Any]] = []


def builtin_deny_group(path: str) -> str | None:
    """The built-in deny group a path falls in (no policy, no unlock), or ``None``.

    For tools outside the fs tool that take paths (MCP servers, LangChain
    tools): the same list, on the canonical path, absolute or relative.
    """
    low = path.lower().lstrip("/")
    if not _maybe_denied(low):
        return None
    if not _BUILTIN_GROUPS:
        _BUILTIN_GROUPS.extend((g, compile_glob(list(globs))) for g, globs in BUILTIN_DENY.items())
    # an absolute path is checked from every folder down, as if the root were there
    parts = low.split("/")
    for i in range(len(parts)):
        tail = "/".join(parts[i:])
        for group, match in _BUILTIN_GROUPS:
            if match(tail):
                return str(group)
    return None


# Characters that look like `/`, `\` or `.` without being them; NFKC catches
# the rest (fullwidth solidus, one-dot leader, small full stop...).
_LOOKALIKES = frozenset(
    "\u2215\u2044\u29f8\u2571\u29f5\u29f9\u2216\u0338\u0337\u3002\uff61\u1735\u2cfa\u30fb"
)
_BAD_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})


# -- configuration ------------------------------------------------------------------


@dataclass(frozen=True)
class FSLimits:
    """Caps per call and per session (``None``: no cap). Sizes are bytes."""

    read_bytes: int = 1 << 20
    write_bytes: int = 1 << 20
    file_bytes: int = 16 << 20
    list_entries: int = 1000
    glob_results: int = 1000
    search_results: int = 100
    search_files: int = 2000
    search_bytes: int = 32 << 20
    walk_entries: int = 20000
    delete_entries: int = 1000
    path_length: int = 1024
    session_read_bytes: int | None = 64 << 20
    session_write_bytes: int | None = 16 << 20
    session_changes: int | None = 1000


_SIZE_LIMITS = frozenset(
    {
        "read_bytes",
        "write_bytes",
        "file_bytes",
        "search_bytes",
        "session_read_bytes",
        "session_write_bytes",
    }
)


@dataclass(frozen=True)
class JournalConfig:
    """Where the fs journal lives and how many blob bytes it may keep."""

    path: Path
    blob_budget: int = 64 << 20


@dataclass(frozen=True)
class FSConfig:
    """The parsed ``fs:`` section."""

    root: Path
    allow: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    ask: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    deny: tuple[str, ...] = ()
    unlock: tuple[str, ...] = ()
    untrusted: tuple[str, ...] = ()
    confidential: tuple[str, ...] = ()
    public: tuple[str, ...] = ()
    symlinks: Literal["refuse", "in-root"] = "refuse"
    hardlinks: bool = False
    durable: bool = False
    limits: FSLimits = field(default_factory=FSLimits)
    journal: JournalConfig | None = None

    def explain_extra(self) -> list[Any]:
        """Lines for ``policy explain`` beside the fs rules' own sentences.

        ``unlock`` is its own high-risk line: it takes files off the built-in
        deny list (secrets, keys, weights), so a broad read rule that was
        harmless now reaches them.
        """
        from stockade.policy.explain import Explanation

        if not self.unlock:
            return []
        groups: list[str] = []
        for glob in self.unlock:
            low = glob.lower()
            for table in (BUILTIN_DENY, BUILTIN_WRITE_DENY):
                for group, globs in table.items():
                    if group not in groups and compile_glob(list(globs))(low):
                        groups.append(group)
        shown = ", ".join(f"`{g}`" for g in self.unlock)
        named = f" ({', '.join(groups)})" if groups else ""
        return [
            Explanation(
                "high",
                f"fs: `unlock` lifts the built-in deny list for {shown}{named}: "
                "the fs rules reach these files like any other",
                "fs:unlock",
            )
        ]


_SECTION_KEYS = (
    "root",
    "allow",
    "ask",
    "deny",
    "unlock",
    "labels",
    "symlinks",
    "hardlinks",
    "durable",
    "limits",
    "journal",
)


def _globs(node: Node) -> tuple[str, ...]:
    globs = node.strings()
    for g in globs:
        if g.startswith("/") or "\\" in g or ".." in g.split("/"):
            node.fail(f"glob `{g}` must be relative to the root, without `..` or `\\`")
    try:
        compile_glob(globs)
    except PatternError as exc:
        node.fail(f"bad glob: {exc}")
    return tuple(globs)


def _by_action(node: Node) -> dict[str, tuple[str, ...]]:
    out: dict[str, tuple[str, ...]] = {}
    for action, gnode in node.mapping(allowed=ACTIONS).items():
        out[action] = _globs(gnode)
    return out


def parse_section(node: Node, ctx: SectionContext) -> FSConfig:
    """Parse the ``fs:`` section and add its rules (ids ``fs:allow-<action>``,
    ``fs:ask-<action>``, ``fs:deny``) to the policy."""
    m = node.mapping(allowed=_SECTION_KEYS, required=("root",))
    root = Path(m["root"].string())
    if not root.is_absolute():
        root = ctx.base_dir / root
    allow = _by_action(m["allow"]) if "allow" in m else {}
    ask = _by_action(m["ask"]) if "ask" in m else {}
    deny = _globs(m["deny"]) if "deny" in m else ()
    unlock = _globs(m["unlock"]) if "unlock" in m else ()
    labels: dict[str, tuple[str, ...]] = {}
    if "labels" in m:
        for key, lnode in (
            m["labels"].mapping(allowed=("untrusted", "confidential", "public")).items()
        ):
            labels[key] = _globs(lnode)
    symlinks = m["symlinks"].string(choices=("refuse", "in-root")) if "symlinks" in m else "refuse"
    hardlinks = m["hardlinks"].string(choices=("refuse", "allow")) if "hardlinks" in m else "refuse"
    durable = m["durable"].boolean() if "durable" in m else False
    limits = FSLimits()
    if "limits" in m:
        values: dict[str, int | None] = {}
        for key, lnode in m["limits"].mapping(allowed=FSLimits.__dataclass_fields__).items():
            if key.startswith("session_") and lnode.value is None:
                values[key] = None
            elif key in _SIZE_LIMITS:
                values[key] = lnode.size()
            else:
                values[key] = lnode.integer(minimum=0)
        limits = FSLimits(**values)  # type: ignore[arg-type]
    journal: JournalConfig | None = None
    if "journal" in m:
        jm = m["journal"].mapping(allowed=("path", "blob_budget"), required=("path",))
        jpath = Path(jm["path"].string())
        journal = JournalConfig(
            path=jpath if jpath.is_absolute() else ctx.base_dir / jpath,
            blob_budget=jm["blob_budget"].size() if "blob_budget" in jm else 64 << 20,
        )
    origin = f"{node.file}:{node.line}:{node.column}"
    for effect, table in ((Effect.ALLOW, allow), (Effect.ASK, ask)):
        for action, globs in table.items():
            when: dict[str, dict[str, Any]] = {"path": {"glob": list(globs)}}
            if action == "move":
                when["dest"] = {"glob": list(globs)}
            ctx.add_rule(
                RuleSpec(
                    id=f"fs:{effect.value}-{action}",
                    tools=("fs",),
                    actions=(action,),
                    effect=effect,
                    mode=ctx.mode,
                    when=when,
                    reason=f"the fs section {'allows' if effect is Effect.ALLOW else 'asks for'} "
                    f"{action} on {', '.join(f'`{g}`' for g in globs)}",
                    origin=origin,
                    node=node,
                )
            )
    if deny:
        for rule_id, actions, arg in (
            ("fs:deny", ("*",), "path"),
            ("fs:deny-dest", ("move",), "dest"),
        ):
            ctx.add_rule(
                RuleSpec(
                    id=rule_id,
                    tools=("fs",),
                    actions=actions,
                    effect=Effect.DENY,
                    mode=ctx.mode,
                    when={arg: {"glob": list(deny)}},
                    reason=f"the fs section denies {', '.join(f'`{g}`' for g in deny)}",
                    origin=origin,
                    node=node,
                )
            )
    if not root.is_dir():
        # Said here (after the section's other mistakes), with the policy's
        # file and line, rather than when a guard first opens the root:
        # `stockade policy check` must not call ok a section that cannot work.
        m["root"].fail(f"the fs root `{root}` does not exist or is not a folder")
    return FSConfig(
        root=root,
        allow=allow,
        ask=ask,
        deny=deny,
        unlock=unlock,
        untrusted=labels.get("untrusted", ()),
        confidential=labels.get("confidential", ()),
        public=labels.get("public", ()),
        symlinks=symlinks,  # type: ignore[arg-type]
        hardlinks=hardlinks == "allow",
        durable=durable,
        limits=limits,
        journal=journal,
    )


# -- canonical paths ------------------------------------------------------------------


def canonical_path(value: Any, *, max_length: int = 1024, what: str = "path") -> str:
    """The canonical form of an agent's path: relative to the root, ``/``-separated,
    no ``.``, ``..`` or empty parts; ``.`` is the root itself.

    Raise :class:`FSError` for anything that is not plainly a path inside the
    root: not a string, NUL and control characters, absolute paths, ``..``
    that climbs out, backslashes, characters that look like ``/``, ``\\`` or
    ``.``, invisible formatting characters, over-long paths and names.

    >>> canonical_path("./notes//a/../b.md")
    'notes/b.md'
    >>> canonical_path("../../etc/passwd")
    Traceback (most recent call last):
    ...
    stockade.errors.FSError: path `../../etc/passwd` climbs out of the root
    """
    if not isinstance(value, str):
        raise FSError(f"{what} must be a string, got {type(value).__name__}")
    shown = _Shown(value)
    if len(value.encode("utf-8", "surrogatepass")) > max_length:
        raise FSError(f"{what} `{shown}` is longer than {max_length} bytes")
    if "\\" in value:
        raise FSError(f"{what} `{shown}` contains a backslash; use `/`")
    if value.startswith("/"):
        raise FSError(f"{what} `{shown}` is absolute; give it relative to the root")
    if value.isascii():
        if not value.isprintable():
            raise FSError(f"{what} `{shown}` contains a control character")
    else:
        _check_unicode(value, shown, what)
    parts: list[str] = []
    for part in value.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not parts:
                raise FSError(f"{what} `{shown}` climbs out of the root")
            parts.pop()
            continue
        if len(part.encode("utf-8")) > 255:
            raise FSError(f"{what} `{shown}` has a name longer than 255 bytes")
        parts.append(part)
    return "/".join(parts) or "."


class _Shown:
    """The path as error messages show it, made only when a message needs it."""

    __slots__ = ("value",)

    def __init__(self, value: str) -> None:
        self.value = value

    def __str__(self) -> str:
        return _shown(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)


def _check_unicode(value: str, shown: _Shown, what: str) -> None:
    for ch in value:
        if ch.isascii():
            if ord(ch) < 0x20 or ord(ch) == 0x7F:
                raise FSError(f"{what} `{shown}` contains a control character")
            continue
        if unicodedata.category(ch) in _BAD_CATEGORIES:
            raise FSError(f"{what} `{shown}` contains an invisible or control character")
        if ch in _LOOKALIKES or any(c in "/\\." for c in unicodedata.normalize("NFKC", ch)):
            raise FSError(
                f"{what} `{shown}` contains `{ch}` (U+{ord(ch):04X}), which looks like `/` or `.`"
            )


def _shown(value: str) -> str:
    text = value if len(value) <= 120 else value[:117] + "..."
    return text.encode("unicode_escape").decode("ascii") if not text.isprintable() else text


def _pattern(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise FSError(f"`{what}` must be a non-empty string")
    if len(value) > 1000:
        raise FSError(f"`{what}` is longer than 1000 characters")
    if "\0" in value:
        raise FSError(f"`{what}` contains a NUL byte")
    return value


# -- the tool -----------------------------------------------------------------------


class FSTool(Capability):
    """The confined filesystem tool. Build it from a policy with
    :func:`capability_from_policy`, or from an :class:`FSConfig`; register it
    with a guard and call it through ``guard.call("fs", action, args)``.

    ``policy`` (optional) lets ``search`` look only into files the policy
    lets the agent read.
    """

    name = "fs"
    actions = frozenset(ACTIONS)
    _resolver_class: ClassVar[Any] = Resolver
    _check_file: ClassVar[Any] = staticmethod(check_file)

    def __init__(self, config: FSConfig, *, policy: Policy | None = None) -> None:
        self.config = config
        self.limits = config.limits
        self._policy = policy
        if config.journal is not None:
            root, jpath = config.root.resolve(), config.journal.path.resolve()
            if jpath == root or root in jpath.parents:
                raise ConfigurationError(
                    f"the fs journal `{config.journal.path}` is inside the root; "
                    "the agent could read or damage it"
                )
        self.resolver = self._resolver_class(config.root, symlinks=config.symlinks)
        self.journal: Journal | None = (
            Journal(
                config.journal.path,
                blob_budget=config.journal.blob_budget,
                durable=config.durable,
            )
            if config.journal is not None
            else None
        )
        self._builtin_any = compile_glob([g for globs in BUILTIN_DENY.values() for g in globs])
        self._builtin = [(group, compile_glob(list(g))) for group, g in BUILTIN_DENY.items()]
        self._builtin_write = [
            (group, compile_glob(list(g))) for group, g in BUILTIN_WRITE_DENY.items()
        ]
        self._unlock: Matcher | None = compile_glob(list(config.unlock)) if config.unlock else None
        self._deny: Matcher | None = compile_glob(list(config.deny)) if config.deny else None
        self._untrusted = compile_glob(list(config.untrusted)) if config.untrusted else None
        self._confidential = (
            compile_glob(list(config.confidential)) if config.confidential else None
        )
        self._public = compile_glob(list(config.public)) if config.public else None
        self.engine = FSEngine(self, self.resolver, type(self)._check_file)

    def close(self) -> None:
        """Close the root descriptor and the journal."""
        self.resolver.close()
        if self.journal is not None:
            self.journal.close()

    # -- rule layer -------------------------------------------------------------

    def prepare(self, call: ToolCall) -> ToolCall:
        """Canonicalise the paths and check the argument types."""
        spec = ACTIONS[call.action]
        args = dict(call.args)
        for key in args:
            if key not in spec:
                expected = ", ".join(f"`{k}`" for k in spec)
                raise FSError(f"`fs.{call.action}` has no argument `{key}`; expected {expected}")
        for key in (*_REQUIRED.get(call.action, ()), *_REQUIRED_MORE.get(call.action, ())):
            if key not in args:
                raise FSError(f"`fs.{call.action}` needs `{key}`")
        if "path" not in args and call.action not in _PATH_DEFAULTS_TO_ROOT:
            # as describe() publishes: only the folder-walking actions start at `.`
            raise FSError(f"`fs.{call.action}` needs `path`")
        for key, value in args.items():
            kind = spec[key]
            if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
                raise FSError(f"`{key}` must be an integer")
            if kind is int and value < 0:
                raise FSError(f"`{key}` must not be negative")
            if kind is not int and not isinstance(value, kind):
                raise FSError(f"`{key}` must be a {getattr(kind, '__name__', kind)}")
        limit = self.limits.path_length
        args["path"] = canonical_path(args.get("path", "."), max_length=limit)
        if "dest" in args:
            args["dest"] = canonical_path(args["dest"], max_length=limit, what="dest")
        for key in ("pattern", "glob"):
            if key in args:
                _pattern(args[key], key)
        if call.action == "glob" or "glob" in args:
            pat = args["pattern"] if call.action == "glob" else args["glob"]
            if pat.startswith("/") or ".." in pat.split("/") or "\\" in pat:
                raise FSError(f"glob `{_shown(pat)}` must stay inside the folder searched")
        return call.with_args(args)

    def builtin_denied(self, path: str, *, write: bool = False) -> str | None:
        """The built-in deny group that ``path`` falls in (and no unlock lifts), or ``None``.

        With ``write``, the groups that only deny changes count too.
        """
        low = path.lower()
        found: str | None = None
        if _maybe_denied(low) and self._builtin_any(low):
            found = next((g for g, match in self._builtin if match(low)), None)
        if found is None and write:
            found = next((g for g, match in self._builtin_write if match(low)), None)
        if found is not None and self._unlock is not None and self._unlock(path):
            return None
        return found

    def section_denied(self, path: str, *, write: bool = False) -> bool:
        """Whether the section's own ``deny`` globs (or the built-in lists) cover ``path``."""
        return self.builtin_denied(path, write=write) is not None or (
            self._deny is not None and bool(self._deny(path))
        )

    def check(self, call: ToolCall) -> Decision | None:
        """The built-in deny list, then what is on disk along the path.

        The on-disk look (symlinks, hard links, devices) is a check-then-use
        look by nature; the descriptor layer is what makes it race-free.
        """
        paths = [call.args.get("path", ".")]
        if "dest" in call.args:
            paths.append(call.args["dest"])
        write = call.action in MUTATING
        for path in paths:
            group = self.builtin_denied(path, write=write)
            if group is not None:
                return Decision.deny(
                    "fs:builtin-deny",
                    f"`{path}` is on the built-in deny list ({group}); "
                    "only an `unlock` entry in the fs section lifts this",
                )
        for path in paths:
            decision = self._on_disk(path, write, call.action)
            if decision is not None:
                return decision
        if call.action in ("move", "delete"):
            return self._holds_denied(paths[0])
        return None

    def _holds_denied(self, path: str) -> Decision | None:
        """A folder to be moved or deleted must hold nothing on the deny lists
        (moving `models/` away would take weights out of their deny glob)."""
        top = os.path.join(os.fspath(self.config.root), path)
        if not os.path.isdir(top) or os.path.islink(top):
            return None
        seen = 0
        for dirpath, dirnames, filenames in os.walk(top, followlinks=False):
            for name in dirnames + filenames:
                seen += 1
                if seen > self.limits.walk_entries:
                    return Decision.deny("fs:limit", f"`{path}` holds too many entries")
                rel = os.path.relpath(os.path.join(dirpath, name), os.fspath(self.config.root))
                if self.section_denied(rel, write=True):
                    return Decision.deny(
                        "fs:builtin-deny", f"`{path}` holds `{rel}`, which is denied"
                    )
        return None

    def _on_disk(self, path: str, write: bool = False, action: str = "") -> Decision | None:
        if path == ".":
            return None
        # `delete` and `stat` act on a final symlink itself and never follow it.
        own_link = action in ("delete", "stat")
        root = os.fspath(self.config.root)
        cur = root
        parts = path.split("/")
        for i, part in enumerate(parts):
            cur = f"{cur}/{part}"  # canonical parts: no `..`, `.` or empty ones
            try:
                st = os.lstat(cur)
            except FileNotFoundError:
                return None
            except OSError:
                return Decision.deny("fs:invalid", f"`{path}` cannot be looked at")
            if stat.S_ISLNK(st.st_mode):
                if own_link and i == len(parts) - 1:
                    return None
                if self.config.symlinks == "refuse":
                    return Decision.deny(
                        "fs:symlink",
                        f"`{'/'.join(parts[: i + 1])}` is a symlink; symlinks are refused",
                    )
                real = os.path.realpath(cur)
                rel = os.path.relpath(real, os.path.realpath(root))
                if rel == ".." or rel.startswith("../") or os.path.isabs(rel):
                    return Decision.deny(
                        "fs:symlink", f"`{'/'.join(parts[: i + 1])}` is a symlink out of the root"
                    )
                if self.builtin_denied(rel, write=write) is not None:
                    return Decision.deny(
                        "fs:builtin-deny", f"`{path}` leads by symlink to a denied file"
                    )
                continue
            if i == len(parts) - 1:
                if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                    return Decision.deny("fs:special-file", f"`{path}` is a device")
                if stat.S_ISFIFO(st.st_mode) or stat.S_ISSOCK(st.st_mode):
                    return Decision.deny("fs:special-file", f"`{path}` is a fifo or socket")
                if stat.S_ISREG(st.st_mode) and st.st_nlink > 1 and not self.config.hardlinks:
                    return Decision.deny(
                        "fs:hardlink", f"`{path}` has {st.st_nlink - 1} other hard link(s)"
                    )
        return None

    # -- labels -----------------------------------------------------------------

    def label(self, path: str) -> Label:
        """The provenance label for content read from ``path``."""
        integrity = Integrity.TRUSTED
        if self._untrusted is not None and self._untrusted(path):
            integrity = Integrity.UNTRUSTED
        conf = Confidentiality.INTERNAL
        if self._confidential is not None and self._confidential(path):
            conf = Confidentiality.SECRET
        elif self._public is not None and self._public(path):
            conf = Confidentiality.PUBLIC
        return Label(f"fs:{path}", integrity, conf)

    def may_read(self, path: str, call: ToolCall) -> bool:
        """Whether a file met while searching may be looked into: not denied, and
        (with a policy) readable under it."""
        if self.section_denied(path):
            return False
        if self._policy is None:
            return True
        probe = ToolCall(
            "fs", "read", {"path": path}, session=call.session, principal=call.principal
        )
        return self._policy.decide(probe).effect is Effect.ALLOW

    def target_allowed(self, real: str, call: ToolCall) -> bool:
        """Whether the real path an in-root symlink led to may be used for ``call``."""
        if self.section_denied(real):
            return False
        if self._policy is None:
            return True
        probe = ToolCall(
            "fs", call.action, {"path": real}, session=call.session, principal=call.principal
        )
        return self._policy.decide(probe).effect is Effect.ALLOW

    # -- engine layer -----------------------------------------------------------

    def execute(self, call: ToolCall, ctx: Context) -> Output:
        """Run the operation on descriptors beneath the root."""
        if call.action not in ACTIONS:
            raise FSError(f"`fs` has no action `{call.action}`")
        path = call.args.get("path", ".")
        if not isinstance(path, str):
            raise FSError("path must be a string")
        # A changing call reserves its place in the session's change budget
        # first (so parallel calls cannot all slip under the cap) and gives it
        # back when it fails: a refused edit or a missing file is no change.
        reserved = call.action in MUTATING and self.limits.session_changes is not None
        if reserved:
            self._spend(ctx, "changes", 1, self.limits.session_changes, "change count")
        try:
            value, meta, labelled = getattr(self.engine, "op_" + call.action)(call, ctx)
        except BaseException as exc:
            if reserved:
                ctx.session.guard.sessions.add(_budget_key(ctx, "changes"), -1)
            if isinstance(exc, OSError):
                reason = (exc.strerror or type(exc).__name__).lower()
                raise FSError(f"`fs.{call.action}` on `{path[:120]}` failed: {reason}") from exc
            if isinstance(exc, ValueError):  # a NUL byte the engine was handed directly
                raise FSError(f"`fs.{call.action}`: invalid argument") from exc
            raise
        if len(labelled) == 1:
            labels: tuple[Label, ...] = (self.label(labelled[0]),)
        else:
            labels = _distinct(self.label(p) for p in labelled) or (self.label(path),)
        return Output(value=value, labels=labels, meta={"path": path, **meta})

    def _spend(self, ctx: Context, what: str, amount: int, cap: int | None, name: str) -> None:
        """Count ``amount`` against a per-session cap; refuse when it would go over."""
        if cap is None:
            return
        store = ctx.session.guard.sessions
        key = _budget_key(ctx, what)
        if store.get(key) + amount > cap:
            raise FSError(f"the session's fs {name} budget ({cap}) is spent")
        store.add(key, amount)

    def remaining(self, ctx: Context, what: str, cap: int | None) -> int | None:
        """What is left of a per-session cap (``None``: no cap)."""
        if cap is None:
            return None
        used = ctx.session.guard.sessions.get(_budget_key(ctx, what))
        return max(0, cap - used)

    def restorers(self) -> Mapping[str, Restorer]:
        """The restorer ``stockade undo`` uses for this tool's journal entries."""
        return {"fs": FSRestorer(self.resolver, self.journal, self.limits.file_bytes)}

    def describe(self) -> Mapping[str, Any]:
        """The actions, a JSON schema and a description of each, for integrations."""
        schemas: dict[str, Any] = {}
        for action, spec in ACTIONS.items():
            props = {
                key: {"type": _JSON_TYPES[kind], "description": _ARG_DOCS.get(key, key)}
                for key, kind in spec.items()
            }
            required = [
                k
                for k in ("path", *_REQUIRED.get(action, ()), *_REQUIRED_MORE.get(action, ()))
                if k in spec and (k != "path" or action not in _PATH_DEFAULTS_TO_ROOT)
            ]
            schemas[action] = {
                "type": "object",
                "properties": props,
                "required": required,
                "additionalProperties": False,
            }
        return {
            "name": self.name,
            "actions": sorted(self.actions),
            "arguments": {a: sorted(spec) for a, spec in ACTIONS.items()},
            "schemas": schemas,
            "descriptions": _ACTION_DOCS,
            "description": "files under one workspace folder; paths are relative to it",
        }


_JSON_TYPES = {str: "string", int: "integer", bool: "boolean"}
_ARG_DOCS = {
    "path": "path relative to the workspace, `/`-separated (`.` is the workspace)",
    "offset": "first byte to read",
    "length": "most bytes to read",
    "pattern": "a glob (`*`, `**`, `{a,b}`) or, for search, an RE2 regular expression",
    "glob": "only search files whose path (relative to `path`) matches this glob",
    "content": "UTF-8 text",
    "overwrite": "replace an existing file (default true)",
    "old": "text to replace; must occur exactly once",
    "new": "replacement text",
    "parents": "also make missing parent folders",
    "dest": "new path relative to the workspace; must not exist",
    "recursive": "delete a folder with everything in it",
}
_ACTION_DOCS = {
    "read": "Read a text file (or a byte range of it) from the workspace.",
    "list": "List the entries of a folder in the workspace.",
    "glob": "Find paths under a folder that match a glob.",
    "search": "Search the text files under a path for lines matching an RE2 pattern.",
    "stat": "Type, size, permissions and modification time of a path.",
    "write": "Create or replace a text file (atomically).",
    "append": "Add text at the end of a file (created when missing).",
    "edit": "Replace one exact, unique piece of text in a file.",
    "mkdir": "Make a folder.",
    "move": "Move or rename a file or folder inside the workspace.",
    "delete": "Delete a file or folder (a folder with content needs recursive).",
}


def capability_from_policy(policy: Policy) -> list[Capability]:
    """The fs tool the policy's ``fs:`` section configures (none without one)."""
    config = policy.section("fs")
    if not isinstance(config, FSConfig):
        return []
    return [FSTool(config, policy=policy)]


def _budget_key(ctx: Context, what: str) -> str:
    """The session-store counter of one per-session fs budget."""
    return f"fs:{what}:{ctx.session.id}"


def _distinct(labels: Iterable[Label]) -> tuple[Label, ...]:
    """The first label of each (integrity, confidentiality) kind, in order.

    A listing of a thousand files needs one label per kind of trust, not one
    per file, for the flow stage to judge it and the audit record to stay small.
    """
    seen: set[tuple[Integrity, Confidentiality]] = set()
    out: list[Label] = []
    for label in labels:
        kind = (label.integrity, label.confidentiality)
        if kind not in seen:
            seen.add(kind)
            out.append(label)
    return tuple(out)
