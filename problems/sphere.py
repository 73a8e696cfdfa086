"""The sphere function: a convex quadratic bowl for tests and plugin authors.

loss(x) = sum_i (x_i - optimum)^2 (+ Gaussian noise of std ``noise`` per evaluation).
The search starts at 0 (the space's init, sigma 1), so the starting loss is
``dim * optimum^2``: a convex bowl has no local minimum to start in, and from there every
optimizer of the demo improves on its first evaluation (tests/test_reference_problems.py),
so the sphere keeps this fixed start (``rastrigin`` draws its start from its seed instead).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from evoreg import Evaluation, Population, Problem, Real, hookimpl
from evoreg.config import bounded


@dataclass
class Config:
    dim: int = bounded(10, ge=1)  #: number of variables
    noise: float = bounded(0.0, ge=0)  #: std of additive Gaussian noise on each loss (0: none)
    optimum: float = 1.0  #: every coordinate of the minimiser


class Sphere(Problem):
    """sum((x - optimum)^2), optionally noisy; minimum 0."""

    Config = Config
    provides_gradients = True

    def setup(self) -> None:
        self.space = Real(self.config.dim, sigma=1.0)

    def function(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.config.optimum).pow(2).sum(dim=-1)

    def evaluate(self, pop: Population, *, gradients: bool = False) -> Evaluation:
        losses = torch.cat([self.function(rows.float()).cpu() for _, rows in pop.chunks()])
        if self.config.noise > 0:
            losses += self.config.noise * torch.randn(len(losses), generator=self.generator)
        grads = self.gradients(pop.rows(0, len(pop)).float()) if gradients else None
        return Evaluation(losses, cost=len(pop), gradients=grads)

    def gradients(self, x: torch.Tensor) -> torch.Tensor:
        """d loss / dx at each row (the noise does not depend on x), by autograd."""
        with torch.enable_grad():
            x = x.detach().clone().requires_grad_(True)
            (grads,) = torch.autograd.grad(self.function(x).sum(), x)
        return grads

    def report(self, x: torch.Tensor) -> dict[str, float]:
        return {"noise_free_loss": float(self.function(torch.as_tensor(x).float().cpu()))}


@hookimpl
def evoreg_register_problems(register):
    register("sphere", Sphere, family="reference")
