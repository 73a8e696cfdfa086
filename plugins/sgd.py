"""Stochastic gradient descent: the baseline whose hyperparameters GO-EA copies.

Robbins & Monro, "A Stochastic Approximation Method" (1951). Defaults follow the SGD of
Kucharavy, Guerraoui & Dolamic, "Evolutionary Algorithms in the Light of SGD" (ALIFE 2023;
chiffa/ALIFE2023_GOEA-SGD ``Environment``): learning rate 0.002, no momentum, minibatches of
32 (set the problem's ``batch_size``). The step is ``torch.optim.SGD``'s; one generation is
one step on the problem's minibatch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from evoreg import hookimpl
from evoreg.config import bounded
from evoreg.gradient import TorchOptimizerMethod


@dataclass
class Config:
    lr: float = bounded(0.002, gt=0)  #: learning rate (eta)
    momentum: float = bounded(0.0, ge=0, lt=1)  #: heavy-ball momentum
    nesterov: bool = False  #: Nesterov momentum (needs momentum > 0)
    weight_decay: float = bounded(0.0, ge=0)  #: L2 penalty

    def __post_init__(self) -> None:
        if self.nesterov and self.momentum == 0:
            raise ValueError("nesterov=True needs momentum > 0")


class SGD(TorchOptimizerMethod):
    """Plain (optionally momentum) gradient descent, one step per generation."""

    Config = Config
    citation = "Robbins & Monro (1951), Annals of Mathematical Statistics 22(3)"

    def make_torch_optimizer(self, params: list[torch.Tensor]) -> torch.optim.Optimizer:
        c = self.config
        return torch.optim.SGD(
            params, lr=c.lr, momentum=c.momentum, nesterov=c.nesterov,
            weight_decay=c.weight_decay,
        )


@hookimpl
def evoreg_register_optimizers(register):
    register("sgd", SGD, family="gradient baseline")
