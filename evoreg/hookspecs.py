"""The hooks a plugin implements: one ``@hookimpl`` per thing it registers.

A plugin is a module (or object) declared under the ``evoreg`` entry-point group::

    from evoreg import hookimpl

    @hookimpl
    def evoreg_register_optimizers(register):
        register("my-es", MyES, summary="...", family="es")
"""

from __future__ import annotations

from collections.abc import Callable

import pluggy

hookspec = pluggy.HookspecMarker("evoreg")
hookimpl = pluggy.HookimplMarker("evoreg")

Register = Callable[..., None]


@hookspec
def evoreg_register_optimizers(register: Register) -> None:
    """Call ``register(name, factory, **info)`` for each optimizer.

    ``factory(space, seed=..., device=..., **config)`` returns an ``evoreg.Optimizer``.
    ``info`` may carry ``summary``, ``family``, ``citation``, ``doc``, ``config`` (dataclass).
    """


@hookspec
def evoreg_register_problems(register: Register) -> None:
    """Call ``register(name, factory, **info)`` for each problem.

    ``factory(seed=..., device=..., **config)`` returns an ``evoreg.Problem``.
    """
