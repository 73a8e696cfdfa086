"""LEEA: a limited-evaluation evolutionary algorithm over a population of whole networks.

Prellberg, "Evolving Deep Neural Networks" (PhD thesis, Oldenburg 2020), ch. 5, and its code
jprellberg/gpuea (``gpuea.py``). A generational EA with elites: the population of lambda
individuals (``popsize``) keeps one loss each; the next generation is ``round(lambda * p_E)``
elites (the best individuals, unchanged but evaluated again on the new minibatch),
``round(lambda * p_C)`` crossover children and ``round(lambda * p_M)`` mutation children.
Parents are drawn uniformly, with replacement, from the best ``rho * lambda`` (truncation); a
crossover pair is ordered so that the first parent is the fitter, and the child takes each
weight from it with probability ``crossover_rate`` (uniform) or is the weighted mean
(arithmetic). Crossover children are not mutated; a mutation child is a copy of its parent
plus ``sigma * N(0, 1)`` on every weight. A child inherits its parents' losses (weighted by
``crossover_rate``, as gpuea) and after evaluation keeps
``loss = (1 - alpha) * inherited + alpha * measured``. ``sigma`` is constant, decays as
``sigma_0 * 0.99 ** (t / k)`` (t: offspring generation), or is self-adaptive as in gpuea:
each individual carries its own sigma, inherited through crossover; a child is mutated with
the sigma it inherited and then carries ``sigma * exp(tau * N(0, 1))``.

Offspring are built on the optimizer's device in row chunks that fit in cache (no loop over
candidates). By default the mutation noise and the uniform-crossover masks (a window below
``Phi^-1(crossover_rate)``) are read from a shared Gaussian noise table, several times
cheaper than fresh random numbers (``noise_table=False`` draws them fresh).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from evoreg import EvoregError, Optimizer, Population, Real, hookimpl
from evoreg.config import bounded

CHUNK_VALUES = 2**20  # values per row chunk of the offspring loop (4 MiB scratch buffers)


def offspring_counts(popsize: int, shares: tuple[float, float, float]) -> tuple[int, int, int]:
    """Elites, crossover and mutation children: ``round(popsize * share)`` each (gpuea)."""
    return tuple(int(round(popsize * share)) for share in shares)


@dataclass
class Config:
    popsize: int = bounded(2000, ge=2)  #: lambda, individuals per generation
    elite_share: float = bounded(0.05, ge=0, le=1)  #: p_E, share of elites passed on unchanged
    crossover_share: float = bounded(0.75, ge=0, le=1)  #: p_C, share of crossover children
    mutation_share: float = bounded(0.20, ge=0, le=1)  #: p_M, share of mutation children
    sigma: float = bounded(0.001, gt=0)  #: std of the mutation noise (sigma_0 of the schedules)
    truncation: float = bounded(0.5, gt=0, le=1)  #: rho, parents come from the best rho * lambda
    #: alpha: loss = (1 - alpha) * inherited + alpha * measured
    measured_weight: float = bounded(1.0, ge=0, le=1)
    crossover: Literal["uniform", "arithmetic"] = "uniform"  #: per-weight mask or weighted mean
    #: the fitter parent's share (mask probability or weight)
    crossover_rate: float = bounded(0.5, ge=0, le=1)
    #: sigma constant, decayed sigma_0 * 0.99 ** (t / k), or per individual sigma * exp(tau * z)
    sigma_schedule: Literal["constant", "exponential", "self-adaptive"] = "constant"
    #: k of the exponential schedule sigma_0 * 0.99 ** (t / k)
    decay_steps: float = bounded(100.0, gt=0)
    #: learning rate of the self-adaptive schedule sigma * exp(tau * N(0, 1))
    tau: float = bounded(0.01, gt=0)
    noise_table: bool = True  #: noise and masks from a shared noise table, else fresh draws

    def __post_init__(self) -> None:
        shares = (self.elite_share, self.crossover_share, self.mutation_share)
        if abs(sum(shares) - 1) > 1e-6:
            raise ValueError(
                f"elite_share, crossover_share, mutation_share must sum to 1 (within 1e-6), "
                f"got {shares}"
            )
        counts = offspring_counts(self.popsize, shares)
        if sum(counts) != self.popsize:
            raise ValueError(
                f"popsize {self.popsize} x shares {shares} rounds to {counts}, "
                f"which does not sum to popsize: choose shares that divide it"
            )


class LEEA(Optimizer):
    """Elites, truncation selection, and either crossover or mutation for every other child."""

    Config = Config
    citation = "Prellberg (2020), Evolving Deep Neural Networks, PhD thesis, Oldenburg, ch. 5"
    spaces = (Real,)
    generational = True
    smaller_ask = False  # a generation is exactly lambda individuals (elite, crossover shares)

    def setup(self) -> None:
        c = self.config
        shares = (c.elite_share, c.crossover_share, c.mutation_share)
        self.counts = offspring_counts(c.popsize, shares)
        self.population = self.space.initial_population(c.popsize, self.generator, self.device)
        self.ids = self.new_ids(c.popsize)
        self.losses: torch.Tensor | None = None  # unknown until the first generation is told
        self.sigmas = torch.full((c.popsize,), c.sigma, device=self.device)
        self.children: dict | None = None  # what the latest ask() handed out, for tell()

    def _ask(self, n: int) -> Population:
        c, elites = self.config, self.counts[0]
        if n != c.popsize:
            raise EvoregError(
                f"{self.name} evolves popsize={c.popsize} individuals: ask() or "
                f"ask({c.popsize}), not ask({n})"
            )
        if self.losses is None:  # the initial population is evaluated as is
            self.children = {"ids": self.ids, "inherited": None, "sigmas": self.sigmas}
            return Population(self.population, self.ids)
        first, second = self.select_parents()
        rate = c.crossover_rate
        inherited = rate * self.losses[first] + (1 - rate) * self.losses[second]
        inherited.nan_to_num_(nan=float("inf"))  # inf * 0 from a non-finite parent: the worst
        sigmas = self.child_sigmas(first, second)
        values = self.breed(first, second, sigmas)
        if c.sigma_schedule == "self-adaptive":  # after its use, as in gpuea
            noise = torch.randn(c.popsize, generator=self.generator, device=self.device)
            sigmas = sigmas * torch.exp(c.tau * noise)
        ids = torch.cat([self.ids[first[:elites].cpu()], self.new_ids(c.popsize - elites)])
        parents = torch.stack([first, second])
        self.children = {"ids": ids, "parents": parents, "inherited": inherited, "sigmas": sigmas}
        return Population(values, ids)

    def select_parents(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Each child's fitter and other parent (the same one for elites and mutations)."""
        c, (elites, crossed, mutated) = self.config, self.counts
        order = torch.argsort(self.losses, stable=True)
        pool = order[: max(1, int(c.truncation * c.popsize))]
        shape = (2, crossed + mutated)
        drawn = pool[torch.randint(len(pool), shape, generator=self.generator, device=self.device)]
        first = torch.cat([order[:elites], drawn[0]])
        second = torch.cat([order[:elites], drawn[1, :crossed], drawn[0, crossed:]])
        swap = self.losses[first] > self.losses[second]
        return torch.where(swap, second, first), torch.where(swap, first, second)

    def child_sigmas(self, first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
        """The sigma each child is mutated with (and carries, until self-adaptation)."""
        c = self.config
        if c.sigma_schedule == "constant":
            return torch.full_like(self.sigmas, c.sigma)
        if c.sigma_schedule == "exponential":  # t = 0 for the first offspring
            return torch.full_like(
                self.sigmas, c.sigma * 0.99 ** ((self.generation - 1) / c.decay_steps)
            )
        if c.crossover == "arithmetic":
            return torch.lerp(self.sigmas[second], self.sigmas[first], c.crossover_rate)
        pick = torch.rand(c.popsize, generator=self.generator, device=self.device)
        return torch.where(pick < c.crossover_rate, self.sigmas[first], self.sigmas[second])

    def breed(
        self, first: torch.Tensor, second: torch.Tensor, sigmas: torch.Tensor
    ) -> torch.Tensor:
        """The offspring as one ``Tensor[popsize, d]``, built in chunks of rows."""
        c, parents, (elites, crossed, _) = self.config, self.population, self.counts
        dim, stop = parents.shape[1], elites + crossed
        out = torch.empty_like(parents)
        torch.index_select(parents, 0, first[:elites], out=out[:elites])
        torch.index_select(parents, 0, second[elites:], out=out[elites:])
        rows = max(1, CHUNK_VALUES // dim)
        fitter, noise = parents.new_empty(rows, dim), parents.new_empty(rows, dim)
        threshold = float(torch.special.ndtri(torch.tensor(c.crossover_rate, dtype=torch.float64)))
        for start in range(elites, stop, rows):  # crossover: lerp(second, first, weight)
            end = min(start + rows, stop)
            torch.index_select(parents, 0, first[start:end], out=fitter[: end - start])
            weight = c.crossover_rate
            if c.crossover == "uniform":  # 1.0 with probability crossover_rate, else 0.0
                weight = self.normals(noise[: end - start]).lt_(threshold)
            out[start:end].lerp_(fitter[: end - start], weight)
        for start in range(stop, c.popsize, rows):  # mutation: + sigma * N(0, 1)
            end = min(start + rows, c.popsize)
            out[start:end].addcmul_(self.normals(noise[: end - start]), sigmas[start:end, None])
        return out

    def _tell(self, pop: Population, losses: torch.Tensor) -> None:
        children = self.children
        alpha = self.config.measured_weight
        if children["inherited"] is not None and alpha < 1:  # fitness inheritance
            losses = (1 - alpha) * children["inherited"] + alpha * losses
        self.population, self.ids, self.losses = pop.values, pop.ids, losses
        self.sigmas, self.children = children["sigmas"], None

    def _recommend(self) -> torch.Tensor:
        """The population's best individual by its current loss (the one gpuea validates)."""
        best = 0 if self.losses is None else int(torch.argmin(self.losses))
        return self.population[best].clone()


@hookimpl
def evoreg_register_optimizers(register):
    register("leea", LEEA, family="weights")
