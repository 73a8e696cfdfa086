"""Classification scores for ``evoreg.nets.PopulationForward``.

A score receives a tile's outputs ``[c, classes, B]`` (the forward's feature-major layout:
candidate, class logit, sample) and the batch's class indices ``targets [B]``, and returns
one figure per candidate. Used by the ``mnist-weights`` problem and ``evoreg.analysis``,
with the two ways to score flat weight vectors over a data set in chunks of images
(``chunked_scores``, ``gradient_and_scores``).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from evoreg.errors import EvoregError


def check_class_targets(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``targets`` as int64 class indices ``[B]`` for ``logits [c, classes, B]``, or an error."""
    if logits.dim() != 3:
        raise EvoregError(f"logits must be [c, classes, B]; got {tuple(logits.shape)}")
    batch = logits.shape[2]
    if targets.shape != (batch,) or targets.is_floating_point() or targets.is_complex():
        raise EvoregError(
            f"targets must be integer class indices [B] = [{batch}] for logits [c, classes, B]; "
            f"got {targets.dtype} {tuple(targets.shape)}"
        )
    return targets.long()


def cross_entropy_and_correct(
    logits: torch.Tensor, targets: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean cross-entropy ``[c]`` (float32) and correct argmax counts ``[c]`` (int64).

    ``logits [c, classes, B]``, ``targets [B]`` class indices. ``F.cross_entropy``'s values
    per candidate (to rounding), computed for the whole tile at once.
    """
    targets = check_class_targets(logits, targets)
    c, _, batch = logits.shape
    logits = logits.float()
    top, predicted = logits.max(dim=1)  # one pass for both (argmax alone is slower here)
    log_sum_exp = (logits - top.unsqueeze(1)).exp_().sum(dim=1).log_().add_(top)
    picked = logits.gather(1, targets.view(1, 1, batch).expand(c, 1, batch)).squeeze(1)
    nll = log_sum_exp.sub_(picked)  # [c, B]
    correct = (predicted == targets).sum(dim=1)
    return nll.mean(dim=1), correct


def chunked_scores(
    forward: Any, weights: Any, images: torch.Tensor, labels: torch.Tensor, chunk: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean cross-entropy ``[n]`` (float64) and correct counts ``[n]`` of the weight rows
    ``weights`` (a Population or ``[n, d]``) on all of ``images``, scored by ``forward`` (an
    ``evoreg.nets.PopulationForward``) ``chunk`` images at a time, so that a large (full)
    data set never needs one pass of all its images."""
    total_loss: torch.Tensor | None = None
    total_correct: torch.Tensor | None = None
    for start in range(0, len(labels), chunk):
        part = labels[start:start + chunk]
        losses, correct = forward(weights, images[start:start + chunk], part,
                                  cross_entropy_and_correct)
        loss = losses.double() * len(part)
        total_loss = loss if total_loss is None else total_loss + loss
        total_correct = correct if total_correct is None else total_correct + correct
    assert total_loss is not None and total_correct is not None, "no images"
    return total_loss / len(labels), total_correct


def gradient_and_scores(
    model: nn.Module, x: torch.Tensor, images: torch.Tensor, labels: torch.Tensor, chunk: int
) -> tuple[torch.Tensor, float, int]:
    """Gradient of the mean cross-entropy of ``model`` with the flat parameters ``x`` on all
    of ``images`` (accumulated over passes of ``chunk`` images), that mean, and the number of
    correct predictions."""
    from evoreg.nets import unflatten_parameters

    x = x.detach().clone().requires_grad_(True)
    params = unflatten_parameters(model, x)
    loss_sum, hits = 0.0, 0
    for start in range(0, len(labels), chunk):
        inputs, targets = images[start:start + chunk], labels[start:start + chunk]
        logits = functional_call(model, params, (inputs,))
        part = F.cross_entropy(logits, targets, reduction="sum")
        part.backward()
        loss_sum += float(part.detach())
        hits += int((logits.argmax(dim=1) == targets).sum())
    assert x.grad is not None
    return x.grad / len(labels), loss_sum / len(labels), hits
