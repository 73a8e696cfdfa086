"""Niching (1+1)-EA: one parent, and now and then a short niche around a worse child.

Prellberg, "Evolving Deep Neural Networks" (PhD thesis, 2020), ch. 7, Algorithm 4 (the
Lamarckian architecture search). Each step mutates the parent (``space.mutate``) and
evaluates the child; a strictly better child (lower loss) replaces the parent. A child that
is not better starts, with probability omega (``omega`` = 0.1), a niche: k more
mutate-evaluate-select steps (``niche_steps`` = 5) from that child, with niching disabled
inside, each moving the niche's best to a strictly better mutant. After the k steps the
niche's best replaces the parent only if it beats the parent's loss. A niche gives a
change that first makes a network worse (a new block whose weights are not trained yet) the
few steps it needs to pay off.

The search is Lamarckian: a problem that trains its candidates while scoring them returns
them in ``Evaluation.candidates``, and the parent and the niche keep those (the trained
weights), not the genomes they were asked with. The first ask is the initial parent,
``space.sample``; every ask is one candidate. The state machine lives in plain attributes
(the parent, its loss, the niche's remaining steps, best and loss), so a checkpoint taken
inside a niche resumes inside it.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import torch

from evoreg import EvoregError, Genome, Optimizer, Population, hookimpl
from evoreg.config import bounded


@dataclass
class Config:
    omega: float = bounded(0.1, ge=0, le=1)  #: omega, chance that a worse child starts a niche
    niche_steps: int = bounded(5, ge=1)  #: k, mutate-evaluate-select steps of one niche


class Niching(Optimizer):
    """(1+1)-EA over genomes whose worse children sometimes get a niche of k steps."""

    Config = Config
    citation = "Prellberg (2020), Evolving Deep Neural Networks, thesis ch. 7 (Algorithm 4)"
    spaces = (Genome,)
    generational = True

    def setup(self) -> None:
        self.parent: Any = None  # None until the initial sample has been evaluated
        self.parent_loss = float("inf")
        self.niche_left = 0  # steps of the current niche still to evaluate; 0: no niche
        self.niche_best: Any = None
        self.niche_best_loss = float("inf")

    def _ask(self, n: int) -> list:
        if n != 1:
            # One step is one child whose acceptance decides what the next step mutates.
            raise EvoregError(f"{self.name} is a (1+1)-EA: ask() one candidate at a time, not {n}")
        if self.parent is None:
            return [self.space.sample(self.rng)]
        start = self.niche_best if self.niche_left > 0 else self.parent
        return [self.space.mutate(start, self.rng)]

    def _tell(self, pop: Population, losses: torch.Tensor) -> None:
        # The candidate as the problem left it (trained weights), else as asked: a copy, so
        # neither the caller nor the problem can change the parent afterwards.
        child, loss = self.keep_candidate(pop, 0), float(losses[0])
        if self.parent is None:
            self.parent, self.parent_loss = child, loss
        elif self.niche_left > 0:
            self._niche_step(child, loss)
        elif loss < self.parent_loss:
            self.parent, self.parent_loss = child, loss
        elif self.rng.random() < self.config.omega:
            # The child opens a niche: it is the niche's best until a mutant beats it.
            self.niche_left = self.config.niche_steps
            self.niche_best, self.niche_best_loss = child, loss

    def _niche_step(self, child: Any, loss: float) -> None:
        """One step inside a niche (no niche within it); after the last, the niche's best
        replaces the parent if it beats the parent's loss."""
        if loss < self.niche_best_loss:
            self.niche_best, self.niche_best_loss = child, loss
        self.niche_left -= 1
        if self.niche_left > 0:
            return
        if self.niche_best_loss < self.parent_loss:
            self.parent, self.parent_loss = self.niche_best, self.niche_best_loss
        self.niche_best, self.niche_best_loss = None, float("inf")

    def _recommend(self) -> Any:
        """The parent (None before the first tell)."""
        return copy.deepcopy(self.parent) if self.parent is not None else self.best_x


@hookimpl
def evoreg_register_optimizers(register):
    register("niching", Niching, family="architecture")
