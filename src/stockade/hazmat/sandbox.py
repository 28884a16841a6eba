"""A sandbox with layers switched off. DANGER.

You MUST NOT run an agent's commands in a sandbox built here. It exists so the
tests can show that each layer of :class:`stockade.tools.sandbox.Sandbox`
holds on its own (the network namespace without seccomp, seccomp without the
network namespace, the rlimits without the timeout, ...). Use
:class:`stockade.tools.sandbox.Sandbox`, which always has every layer on.
"""

from __future__ import annotations

from stockade.tools.sandbox import Layers, Sandbox, SandboxConfig

__all__ = ["weakened_sandbox"]


def weakened_sandbox(
    config: SandboxConfig,
    *,
    net_namespace: bool = True,
    seccomp: bool = True,
    landlock: bool = True,
    rlimits: bool = True,
    timeout: bool = True,
) -> Sandbox:
    """A :class:`Sandbox` with the named layers off (for tests of the others)."""
    layers = Layers(
        net_namespace=net_namespace,
        seccomp=seccomp,
        landlock=landlock,
        rlimits=rlimits,
        timeout=timeout,
    )
    return Sandbox(config, _layers=layers)
