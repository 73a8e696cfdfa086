"""The Rastrigin function: a multimodal reference problem.

loss(x) = 10 d + sum_i (z_i^2 - 10 cos(2 pi z_i)), z = x - optimum (+ Gaussian noise).
Rastrigin (1974); as in the BBOB and nevergrad suites. Minimum 0 at x = optimum.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from evoreg import hookimpl

from .sphere import Config as SphereConfig
from .sphere import Sphere


@dataclass
class Config(SphereConfig):
    pass


class Rastrigin(Sphere):
    """10 d + sum(z^2 - 10 cos(2 pi z)), z = x - optimum; many local minima, minimum 0."""

    Config = Config
    citation = "Rastrigin (1974), Systems of extremal control"

    def function(self, x: torch.Tensor) -> torch.Tensor:
        z = x - self.config.optimum
        return 10 * x.shape[-1] + (z.pow(2) - 10 * torch.cos(2 * math.pi * z)).sum(dim=-1)


@hookimpl
def evoreg_register_problems(register):
    register("rastrigin", Rastrigin, family="reference")
