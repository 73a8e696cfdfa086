"""GO-EA: greedy random search around one parent, with SGD's evaluation budget in mind.

Kucharavy, Guerraoui & Dolamic, "Evolutionary Algorithms in the Light of SGD: Limit
Equivalence, Minima Flatness, and Transfer Learning" (ALIFE 2023; code chiffa/ALIFE2023_GOEA-SGD).
Each generation draws N children (``popsize``, 20 in the paper), each the parent plus
N(0, sigma^2) noise on every weight (``sigma`` = 0.01, absolute), and the parent moves to the
best child only if that child is strictly better (ties and worse children leave it).
``accept="first"`` is the paper's Alg. 1: the parent moves to the first strictly better child
in the population's order. The parent's loss must be known: the first ask returns the
parent alone. With ``reevaluate_parent`` every population is the parent (same id) followed
by the children, and the comparison uses the parent's loss of this generation, as a problem
that draws a fresh minibatch each generation needs (the paper evaluates on the whole training
set, where this makes no difference). The noise is, by default, windows of a shared Gaussian
noise table (Salimans et al. 2017): still N(0, sigma^2) per weight, several times cheaper to
draw; ``noise_table=False`` draws fresh normals.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from evoreg import EvoregError, Optimizer, Population, Real, hookimpl
from evoreg.config import bounded
from evoreg.noise_table import NoiseTable, table_size_for


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
    transient = ("table",)

    def setup(self) -> None:
        self.parent = self.space.initial().to(self.device)
        self.parent_id = self.new_ids(1)
        self.parent_loss: float | None = None  # unknown until the parent is evaluated
        self.asked_ids: torch.Tensor | None = None  # the latest ask's ids, to check tell()
        size = table_size_for(self.space.dim)
        self.table = NoiseTable(size, device=self.device) if self.config.noise_table else None

    def _ask(self, n: int) -> Population:
        c = self.config
        if self.parent_loss is None and not c.reevaluate_parent:
            values, ids = self.parent.unsqueeze(0).clone(), self.parent_id
        else:
            if self.table is not None:  # marginally N(0, sigma^2) per weight, like fresh normals
                offsets = self.table.offsets(n, self.space.dim, self.generator)
                children = self.table.perturb(self.parent, c.sigma, offsets)
            else:
                noise = torch.randn(n, self.space.dim, generator=self.generator, device=self.device)
                children = noise.mul_(c.sigma).add_(self.parent)
            values, ids = children, self.new_ids(n)
            if c.reevaluate_parent:
                values = torch.cat([self.parent.unsqueeze(0), children])
                ids = torch.cat([self.parent_id, ids])
        self.asked_ids = ids
        return Population(values, ids)

    def _tell(self, pop: Population, losses: torch.Tensor) -> None:
        if self.asked_ids is None or not torch.equal(pop.ids, self.asked_ids):
            raise EvoregError(f"{self.name} is generational: tell() the latest ask()'s population")
        self.asked_ids = None
        values, ids = pop.values, pop.ids
        if pop.ids[0] == self.parent_id[0]:  # the parent itself is in the population
            self.parent_loss = float(losses[0])
            values, ids, losses = values[1:], ids[1:], losses[1:]
        if len(losses) == 0:
            return
        better = torch.nonzero(losses < self.parent_loss).flatten()
        if len(better) == 0:
            return
        if self.config.accept == "first":
            i = int(better[0])
        else:
            i = int(torch.argmin(losses))
        self.parent = values[i].clone()
        self.parent_id = ids[i : i + 1].clone()
        self.parent_loss = float(losses[i])

    def _recommend(self) -> torch.Tensor:
        """The parent: the best point by the losses GO-EA compared."""
        return self.parent.clone()


@hookimpl
def evoreg_register_optimizers(register):
    register("goea", GOEA, family="weights")
