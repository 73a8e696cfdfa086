"""Classification scores for ``evoreg.nets.PopulationForward``.

A score receives a tile's outputs ``[c, classes, B]`` (the forward's feature-major layout:
candidate, class logit, sample) and the batch's class indices ``targets [B]``, and returns
one figure per candidate. Used by the ``mnist-weights`` problem.
"""

from __future__ import annotations

import torch

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
