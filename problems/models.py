"""The networks whose weights the built-in problems evolve.

- ``mlp92k`` (Prellberg 2020, ch. 5; code jprellberg/gpuea): 2x2 max-pool of a 28x28 image,
  then 196-256-128-64-10 with ReLU: 92,234 weights.
- ``convnet9854`` (Kucharavy et al., ALIFE 2023; code chiffa/ALIFE2023_GOEA-SGD,
  ``CompressedNet``): Conv 1-8 5x5 p2, ReLU, pool 2, Conv 8-16 5x5 p2, ReLU, pool 2,
  Conv 16-8 3x3 p1, ReLU, Conv 8-4 3x3 p1, ReLU, Linear 196-24, ReLU, Linear 24-10:
  9,854 weights. The released code wraps the layers in spectral normalisation and dropout
  0; both are left out here, as in the paper's description (neither adds weights).
- ``mlp-digits``: 64-32-10 with ReLU for scikit-learn's 8x8 digits (2,410 weights), small
  enough for tests and the demo.

Every model is an ``nn.Sequential`` of plain layers, so ``evoreg.nets.PopulationForward``
can run it layer by layer for a whole population at once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from evoreg.errors import unknown_name


def mlp92k(classes: int = 10) -> nn.Sequential:
    return nn.Sequential(
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(196, 256),
        nn.ReLU(),
        nn.Linear(256, 128),
        nn.ReLU(),
        nn.Linear(128, 64),
        nn.ReLU(),
        nn.Linear(64, classes),
    )


def convnet9854(classes: int = 10) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(1, 8, 5, padding=2),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 5, padding=2),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 8, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 4, 3, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(196, 24),
        nn.ReLU(),
        nn.Linear(24, classes),
    )


def mlp_digits(classes: int = 10) -> nn.Sequential:
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, classes))


@dataclass(frozen=True)
class ModelSpec:
    build: Callable[[int], nn.Sequential]
    #: (channels, height, width) of the images the model reads
    input_shape: tuple[int, int, int]
    #: how its paper normalised pixels in [0, 1]: "mean-centred" ((x - train mean) as gpuea,
    #: whose pixels were divided by 255 after the mean was subtracted) or "half" ((x - 0.5) / 0.5
    #: as the GO-EA code's transforms.Normalize((0.5,), (0.5,)))
    normalization: str


MODELS: dict[str, ModelSpec] = {
    "mlp92k": ModelSpec(mlp92k, (1, 28, 28), "mean-centred"),
    "convnet9854": ModelSpec(convnet9854, (1, 28, 28), "half"),
    "mlp-digits": ModelSpec(mlp_digits, (1, 8, 8), "half"),
}


def model_spec(name: str) -> ModelSpec:
    if name not in MODELS:
        raise unknown_name("model", name, MODELS)
    return MODELS[name]


def build_model(name: str, classes: int = 10) -> nn.Sequential:
    """A fresh instance of model ``name`` (torch's default initialisation)."""
    return model_spec(name).build(classes)
