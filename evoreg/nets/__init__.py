"""Networks as flat vectors: a population of parameter vectors through one model, in one call.

``PopulationForward(model)(population, inputs, targets, score)`` runs every candidate's
forward pass on one data batch, by the fastest of three strategies, measured, and returns
what ``score(outputs, targets)`` makes of each candidate's outputs (``forward.py``; problems
bring the score, e.g. ``evoreg.problems.classification``). ``batched.py`` holds the
layer-by-layer batched strategy and ``params.py`` the flat-vector and Glorot-initialisation
helpers.
"""

from .forward import (
    CHOICES,
    PRECISIONS,
    STRATEGIES,
    Choice,
    PopulationForward,
    Score,
    population_size,
    read_rows,
)
from .params import (
    flatten_parameters,
    glorot_uniform_,
    glorot_uniform_population,
    load_flat_parameters_,
    parameter_count,
    unflatten_parameters,
)

__all__ = [
    "CHOICES",
    "Choice",
    "PRECISIONS",
    "PopulationForward",
    "STRATEGIES",
    "Score",
    "flatten_parameters",
    "glorot_uniform_",
    "glorot_uniform_population",
    "load_flat_parameters_",
    "parameter_count",
    "population_size",
    "read_rows",
    "unflatten_parameters",
]
