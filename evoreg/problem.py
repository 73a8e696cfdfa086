"""The problem base class: what is optimised, how it is scored, and in which unit of cost."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import torch

from .config import NoConfig, make_config
from .devices import resolve_device
from .population import Population
from .spaces import Space


@dataclasses.dataclass
class Evaluation:
    """How one population scored: what ``evaluate`` returns and ``Optimizer.tell`` receives.

    ``losses`` (lower is better) and the ``cost`` in the problem's budget unit. ``gradients``
    (``Tensor[n, d]``) is filled when ``evaluate(pop, gradients=True)`` was asked of a problem
    that provides them. ``candidates`` holds the candidates as the problem left them when it
    changes them while scoring (a Lamarckian problem that trains each network returns the
    trained weights: ``Tensor[n, d]``, or a list of genomes); None when they are unchanged.
    ``info`` values go into the run's log.
    """

    losses: torch.Tensor
    cost: float
    info: dict[str, Any] = dataclasses.field(default_factory=dict)
    gradients: torch.Tensor | None = None
    candidates: Any = None


class Problem:
    """A loss over a search space.

    One ``evaluate`` call is one generation: a noisy problem draws ONE minibatch (or one set
    of episode seeds) for the whole population, so its candidates are compared fairly.
    Subclasses set ``space`` in ``setup()`` and write ``evaluate``; ``report`` gives held-out
    figures for a recommended candidate.
    """

    Config: ClassVar[type] = NoConfig
    citation: ClassVar[str] = ""
    #: What the budget counts: "evaluations", "frames", "epochs", ...
    budget_unit: ClassVar[str] = "evaluations"
    #: True if ``evaluate(pop, gradients=True)`` also returns each candidate's gradient, so
    #: gradient baselines (``adam``, ``sgd``) can run on the problem.
    provides_gradients: ClassVar[bool] = False
    #: How :meth:`merge_evaluations` combines an ``info`` key over the parts of a population
    #: scored separately: "sum", "mean" (weighted by each part's number of candidates),
    #: "min", "max" or "first". See :meth:`merge_evaluations` for keys not listed.
    info_merge: ClassVar[dict[str, str]] = {}
    space: Space

    def __init__(self, *, seed: int = 0, device: str | torch.device = "cpu", **config: Any):
        self.name = getattr(self, "name", type(self).__name__)
        self.config = make_config(self.Config, self.name, config)
        self.seed = int(seed)
        self.device = resolve_device(device)
        self.rng = np.random.default_rng(self.seed)
        self.generator = torch.Generator().manual_seed(self.seed)
        self.setup()

    def setup(self) -> None:
        """Build the space, load data, ... (called once, after the config is set)."""

    def evaluate(self, pop: Population, *, gradients: bool = False) -> Evaluation:
        """Score ``pop``: one generation.

        ``gradients=True`` (asked only of problems with ``provides_gradients``, for optimizers
        that need them) also returns each candidate's gradient. A problem that changes its
        candidates while scoring them returns them in ``Evaluation.candidates``.
        """
        if self.splittable and not gradients:
            return self.evaluate_drawn(pop, self.draw())
        raise NotImplementedError(f"{self.name} does not implement evaluate()")

    # A problem that splits a generation into its shared random draw and the scoring of
    # candidates under it can be evaluated in parts (on Ray workers) with the same result.
    def draw(self) -> dict[str, Any]:
        """The randomness one generation shares (episode seeds, minibatch indices), drawn
        from the problem's random state."""
        raise NotImplementedError(f"{self.name} has no draw() + evaluate_drawn() split")

    def evaluate_drawn(self, pop: Population, draw: dict[str, Any]) -> Evaluation:
        """Score ``pop`` under a generation's ``draw``; must not touch the random state, so
        any part of a population scored anywhere gives the same losses."""
        raise NotImplementedError(f"{self.name} has no draw() + evaluate_drawn() split")

    @property
    def candidate_cost(self) -> float | None:
        """What one candidate costs in ``budget_unit``, when that is known before it is
        evaluated; else None. The runner reads it to keep a run within its budget: with a
        cost per candidate the last generation asks only what the budget leaves (or, for an
        optimizer that takes no smaller ask, the run ends before a generation it cannot pay
        for); without one it asks whole generations and the last may pass the budget.

        By default 1 when the budget counts evaluations and None otherwise: an episode's
        frames are known only once it has ended, and a problem whose cost is per generation
        (one training iteration, whatever the population) gains nothing from a smaller ask.
        A problem whose candidates have a fixed cost in another unit (``architecture``: its
        ``epochs_per_eval`` training epochs) says so here."""
        return 1.0 if self.budget_unit == "evaluations" else None

    @property
    def splittable(self) -> bool:
        """True if the problem implements ``draw`` and ``evaluate_drawn``."""
        return type(self).evaluate_drawn is not Problem.evaluate_drawn

    def merge_evaluations(self, parts: Sequence[Evaluation]) -> Evaluation:
        """One generation's ``Evaluation`` from those of its contiguous parts, in order.

        Losses (gradients, updated candidates) are concatenated and costs summed. An ``info``
        key is merged as ``info_merge`` says; a key not listed there is summed when every part
        gives an int (counts: frames, episodes), averaged weighted by the parts' sizes when
        every part gives a number (means, rates), and otherwise taken from the first part. A
        problem whose info needs more than that overrides this method.
        """
        if not parts:
            raise ValueError("merge_evaluations needs at least one part")
        losses = torch.cat([torch.as_tensor(p.losses).cpu() for p in parts])
        gradients = None
        if all(p.gradients is not None for p in parts):
            gradients = torch.cat([p.gradients.cpu() for p in parts])
        candidates = None
        if all(p.candidates is not None for p in parts):
            candidates = _concatenate([p.candidates for p in parts])
        sizes = [len(p.losses) for p in parts]
        info: dict[str, Any] = {}
        for key in dict.fromkeys(k for p in parts for k in p.info):
            values = [_plain_number(p.info.get(key)) for p in parts]
            info[key] = _merge_info(key, values, sizes, self.info_merge.get(key))
        cost = sum(float(p.cost) for p in parts)
        return Evaluation(losses, cost=cost, info=info, gradients=gradients, candidates=candidates)

    def report(self, x: Any) -> dict[str, Any]:
        """Held-out figures for candidate ``x`` (test accuracy, mean score, ...)."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        """The problem's random state (a noisy problem must resume with the same draws)."""
        return {"rng": self.rng.bit_generator.state, "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = state["rng"]
        self.generator.set_state(state["generator"])

    def __repr__(self) -> str:
        return f"{self.name}({self.config})"


def _concatenate(parts: list[Any]) -> Any:
    if all(isinstance(p, torch.Tensor) for p in parts):
        return torch.cat([p.cpu() for p in parts])
    return [candidate for part in parts for candidate in part]


def _plain_number(value: Any) -> Any:
    """A one-element tensor or numpy value as a Python number; anything else unchanged."""
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return value.item()
    if isinstance(value, (np.generic, np.ndarray)) and value.size == 1:
        return value.item()
    return value


def _merge_info(key: str, values: list[Any], sizes: list[int], rule: str | None) -> Any:
    numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
    if rule is None:
        if numbers and all(isinstance(v, int) for v in values):
            rule = "sum"
        else:
            rule = "mean" if numbers else "first"
    if rule == "first":
        return values[0]
    if not numbers:
        raise ValueError(f"info[{key!r}] is merged by {rule!r} but not every part gives a number")
    if rule == "sum":
        return sum(values)
    if rule == "mean":
        return sum(v * n for v, n in zip(values, sizes)) / max(sum(sizes), 1)
    if rule == "min":
        return min(values)
    if rule == "max":
        return max(values)
    raise ValueError(f"info_merge[{key!r}] = {rule!r}; use sum, mean, min, max or first")
