"""Adam: the gradient baseline that LEEA is compared with.

Kingma & Ba, "Adam: A Method for Stochastic Optimization" (ICLR 2015). Defaults follow the
baseline of Prellberg's thesis (2020, ch. 5; jprellberg/gpuea ``baseline.py``): learning
rate 1e-3 on the same 92k-weight MLP, minibatches of 256 (set the problem's ``batch_size``).
The step is ``torch.optim.Adam``'s; one generation is one step on the problem's minibatch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from evoreg import hookimpl
from evoreg.config import bounded
from evoreg.gradient import TorchOptimizerMethod


@dataclass
class Config:
    lr: float = bounded(1e-3, gt=0)  #: learning rate (alpha)
    beta1: float = bounded(0.9, ge=0, lt=1)  #: decay of the first-moment average
    beta2: float = bounded(0.999, ge=0, lt=1)  #: decay of the second-moment average
    eps: float = bounded(1e-8, gt=0)  #: added to the denominator
    weight_decay: float = bounded(0.0, ge=0)  #: L2 penalty


class Adam(TorchOptimizerMethod):
    """Gradient descent with Adam on the problem's minibatch, one step per generation."""

    Config = Config
    citation = "Kingma & Ba (2015), ICLR"

    def make_torch_optimizer(self, params: list[torch.Tensor]) -> torch.optim.Optimizer:
        c = self.config
        return torch.optim.Adam(
            params, lr=c.lr, betas=(c.beta1, c.beta2), eps=c.eps, weight_decay=c.weight_decay
        )


@hookimpl
def evoreg_register_optimizers(register):
    register("adam", Adam, family="gradient baseline")
