"""GO-EA: greedy random search around one parent, with SGD's evaluation budget in mind.

Kucharavy, Guerraoui & Dolamic, "Evolutionary Algorithms in the Light of SGD: Limit
Equivalence, Minima Flatness, and Transfer Learning" (ALIFE 2023; code chiffa/ALIFE2023_GOEA-SGD).
Each generation draws N candidates (``popsize``, 20 in the paper), each the parent plus
N(0, sigma^2) noise on every weight (``sigma`` = 0.01, absolute; on the ``convnet9854-sn``
network of ``mnist-weights`` "every weight" is every state_dict entry, spectral-norm buffers
included, as the reference's ``generate_fixed_perturbation``).

Two acceptance rules:

- ``accept="best"`` (the released code's ``search_best_seed``): all N children are drawn around
  the same parent and the parent moves to the best child only if it is strictly better (ties
  and worse children leave it): at most one move a generation.
- ``accept="first"`` (the paper's Alg. 1, as written): candidates are tried in order; as soon as
  one is strictly better the parent moves to it, and the generation's later candidates are
  drawn around the NEW parent, so one generation of N candidates can make several moves.
  Alg. 1 is sequential; it is batched speculatively: one ask hands out up to ``first_batch``
  of the generation's remaining candidates (0: all of them), all around the current parent;
  ``tell`` scans them in order, moves at the first improvement and discards the rest of that
  batch (their evaluations are spent, but they do not count towards the generation's N; they
  were independent draws, so the trajectory has Alg. 1's distribution). The next ask draws the
  remaining candidates around the new parent. ``first_batch=1`` is strictly sequential and
  wastes nothing; larger batches trade wasted evaluations for batched evaluation.

The parent's loss must be known. With ``reevaluate_parent`` (the default, as the reference,
which evaluates the parent at the start of every generation: N + 1 evaluations) every
population is the parent (same id) followed by children (``ask(n)`` hands out the parent and
n - 1 children), and children are compared with the parent's loss from the SAME evaluation, so
a problem that draws a fresh minibatch each generation never compares losses of different
batches. Without it the first ask returns the parent alone and later children are compared
with the loss the parent had when it was evaluated or accepted (fine for deterministic
problems; on minibatches that compares different batches). The noise is, by default, windows
of a shared Gaussian noise table (Salimans et al. 2017): still N(0, sigma^2) per weight,
several times cheaper to draw; ``noise_table=False`` draws fresh normals (as the reference).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from evoreg import Optimizer, Population, Real, hookimpl
from evoreg.config import bounded


@dataclass
class Config:
    popsize: int = bounded(20, ge=1)  #: N, candidates per generation
    sigma: float = bounded(0.01, gt=0)  #: absolute std of the Gaussian noise on every weight
    #: best: move to the best better child (released code); first: Alg. 1, move at once
    accept: Literal["best", "first"] = "best"
    #: evaluate the parent again beside its children (reference: every generation, N + 1)
    reevaluate_parent: bool = True
    #: accept="first": candidates evaluated at once (0: the generation's remaining ones)
    first_batch: int = bounded(0, ge=0)
    noise_table: bool = True  #: perturb with windows of a shared noise table, else fresh normals


class GOEA(Optimizer):
    """One parent; it moves to a child of Gaussian noise only on a strict improvement."""

    Config = Config
    citation = "Kucharavy, Guerraoui & Dolamic (2023), ALIFE 2023"
    spaces = (Real,)
    generational = True

    @property
    def default_popsize(self) -> int:
        """This generation's (remaining) candidates, plus the parent with ``reevaluate_parent``."""
        c = self.config
        children = c.popsize
        if c.accept == "first":
            children = c.popsize - self.tried
            if c.first_batch:
                children = min(children, c.first_batch)
        return children + int(c.reevaluate_parent)

    def setup(self) -> None:
        self.parent = self.space.initial().to(self.device)
        self.parent_id = self.new_ids(1)
        self.parent_loss: float | None = None  # unknown until the parent is evaluated
        self.tried = 0  # accept="first": candidates of this generation used so far
        self.moves = 0  # times the parent moved, over the run

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
        if len(children) == 0 or self.parent_loss is None:
            return
        if self.config.accept == "first":
            self._tell_first(pop, losses, first)
            return
        if float(children.min()) < self.parent_loss:
            self._move(pop, losses, first + int(children.argmin()))

    def _tell_first(self, pop: Population, losses: torch.Tensor, first: int) -> None:
        """Alg. 1: scan in order, move at the first improvement, discard the rest of the batch."""
        for i in range(first, len(losses)):
            self.tried += 1
            improved = float(losses[i]) < self.parent_loss
            if improved:
                self._move(pop, losses, i)
            if self.tried >= self.config.popsize:
                self.tried = 0  # the generation is over
                return
            if improved:
                return  # later candidates were drawn around the old parent

    def _move(self, pop: Population, losses: torch.Tensor, i: int) -> None:
        self.parent = pop.rows(i, i + 1)[0].clone()
        self.parent_id = pop.ids[i : i + 1].clone()
        self.parent_loss = float(losses[i])
        self.moves += 1

    def _recommend(self) -> torch.Tensor:
        """The parent: the best point by the losses GO-EA compared."""
        return self.parent.clone()


@hookimpl
def evoreg_register_optimizers(register):
    register("goea", GOEA, family="weights")
