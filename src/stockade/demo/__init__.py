"""``stockade demo``: a scripted, LLM-free agent run on a temporary workspace.

The demo is a list of scenes. Each scene is a module ``scene_<name>`` in this
package with a ``run(demo: Demo) -> None`` function: it plays the user's task
through guarded tools, then the injected instruction that tries to misuse
them, using :meth:`Demo.attempt` so every call prints its decision, the rule
and why. Scenes share one guard built from the bundled ``policy.yaml``.
"""

from __future__ import annotations

import importlib
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, TextIO

from stockade.errors import (
    ApprovalRequired,
    ConfigurationError,
    Denied,
    StockadeError,
    ToolError,
)
from stockade.guard import Guard
from stockade.model import Result
from stockade.policy import Policy

__all__ = ["SCENES", "Demo", "run_demo"]

#: scenes in the order they play; a scene whose module is missing is skipped
SCENES = ("core", "fs", "http", "sql", "exec", "flow", "scan", "integrations", "audit")


@dataclass
class Tally:
    """What happened over the demo, for the closing summary."""

    allowed: int = 0
    denied: int = 0
    asked: int = 0
    failed: int = 0
    unexpected: list[str] = field(default_factory=list)


class Demo:
    """What a scene gets: the workspace, the guard, and a console to narrate on."""

    def __init__(self, workspace: Path, guard: Guard, out: TextIO, color: bool) -> None:
        self.workspace = workspace
        self.guard = guard
        self.out = out
        self.color = color
        self.tally = Tally()
        self.state: dict[str, Any] = {}

    # -- narration ------------------------------------------------------------

    def _c(self, code: str, text: str) -> str:
        return f"\033[{code}m{text}\033[0m" if self.color else text

    def scene(self, title: str) -> None:
        """Start a scene."""
        self.out.write("\n" + self._c("1", f"== {title} ==") + "\n")

    def say(self, text: str) -> None:
        """Narrate (the user's task, the injected text, an explanation)."""
        self.out.write(self._c("2", f"   {text}") + "\n")

    def user(self, text: str) -> None:
        """What the user asked."""
        self.out.write(self._c("36", f"user> {text}") + "\n")

    def injected(self, text: str) -> None:
        """The attacker's text the agent read."""
        self.out.write(self._c("35", f"injected> {text}") + "\n")

    def attempt(
        self,
        label: str,
        fn: Callable[[], Result | Any],
        *,
        expect: str,
        show: Callable[[Any], str] | None = None,
    ) -> Any:
        """Run one agent step and print its decision, rule and reason.

        ``expect`` is ``allow``, ``deny``, ``ask`` or ``error``; a step that
        ends otherwise is counted as unexpected and fails the demo.
        """
        self.out.write(f" agent> {label}\n")
        outcome, value, rule, why = "allow", None, "", ""
        try:
            value = fn()
            if isinstance(value, Result):
                rule, why = value.decision.rule, value.decision.reason
                value = value.value
        except Denied as exc:
            outcome, rule, why = "deny", exc.decision.rule, exc.decision.reason
        except ApprovalRequired as exc:
            outcome, rule, why = "ask", exc.decision.rule, exc.decision.reason
        except (ToolError, StockadeError) as exc:
            outcome, why = "error", str(exc)
        mark = {
            "allow": self._c("32", "ALLOW"),
            "deny": self._c("31", "DENY "),
            "ask": self._c("33", "ASK  "),
            "error": self._c("31", "ERROR"),
        }[outcome]
        detail = f" [{rule}]" if rule else ""
        self.out.write(f"        {mark}{detail} {why}\n")
        if outcome == "allow" and show is not None and value is not None:
            for line in show(value).splitlines()[:6]:
                self.out.write(self._c("2", f"        | {line}") + "\n")
        counter = {"allow": "allowed", "deny": "denied", "ask": "asked", "error": "failed"}[outcome]
        setattr(self.tally, counter, getattr(self.tally, counter) + 1)
        if outcome != expect:
            self.tally.unexpected.append(f"{label}: expected {expect}, got {outcome}")
        return value


def demo_policy_text() -> str:
    """The bundled example policy."""
    return resources.files("stockade.demo").joinpath("policy.yaml").read_text(encoding="utf-8")


@contextmanager
def _workspace(keep: Path | None) -> Iterator[Path]:
    if keep is not None:
        try:
            keep.mkdir(parents=True, exist_ok=True)
            used = any(keep.iterdir())
        except OSError as exc:
            raise ConfigurationError(
                f"cannot use `{keep}` as the demo folder: {(exc.strerror or str(exc)).lower()}"
            ) from exc
        if used:
            # a second run would find the first one's databases, journal and log
            raise ConfigurationError(
                f"the demo folder `{keep}` is not empty; give a new or empty folder"
            )
        yield keep
        return
    tmp = Path(tempfile.mkdtemp(prefix="stockade-demo-"))
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run_demo(
    out: TextIO | None = None,
    *,
    workspace: Path | None = None,
    scenes: tuple[str, ...] = SCENES,
    color: bool | None = None,
) -> int:
    """Play the demo; return 0 when every step ended as the script expects."""
    out = out or sys.stdout
    if color is None:
        color = out.isatty()
    started = time.perf_counter()
    with _workspace(workspace) as ws:
        ws = ws.resolve()  # the policy's paths are absolute (`--keep DIR` may be relative)
        (ws / "workspace").mkdir(exist_ok=True)
        text = demo_policy_text().replace("${WORKSPACE}", str(ws / "workspace"))
        text = text.replace("${STATE}", str(ws / "state"))
        # the policy as played, next to its state, so the commands the demo
        # prints (`stockade undo --policy policy.yaml ...`) run from a kept folder
        (ws / "policy.yaml").write_text(text, encoding="utf-8")
        policy = Policy.from_text(text, source="stockade/demo/policy.yaml", base_dir=ws)
        demo_guard = Guard(policy)
        demo = Demo(ws / "workspace", demo_guard, out, color)
        demo.state["root"] = ws
        out.write(demo._c("1", "stockade demo") + f": a scripted agent in {ws}\n")
        try:
            for name in scenes:
                try:
                    module = importlib.import_module(f"stockade.demo.scene_{name}")
                except ModuleNotFoundError as exc:
                    if exc.name == f"stockade.demo.scene_{name}":
                        continue
                    raise
                module.run(demo)
        finally:
            demo_guard.close()
        t = demo.tally
        elapsed = time.perf_counter() - started
        out.write(
            "\n" + demo._c("1", "summary") + f": {t.allowed} allowed, {t.denied} denied, "
            f"{t.asked} asked, {t.failed} stopped with an error (by a tool's engine layer "
            f"or a failed check), in {elapsed:.1f}s\n"
        )
        for line in t.unexpected:
            out.write(demo._c("31", f"   unexpected: {line}") + "\n")
        return 1 if t.unexpected else 0
