"""Flatness profile (GO-EA's flatness figures; Li et al. 2018's filter-normalised directions).

Loss and accuracy of ``x + step * d`` along random directions ``d`` as ``step`` grows from 0,
with ``directions`` (at least 5) independent directions per step. ``normalization``:

- ``"filter"`` (Li et al. 2018): ``d`` is Gaussian, then each filter of each weight tensor
  (each output unit's row) is rescaled to the norm of the same filter of ``x``; biases get no
  noise (Li et al.'s ``ignore='biasbn'``). A step of 1 moves each filter by its own norm.
- ``"tensor"`` (the reference code's ``quake``): each tensor's noise has std ``mean|w|`` of
  that tensor, so the step is in units of the tensor's typical weight.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .network import Subject


def random_direction(subject: Subject, x: torch.Tensor, generator: torch.Generator,
                     normalization: str = "filter") -> torch.Tensor:
    """One random direction scaled per filter (``"filter"``) or per tensor (``"tensor"``)."""
    direction = torch.zeros_like(x)
    for name, start, stop in subject.layers():
        shape = dict(subject.model.named_parameters())[name].shape
        weights = x[start:stop].reshape(shape)
        noise = torch.randn(shape, generator=generator)
        if normalization == "filter":
            if len(shape) < 2:
                continue  # biases: no noise, as Li et al.
            rows = noise.reshape(shape[0], -1)
            target = weights.reshape(shape[0], -1).norm(dim=1, keepdim=True)
            noise = (rows * target / rows.norm(dim=1, keepdim=True).clamp_min(1e-12)).reshape(shape)
        elif normalization == "tensor":
            noise = noise * weights.abs().mean()
        else:
            raise ValueError(f"normalization must be 'filter' or 'tensor', got {normalization!r}")
        direction[start:stop] = noise.flatten()
    return direction


def flatness_profile(subject: Subject, x: torch.Tensor, *, max_step: float = 1.0,
                     points: int = 11, directions: int = 5, normalization: str = "filter",
                     seed: int = 0) -> dict[str, Any]:
    """Loss and accuracy along ``directions`` random directions at ``points`` steps."""
    if directions < 5:
        raise ValueError(f"a flatness profile needs at least 5 directions per point, "
                         f"got {directions}")
    generator = torch.Generator().manual_seed(seed)
    x = torch.as_tensor(x, dtype=torch.float32).flatten().cpu()
    steps = torch.linspace(0, max_step, points)
    stacked = torch.stack([random_direction(subject, x, generator, normalization)
                           for _ in range(directions)])
    candidates = x + steps.view(1, -1, 1) * stacked.unsqueeze(1)  # [directions, points, d]
    losses, accuracies = subject.scores(candidates.reshape(-1, len(x)))
    losses = losses.reshape(directions, points).numpy()
    accuracies = accuracies.reshape(directions, points).numpy()

    def sem(values: np.ndarray) -> list[float]:
        return (values.std(axis=0, ddof=1) / np.sqrt(len(values))).tolist()

    return {
        "analysis": "flatness", "normalization": normalization, "seed": seed,
        "directions": directions, "steps": steps.tolist(), "dimensions": len(x),
        "loss": losses.tolist(), "accuracy": accuracies.tolist(),
        "loss_mean": losses.mean(axis=0).tolist(), "loss_sem": sem(losses),
        "accuracy_mean": accuracies.mean(axis=0).tolist(), "accuracy_sem": sem(accuracies),
    }


def plot_flatness(result: dict[str, Any], path: str) -> None:
    """Accuracy (top) and loss (bottom, log) against the step: each direction and the mean."""
    from evoreg.plots import _pyplot

    plt = _pyplot()
    steps = result["steps"]
    figure, (top, bottom) = plt.subplots(2, sharex=True, figsize=(6, 6))
    for key, axis in (("accuracy", top), ("loss", bottom)):
        for row in result[key]:
            axis.plot(steps, row, color="0.7", linewidth=0.8)
        axis.errorbar(steps, result[f"{key}_mean"], result[f"{key}_sem"], color="k",
                      marker="o", label=f"mean of {result['directions']} directions")
        axis.set_ylabel(key)
    bottom.set_yscale("log")
    bottom.set_xlabel(f"step ({result['normalization']}-normalised direction)")
    top.legend()
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
