"""SNES: separable natural evolution strategies, a Gaussian with one sigma per coordinate.

Schaul, Glasmachers & Schmidhuber, "High dimensions and heavy tails for natural evolution
strategies" (GECCO 2011), and Wierstra, Schaul, Glasmachers, Sun, Peters & Schmidhuber,
"Natural Evolution Strategies" (JMLR 15, 2014), Algorithm 6. The search distribution is
N(mu, diag(sigma^2)), mu from the space's ``init`` and every sigma from the space's
``sigma``. Each generation draws lambda samples ``z_k = mu + sigma * s_k``, s_k ~ N(0, I)
(``popsize``, default ``4 + floor(3 ln d)``); with the samples sorted best (lowest loss)
first, the utilities are the standard log-rank shaping
``u_k = max(0, ln(lambda/2 + 1) - ln k) / sum_j max(0, ln(lambda/2 + 1) - ln j) - 1/lambda``
(samples with equal losses share the mean of their positions' utilities), and

    mu    <- mu + eta_mu * sigma * sum_k u_k s_k
    sigma <- sigma * exp(eta_sigma / 2 * sum_k u_k (s_k^2 - 1))

with ``eta_mu = 1`` and ``eta_sigma = (3 + ln d) / (5 sqrt d)`` (the papers' defaults).

A per-coordinate sigma is not one scale per noise term, so the candidates are dense rows. The
s_k are, by default, windows of the shared Gaussian noise table (Salimans et al. 2017): the
optimizer keeps their offsets between ``ask`` and ``tell`` and reads the same windows again
(exactly the same values); with ``noise_table=False`` it keeps the fresh normals themselves.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from evoreg import Optimizer, Population, Real, hookimpl
from evoreg.config import bounded
from evoreg.plugins.nes import tie_averaged


def log_rank_utilities(losses: torch.Tensor) -> torch.Tensor:
    """The utilities ``u_k`` above, one per sample (they sum to 0; only the better half of
    the ranks gets a positive weight)."""
    n = len(losses)
    k = torch.arange(1, n + 1, dtype=torch.float64, device=losses.device)
    weights = (math.log(n / 2 + 1) - k.log()).clamp(min=0)
    return tie_averaged(losses, weights / weights.sum() - 1 / n)


@dataclass
class Config:
    popsize: int | None = bounded(None, ge=2)  #: lambda; None: 4 + floor(3 ln d)
    lr_mean: float = bounded(1.0, gt=0)  #: eta_mu, step size of the mean
    lr_sigma: float | None = bounded(None, gt=0)  #: eta_sigma; None: (3 + ln d) / (5 sqrt d)
    noise_table: bool = True  #: s_k from windows of the shared noise table, else fresh normals


class SNES(Optimizer):
    """Mean and per-coordinate sigma, moved by the natural gradient with log-rank utilities."""

    Config = Config
    citation = ("Schaul, Glasmachers & Schmidhuber (2011), GECCO; "
                "Wierstra et al. (2014), JMLR 15")
    spaces = (Real,)
    generational = True

    @property
    def default_popsize(self) -> int:
        popsize = self.config.popsize
        return 4 + int(3 * math.log(self.space.dim)) if popsize is None else popsize

    def setup(self) -> None:
        dim = self.space.dim
        self.lr_sigma = self.config.lr_sigma or (3 + math.log(dim)) / (5 * math.sqrt(dim))
        self.mean = self.space.initial().to(self.device)
        self.sigma = torch.full_like(self.mean, self.space.sigma)
        # s_k of the population asked last: table offsets, or the normals (no table)
        self.offsets: torch.Tensor | None = None
        self.samples: torch.Tensor | None = None

    def _ask(self, n: int) -> torch.Tensor:
        dim, table = self.space.dim, self.shared_table
        if table is None:
            self.samples = torch.randn(n, dim, generator=self.generator, device=self.device)
            s = self.samples
        else:
            self.offsets = table.offsets(n, dim, self.generator)
            s = table.windows(self.offsets, dim)
        return torch.addcmul(self.mean, s, self.sigma)

    def _tell(self, pop: Population, losses: torch.Tensor) -> None:
        if self.samples is not None:
            s, self.samples = self.samples, None
        else:  # the same windows the rows were made of
            s = self.shared_table.windows(self.offsets, self.space.dim)
            self.offsets = None
        u = log_rank_utilities(losses).float()
        grad_mean = u @ s  # sum_k u_k s_k
        grad_sigma = u @ (s * s - 1)  # sum_k u_k (s_k^2 - 1)
        self.mean = self.mean + self.config.lr_mean * self.sigma * grad_mean
        self.sigma = self.sigma * torch.exp(self.lr_sigma / 2 * grad_sigma)

    def _recommend(self) -> torch.Tensor:
        """The mean: the centre of the search distribution."""
        return self.mean.clone()


@hookimpl
def evoreg_register_optimizers(register):
    register("snes", SNES, family="nes")
