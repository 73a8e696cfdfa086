"""What every analysis works on: a network, the images it is judged on, and weights.

``Subject`` scores many flat weight vectors at once (``evoreg.nets.PopulationForward``, the
same batched pass the ``mnist-weights`` problem uses) and gives the gradient of the mean
cross-entropy at one vector. ``Subject.from_problem`` takes the network and a split of an
``mnist-weights`` problem (any of its models and datasets), so an analysis runs on what an
optimizer actually trained.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from evoreg.errors import EvoregError
from evoreg.nets import PopulationForward, parameter_count


@dataclass
class Subject:
    """A network template, the images and labels it is scored on, and its batched forward."""

    model: nn.Module
    images: torch.Tensor
    labels: torch.Tensor
    forward: PopulationForward
    chunk: int = 8192  #: images per pass

    @classmethod
    def from_problem(cls, problem: Any, split: str = "train", limit: int | None = None) -> Subject:
        """The network of an ``mnist-weights`` problem on its ``split`` (the first ``limit``
        images of it, if given: the split's order is already a fixed random permutation)."""
        splits = getattr(problem, "splits", None)
        if splits is None or not hasattr(problem, "population_forward"):
            raise EvoregError(
                f"the analyses need a network problem such as mnist-weights; "
                f"{getattr(problem, 'name', type(problem).__name__)} has no network and splits"
            )
        if split not in splits:
            raise EvoregError(f"no split {split!r}; the problem has {', '.join(splits)}")
        images, labels = splits[split]
        if limit is not None:
            images, labels = images[:limit], labels[:limit]
        return cls(problem.model, images, labels, problem.population_forward,
                   getattr(problem.config, "eval_chunk", 8192))

    @property
    def dim(self) -> int:
        return parameter_count(self.model)

    @property
    def device(self) -> torch.device:
        return self.images.device

    def with_data(self, images: torch.Tensor, labels: torch.Tensor) -> Subject:
        return Subject(self.model, images, labels, self.forward, self.chunk)

    def layers(self) -> list[tuple[str, int, int]]:
        """(name, start, stop) of each parameter tensor in the flat vector."""
        spans, start = [], 0
        for name, parameter in self.model.named_parameters():
            spans.append((name, start, start + parameter.numel()))
            start += parameter.numel()
        return spans

    def scores(self, weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean cross-entropy (float64) and accuracy of each row of ``weights [n, d]``."""
        from evoreg.problems.classification import chunked_scores

        weights = weights.reshape(-1, self.dim).to(self.device, torch.float32)
        loss, correct = chunked_scores(self.forward, weights, self.images, self.labels,
                                       self.chunk)
        return loss.cpu(), correct.double().cpu() / len(self.labels)

    def gradient(self, x: torch.Tensor, images: torch.Tensor | None = None,
                 labels: torch.Tensor | None = None) -> torch.Tensor:
        """Gradient of the mean cross-entropy at ``x`` on ``images`` (default: all of them)."""
        from evoreg.problems.classification import gradient_and_scores

        images = self.images if images is None else images
        labels = self.labels if labels is None else labels
        x = x.to(self.device, torch.float32)
        return gradient_and_scores(self.model, x, images, labels, self.chunk)[0].cpu()


def angles_degrees(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Angles between the rows of ``a [m, d]`` and ``b [k, d]`` (or vectors), in degrees."""
    a, b = a.double().reshape(-1, a.shape[-1]), b.double().reshape(-1, b.shape[-1])
    cosine = (a / a.norm(dim=1, keepdim=True)) @ (b / b.norm(dim=1, keepdim=True)).T
    return torch.rad2deg(torch.arccos(cosine.clamp(-1.0, 1.0)))


def pairwise_angles(vectors: torch.Tensor) -> torch.Tensor:
    """Angles (degrees) of every pair i < j of the rows of ``vectors``."""
    matrix = angles_degrees(vectors, vectors)
    rows, columns = torch.triu_indices(len(vectors), len(vectors), offset=1)
    return matrix[rows, columns]


def summary(values: torch.Tensor | list[float]) -> dict[str, float | int]:
    """Count, mean, standard deviation and quartiles (NaN when empty)."""
    v = torch.as_tensor(values, dtype=torch.float64).flatten()
    if len(v) == 0:
        nan = float("nan")
        return {"count": 0, "mean": nan, "std": nan, "min": nan, "q25": nan, "median": nan,
                "q75": nan, "max": nan}
    q = torch.quantile(v, torch.tensor([0.25, 0.5, 0.75], dtype=torch.float64))
    return {"count": len(v), "mean": float(v.mean()),
            "std": float(v.std()) if len(v) > 1 else 0.0, "min": float(v.min()),
            "q25": float(q[0]), "median": float(q[1]), "q75": float(q[2]), "max": float(v.max())}
