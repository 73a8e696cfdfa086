"""Losses of a classifier over a whole split, the metrics a business measures (lower is better).

Each takes the split's logits ``[N, classes]`` and integer labels ``[N]`` and returns a float;
none is differentiable in the weights and none needs to be: the ``retrofit`` problem tunes a
few aleph-parameters against them with a black-box optimizer (Videau et al. 2024,
"Evolutionary Retrofitting", AfterLearnER).

- ``error``: the error rate.
- ``cost``: the mean cost of the decisions under a cost matrix ``costs[true, predicted]``
  (zero on the diagonal for a plain error cost).
- ``macro-f1``: 1 - macro-averaged F1, averaged over the classes present in the labels or the
  predictions (scikit-learn's ``f1_score(average="macro")``).
- ``worst-recall``: 1 - the lowest recall over the classes present in the labels.
- ``ece``: expected calibration error of the top-class confidence, 15 equal-width bins
  (Guo et al. 2017, "On Calibration of Modern Neural Networks").

Every loss reads the hyperparameter ``temperature`` (T, default 1): the logits are divided
by it first. Only ``ece`` depends on it (an argmax does not), so ``temperature`` is the
aleph-parameter of temperature scaling.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from evoreg.errors import EvoregError, unknown_name

#: What each built-in loss is, for ``evoreg info`` and error messages.
DESCRIPTIONS = {
    "error": "error rate",
    "cost": "mean cost of the decisions under a cost matrix costs[true, predicted]",
    "macro-f1": "1 - macro-averaged F1",
    "worst-recall": "1 - the lowest per-class recall",
    "ece": "expected calibration error (15 bins)",
}
#: The hyperparameters every built-in loss reads, with their defaults.
HYPERPARAMETERS = {"temperature": 1.0}
ECE_BINS = 15


def _predictions(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, int]:
    if logits.dim() != 2 or labels.shape != (logits.shape[0],):
        raise EvoregError(
            f"a classifier loss needs logits [N, classes] and labels [N]; got logits "
            f"{tuple(logits.shape)} and labels {tuple(labels.shape)}"
        )
    if labels.is_floating_point():
        raise EvoregError(f"labels must be integer class indices, not {labels.dtype}")
    classes = int(logits.shape[1])
    return logits.argmax(dim=1), classes


def _counts(logits: torch.Tensor, labels: torch.Tensor):
    """Predictions, and per class: true positives, support (labels), predicted counts."""
    predicted, classes = _predictions(logits, labels)
    labels = labels.long()
    hits = labels[predicted == labels]
    tp = torch.bincount(hits, minlength=classes).double()
    support = torch.bincount(labels, minlength=classes).double()
    chosen = torch.bincount(predicted, minlength=classes).double()
    return predicted, tp, support, chosen


def error_rate(logits: torch.Tensor, labels: torch.Tensor, temperature: float = 1.0) -> float:
    predicted, _ = _predictions(logits, labels)
    return float((predicted != labels).double().mean())


def cost_weighted_error(
    logits: torch.Tensor, labels: torch.Tensor, costs: torch.Tensor, temperature: float = 1.0
) -> float:
    predicted, classes = _predictions(logits, labels)
    if costs.shape != (classes, classes):
        raise EvoregError(
            f"the cost matrix is {tuple(costs.shape)}; the classifier has {classes} classes, "
            f"so it must be {classes} x {classes} (rows: true class, columns: predicted)"
        )
    costs = costs.to(device=logits.device, dtype=torch.float64)
    return float(costs[labels.long(), predicted].mean())


def macro_f1_loss(logits: torch.Tensor, labels: torch.Tensor, temperature: float = 1.0) -> float:
    _, tp, support, chosen = _counts(logits, labels)
    denominator = support + chosen  # 2 tp + fp + fn
    present = denominator > 0  # a class absent from labels and predictions has no F1
    f1 = 2 * tp[present] / denominator[present]
    return float(1.0 - f1.mean())


def worst_recall_loss(
    logits: torch.Tensor, labels: torch.Tensor, temperature: float = 1.0
) -> float:
    _, tp, support, _ = _counts(logits, labels)
    present = support > 0
    return float(1.0 - (tp[present] / support[present]).min())


def expected_calibration_error(
    logits: torch.Tensor, labels: torch.Tensor, temperature: float = 1.0
) -> float:
    _predictions(logits, labels)
    if not temperature > 0:
        raise EvoregError(f"temperature must be > 0, got {temperature!r}")
    probabilities = torch.softmax(logits.double() / temperature, dim=1)
    confidence, predicted = probabilities.max(dim=1)
    correct = (predicted == labels).double()
    # Bins (k/B, (k+1)/B]: a confidence of exactly 1 falls in the last one.
    bins = (confidence * ECE_BINS).ceil().long().clamp_(1, ECE_BINS) - 1
    accuracy = torch.bincount(bins, weights=correct, minlength=ECE_BINS)
    confident = torch.bincount(bins, weights=confidence, minlength=ECE_BINS)
    # sum over bins of (n_b / N) |mean accuracy - mean confidence| = |sums| / N
    return float((accuracy - confident).abs().sum() / len(labels))


def default_costs(classes: int, costly_class: int = 6, weight: float = 5.0) -> torch.Tensor:
    """The built-in cost matrix: any error costs 1, except that missing ``costly_class``
    costs ``weight`` (class 6 is Fashion-MNIST's shirt, the class its classifiers miss most
    often, taken as the expensive miss of the demo)."""
    costs = 1.0 - torch.eye(classes, dtype=torch.float64)
    if 0 <= costly_class < classes:
        costs[costly_class] *= weight
    return costs


def builtin_loss(name: str, costs: torch.Tensor | None = None) -> Callable[..., float]:
    """The built-in loss ``name`` as ``loss(logits, labels, temperature=1.0) -> float``
    (``costs`` for ``cost``: default ``default_costs``)."""
    if name == "cost":
        def cost(logits: torch.Tensor, labels: torch.Tensor, temperature: float = 1.0) -> float:
            matrix = costs if costs is not None else default_costs(logits.shape[1])
            return cost_weighted_error(logits, labels, matrix, temperature)

        return cost
    losses = {"error": error_rate, "macro-f1": macro_f1_loss, "worst-recall": worst_recall_loss,
              "ece": expected_calibration_error}
    if name not in losses:
        raise unknown_name("classifier loss", name, DESCRIPTIONS)
    return losses[name]
