"""GO-EA: greedy random search around one parent, with SGD's evaluation budget in mind.

Kucharavy, Guerraoui & Dolamic, "Evolutionary Algorithms in the Light of SGD: Limit
Equivalence, Minima Flatness, and Transfer Learning" (ALIFE 2023; code chiffa/ALIFE2023_GOEA-SGD).
Each generation draws N children (``popsize``, 20 in the paper), each the parent plus
N(0, sigma^2) noise on every weight (``sigma`` = 0.01, absolute), and the parent moves to the
best child only if that child is strictly better (ties and worse children leave it).
``accept="first"`` is the paper's Alg. 1: the parent moves to the first strictly better child
in the population's order. The parent's loss must be known: the first ask returns the
parent alone. With ``reevaluate_parent`` every population is the parent (same id) followed
by the children (``popsize + 1`` candidates; ``ask(n)`` hands out the parent and n - 1
children), and the comparison uses the parent's loss of this generation, as a problem
that draws a fresh minibatch each generation needs (the paper evaluates on the whole training
set, where this makes no difference). The noise is, by default, windows of a shared Gaussian
noise table (Salimans et al. 2017): still N(0, sigma^2) per weight, several times cheaper to
draw; ``noise_table=False`` draws fresh normals.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from evoreg import Optimizer, Population, Real, hookimpl
from evoreg.config import bounded


@dataclass
class Config:
    popsize: int = bounded(20, ge=1)  #: N, children per generation
    sigma: float = bounded(0.01, gt=0)  #: absolute std of the Gaussian noise on every weight
    accept: Literal["best", "first"] = "best"  #: move to the best or the first better child
    reevaluate_parent: bool = False  #: evaluate the parent again beside its children
    noise_table: bool = True  #: perturb with windows of a shared noise table, else fresh normals


class GOEA(Optimizer):
    """One parent; it moves to a child of Gaussian noise only on a strict improvement."""

    Config = Config
    citation = "Kucharavy, Guerraoui & Dolamic (2023), ALIFE 2023"
    spaces = (Real,)
    generational = True

    @property
    def default_popsize(self) -> int:
        """N children, plus the parent itself with ``reevaluate_parent``."""
        return self.config.popsize + int(self.config.reevaluate_parent)

    def setup(self) -> None:
        self.parent = self.space.initial().to(self.device)
        self.parent_id = self.new_ids(1)
        self.parent_loss: float | None = None  # unknown until the parent is evaluated

    def _ask(self, n: int) -> Population:
        c = self.config
        if self.parent_loss is None and not c.reevaluate_parent:
            return Population(self.parent.unsqueeze(0).clone(), self.parent_id)
        if not c.reevaluate_parent:
            # marginally N(0, sigma^2) per weight, from the noise table or fresh
            return self.perturb(self.parent, c.sigma, n, self.new_ids(n))
        if n == 1:  # the budget's last candidate: the parent alone
            return Population(self.parent.unsqueeze(0).clone(), self.parent_id)
        children = self.perturb(self.parent, c.sigma, n - 1, self.new_ids(n - 1))
        values = torch.cat([self.parent.unsqueeze(0), children.rows(0, n - 1)])
        return Population(values, torch.cat([self.parent_id, children.ids]))

    def _tell(self, pop: Population, losses: torch.Tensor) -> None:
        first = 0
        if pop.ids[0] == self.parent_id[0]:  # the parent itself is in the population
            self.parent_loss = float(losses[0])
            first = 1
        children = losses[first:]
        if len(children) == 0:
            return
        better = torch.nonzero(children < self.parent_loss).flatten()
        if len(better) == 0:
            return
        i = first + (int(better[0]) if self.config.accept == "first" else int(children.argmin()))
        self.parent = pop.rows(i, i + 1)[0].clone()
        self.parent_id = pop.ids[i : i + 1].clone()
        self.parent_loss = float(losses[i])

    def _recommend(self) -> torch.Tensor:
        """The parent: the best point by the losses GO-EA compared."""
        return self.parent.clone()


@hookimpl
def evoreg_register_optimizers(register):
    register("goea", GOEA, family="weights")
