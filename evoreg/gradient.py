"""Gradient baselines as optimizers: one candidate (the current weights) per generation.

A gradient method asks for its current point, is told the loss and its gradient there (an
``Evaluation`` with gradients, or ``tell(pop, losses, gradients=...)``; ``evoreg.run`` asks
problems with ``provides_gradients`` for them, as ``evaluate_with`` says) and takes one step
of a ``torch.optim`` optimizer, so evolutionary results can be stated as ratios to gradient
training on the same model, data and budget.
"""

from __future__ import annotations

from typing import Any

import torch

from . import statecodec
from .errors import EvoregError
from .optimizer import Optimizer
from .population import Population
from .spaces import Real


class TorchOptimizerMethod(Optimizer):
    """Base of ``adam`` and ``sgd``: a plugin writes only ``make_torch_optimizer``."""

    spaces = (Real,)
    respects_bounds = True  # projected: each step is clipped back into the bounds
    evaluate_with = {"gradients": True}
    # Saved through its own state_dict (tensors and numbers), so a checkpoint stays data.
    transient = ("torch_optimizer",)

    def make_torch_optimizer(self, params: list[torch.Tensor]) -> torch.optim.Optimizer:
        raise NotImplementedError

    @property
    def default_popsize(self) -> int:
        return 1

    def setup(self) -> None:
        self.x = self.space.initial().to(self.device).requires_grad_(True)
        self.torch_optimizer = self.make_torch_optimizer([self.x])

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(),
                "torch_optimizer": statecodec.snapshot(self.torch_optimizer.state_dict())}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)  # a new self.x: the torch optimizer must step it
        self.torch_optimizer = self.make_torch_optimizer([self.x])
        self.torch_optimizer.load_state_dict(statecodec.revive(state["torch_optimizer"]))

    def _ask(self, n: int) -> torch.Tensor:
        if n != 1:
            raise EvoregError(f"{self.name} follows one point: ask() or ask(1), not ask({n})")
        return self.x.detach().clone().unsqueeze(0)

    def _tell(self, pop: Population, losses: torch.Tensor) -> None:
        self.x.grad = pop.evaluation.gradients[0].clone()
        self.torch_optimizer.step()
        if self.space.bounded:
            with torch.no_grad():
                self.x.copy_(self.space.clip(self.x))

    def _recommend(self) -> Any:
        # The trained weights, not the best minibatch loss seen: minibatch losses are noisy.
        return self.x.detach().clone()
