"""Categorical NES: one probability vector per slot, moved by rank-weighted natural gradients.

Prellberg, "Evolving Deep Neural Networks" (PhD thesis, Oldenburg 2020), ch. 8, and its code
jprellberg/learned-weight-sharing (``trainer.py``, ``task_routing_model.py``). The search
distribution is a product of categorical distributions in expectation parameters pi (one
probability vector per slot, uniform at the start). Each generation draws lambda assignments
a_i (``popsize``) from pi; the utilities are linear in the rank,
``u_i = 2 (rank_i - 1) / (lambda - 1) - 1`` with rank 1 for the highest loss, so the best
sample gets +1 and the worst -1; the natural gradient in expectation parameters is
``mean_i u_i (onehot(a_i) - pi)``, and ``pi += eta * gradient``, after which every
entry is clamped at ``min_prob`` (0.001) and each vector renormalised. The recommendation is
the most probable assignment (argmax per slot). Defaults are the DKL-MNIST values of the
thesis' launcher (``nes_samples=8``, ``nes_lr=1e-2``, ``p_min=0.001``).

Where this differs from the code: samples with equal losses get the mean of the utilities of
the positions they share (the code's ``argsort`` orders ties arbitrarily), so a generation of
equal losses leaves pi unchanged; and slots may have different sizes (pi is stored padded to
the largest, with impossible choices held at probability 0 and never clamped up).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from evoreg import Categorical, Optimizer, Population, hookimpl
from evoreg.config import bounded


def tie_averaged(losses: torch.Tensor, by_position: torch.Tensor) -> torch.Tensor:
    """Utility of each sample: ``by_position[k]`` for the sample at position k of the losses
    sorted best (lowest) first; samples with equal losses share the mean over their positions
    (so utilities do not depend on the order in which ties were evaluated)."""
    ordered = losses.sort().values
    better = torch.searchsorted(ordered, losses)  # positions before the tie
    upto = torch.searchsorted(ordered, losses, right=True)  # ... and through it
    cumulative = torch.cat([by_position.new_zeros(1), by_position.cumsum(0)])
    return (cumulative[upto] - cumulative[better]) / (upto - better)


def linear_utilities(losses: torch.Tensor) -> torch.Tensor:
    """``2 (rank - 1) / (lambda - 1) - 1``: +1 for the best, -1 for the worst, ties averaged;
    zero for a single sample (nothing to compare it with)."""
    n = len(losses)
    if n == 1:
        return torch.zeros(1, dtype=torch.float64, device=losses.device)
    by_position = torch.linspace(1.0, -1.0, n, dtype=torch.float64, device=losses.device)
    return tie_averaged(losses, by_position)


@dataclass
class Config:
    popsize: int = bounded(8, ge=2)  #: lambda, assignments sampled per generation
    eta: float = bounded(0.01, gt=0)  #: step size on the expectation parameters
    min_prob: float = bounded(0.001, ge=0, lt=0.5)  #: p_min, floor of every probability


class CategoricalNES(Optimizer):
    """Expectation parameters pi per slot, rank utilities, clamp and renormalise."""

    Config = Config
    citation = "Prellberg (2020), Evolving Deep Neural Networks, PhD thesis, ch. 8"
    spaces = (Categorical,)
    generational = True

    def setup(self) -> None:
        sizes = torch.tensor(self.space.sizes, device=self.device)
        # valid[j, c]: choice c exists in slot j (slots may differ in size)
        self.valid = torch.arange(int(sizes.max()), device=self.device) < sizes.unsqueeze(1)
        self.pi = self.valid.double() / sizes.unsqueeze(1)

    def _ask(self, n: int) -> torch.Tensor:
        # one draw per slot and sample: [dim, n] -> [n, dim]; padded entries have p = 0
        return torch.multinomial(self.pi, n, replacement=True, generator=self.generator).T

    def _tell(self, pop: Population, losses: torch.Tensor) -> None:
        choices = pop.values.to(self.device)  # [n, dim]
        utilities = linear_utilities(losses)
        # sum_i u_i onehot(a_i), scattered per slot, then minus sum_i u_i pi
        weighted = torch.zeros_like(self.pi)
        weighted.scatter_add_(1, choices.T, utilities.expand(self.pi.shape[0], -1))
        gradient = (weighted - utilities.sum() * self.pi) / len(losses)
        self.pi = self.pi + self.config.eta * gradient
        self.pi = torch.where(self.valid, self.pi.clamp(min=self.config.min_prob), 0.0)
        self.pi /= self.pi.sum(1, keepdim=True)

    def _recommend(self) -> torch.Tensor:
        """The most probable assignment: the argmax of pi in each slot."""
        return self.pi.argmax(1)


@hookimpl
def evoreg_register_optimizers(register):
    register("nes", CategoricalNES, family="nes")
