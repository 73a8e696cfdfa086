"""evoreg: a plugin registry of gradient-free optimizers for neural networks.

The core is small: spaces, populations, the optimizer and problem base classes, a pluggy
registry and the runner. Algorithms and problems are plugins (``evoreg.plugins``,
``evoreg.problems`` and third-party packages under the ``evoreg`` entry-point group).
"""

import os as _os

# Populations of large networks are fresh tensors of hundreds of MB every generation; on
# Linux, transparent huge pages cut their page-fault cost about 5x (ask+tell of 1000 x 92k
# weights: 218 -> 66 µs a candidate, benchmarks/ask_tell_overhead.py). torch reads this once,
# at its first allocation, so it only takes effect when evoreg is imported before torch.
# THP_MEM_ALLOC_ENABLE=0 in the environment opts out.
_os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")

# isort: split
from . import problems  # the package of built-in problems, callable: problems()
from .errors import EvoregError, UnknownNameError
from .gaussian import NoiseTable, noise
from .hookspecs import hookimpl
from .nets import PopulationForward, flatten_parameters, glorot_uniform_, parameter_count
from .optimizer import Optimizer
from .population import LazyPopulation, Population
from .problem import Evaluation, Problem
from .registry import get_registry, make_optimizer, make_problem, optimizers
from .runner import RunResult, run
from .spaces import Categorical, Genome, Real, Space

__version__ = "0.1.0"

__all__ = [
    "Categorical",
    "Evaluation",
    "EvoregError",
    "Genome",
    "LazyPopulation",
    "NoiseTable",
    "Optimizer",
    "Population",
    "PopulationForward",
    "Problem",
    "Real",
    "RunResult",
    "Space",
    "UnknownNameError",
    "flatten_parameters",
    "glorot_uniform_",
    "hookimpl",
    "make_optimizer",
    "make_problem",
    "noise",
    "optimizers",
    "parameter_count",
    "problems",
    "get_registry",
    "run",
]
