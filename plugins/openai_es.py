"""OpenAI-ES: antithetic Gaussian sampling, centred ranks and a torch.optim step on the mean.

Salimans, Ho, Chen, Sidor & Sutskever, "Evolution Strategies as a Scalable Alternative to
Reinforcement Learning" (2017), and its code openai/evolution-strategies-starter
(``es_distributed/es.py``, ``optimizers.py``, ``configurations/humanoid.json``). Each
generation draws n/2 noise vectors eps_i (windows of the shared Gaussian noise table, as in
the code's ``SharedNoiseTable``) and asks the mirrored pairs ``theta + sigma eps_i`` (row 2i)
and ``theta - sigma eps_i`` (row 2i + 1): a population of million-weight networks is n/2
window offsets (a ``LazyPopulation``), written out only where an evaluator reads it. The
losses of all n candidates become centred ranks in [-0.5, 0.5] (the best +0.5; equal losses
share their mean rank), and the loss gradient estimate is

    g = -(1/n) sum_i (r(theta + sigma eps_i) - r(theta - sigma eps_i)) eps_i

handed to a ``torch.optim`` optimizer on theta: Adam (lr 0.01, the code's only configured
optimizer) or, with ``optim="sgd"``, SGD with momentum 0.9. Weight decay is applied as in the
code, which steps on ``-g + l2coeff * theta``: torch's coupled ``weight_decay`` adds
``weight_decay * theta`` to the gradient before the step (0.005, humanoid.json).

As in the code, g is NOT divided by sigma (the paper's formula has a factor 1/sigma): the
learning rate and ``weight_decay`` carry that scale, and the code's l2coeff keeps the weight
it had there. Two small differences to the code's own optimizers: torch's Adam adds its eps
to the bias-corrected sqrt(v) (the code to the uncorrected one), and SGD uses
``dampening = momentum`` so that its velocity is the code's average
``v = m v + (1 - m) g`` except on the first step, where torch starts v at g.
The default population is small (20 pairs) for single-machine runs; the paper's runs used
thousands (humanoid.json: 10,000 episodes per generation): set ``popsize`` to your budget.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch

from evoreg import EvoregError, Optimizer, Population, Real, hookimpl, statecodec
from evoreg.config import bounded
from evoreg.plugins.nes import tie_averaged
from evoreg.population import Decoder, LazyPopulation

CHUNK_VALUES = 2**24  # noise values read at once when summing the weighted windows (64 MiB)


def centred_ranks(losses: torch.Tensor) -> torch.Tensor:
    """Ranks scaled to [-0.5, 0.5]: +0.5 for the lowest loss, -0.5 for the highest."""
    n = len(losses)
    return tie_averaged(losses, torch.linspace(0.5, -0.5, n, dtype=torch.float64,
                                               device=losses.device))


@dataclass
class Config:
    popsize: int = bounded(40, ge=2)  #: n, candidates per generation (n/2 mirrored pairs)
    sigma: float = bounded(0.02, gt=0)  #: std of the perturbations (noise_stdev)
    lr: float = bounded(0.01, gt=0)  #: step size of the torch optimizer (stepsize)
    optim: Literal["adam", "sgd"] = "adam"  #: torch.optim.Adam, or SGD with momentum
    momentum: float = bounded(0.9, ge=0, lt=1)  #: SGD's momentum (optim="sgd" only)
    weight_decay: float = bounded(0.005, ge=0)  #: l2coeff, added as l2coeff * theta to g
    noise_table: bool = True  #: eps from the shared noise table (lazy rows), else fresh normals

    def __post_init__(self) -> None:
        if self.popsize % 2:
            raise ValueError(f"popsize must be even (mirrored pairs), got {self.popsize}")


class OpenAIES(Optimizer):
    """Mirrored Gaussian perturbations of theta, centred ranks, a torch.optim step."""

    Config = Config
    citation = "Salimans, Ho, Chen, Sidor & Sutskever (2017), arXiv:1703.03864"
    spaces = (Real,)
    generational = True
    smaller_ask = False  # a generation is mirrored pairs: ask(n) needs an even n
    # Saved through its own state_dict (tensors and numbers), so a checkpoint stays data.
    transient = ("torch_optimizer",)

    def setup(self) -> None:
        self.theta = self.space.initial().to(self.device)
        self.offsets: torch.Tensor | None = None  # eps of the latest ask: table offsets ...
        self.noise: torch.Tensor | None = None  # ... or the normals themselves (no table)
        self.torch_optimizer = self.make_torch_optimizer()

    def make_torch_optimizer(self) -> torch.optim.Optimizer:
        c = self.config
        if c.optim == "adam":
            return torch.optim.Adam([self.theta], lr=c.lr, weight_decay=c.weight_decay)
        return torch.optim.SGD([self.theta], lr=c.lr, momentum=c.momentum,
                               dampening=c.momentum, weight_decay=c.weight_decay)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(),
                "torch_optimizer": statecodec.snapshot(self.torch_optimizer.state_dict())}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)  # a new self.theta: the torch optimizer must step it
        self.torch_optimizer = self.make_torch_optimizer()
        self.torch_optimizer.load_state_dict(statecodec.revive(state["torch_optimizer"]))

    def _ask(self, n: int) -> Population:
        if n % 2:
            raise EvoregError(f"{self.name} asks mirrored pairs: n must be even, not {n}")
        dim, pairs, sigma = self.space.dim, n // 2, self.config.sigma
        table = self.shared_table
        if table is None:
            self.noise = torch.randn(pairs, dim, generator=self.generator, device=self.device)
            signed = torch.stack([self.noise, -self.noise], 1).reshape(n, dim)
            return Population(torch.add(self.theta, signed, alpha=sigma))
        self.offsets = table.offsets(pairs, dim, self.generator)
        genomes = [((0, 0.0), (offset, s)) for offset in self.offsets.tolist()
                   for s in (sigma, -sigma)]
        # base 0 is a copy of theta (theta moves after tell); row 2i + (0 or 1) = theta +- eps_i
        decoder = Decoder(dim, bases=self.theta.unsqueeze(0).clone(), table=table,
                          device=self.device)
        return LazyPopulation(genomes, decoder)

    def _tell(self, pop: Population, losses: torch.Tensor) -> None:
        ranks = centred_ranks(losses).float()
        weights = ranks[1::2] - ranks[0::2]  # r(theta - sigma eps) - r(theta + sigma eps)
        gradient = self.weighted_noise(weights) / len(losses)
        self.theta.grad = gradient
        self.torch_optimizer.step()
        self.theta.grad = None
        self.offsets = self.noise = None

    def weighted_noise(self, weights: torch.Tensor) -> torch.Tensor:
        """``sum_i weights[i] eps_i`` over the latest ask's noise, read in chunks of windows
        so that a million-weight network never holds all its eps at once."""
        if self.noise is not None:
            return weights @ self.noise
        table, dim = self.shared_table, self.space.dim
        total = torch.zeros(dim, device=self.device)
        step = max(1, CHUNK_VALUES // dim)
        for start in range(0, len(weights), step):
            eps = table.windows(self.offsets[start : start + step], dim)
            total.addmv_(eps.T, weights[start : start + step])
        return total

    def _recommend(self) -> torch.Tensor:
        """theta: the mean of the search distribution."""
        return self.theta.clone()


@hookimpl
def evoreg_register_optimizers(register):
    register("openai-es", OpenAIES, family="nes")
