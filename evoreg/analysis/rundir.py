"""The weights a finished run recommends, with the problem they were trained on.

Nothing here executes code from the run directory: ``run.json`` is JSON, and the
checkpoint is read by ``evoreg.checkpoint.load_checkpoint``, which loads data only (pickled
optimizer state, such as nevergrad's, only if this user signed it or ``trust`` is given).
The problem and the optimizer are rebuilt by name from the registry with the run's
configuration and seeds, and the optimizer's saved state gives ``recommend()``, exactly as
the runner computed the run's result.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from evoreg.checkpoint import load_checkpoint
from evoreg.errors import EvoregError
from evoreg.registry import make_optimizer, make_problem
from evoreg.runner import CHECKPOINT_FILE, RESULT_FILE, RUN_FILE, derive_seeds, read_json


@dataclass
class FinishedRun:
    run_dir: Path
    description: dict[str, Any]  #: run.json
    problem: Any
    recommendation: torch.Tensor  #: flat weights
    start: torch.Tensor  #: the run's initial weights (its random start)
    optimizer_config: dict[str, Any]


def load_run(run_dir: str | Path, *, device: str = "cpu", trust: bool = False) -> FinishedRun:
    """The problem and recommended weights of the finished run in ``run_dir``."""
    run_dir = Path(run_dir)
    if not (run_dir / RUN_FILE).is_file():
        raise EvoregError(f"{run_dir} is not a run directory (no {RUN_FILE})")
    if not (run_dir / RESULT_FILE).is_file():
        raise EvoregError(f"the run in {run_dir} has not finished (no {RESULT_FILE}); "
                          "finish it with evoreg run ... --resume")
    description = read_json(run_dir / RUN_FILE, "run")
    try:
        problem_name, optimizer_name = description["problem"], description["optimizer"]
        problem_config = dict(description["problem_config"])
        optimizer_config = dict(description["optimizer_config"])
        problem_seed, optimizer_seed = derive_seeds(int(description["seed"]))
    except (KeyError, TypeError, ValueError) as error:
        raise EvoregError(f"{run_dir / RUN_FILE} is damaged ({error!r})") from None
    problem = make_problem(problem_name, seed=problem_seed, device=device, **problem_config)
    if not hasattr(problem, "splits"):
        raise EvoregError(f"the analyses need a network problem (mnist-weights); "
                          f"{run_dir} ran {problem_name}")
    checkpoint = load_checkpoint(run_dir / CHECKPOINT_FILE, trust=trust, device="cpu")
    optimizer = make_optimizer(optimizer_name, problem.space, seed=optimizer_seed,
                               device="cpu", **optimizer_config)
    try:
        optimizer.load_state_dict(checkpoint["optimizer"])
    except (KeyError, TypeError, ValueError, RuntimeError) as error:
        raise EvoregError(f"{run_dir / CHECKPOINT_FILE} does not hold {optimizer_name}'s "
                          f"state ({type(error).__name__}: {error})") from None
    recommendation = optimizer.recommend()
    if recommendation is None:
        raise EvoregError(f"the run in {run_dir} recommends nothing")
    recommendation = torch.as_tensor(recommendation, dtype=torch.float32).flatten().cpu()
    if len(recommendation) != problem.space.dim:
        raise EvoregError(f"{run_dir}'s recommendation has {len(recommendation)} values; "
                          f"its problem has {problem.space.dim} weights")
    return FinishedRun(run_dir, description, problem, recommendation,
                       problem.space.initial().flatten().cpu(), optimizer_config)
