"""The Rastrigin function: a multimodal reference problem.

loss(x) = 10 d + sum_i (z_i^2 - 10 cos(2 pi z_i)), z = x - optimum (+ Gaussian noise).
Rastrigin (1974); as in the BBOB and nevergrad suites. Minimum 0 at x = optimum.

Its local minima sit near every integer z, so where the search starts decides what the
problem measures. It starts as the standard benchmark does, at a point drawn uniformly from
the domain [-5.12, 5.12]^d (from the problem's seed, so each run seed has its own start),
with the space's ``sigma`` a quarter of the domain's width (2.56, pycma's advice for an
initial step size). The former start, 0 with sigma 1, was a local minimum (z = -1 in every
coordinate, loss about d): ng:OnePlusOne never left it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from evoreg import Real, hookimpl

from .sphere import Config as SphereConfig
from .sphere import Sphere

#: The standard domain: every coordinate in [-DOMAIN, DOMAIN].
DOMAIN = 5.12


@dataclass
class Config(SphereConfig):
    pass


class Rastrigin(Sphere):
    """10 d + sum(z^2 - 10 cos(2 pi z)), z = x - optimum; many local minima, minimum 0;
    starts uniformly in [-5.12, 5.12]^d (from the problem's seed), sigma 2.56."""

    Config = Config
    citation = "Rastrigin (1974), Systems of extremal control"

    def setup(self) -> None:
        # Drawn first from the problem's generator (saved in checkpoints), so a resumed run
        # rebuilds the same start before its state is restored.
        start = torch.rand(self.config.dim, generator=self.generator, dtype=torch.float64)
        self.space = Real(self.config.dim, init=((2 * start - 1) * DOMAIN).float(),
                          sigma=DOMAIN / 2)

    def function(self, x: torch.Tensor) -> torch.Tensor:
        z = x - self.config.optimum
        return 10 * x.shape[-1] + (z.pow(2) - 10 * torch.cos(2 * math.pi * z)).sum(dim=-1)


@hookimpl
def evoreg_register_problems(register):
    register("rastrigin", Rastrigin, family="reference")
