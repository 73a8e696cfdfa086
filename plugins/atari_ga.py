"""atari-ga: a genetic algorithm with elite re-evaluation over seed-compressed genomes.

Such, Madhavan, Conti, Lehman, Stanley & Clune, "Deep Neuroevolution: Genetic Algorithms
Are a Competitive Alternative for Training Deep Neural Networks for Reinforcement Learning"
(arXiv:1712.06567, 2017), as extended in Prellberg's thesis (2020, ch. 6; code
jprellberg/genetic-algorithm-rl). Keep mu parents (``parents``); each generation makes lambda
children (``popsize``), each a uniformly chosen parent plus ``sigma`` * N(0, 1) on every
weight. The kappa best parents (``elites``) pass unchanged and, while they have fewer than
``max_evals`` episodes, are evaluated once more beside the children, their fitness the mean
of their episodes: one lucky episode no longer keeps an agent on top. The next parents are
the elites and the best mu - kappa children. The first generation is lambda independent
initialisations. A generation is thus lambda children plus the elites due for another
episode (``default_popsize``); ``ask(n)`` with a smaller n (the budget's last generation)
keeps the elites due and makes fewer children.

Presets: ``thesis`` (the thesis' table: kappa 10, mu 40, lambda 2000, max_evals 20),
``released`` (the released code's launch configuration, launch_train.py: kappa 40, mu 100,
lambda 2000, max_evals 20) and ``such2017`` (kappa 1, mu 10, lambda 5000, max_evals 1); sigma
0.005 for all. Explicit values override the preset. The episode protocol is the ``atari``
problem's: its defaults (``reset="reference"``, ``episode_seeds="independent"``) are the
thesis code's, each episode its own seed, so an elite's re-evaluations average independent
episodes. Budgets: the thesis and Such et al. count agent steps as "frames" (the reference's
``--total-frames``); give them with ``--set budget_unit=steps`` on the problem, or multiply
by 4 for evoreg's emulator frames.

Every candidate is a seed genome (an ``evoreg.LazyPopulation`` genome): its init seed and one
(seed, sigma) pair per mutation, so populations, checkpoints and messages to remote workers
hold seeds, not weights. The initial weights are the space's ``seeded_initial(seed)``: its
``sample_init`` drawn from that seed (the ``atari`` problem gives the thesis' unit-norm rows),
or ``initial()`` plus ``space.sigma`` * N(0, 1).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from evoreg import LazyPopulation, Optimizer, Population, Real, hookimpl
from evoreg.config import bounded
from evoreg.population import Decoder, LazyGenome

PRESETS: dict[str, dict[str, int]] = {
    "thesis": {"elites": 10, "parents": 40, "popsize": 2000, "max_evals": 20},
    "such2017": {"elites": 1, "parents": 10, "popsize": 5000, "max_evals": 1},
    # the released code's launch configuration (launch_train.py, tag v1)
    "released": {"elites": 40, "parents": 100, "popsize": 2000, "max_evals": 20},
}
SEED_BOUND = 2**31 - 1


@dataclass
class Config:
    #: where unset values below come from: thesis, released, such2017
    preset: Literal["thesis", "released", "such2017"] = "thesis"
    popsize: int | None = bounded(None, ge=1)  #: lambda, children a generation (2000/2000/5000)
    parents: int | None = bounded(None, ge=1)  #: mu, parents kept, elites included (40/100/10)
    elites: int | None = bounded(None, ge=0)  #: kappa, best parents re-evaluated (10/40/1)
    max_evals: int | None = bounded(None, ge=1)  #: episodes that end re-evaluation (20/20/1)
    sigma: float = bounded(0.005, gt=0)  #: mutation strength

    def __post_init__(self) -> None:
        for key, value in PRESETS.get(self.preset, {}).items():
            if getattr(self, key) is None:
                setattr(self, key, value)
        if isinstance(self.elites, int) and isinstance(self.parents, int) and (
            self.elites >= self.parents
        ):
            raise ValueError(
                f"elites (kappa) must be < parents (mu) so children can be selected, "
                f"got {self.elites} >= {self.parents}"
            )


class AtariGA(Optimizer):
    """mu parents, lambda mutated children, kappa re-evaluated elites; seed genomes."""

    Config = Config
    citation = "Such et al. (2017), arXiv:1712.06567; Prellberg (2020), thesis ch. 6"
    spaces = (Real,)
    transient = ("decoder",)
    generational = True
    state_version = 2  # initial weights from the space's sample_init (seeded_initial)

    def setup(self) -> None:
        # Parents, best first: {"genome", "id", "losses"}; fitness is the mean loss.
        self.agents: list[dict] = []
        self.asked: list[dict] | None = None  # what the latest ask() handed out, in order
        self.decoder = Decoder(
            self.space.dim, space=self.space, device=self.device,
            cache_size=max(64, self.config.parents + 8),
        )

    @property
    def default_popsize(self) -> int:
        """lambda children, plus the elites due for another episode."""
        return self.config.popsize + len(self._due_elites())

    def _due_elites(self) -> list[dict]:
        c = self.config
        return [e for e in self.agents[: c.elites] if len(e["losses"]) < c.max_evals]

    def _new_seeds(self, n: int) -> list[int]:
        return [int(s) for s in self.rng.integers(0, SEED_BOUND, size=n)]

    def _ask(self, n: int) -> Population:
        c = self.config
        if not self.agents:
            genomes = [((seed, 0.0),) for seed in self._new_seeds(n)]
            entries = [{"genome": g, "id": None, "losses": []} for g in genomes]
        else:
            due = self._due_elites()
            children = max(0, n - len(due))
            chosen = self.rng.integers(0, len(self.agents), size=children)
            seeds = self._new_seeds(children)
            entries = [
                {"genome": self.agents[i]["genome"] + ((seed, c.sigma),), "id": None,
                 "losses": []}
                for i, seed in zip(chosen.tolist(), seeds)
            ]
            entries += due[: n - children]
        ids = []
        for entry in entries:
            if entry["id"] is None:
                entry["id"] = int(self.new_ids(1)[0])
            ids.append(entry["id"])
        self.asked = entries
        return LazyPopulation(
            [e["genome"] for e in entries], self.decoder, torch.tensor(ids, dtype=torch.int64)
        )

    def _tell(self, pop: Population, losses: torch.Tensor) -> None:
        c = self.config
        elite_ids = {e["id"] for e in self.agents[: c.elites]}
        children = []
        for entry, loss in zip(self.asked, losses.tolist()):
            entry["losses"] = [*entry["losses"], loss]
            if entry["id"] not in elite_ids:
                children.append(entry)
        self.asked = None
        elites = self.agents[: c.elites]
        children.sort(key=_fitness)
        self.agents = sorted(elites + children[: c.parents - len(elites)], key=_fitness)

    def accept_state_version(self, version: int) -> str | None:
        if version == 1 and self.space.sample_init is None:
            return None  # initial() + sigma * noise(seed) then and now
        if version == 1:
            return ("version 1 made an agent's initial weights without the space's "
                    "sample_init; version 2 draws them from it, so the run's agents would change")
        return super().accept_state_version(version)

    def keep_candidate(self, pop: Population, index: int) -> LazyGenome:
        # The best single episode is kept as a genome (a few pairs), never as weights, so a
        # checkpoint of a 1.7M-weight agent stays kilobytes.
        return pop.genomes[index]

    def best_genome(self) -> LazyGenome | None:
        """The genome ``recommend()`` decodes: the parent with the best mean loss."""
        return self.agents[0]["genome"] if self.agents else None

    def _recommend(self) -> torch.Tensor:
        """The top parent by mean loss over its episodes (an elite once re-evaluated)."""
        genome = self.best_genome()
        return self.space.initial() if genome is None else self.decoder.decode(genome)


def _fitness(entry: dict) -> float:
    return sum(entry["losses"]) / len(entry["losses"])


@hookimpl
def evoreg_register_optimizers(register):
    register("atari-ga", AtariGA, family="weights")
