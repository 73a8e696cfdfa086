"""The networks whose weights the built-in problems evolve.

- ``mlp92k`` (Prellberg 2020, ch. 5; code jprellberg/gpuea): 2x2 max-pool of a 28x28 image,
  then 196-256-128-64-10 with ReLU: 92,234 weights.
- ``convnet9854`` (Kucharavy et al., ALIFE 2023; code chiffa/ALIFE2023_GOEA-SGD,
  ``CompressedNet``): Conv 1-8 5x5 p2, ReLU, pool 2, Conv 8-16 5x5 p2, ReLU, pool 2,
  Conv 16-8 3x3 p1, ReLU, Conv 8-4 3x3 p1, ReLU, Linear 196-24, ReLU, Linear 24-10:
  9,854 weights, as plain layers (no spectral normalisation, no dropout). This is NOT the
  network the paper's figures were made with: see ``convnet9854-sn``.
- ``convnet9854-sn``: the reference network itself. The same layers and 9,854 weights, with
  spectral normalisation (``torch.nn.utils.spectral_norm``, one power iteration per forward
  pass) on conv1-4 and the 196-24 linear layer, and dropout before conv1 (input dropout) and
  before conv2-4 and the 196-24 layer. The paper's text names spectral normalisation and gives
  10% dropout and 10% input dropout (``PAPER_DROPOUT``); the released code's GO-EA runs used
  0 for both. Spectral normalisation makes those layers invariant to the scale of their
  weights, so GO-EA's absolute sigma acts relative to the weight norm. The reference perturbs
  every ``state_dict`` entry, the power-iteration buffers ``weight_u`` / ``weight_v``
  included, so a candidate of this model is its whole state (``stateful``): 9,854 weights
  plus 697 buffer values, 10,551 numbers (see ``state_vector``).
- ``mlp-digits``: 64-32-10 with ReLU for scikit-learn's 8x8 digits (2,410 weights), small
  enough for tests and the demo.

Every plain model is an ``nn.Sequential`` of plain layers, so ``evoreg.nets.PopulationForward``
can run it layer by layer for a whole population at once; the stateful ``convnet9854-sn`` is
scored one candidate at a time (``load_state_vector_`` then an ordinary forward pass).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils import spectral_norm

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


#: (dropout, input dropout) as the GO-EA paper's text gives them
PAPER_DROPOUT = (0.1, 0.1)


def convnet9854_sn(classes: int = 10, dropout: float = 0.0,
                   input_dropout: float = 0.0) -> nn.Sequential:
    """The reference ``CompressedNet`` (8 latent maps, linear width 24): 9,854 weights."""
    return nn.Sequential(
        nn.Dropout(input_dropout),
        spectral_norm(nn.Conv2d(1, 8, 5, padding=2)),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Dropout(dropout),
        spectral_norm(nn.Conv2d(8, 16, 5, padding=2)),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Dropout(dropout),
        spectral_norm(nn.Conv2d(16, 8, 3, padding=1)),
        nn.ReLU(),
        nn.Dropout(dropout),
        spectral_norm(nn.Conv2d(8, 4, 3, padding=1)),
        nn.ReLU(),
        nn.Flatten(),
        nn.Dropout(dropout),
        spectral_norm(nn.Linear(196, 24)),
        nn.ReLU(),
        nn.Linear(24, classes),
    )


def state_vector(model: nn.Module) -> torch.Tensor:
    """Every ``state_dict`` entry of ``model`` (parameters and buffers), flattened, in order."""
    return torch.cat([t.detach().reshape(-1).float() for t in model.state_dict().values()])


def load_state_vector_(model: nn.Module, flat: torch.Tensor) -> nn.Module:
    """Copy ``flat`` (as ``state_vector`` lays it out) into ``model``'s state, in place."""
    state = model.state_dict()
    total = sum(t.numel() for t in state.values())
    if flat.shape != (total,):
        raise ValueError(
            f"a state vector of this model has {total} values, got shape {tuple(flat.shape)}"
        )
    offset = 0
    with torch.no_grad():
        for tensor in state.values():
            k = tensor.numel()
            tensor.copy_(flat[offset:offset + k].view_as(tensor))
            offset += k
    return model


def state_parameter_mask(model: nn.Module) -> torch.Tensor:
    """Bool ``[state size]``: True where ``state_vector`` holds a parameter, False a buffer."""
    params = {name for name, _ in model.named_parameters()}
    return torch.cat([torch.full((t.numel(),), name in params, dtype=torch.bool)
                      for name, t in model.state_dict().items()])


def mlp_digits(classes: int = 10) -> nn.Sequential:
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, classes))


@dataclass(frozen=True)
class ModelSpec:
    build: Callable[..., nn.Sequential]
    #: (channels, height, width) of the images the model reads
    input_shape: tuple[int, int, int]
    #: how its paper normalised pixels in [0, 1]: "mean-centred" ((x - train mean) as gpuea,
    #: whose pixels were divided by 255 after the mean was subtracted) or "half" ((x - 0.5) / 0.5
    #: as the GO-EA code's transforms.Normalize((0.5,), (0.5,)))
    normalization: str
    #: a candidate is the whole state_dict (parameters and buffers), scored in train mode (power
    #: iteration each forward pass, dropout if any), and ``build`` takes dropout options
    stateful: bool = False


MODELS: dict[str, ModelSpec] = {
    "mlp92k": ModelSpec(mlp92k, (1, 28, 28), "mean-centred"),
    "convnet9854": ModelSpec(convnet9854, (1, 28, 28), "half"),
    "convnet9854-sn": ModelSpec(convnet9854_sn, (1, 28, 28), "half", stateful=True),
    "mlp-digits": ModelSpec(mlp_digits, (1, 8, 8), "half"),
}


def model_spec(name: str) -> ModelSpec:
    if name not in MODELS:
        raise unknown_name("model", name, MODELS)
    return MODELS[name]


def build_model(name: str, classes: int = 10, **options: float) -> nn.Sequential:
    """A fresh instance of model ``name`` (torch's default initialisation); ``options``
    (``dropout``, ``input_dropout``) only for stateful models."""
    return model_spec(name).build(classes, **options)
