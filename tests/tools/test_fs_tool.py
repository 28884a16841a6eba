"""The fs tool's policy section, canonical paths, caps, labels and each operation."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from fs_support import Arena, arena, everything_policy, execute_raw, fs, make_guard, policy_text
from hypothesis import given
from hypothesis import strategies as st

from stockade import Denied, FSError, Integrity, Policy, PolicyError
from stockade.errors import ApprovalRequired
from stockade.model import Confidentiality, ToolCall
from stockade.policy.matchers import compile_glob
from stockade.tools.fs import BUILTIN_DENY, FSConfig, FSTool, canonical_path

__all__ = ["arena"]


# -- canonical paths ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        ("notes/a.md", "notes/a.md"),
        ("./notes//a.md", "notes/a.md"),
        ("notes/x/../a.md", "notes/a.md"),
        ("notes/", "notes"),
        ("", "."),
        (".", "."),
        ("./", "."),
        ("a/..", "."),
        ("café/日本.md", "café/日本.md"),
        ("...", "..."),
        ("a..b", "a..b"),
    ],
)
def test_canonical_path(raw: str, canonical: str) -> None:
    assert canonical_path(raw) == canonical


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        ("../x", "climbs out"),
        ("a/../../x", "climbs out"),
        ("/etc", "absolute"),
        ("a\\b", "backslash"),
        ("a\x00b", "control"),
        ("a\x7fb", "control"),
        ("a\u2215b", "looks like"),
        ("\uff0e\uff0e/x", "looks like"),
        ("a\u200bb", "invisible"),
        ("a\u2028b", "invisible"),
        ("x" * 2000, "longer than"),
        ("x" * 256, "longer than 255"),
        (3, "must be a string"),
        (None, "must be a string"),
        (b"notes", "must be a string"),
    ],
)
def test_canonical_path_refuses(raw: Any, why: str) -> None:
    with pytest.raises(FSError, match=why):
        canonical_path(raw)


@given(st.text(max_size=80))
def test_canonical_paths_never_leave_the_root(raw: str) -> None:
    try:
        path = canonical_path(raw)
    except FSError:
        return
    assert not path.startswith("/")
    assert ".." not in path.split("/")
    assert "\\" not in path and "\0" not in path
    assert canonical_path(path) == path


# -- the policy section -----------------------------------------------------------------


def test_section_compiles_to_rules(tmp_path: Path) -> None:
    text = (
        f"version: 1\nfs:\n  root: '{tmp_path}'\n  allow: {{read: ['notes/**'], move: ['notes/**']}}\n"
        "  ask: {delete: ['notes/**']}\n  deny: ['notes/private/**']\n"
    )
    policy = Policy.from_text(text)
    ids = {r.id for r in policy.rules}
    assert ids == {"fs:allow-read", "fs:allow-move", "fs:ask-delete", "fs:deny", "fs:deny-dest"}
    call = ToolCall("fs", "read", {"path": "notes/a.md"}, session="s")
    assert policy.decide(call).rule == "fs:allow-read"
    assert policy.decide(call.with_args({"path": "notes/private/x"})).rule == "fs:deny"
    assert policy.decide(call.with_args({"path": "docs/x"})).rule == "default-deny"
    move = ToolCall("fs", "move", {"path": "notes/a", "dest": "docs/a"}, session="s")
    assert policy.decide(move).rule == "default-deny"
    assert policy.decide(move.with_args({"path": "notes/a", "dest": "notes/b"})).allowed
    assert policy.decide(move.with_args({"path": "notes/a", "dest": "notes/private/b"})).rule == (
        "fs:deny-dest"
    )


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("  allow: {read: ['**']}\n", "missing required key `root`"),
        ("  root: /x\n  allow: {erase: ['**']}\n", "unknown key `erase`"),
        ("  root: /x\n  allow: {read: ['../**']}\n", "must be relative"),
        ("  root: /x\n  allow: {read: ['/etc/**']}\n", "must be relative"),
        ("  root: /x\n  allow: {read: ['a/**b']}\n", "bad glob"),
        ("  root: /x\n  symlinks: follow\n", "unknown value `follow`"),
        ("  root: /x\n  hardlinks: yes\n", "read as a boolean"),
        ("  root: /x\n  limits: {read_bytes: lots}\n", "expected a size"),
        ("  root: /x\n  limits: {list_entries: -1}\n", ">= 0"),
        ("  root: /x\n  limits: {nope: 1}\n", "unknown key `nope`"),
        ("  root: /x\n  journal: {blob_budget: 1MiB}\n", "missing required key `path`"),
        ("  root: /x\n  labels: {dangerous: ['**']}\n", "unknown key `dangerous`"),
        ("  root: /x\n  frobnicate: 1\n", "unknown key `frobnicate`"),
    ],
)
def test_section_errors_are_located(body: str, message: str) -> None:
    with pytest.raises(PolicyError) as info:
        Policy.from_text("version: 1\nfs:\n" + body, source="p.yaml")
    assert message in str(info.value)
    assert str(info.value).startswith("p.yaml:")


def test_section_settings_are_read(tmp_path: Path) -> None:
    text = (
        "version: 1\nfs:\n  root: ws\n  symlinks: in-root\n  hardlinks: allow\n  durable: true\n"
        "  limits: {read_bytes: 4KiB, list_entries: 7, session_read_bytes: null}\n"
        "  journal: {path: st, blob_budget: 2MiB}\n"
    )
    (tmp_path / "ws").mkdir()
    cfg = Policy.from_text(text, base_dir=tmp_path).section("fs")
    assert isinstance(cfg, FSConfig)
    assert cfg.root == tmp_path / "ws"
    assert (cfg.symlinks, cfg.hardlinks, cfg.durable) == ("in-root", True, True)
    assert (cfg.limits.read_bytes, cfg.limits.list_entries) == (4096, 7)
    assert cfg.limits.session_read_bytes is None
    assert cfg.journal is not None and cfg.journal.path == tmp_path / "st"
    assert cfg.journal.blob_budget == 2 * 1024 * 1024


def test_missing_root_is_a_located_policy_error(tmp_path: Path) -> None:
    with pytest.raises(
        PolicyError, match=r":\d+:\d+: fs.root: the fs root `\S*nope` does not exist"
    ):
        Policy.from_text(everything_policy(tmp_path / "nope"))
    (tmp_path / "file").write_text("x")
    with pytest.raises(PolicyError, match="is not a folder"):
        Policy.from_text(everything_policy(tmp_path / "file"))


def test_root_that_cannot_be_opened_is_a_configuration_error(tmp_path: Path) -> None:
    from stockade.errors import ConfigurationError

    root = tmp_path / "gone"
    root.mkdir()
    policy = Policy.from_text(everything_policy(root))
    root.rmdir()  # parsed while it existed, gone when the tool opens it
    with pytest.raises(ConfigurationError, match="cannot open the fs root"):
        FSTool(policy.section("fs"), policy=policy)


# -- the built-in deny list ------------------------------------------------------------------


DENIED_SAMPLES = [
    ".env", ".env.local", "app/.env.production", "prod.env", ".envrc", "certs/server.pem",
    "tls/site.KEY", "home/.ssh/config", ".ssh", "home/u/.ssh/id_rsa", "keys/id_ed25519.pub",
    ".aws/credentials", ".azure/token.json", ".config/gcloud/creds.db", ".gnupg/pubring.kbx",
    "repo/.git/config", ".netrc", "_netrc", ".pgpass", ".npmrc", ".pypirc",
    ".password-store/mail.gpg", "vault.kdbx", "login.keychain-db", ".local/share/keyrings/a",
    ".vault-token", "m/model.safetensors", "llm.gguf", "old.ggml", "x/w.pt", "y/w.pth",
    "ckpt/a.ckpt", "export.onnx", "models/llama/shard-1.bin", "my-model/x/y.bin",
    "checkpoints/7b.bin", "weights/a.bin", "pytorch_model-00001.bin",
    ".cache/huggingface/hub/x", ".kube/config", ".docker/config.json", ".git-credentials",
    "a.p12", "b.pfx", "c.crt", "d.cer", "e.der", "f.p8", "g.ppk", "h.jks", "i.keystore",
    "j.kdb", "k.keychain", "id_dsa", "id_ecdsa",
]  # fmt: skip


def test_every_builtin_glob_has_a_sample() -> None:
    """So the cheap pre-check (anchors) is tested against every glob."""
    for globs in BUILTIN_DENY.values():
        for glob in globs:
            match = compile_glob([glob])
            assert any(match(p.lower()) for p in DENIED_SAMPLES), glob


@pytest.fixture(scope="module")
def shared_guard(tmp_path_factory: pytest.TempPathFactory) -> Any:
    root = tmp_path_factory.mktemp("shared")
    with make_guard(everything_policy(root)) as guard:
        yield guard


@pytest.mark.parametrize("path", DENIED_SAMPLES)
def test_builtin_deny_list(shared_guard: Any, path: str) -> None:
    assert fs(shared_guard).builtin_denied(path) is not None
    with pytest.raises(Denied) as info:
        shared_guard.call("fs", "read", {"path": path})
    assert info.value.rule == "fs:builtin-deny"


@pytest.mark.parametrize(
    "path", ["notes/environment.md", "data/file.bin", "src/model.py", "git/config", "a.envelope"]
)
def test_builtin_deny_list_leaves_ordinary_files(shared_guard: Any, path: str) -> None:
    assert fs(shared_guard).builtin_denied(path) is None


def test_every_group_has_globs() -> None:
    assert all(BUILTIN_DENY.values())


def test_unlock_lifts_only_what_it_names(arena: Arena) -> None:
    with make_guard(everything_policy(arena.root)) as guard, pytest.raises(Denied):
        guard.call("fs", "read", {"path": ".env.example"})
    with make_guard(everything_policy(arena.root, extra="  unlock: ['.env.example']\n")) as guard:
        assert guard.call("fs", "read", {"path": ".env.example"}).value == "API_KEY=\n"
        with pytest.raises(Denied, match="builtin-deny"):
            guard.call("fs", "read", {"path": ".env"})
        names = [e["name"] for e in guard.call("fs", "list", {"path": "."}).value]
        assert ".env.example" in names and ".env" not in names


def test_denied_files_are_invisible_to_list_glob_and_search(arena: Arena) -> None:
    with make_guard(everything_policy(arena.root)) as guard:
        assert ".env" not in repr(guard.call("fs", "list", {}).value)
        assert ".env" not in repr(guard.call("fs", "glob", {"pattern": "**"}).value)
        found = guard.call("fs", "search", {"pattern": "API_KEY"}).value
        assert found == []


def test_search_looks_only_into_files_the_policy_lets_the_agent_read(arena: Arena) -> None:
    allow = "      search: ['**']\n      read: ['notes/**']\n"
    with make_guard(policy_text(arena.root, allow=allow)) as guard:
        hits = guard.call("fs", "search", {"pattern": "."}).value
    assert {h["path"] for h in hits} == {"notes/a.txt", "notes/sub/b.md"}


# -- rules per operation, ask, deny ----------------------------------------------------------


def test_writes_outside_the_allowed_globs_are_denied(arena: Arena) -> None:
    with make_guard(policy_text(arena.root)) as guard:
        with pytest.raises(Denied, match="default-deny"):
            guard.call("fs", "write", {"path": "docs/x.md", "content": "x"})
        with pytest.raises(Denied, match="default-deny"):
            guard.call("fs", "move", {"path": "notes/a.txt", "dest": "docs/a.txt"})
        assert not (arena.root / "docs" / "x.md").exists()


def test_ask_rules_go_to_the_approver(arena: Arena) -> None:
    text = policy_text(arena.root, allow="      read: ['**']\n") + "  ask:\n    delete: ['**']\n"
    with make_guard(text, approve=True) as guard:
        guard.call("fs", "delete", {"path": "docs/readme.md"})
    assert not (arena.root / "docs" / "readme.md").exists()
    with make_guard(text) as guard, pytest.raises(Denied, match="refused"):
        guard.call("fs", "delete", {"path": "notes/a.txt"})
    from stockade import Guard
    from stockade.stages import MemoryAuditSink, NoFlow, NoScanner

    guard = Guard(
        Policy.from_text(text), audit=MemoryAuditSink(), scanner=NoScanner(), flow=NoFlow()
    )
    guard.approver = None
    with pytest.raises(ApprovalRequired):
        guard.call("fs", "delete", {"path": "notes/a.txt"})
    guard.close()


def test_bad_arguments_are_denied_as_invalid(arena: Arena) -> None:
    with make_guard(everything_policy(arena.root)) as guard:
        for action, args, why in [
            ("read", {"path": "notes/a.txt", "bogus": 1}, "no argument `bogus`"),
            ("read", {"path": "notes/a.txt", "offset": -1}, "must not be negative"),
            ("read", {"path": "notes/a.txt", "length": "5"}, "must be an integer"),
            ("read", {"path": "notes/a.txt", "offset": True}, "must be an integer"),
            ("write", {"path": "notes/x"}, "needs `content`"),
            ("write", {"path": "notes/x", "content": b"x"}, "must be a str"),
            ("edit", {"path": "notes/a.txt", "old": "x"}, "needs `new`"),
            ("glob", {"pattern": "/etc/*"}, "must stay inside"),
            ("search", {"pattern": "a\0"}, "NUL"),
            ("search", {"pattern": "x" * 1001}, "longer than 1000"),
            ("move", {"path": "notes/a.txt"}, "needs `dest`"),
        ]:
            with pytest.raises(Denied, match=why) as info:
                guard.call("fs", action, args)
            assert info.value.rule == "fs:invalid"


# -- operations and caps -----------------------------------------------------------------------


def test_read_ranges_and_caps(arena: Arena) -> None:
    extra = "  limits: {read_bytes: 8, session_read_bytes: 20}\n"
    with make_guard(everything_policy(arena.root, extra=extra)) as guard:
        r = guard.call("fs", "read", {"path": "notes/a.txt"}, session="s")
        assert r.value == "hello\nwo" and r.meta["truncated"] and r.meta["size"] == 12
        r = guard.call("fs", "read", {"path": "notes/a.txt", "offset": 6, "length": 3}, session="s")
        assert r.value == "wor" and r.meta["truncated"]
        r = guard.call("fs", "read", {"path": "notes/a.txt", "offset": 100}, session="s")
        assert r.value == "" and not r.meta["truncated"]
        r = guard.call("fs", "read", {"path": "notes/a.txt"}, session="s")
        assert len(r.value) == 8  # 19 of 20 spent
        r = guard.call("fs", "read", {"path": "notes/a.txt"}, session="s")
        assert r.value == "h"
        with pytest.raises(FSError, match="read budget is spent"):
            guard.call("fs", "read", {"path": "notes/a.txt"}, session="s")
        assert guard.call("fs", "read", {"path": "notes/a.txt"}, session="other").value


def test_binary_content_is_marked(arena: Arena) -> None:
    (arena.root / "docs" / "blob").write_bytes(b"\xff\xfe\x00abc")
    with make_guard(everything_policy(arena.root)) as guard:
        r = guard.call("fs", "read", {"path": "docs/blob"})
    assert r.meta["binary"] and "abc" in r.value


def test_write_caps_per_call_and_session(arena: Arena) -> None:
    extra = "  limits: {write_bytes: 10, session_write_bytes: 15, session_changes: 4}\n"
    with make_guard(everything_policy(arena.root, extra=extra)) as guard:
        with pytest.raises(FSError, match="larger than 10"):
            guard.call("fs", "write", {"path": "notes/x", "content": "x" * 11}, session="s")
        guard.call("fs", "write", {"path": "notes/x", "content": "x" * 10}, session="s")
        with pytest.raises(FSError, match="write budget"):
            guard.call("fs", "append", {"path": "notes/x", "content": "y" * 6}, session="s")
        # the two refused calls changed nothing and spent no change
        guard.call("fs", "mkdir", {"path": "notes/d1"}, session="s")
        guard.call("fs", "mkdir", {"path": "notes/d2"}, session="s")
        guard.call("fs", "mkdir", {"path": "notes/d3"}, session="s")
        with pytest.raises(FSError, match="change count"):
            guard.call("fs", "mkdir", {"path": "notes/d4"}, session="s")
        assert not (arena.root / "notes" / "d4").exists()


def test_failed_changes_do_not_spend_the_change_budget(arena: Arena) -> None:
    (arena.root / "notes" / "a.txt").write_text("hello")
    extra = "  limits: {session_changes: 2}\n"
    with make_guard(everything_policy(arena.root, extra=extra)) as guard:
        with pytest.raises(FSError, match=r"occurs 0 times|not found|does not occur"):
            guard.call(
                "fs", "edit", {"path": "notes/a.txt", "old": "nope", "new": "x"}, session="s"
            )
        with pytest.raises(FSError):
            guard.call("fs", "delete", {"path": "notes/missing.txt"}, session="s")
        guard.call("fs", "write", {"path": "notes/b.txt", "content": "b"}, session="s")
        guard.call("fs", "write", {"path": "notes/c.txt", "content": "c"}, session="s")
        with pytest.raises(FSError, match="change count"):
            guard.call("fs", "write", {"path": "notes/d.txt", "content": "d"}, session="s")
        assert not (arena.root / "notes" / "d.txt").exists()


def test_read_and_other_single_path_actions_need_a_path(arena: Arena) -> None:
    with make_guard(everything_policy(arena.root)) as guard:
        for action in ("read", "stat", "delete", "mkdir"):
            with pytest.raises(Denied, match=f"`fs.{action}` needs `path`"):
                guard.call("fs", action, {})
        assert guard.call("fs", "list", {}).value is not None  # `.` by default


def test_list_glob_and_search_caps(arena: Arena) -> None:
    for i in range(12):
        (arena.root / "docs" / f"f{i:02}.txt").write_text("needle\n" * 3)
    extra = "  limits: {list_entries: 5, glob_results: 4, search_results: 7, search_files: 2}\n"
    with make_guard(everything_policy(arena.root, extra=extra)) as guard:
        r = guard.call("fs", "list", {"path": "docs"})
        assert len(r.value) == 5 and r.meta["truncated"]
        r = guard.call("fs", "glob", {"path": "docs", "pattern": "*.txt"})
        assert r.value == ["docs/f00.txt", "docs/f01.txt", "docs/f02.txt", "docs/f03.txt"]
        assert r.meta["truncated"]
        r = guard.call("fs", "search", {"path": "docs", "pattern": "needle"})
        assert len(r.value) == 6 and r.meta["truncated"] and r.meta["files"] == 2


def test_walks_are_capped(arena: Arena) -> None:
    for i in range(30):
        (arena.root / "docs" / f"d{i}").mkdir()
    text = everything_policy(arena.root, extra="  limits: {walk_entries: 10}\n")
    with make_guard(text) as g, pytest.raises(FSError, match="more than 10 entries"):
        g.call("fs", "glob", {"pattern": "**"})


def test_search_pattern_is_re2_and_linear(arena: Arena) -> None:
    (arena.root / "docs" / "evil.txt").write_text("a" * 5000 + "!")
    with make_guard(everything_policy(arena.root)) as guard:
        hits = guard.call("fs", "search", {"path": "docs", "pattern": "(a+)+!$"}).value
        assert hits and hits[0]["path"] == "docs/evil.txt"
        with pytest.raises(FSError, match="RE2"):
            guard.call("fs", "search", {"pattern": "(?<=a)b"})
        single = guard.call("fs", "search", {"path": "notes/a.txt", "pattern": "world"}).value
        assert single == [{"path": "notes/a.txt", "line": 2, "text": "world"}]


def test_edit_needs_exactly_one_occurrence(arena: Arena) -> None:
    (arena.root / "notes" / "twice.txt").write_text("x x")
    (arena.root / "notes" / "bin").write_bytes(b"\xff\xfe")
    with make_guard(everything_policy(arena.root)) as guard:
        for path, old, why in [
            ("notes/twice.txt", "x", "occurs 2 times"),
            ("notes/a.txt", "absent", "occurs 0 times"),
            ("notes/bin", "x", "not UTF-8"),
            ("notes/none.txt", "x", "does not exist"),
            ("notes/a.txt", "", "must not be empty"),
        ]:
            with pytest.raises(FSError, match=why):
                guard.call("fs", "edit", {"path": path, "old": old, "new": "y"})


def test_write_keeps_mode_and_leaves_no_temp_files(arena: Arena) -> None:
    target = arena.root / "notes" / "a.txt"
    os.chmod(target, 0o600)
    with make_guard(everything_policy(arena.root)) as guard:
        guard.call("fs", "write", {"path": "notes/a.txt", "content": "new"})
        with pytest.raises(FSError, match="already exists"):
            guard.call("fs", "write", {"path": "notes/a.txt", "content": "x", "overwrite": False})
        guard.call("fs", "write", {"path": "notes/b.txt", "content": "b", "overwrite": False})
        with pytest.raises(FSError, match="is a folder"):
            guard.call("fs", "write", {"path": "notes/sub", "content": "x"})
    assert target.read_text() == "new" and (target.stat().st_mode & 0o777) == 0o600
    assert not [p for p in (arena.root / "notes").iterdir() if "stockade-tmp" in p.name]


def test_mkdir_move_delete_edges(arena: Arena) -> None:
    with make_guard(everything_policy(arena.root)) as guard:
        with pytest.raises(FSError, match="already exists"):
            guard.call("fs", "mkdir", {"path": "notes"})
        guard.call("fs", "mkdir", {"path": "notes", "parents": True})
        with pytest.raises(FSError, match="does not exist"):
            guard.call("fs", "mkdir", {"path": "x/y/z"})
        with pytest.raises(FSError, match="into itself"):
            guard.call("fs", "move", {"path": "notes", "dest": "notes/sub/n"})
        with pytest.raises(FSError, match="already exists"):
            guard.call("fs", "move", {"path": "notes/a.txt", "dest": "docs/readme.md"})
        with pytest.raises(FSError, match="not empty"):
            guard.call("fs", "delete", {"path": "notes"})
        with pytest.raises(Denied, match=r"holds `\.env`"):
            guard.call("fs", "delete", {"path": ".", "recursive": True})
        with pytest.raises(FSError, match="not the root itself"):
            execute_raw(guard, "delete", {"path": ".", "recursive": True})
        with pytest.raises(FSError, match="does not exist"):
            guard.call("fs", "delete", {"path": "notes/missing"})
        os.symlink("a.txt", arena.root / "notes" / "ln")
        assert guard.call("fs", "stat", {"path": "notes/ln"}).value["type"] == "symlink"
        with pytest.raises(Denied, match="fs:symlink"):
            guard.call("fs", "read", {"path": "notes/ln"})
        assert guard.call("fs", "delete", {"path": "notes/ln"}).value["deleted"] == 1
        assert (arena.root / "notes" / "a.txt").exists()  # the link went, not its target
        os.symlink("a.txt", arena.root / "notes" / "ln")
        assert execute_raw(guard, "delete", {"path": "notes/ln"})["deleted"] == 1


def test_stat(arena: Arena) -> None:
    with make_guard(everything_policy(arena.root)) as guard:
        info = guard.call("fs", "stat", {"path": "notes/a.txt"}).value
        assert info["type"] == "file" and info["size"] == 12 and info["links"] == 1
        with pytest.raises(FSError, match="does not exist"):
            guard.call("fs", "stat", {"path": "notes/none"})


# -- labels -------------------------------------------------------------------------------------


def test_results_carry_provenance_labels(arena: Arena) -> None:
    (arena.root / "hr").mkdir()
    (arena.root / "hr" / "pay.csv").write_text("ada,100\n")
    extra = "  labels: {untrusted: ['inbox/**'], confidential: ['hr/**'], public: ['docs/**']}\n"
    with make_guard(everything_policy(arena.root, extra=extra)) as guard:
        (label,) = guard.call("fs", "read", {"path": "inbox/mail.txt"}).labels
        assert label.source == "fs:inbox/mail.txt" and label.integrity is Integrity.UNTRUSTED
        (label,) = guard.call("fs", "read", {"path": "hr/pay.csv"}).labels
        assert label.confidentiality is Confidentiality.SECRET
        assert label.integrity is Integrity.TRUSTED
        (label,) = guard.call("fs", "read", {"path": "docs/readme.md"}).labels
        assert label.confidentiality is Confidentiality.PUBLIC
        (label,) = guard.call("fs", "read", {"path": "notes/a.txt"}).labels
        assert label.confidentiality is Confidentiality.INTERNAL
        labels = guard.call("fs", "search", {"pattern": "ignore|ada"}).labels
        assert {lb.source for lb in labels} == {"fs:inbox/mail.txt", "fs:hr/pay.csv"}


# -- in-root symlinks ------------------------------------------------------------------------------


def test_in_root_symlinks_are_followed_only_to_allowed_places(arena: Arena) -> None:
    os.symlink("a.txt", arena.root / "notes" / "alias")
    os.symlink("../.env", arena.root / "notes" / "env")
    os.symlink("../docs/readme.md", arena.root / "notes" / "readme")
    os.symlink(str(arena.outside), arena.root / "notes" / "out")
    allow = "      read: ['notes/**']\n"
    with make_guard(policy_text(arena.root, allow=allow, extra="  symlinks: in-root\n")) as guard:
        assert guard.call("fs", "read", {"path": "notes/alias"}).value == "hello\nworld\n"
        with pytest.raises(Denied, match="fs:builtin-deny"):
            guard.call("fs", "read", {"path": "notes/env"})
        with pytest.raises(Denied, match="fs:symlink"):
            guard.call("fs", "read", {"path": "notes/out/secret.txt"})
        with pytest.raises(FSError, match="not allowed"):
            guard.call("fs", "read", {"path": "notes/readme"})  # docs/ is not readable
        for path in ("notes/env", "notes/out/secret.txt", "notes/readme"):
            with pytest.raises(FSError):
                execute_raw(guard, "read", {"path": path})


def test_in_root_symlinks_need_openat2(arena: Arena) -> None:
    from stockade.errors import ConfigurationError
    from stockade.hazmat.fs_resolver import Resolver

    with pytest.raises(ConfigurationError, match="need openat2"):
        Resolver(arena.root, symlinks="in-root", mode="walk")


def test_hard_links_can_be_allowed(arena: Arena) -> None:
    os.link(arena.root / "notes" / "a.txt", arena.root / "docs" / "twin.txt")
    with make_guard(everything_policy(arena.root)) as guard, pytest.raises(Denied):
        guard.call("fs", "read", {"path": "docs/twin.txt"})
    with make_guard(everything_policy(arena.root, extra="  hardlinks: allow\n")) as guard:
        assert guard.call("fs", "read", {"path": "docs/twin.txt"}).value.startswith("hello")


# -- fail closed -----------------------------------------------------------------------------------


def test_an_unreadable_path_component_denies(arena: Arena) -> None:
    with make_guard(everything_policy(arena.root)) as guard, pytest.raises(Denied) as info:
        guard.call("fs", "read", {"path": "notes/a.txt/inside"})
    assert info.value.rule == "fs:invalid"


class _BrokenDeny(FSTool):
    def builtin_denied(self, path: str) -> str | None:
        raise RuntimeError("deny list unavailable")


def test_a_failing_check_denies(arena: Arena) -> None:
    with (
        make_guard(everything_policy(arena.root), _BrokenDeny) as guard,
        pytest.raises(Denied) as info,
    ):
        guard.call("fs", "read", {"path": "notes/a.txt"})
    assert info.value.rule == "error:capability"


class _BrokenPolicyProbe(FSTool):
    def may_read(self, path: str, call: ToolCall) -> bool:
        raise RuntimeError("policy probe failed")


def test_a_failing_search_filter_returns_nothing(arena: Arena) -> None:
    from stockade import ToolError

    with (
        make_guard(everything_policy(arena.root), _BrokenPolicyProbe) as guard,
        pytest.raises(ToolError),
    ):
        guard.call("fs", "search", {"pattern": "hello"})


def test_raw_engine_checks_argument_types(arena: Arena) -> None:
    with make_guard(everything_policy(arena.root)) as guard:
        for action, args in [
            ("read", {"path": 3}),
            ("read", {"path": "notes/a.txt", "offset": -2}),
            ("write", {"path": "notes/x", "content": 5}),
            ("frobnicate", {"path": "x"}),
        ]:
            with pytest.raises(FSError):
                execute_raw(guard, action, args)


def test_describe_lists_actions(arena: Arena) -> None:
    with make_guard(everything_policy(arena.root)) as guard:
        info = fs(guard).describe()
    assert "read" in info["actions"] and info["arguments"]["move"] == ["dest", "path"]
    assert info["schemas"]["edit"]["required"] == ["path", "old", "new"]
    assert info["schemas"]["list"]["required"] == []
    assert isinstance(fs(guard), FSTool)


def test_a_journal_inside_the_root_is_refused(arena: Arena) -> None:
    from stockade.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="inside the root"):
        make_guard(policy_text(arena.root, arena.root / "journal"))


def test_files_that_run_code_are_read_only_unless_unlocked(arena: Arena) -> None:
    (arena.root / ".github" / "workflows").mkdir(parents=True)
    (arena.root / ".github" / "workflows" / "ci.yml").write_text("on: push\n")
    args = {"path": ".github/workflows/ci.yml", "old": "push", "new": "pull_request"}
    with make_guard(everything_policy(arena.root)) as guard:
        assert guard.call("fs", "read", {"path": ".github/workflows/ci.yml"}).value
        with pytest.raises(Denied, match="code that runs later"):
            guard.call("fs", "edit", args)
        with pytest.raises(FSError, match="denied"):
            execute_raw(guard, "edit", args)
    unlock = "  unlock: ['.github/workflows/**']\n"
    with make_guard(everything_policy(arena.root, extra=unlock)) as guard:
        guard.call("fs", "edit", args)
    assert "pull_request" in (arena.root / ".github" / "workflows" / "ci.yml").read_text()


def test_shadow_mode_records_but_the_engine_still_refuses(arena: Arena) -> None:
    text = everything_policy(arena.root).replace("version: 1\n", "version: 1\nmode: shadow\n")
    os.symlink(str(arena.outside), arena.root / "notes" / "out")
    with make_guard(text) as guard:
        with pytest.raises(FSError, match="denied"):
            guard.call("fs", "read", {"path": ".env"})
        with pytest.raises(FSError, match="leaves the root or goes through a symlink"):
            guard.call("fs", "read", {"path": "notes/out/secret.txt"})
        with pytest.raises(Denied, match="climbs out"):
            guard.call("fs", "read", {"path": "../outside/secret.txt"})
        events = guard.audit.events  # type: ignore[attr-defined]
        shadowed = [e.decision.shadow for e in events if e.decision and e.decision.shadow]
        assert {s.rule for s in shadowed} >= {"fs:builtin-deny", "fs:symlink"}


@pytest.mark.redis
def test_session_caps_are_shared_across_workers_through_redis(arena: Arena, redis_url: str) -> None:
    import uuid

    from stockade import Guard, RedisSessionStore
    from stockade.stages import MemoryAuditSink, NoFlow, NoScanner

    prefix = f"stockade-test-{uuid.uuid4().hex}:"
    text = everything_policy(arena.root, extra="  limits: {session_read_bytes: 15}\n")
    workers = [
        Guard(
            Policy.from_text(text),
            audit=MemoryAuditSink(),
            scanner=NoScanner(),
            flow=NoFlow(),
            sessions=RedisSessionStore(redis_url, prefix=prefix),
        )
        for _ in range(2)
    ]
    try:
        assert workers[0].call("fs", "read", {"path": "notes/a.txt"}, session="s").value
        assert workers[1].call("fs", "read", {"path": "notes/a.txt"}, session="s").value == "hel"
        with pytest.raises(FSError, match="read budget is spent"):
            workers[0].call("fs", "read", {"path": "notes/a.txt"}, session="s")
    finally:
        import redis

        client = redis.Redis.from_url(redis_url)
        for key in client.scan_iter(f"{prefix}*"):
            client.delete(key)
        client.close()
        for w in workers:
            w.close()
            w.sessions._redis.close()  # type: ignore[attr-defined]  # the store has no close()
