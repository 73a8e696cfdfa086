"""evoreg: a plugin registry of gradient-free optimizers for neural networks.

The core is small: spaces, populations, the optimizer and problem base classes, a pluggy
registry and the runner. Algorithms and problems are plugins (``evoreg.plugins``,
``evoreg.problems`` and third-party packages under the ``evoreg`` entry-point group).

Importing evoreg imports none of them: each public name is imported on first use (PEP 562),
so that ``evoreg --version`` and ``evoreg list`` do not pay for torch and nevergrad.
"""

import os as _os

# Fresh tensors of hundreds of MB (LEEA's offspring, pop.values of a large population) cost
# page faults; on Linux, transparent huge pages cut that about 5x (ask+tell of 1000 x 92k
# dense weights: 218 -> 66 µs a candidate, measured). torch reads this once, at its first
# allocation, so it only takes effect when evoreg is imported before torch allocates. Lazy
# populations read into a reused buffer do not depend on it. THP_MEM_ALLOC_ENABLE=0 opts out.
_os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")

# isort: split
import importlib as _importlib
import importlib.util as _importlib_util
from typing import Any as _Any

__version__ = "0.1.0"

#: Each public name and the module that defines it, imported on first use. A name that is
#: itself a subpackage (``problems``: the package of built-in problems, callable as
#: ``problems()``) maps to that subpackage.
_EXPORTS = {
    "Categorical": ".spaces",
    "Evaluation": ".problem",
    "EvoregError": ".errors",
    "Genome": ".spaces",
    "LazyPopulation": ".population",
    "NoiseTable": ".gaussian",
    "Optimizer": ".optimizer",
    "Population": ".population",
    "PopulationForward": ".nets",
    "Problem": ".problem",
    "Real": ".spaces",
    "RunInterrupted": ".errors",
    "RunResult": ".runner",
    "Space": ".spaces",
    "UnknownNameError": ".errors",
    "flatten_parameters": ".nets",
    "glorot_uniform_": ".nets",
    "hookimpl": ".hookspecs",
    "load_checkpoint": ".checkpoint",
    "make_optimizer": ".registry",
    "make_problem": ".registry",
    "noise": ".gaussian",
    "optimizers": ".registry",
    "parameter_count": ".nets",
    "problems": ".problems",
    "retrofit": ".problems.retrofit",
    "get_registry": ".registry",
    "run": ".runner",
    "save_checkpoint": ".checkpoint",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> _Any:
    if name in _EXPORTS:
        module = _importlib.import_module(_EXPORTS[name], __name__)
        value = module if module.__name__ == f"{__name__}.{name}" else getattr(module, name)
    elif not name.startswith("_") and _importlib_util.find_spec(f"{__name__}.{name}"):
        # A submodule (evoreg.runner, evoreg.config, ...): `import evoreg` used to import most
        # of them, and code that reaches them as attributes keeps working.
        value = _importlib.import_module(f".{name}", __name__)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value  # later lookups do not come back here
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
