"""evoreg: a plugin registry of gradient-free optimizers for neural networks.

The core is small: spaces, populations, the optimizer and problem base classes, a pluggy
registry and the runner. Algorithms and problems are plugins (``evoreg.plugins``,
``evoreg.problems`` and third-party packages under the ``evoreg`` entry-point group).
"""

from . import problems  # the package of built-in problems, callable: problems()
from .errors import EvoregError, UnknownNameError
from .hookspecs import hookimpl
from .optimizer import Optimizer
from .population import LazyPopulation, Population, noise
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
    "Optimizer",
    "Population",
    "Problem",
    "Real",
    "RunResult",
    "Space",
    "UnknownNameError",
    "hookimpl",
    "make_optimizer",
    "make_problem",
    "noise",
    "optimizers",
    "problems",
    "get_registry",
    "run",
]
