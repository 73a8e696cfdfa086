"""The (1+1)-ES with the 1/5th success rule, batched as a (1+lambda)-ES.

Each generation draws ``popsize`` (lambda) children ``parent + sigma * N(0, I)``; the best
child replaces the parent when its loss is at most the parent's (elitist, ``<=`` so the
search drifts across plateaus). The step size follows Rechenberg's 1/5th success rule
(Rechenberg, "Evolutionsstrategie", Frommann-Holzboog 1973) with the constants of Kern,
Mueller, Hansen, Buche, Ocenasek and Koumoutsakos, "Learning probability distributions in
continuous evolutionary algorithms - a comparative review", Natural Computing 3 (2004):
sigma is multiplied by exp(1/3) after a success and by exp(-1/3)^(1/4) after a failure, so
it stays put when one trial in five succeeds. With lambda children the rule is applied
once per generation to the success rate p_s (share of children at least as good as the
parent): sigma *= exp(d_up * (p_s - p_target) / (1 - p_target)), which for lambda = 1 is
exactly Kern et al.'s rule.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from evoreg import Optimizer, Population, Real, hookimpl
from evoreg.config import bounded


@dataclass
class Config:
    popsize: int = bounded(1, ge=1)  #: lambda, children per generation (1: the (1+1)-ES)
    sigma0: float | None = bounded(None, gt=0)  #: initial step size (None: the space's sigma)
    #: ln of sigma's factor after a success (Kern et al.: 1/3)
    log_step_up: float = bounded(1 / 3, gt=0)
    #: success rate at which sigma stays put (the 1/5th)
    target_success: float = bounded(0.2, gt=0, lt=1)


class OneFifthES(Optimizer):
    """(1+lambda)-ES whose step size follows the 1/5th success rule."""

    Config = Config
    citation = (
        "Rechenberg (1973), Evolutionsstrategie; Kern et al. (2004), Natural Computing 3:77-112"
    )
    spaces = (Real,)
    respects_bounds = True  # every candidate is clipped into the space's bounds

    def setup(self) -> None:
        self.parent = self.clip(self.space.initial().to(self.device))
        self.parent_id = int(self.new_ids(1)[0])
        # Unknown until the parent itself is evaluated: row 0 of the first generation.
        self.parent_loss = math.inf
        self.parent_evaluated = False
        self.sigma = float(self.config.sigma0 or self.space.sigma)

    def _ask(self, n: int) -> Population:
        noise = torch.randn(n, self.space.dim, generator=self.generator, device=self.device)
        children = self.parent + self.sigma * noise
        ids = self.new_ids(n)
        if not self.parent_evaluated:
            # Evaluate the starting point once, so successes are measured against it.
            children[0], ids[0] = self.parent, self.parent_id
        return Population(self.clip(children), ids)

    def clip(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` inside the space's bounds, if it has any."""
        return self.space.clip(x)

    def _tell(self, pop: Population, losses: torch.Tensor) -> None:
        is_child = (pop.ids != self.parent_id).to(losses.device)
        if not bool(is_child.all()):
            self.parent_loss = float(losses[~is_child].min())
            self.parent_evaluated = True
        child_losses = losses[is_child]
        if len(child_losses) == 0:
            return  # only the parent was evaluated: no trial, no step-size evidence
        children = pop.values[is_child.to(pop.values.device)]
        success_rate = float((child_losses <= self.parent_loss).float().mean())
        best = int(torch.argmin(child_losses))
        if float(child_losses[best]) <= self.parent_loss:
            self.parent = children[best].to(self.device).clone()
            self.parent_loss = float(child_losses[best])
        target = self.config.target_success
        self.sigma *= math.exp(self.config.log_step_up * (success_rate - target) / (1 - target))

    def _recommend(self) -> torch.Tensor:
        # The parent is the best point found (elitist), and it survives state_dict round trips.
        return self.parent.clone()


@hookimpl
def evoreg_register_optimizers(register) -> None:
    register("one-fifth-es", OneFifthES, family="es")
