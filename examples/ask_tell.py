"""Embedding evoreg's ask/tell in your own loop: a non-differentiable loss and a saved state.

Fits a linear rule ``x @ w + b > 0`` to noisy labels by minimising its error rate (a step
function: no useful gradient), saves the optimizer half-way, loads the state into a fresh
optimizer and continues there, as a job split over two scheduler slots would.
"""

import tempfile
from pathlib import Path

import torch

import evoreg

torch.manual_seed(0)
points = torch.randn(500, 2)
labels = points @ torch.tensor([2.0, -1.0]) + 0.5 + 0.3 * torch.randn(500) > 0


def error_rate(candidates: torch.Tensor) -> torch.Tensor:
    """The loss of each candidate (w1, w2, b): its share of misclassified points, batched."""
    predicted = points @ candidates[:, :2].T + candidates[:, 2] > 0  # [points, candidates]
    return (predicted != labels[:, None]).float().mean(dim=0)


name = "ng:OnePlusOne" if "ng:OnePlusOne" in evoreg.optimizers() else "random-search"
space = evoreg.Real(dim=3, sigma=1.0)  # starts at w = b = 0
optimizer = evoreg.make_optimizer(name, space, popsize=8, seed=0)
for _ in range(30):
    pop = optimizer.ask()
    optimizer.tell(pop, error_rate(pop.values))
print(f"{name}: error rate {optimizer.best_loss:.3f} after 30 generations")

with tempfile.TemporaryDirectory() as folder:
    path = Path(folder) / "optimizer.pt"
    # evoreg's checkpoint file: data, checksummed; nevergrad's pickled state inside it is
    # signed with this user's key, so only files this user saved load without trust=True.
    evoreg.save_checkpoint(optimizer.state_dict(), path)
    resumed = evoreg.make_optimizer(name, space, popsize=8, seed=0)
    resumed.load_state_dict(evoreg.load_checkpoint(path))
for _ in range(30):
    pop = resumed.ask()
    resumed.tell(pop, error_rate(pop.values))
w1, w2, b = resumed.recommend().tolist()
print(f"{name}: error rate {resumed.best_loss:.3f} after 60; w = ({w1:.2f}, {w2:.2f}), b = {b:.2f}")
