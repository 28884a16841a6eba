"""The fs attack corpus, each layer on its own, the legitimate corpus, and the
rename-exchange race."""

from __future__ import annotations

import contextlib
import functools
import os
import threading
from pathlib import Path
from typing import Any

import pytest
import yaml
from fs_support import (
    FORBIDDEN,
    SECRET,
    Arena,
    arena,
    everything_policy,
    execute_raw,
    fs,
    make_guard,
    policy_text,
)

from stockade import Denied, FSError
from stockade.hazmat.fs_resolver import RENAME_EXCHANGE, Resolver, naive_fs_tool, renameat2
from stockade.tools.fs import FSTool

__all__ = ["arena"]

CORPUS = Path(__file__).resolve().parents[1] / "attacks" / "fs"
ATTACKS: list[dict[str, Any]] = yaml.safe_load((CORPUS / "attacks.yaml").read_text("utf-8"))
LEGIT: list[dict[str, Any]] = yaml.safe_load((CORPUS / "legit.yaml").read_text("utf-8"))
UNLOCK = "  unlock: ['.env.example']\n"


class NaiveFSTool(FSTool):
    """The rule layer alone: the descriptor layer swapped for string joins."""

    def __new__(cls, config: Any, **kwargs: Any) -> Any:
        return naive_fs_tool(config)


class WalkFSTool(FSTool):
    """The descriptor layer with the O_NOFOLLOW walk instead of openat2."""

    _resolver_class = functools.partial(Resolver, mode="walk")


def _args(arena: Arena, attack: dict[str, Any]) -> dict[str, Any]:
    if "long" in attack:
        spec = attack["long"]
        path = spec.get("prefix", "") + spec["repeat"] * spec["times"] + spec["tail"]
        args = {"path": path}
        if attack["action"] == "write":
            args["content"] = "x"
        return args
    return arena.subst(attack.get("args", {}))


def _inside(arena: Arena, attack: dict[str, Any]) -> dict[str, bytes | None]:
    out: dict[str, bytes | None] = {}
    for rel in attack.get("untouched", []):
        p = arena.root / rel
        out[rel] = p.read_bytes() if p.is_file() else None
    return out


def _assert_harmless(
    arena: Arena, before: dict[str, Any], value: Any, attack: dict[str, Any]
) -> None:
    text = repr(value)
    for word in attack.get("forbidden", FORBIDDEN):
        assert word not in text, f"{attack['id']}: `{word}` leaked"
    assert arena.snapshot() == before["outside"], f"{attack['id']}: the outside folder changed"
    assert _inside(arena, attack) == before["inside"], f"{attack['id']}: a protected file changed"


def _ids(items: list[dict[str, Any]]) -> list[str]:
    return [a.get("id") or f"{a['action']}-{i}" for i, a in enumerate(items)]


@pytest.mark.parametrize("attack", ATTACKS, ids=_ids(ATTACKS))
def test_full_stack_denies(arena: Arena, attack: dict[str, Any]) -> None:
    arena.setup(attack.get("setup", []))
    before = {"outside": arena.snapshot(), "inside": _inside(arena, attack)}
    with make_guard(everything_policy(arena.root)) as guard:
        value: Any = None
        try:
            value = guard.call("fs", attack["action"], _args(arena, attack)).value
        except (Denied, FSError):
            pass
        else:
            assert attack["rules"] == "safe", f"{attack['id']} was allowed"
    _assert_harmless(arena, before, value, attack)


@pytest.mark.parametrize("attack", ATTACKS, ids=_ids(ATTACKS))
def test_rule_layer_alone(arena: Arena, attack: dict[str, Any]) -> None:
    """Descriptor layer off (string joins, symlinks followed): the rules still block."""
    arena.setup(attack.get("setup", []))
    before = {"outside": arena.snapshot(), "inside": _inside(arena, attack)}
    with make_guard(everything_policy(arena.root), NaiveFSTool) as guard:
        assert fs(guard).resolver.mode == "naive"
        value: Any = None
        if attack["rules"] == "deny":
            with pytest.raises(Denied) as info:
                guard.call("fs", attack["action"], _args(arena, attack))
            assert info.value.rule == attack["rule"], str(info.value)
        else:
            with contextlib.suppress(Denied, FSError):
                value = guard.call("fs", attack["action"], _args(arena, attack)).value
    _assert_harmless(arena, before, value, attack)


@pytest.mark.parametrize("tool_class", [FSTool, WalkFSTool], ids=["openat2", "walk"])
@pytest.mark.parametrize("attack", ATTACKS, ids=_ids(ATTACKS))
def test_descriptor_layer_alone(arena: Arena, attack: dict[str, Any], tool_class: type) -> None:
    """Rule layer off (no prepare, no check, no policy): the descriptors still block."""
    arena.setup(attack.get("setup", []))
    before = {"outside": arena.snapshot(), "inside": _inside(arena, attack)}
    with make_guard(everything_policy(arena.root), tool_class) as guard:
        value: Any = None
        with contextlib.suppress(FSError):
            value = execute_raw(guard, attack["action"], _args(arena, attack))
    _assert_harmless(arena, before, value, attack)


@pytest.mark.parametrize("case", LEGIT, ids=_ids(LEGIT))
def test_legitimate_calls_are_allowed(arena: Arena, case: dict[str, Any]) -> None:
    arena.setup(case.get("setup", []))
    with make_guard(policy_text(arena.root, arena.state, UNLOCK)) as guard:
        result = guard.call("fs", case["action"], case["args"])
    assert result.decision.allowed
    assert case["expect"] in repr(result.value) or case["expect"] in str(result.value)


@pytest.mark.parametrize("case", LEGIT, ids=_ids(LEGIT))
def test_legitimate_calls_work_with_the_walk_resolver(arena: Arena, case: dict[str, Any]) -> None:
    arena.setup(case.get("setup", []))
    with make_guard(policy_text(arena.root, arena.state, UNLOCK), WalkFSTool) as guard:
        assert fs(guard).resolver.mode == "walk"
        result = guard.call("fs", case["action"], case["args"])
    assert case["expect"] in repr(result.value) or case["expect"] in str(result.value)


# -- the rename-exchange race ---------------------------------------------------------


class _Swapper(threading.Thread):
    """Swaps a real folder and a symlink to the outside folder in a tight loop."""

    def __init__(self, a: Path, b: Path) -> None:
        super().__init__(daemon=True)
        self.a, self.b = os.fsencode(a).decode(), os.fsencode(b).decode()
        self.stop = threading.Event()
        self.swaps = 0

    def run(self) -> None:
        while not self.stop.is_set():
            renameat2(-100, self.a, -100, self.b, RENAME_EXCHANGE)  # AT_FDCWD
            self.swaps += 1


def _race_arena(arena: Arena) -> tuple[Path, Path]:
    inside = arena.root / "race"
    inside.mkdir()
    (inside / "f.txt").write_text("INSIDE\n")
    (arena.outside / "f.txt").write_text(SECRET + "\n")
    swap = arena.root / "swap"
    os.symlink(arena.outside, swap)
    return inside, swap


def test_naive_open_loses_the_race(arena: Arena) -> None:
    """The race is real: a plain open of the checked string does read the outside file."""
    inside, swap = _race_arena(arena)
    swapper = _Swapper(inside, swap)
    swapper.start()
    leaked = 0
    try:
        for _ in range(200_000):
            try:
                with open(inside / "f.txt") as fh:
                    leaked += SECRET in fh.read()
            except OSError:
                continue
            if leaked:
                break
    finally:
        swapper.stop.set()
        swapper.join()
    assert leaked, "the swap never showed through a plain open"


@pytest.mark.parametrize("layer", ["guard", "descriptor-alone", "walk-alone"])
def test_rename_exchange_race_never_leaks(arena: Arena, layer: str) -> None:
    inside, swap = _race_arena(arena)
    tool_class = WalkFSTool if layer == "walk-alone" else FSTool
    guard = make_guard(everything_policy(arena.root), tool_class)
    swapper = _Swapper(inside, swap)
    swapper.start()
    reads = refused = 0
    try:
        for i in range(3000):
            try:
                if layer == "guard":
                    value = guard.call("fs", "read", {"path": "race/f.txt"}).value
                else:
                    value = execute_raw(guard, "read", {"path": "race/f.txt"})
            except (Denied, FSError):
                refused += 1
                continue
            assert SECRET not in value, f"leaked on read {i}"
            assert value == "INSIDE\n"
            reads += 1
            if i % 50 == 0:
                with contextlib.suppress(FSError):
                    execute_raw(guard, "write", {"path": f"race/w{i}.txt", "content": "x"})
    finally:
        swapper.stop.set()
        swapper.join()
        guard.close()
    assert swapper.swaps > 0
    assert reads + refused == 3000
    assert not [p for p in arena.outside.iterdir() if p.name.startswith("w")]
