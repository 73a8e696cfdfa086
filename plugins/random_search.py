"""Random search: the smallest example of an evoreg optimizer plugin.

Each candidate is drawn independently of the losses: around the space's ``init`` with the
space's ``sigma`` for ``Real``, uniformly per slot for ``Categorical``, by ``space.sample``
for ``Genome``. For ``Real`` spaces the Gaussian perturbations are, by default, windows of a
shared noise table (Salimans et al. 2017): a population is then lazy, one window offset per
candidate, written out only where an evaluator reads it; ``noise_table=False`` draws fresh
normals instead. In a bounded ``Real`` space the candidates are dense rows within the bounds:
a coordinate with both bounds finite is drawn uniformly between them (Brooks' random search
over a box), one with a single finite bound around ``init`` and clipped to it.
Brooks, "A discussion of random methods for seeking maxima" (Operations Research, 1958).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from evoreg import Categorical, Genome, Optimizer, Population, Real, hookimpl
from evoreg.config import bounded


@dataclass
class Config:
    popsize: int = bounded(16, ge=1)  #: candidates per ask
    noise_table: bool = True  #: perturb with windows of a shared noise table, else fresh normals


class RandomSearch(Optimizer):
    """Independent random candidates around the space's initial point."""

    Config = Config
    citation = "Brooks (1958), Operations Research 6(2)"
    spaces = (Real, Categorical, Genome)
    respects_bounds = True

    def setup(self) -> None:
        if isinstance(self.space, Real):
            self.center = self.space.initial().to(self.device)

    def _ask(self, n: int) -> Population | torch.Tensor | list:
        space = self.space
        if isinstance(space, Real):
            if space.bounded:
                return self.within_bounds(n)
            return self.perturb(self.center, space.sigma, n)
        if isinstance(space, Categorical):
            uniform = torch.rand(n, space.dim, generator=self.generator, device=self.device)
            sizes = torch.tensor(space.sizes, device=self.device)
            return (uniform * sizes).long().clamp_(max=sizes - 1)
        return [space.sample(self.rng) for _ in range(n)]

    def within_bounds(self, n: int) -> torch.Tensor:
        """``n`` candidates of a bounded space: uniform on coordinates bounded on both sides,
        Gaussian around the centre elsewhere, all clipped into the bounds."""
        space, dim = self.space, self.space.dim
        lower, upper = space.bounds(self.device)
        box = torch.isfinite(lower) & torch.isfinite(upper)
        values = torch.empty(n, dim, device=self.device)
        if not bool(box.all()):
            self.normals(values).mul_(space.sigma).add_(self.center)
        if bool(box.any()):
            # In float64: upper - lower may overflow float32 (bounds of +-3e38), and
            # lower + u * (upper - lower) is then rounded once, into float32.
            u = torch.rand(n, dim, generator=self.generator, device=self.device,
                           dtype=torch.float64)
            uniform = (lower.double() + u * (upper.double() - lower.double())).float()
            values = torch.where(box, uniform, values)
        return space.clip(values)  # rounding may land a hair outside a bound

    def _tell(self, pop: Population, losses: torch.Tensor) -> None:
        pass  # nothing to learn: the base class already keeps the best candidate


@hookimpl
def evoreg_register_optimizers(register):
    register("random-search", RandomSearch, family="baseline")
