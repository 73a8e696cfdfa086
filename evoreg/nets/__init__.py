"""Population evaluators: a population of flat parameter vectors -> losses of a model.

``PopulationForward(model)(population, inputs, targets)`` returns each candidate's mean
cross-entropy and correct-prediction count on one data batch (``Scores``), by the fastest of
three strategies, measured (``evaluator.py``); ``batched.py`` holds the layer-by-layer
batched strategy and ``params.py`` the flat-vector and Glorot-initialisation helpers.
"""

from .forward import CHOICES, PRECISIONS, STRATEGIES, Choice, PopulationForward, Scores
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
    "Scores",
    "flatten_parameters",
    "glorot_uniform_",
    "glorot_uniform_population",
    "load_flat_parameters_",
    "parameter_count",
    "unflatten_parameters",
]
