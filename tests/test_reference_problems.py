"""The reference problems start where the standard benchmarks do, and every optimizer of the
demo moves from its first evaluation."""

from __future__ import annotations

import importlib.util
import sys
import warnings
from pathlib import Path

import pytest
import torch

import evoreg
from evoreg.problems.rastrigin import DOMAIN

DEMO = Path(__file__).resolve().parents[1] / "examples" / "demo.py"


def _demo_args():
    spec = importlib.util.spec_from_file_location("evoreg_demo", DEMO)
    demo = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = demo  # its dataclass looks its module up while being made
    try:
        spec.loader.exec_module(demo)
    finally:
        del sys.modules[spec.name]
    return demo.Args()


def _demo_runs() -> list[tuple[str, dict]]:
    """(optimizer, config) of every run `make demo` makes: part 1's on rastrigin and sphere,
    part 2's (leea, goea, adam) with their settings."""
    args = _demo_args()
    runs = [(name, {"budget": args.budget} if name.startswith("ng:") else {})
            for name in args.optimizers]
    runs += [(name, config) for name, _, _, config in args.weight_runs]
    return runs


def test_rastrigin_starts_uniformly_in_its_domain_from_the_problem_seed():
    starts = [evoreg.make_problem("rastrigin", seed=s, dim=50).space.initial() for s in (0, 0, 1)]
    assert torch.equal(starts[0], starts[1]) and not torch.equal(starts[0], starts[2])
    assert starts[0].abs().max() <= DOMAIN and starts[0].abs().max() > 0.8 * DOMAIN
    assert abs(float(starts[0].mean())) < 1.5  # centred, not on one side
    problem = evoreg.make_problem("rastrigin", seed=0, dim=50)
    assert problem.space.sigma == DOMAIN / 2
    # Not a local minimum: the gradient at the start is far from zero (the old start, 0 with
    # optimum 1, had |gradient| about 0.6 per coordinate against about 40 here).
    gradient = problem.gradients(problem.space.initial().unsqueeze(0))[0]
    assert float(gradient.abs().mean()) > 5


@pytest.mark.parametrize("problem, dim", [("rastrigin", 10), ("sphere", 20)])
@pytest.mark.parametrize("name, config", [pytest.param(*run, id=run[0]) for run in _demo_runs()])
def test_every_demo_optimizer_improves_on_its_first_evaluation(problem, dim, name, config):
    built = evoreg.make_problem(problem, seed=evoreg.runner.derive_seeds(0)[0], dim=dim)
    first: list[float] = []
    evaluate = built.evaluate

    def recording(pop, **kwargs):
        evaluation = evaluate(pop, **kwargs)
        if not first:
            first.append(float(evaluation.losses[0]))
        return evaluation

    built.evaluate = recording
    budget = 400
    if "budget" in config:
        config = {**config, "budget": budget}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = evoreg.run(built, name, budget, seed=0, progress=False, plot=False,
                            optimizer_config=config)
    # From rastrigin's former start (a local minimum) ng:OnePlusOne never improved and
    # ng:CMA ended at 9.997 of 10.
    assert result.best_loss < 0.9 * first[0], (name, first[0], result.best_loss)
