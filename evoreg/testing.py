"""The conformance checks every optimizer passes, for plugin authors' own test suites.

``check_optimizer("my-es")`` (or ``check_optimizer(MyES)``, a class not registered) runs every
check and raises ``AssertionError`` naming the first that fails. Under pytest, one test per
check::

    from evoreg.testing import conformance

    @conformance(["my-es"])
    def test_conformance(name, check):
        check(name)

Each check builds the optimizer on the first toy space it accepts (``Real(5)``,
``Categorical([3] * 6)``, a 12-bit ``Genome``), as the runner would: seeded, then told the
budget by ``plan``. The checks: ``ask`` gives the right shapes, dtypes, finite values and
unique ids; ``tell`` refuses wrong shapes, foreign and repeated populations; a ``state_dict``
saved and loaded into a fresh optimizer (another seed) gives the same next ``ask``; a fixed
seed improves on a toy loss within 600 evaluations; ``recommend`` is a candidate of the
space; on a bounded ``Real`` space an optimizer with ``respects_bounds`` keeps its candidates
within the bounds, and one without refuses the space in one line; ``evoreg.run`` with a
budget that is no whole number of generations uses it exactly (``smaller_ask``) or stops
less than a generation short of it, never past it.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from .checkpoint import dumps, loads
from .errors import EvoregError
from .optimizer import Optimizer
from .problem import Evaluation, Problem
from .registry import get_registry, make_optimizer
from .spaces import Categorical, Genome, Real, Space

#: The evaluations that ``check_improves`` allows, also the budget told to ``plan``.
BUDGET = 600

OptimizerSpec = str | type[Optimizer]


def _bit_genome() -> Genome:
    """Toy genome: a tuple of 12 bits; mutate flips one."""

    def sample(rng: np.random.Generator) -> tuple:
        return tuple(int(b) for b in rng.integers(0, 2, 12))

    def mutate(bits: tuple, rng: np.random.Generator) -> tuple:
        flipped = list(bits)
        i = int(rng.integers(12))
        flipped[i] = 1 - flipped[i]
        return tuple(flipped)

    return Genome(sample, mutate)


#: The toy spaces, tried in this order.
SPACES: dict[str, Callable[[], Space]] = {
    "real": lambda: Real(5),
    "categorical": lambda: Categorical([3] * 6),
    "genome": _bit_genome,
}


def toy_losses(space: Space, values: Any) -> torch.Tensor:
    """A loss for each space kind whose minimum (0) is known."""
    if isinstance(space, Real):
        return (torch.as_tensor(values) - 1.0).pow(2).sum(dim=1)
    if isinstance(space, Categorical):
        return (torch.as_tensor(values) != 2).sum(dim=1).float()
    return torch.tensor([float(12 - sum(bits)) for bits in values])


def toy_evaluation(space: Space, values: Any) -> Evaluation:
    """The toy losses, with their gradients on ``Real`` (for gradient methods)."""
    losses = toy_losses(space, values)
    gradients = 2 * (torch.as_tensor(values) - 1.0) if isinstance(space, Real) else None
    return Evaluation(losses, cost=float(len(losses)), gradients=gradients)


def make(spec: OptimizerSpec, seed: int = 0) -> tuple[Optimizer, Space]:
    """The optimizer on the first toy space it accepts, planned for ``BUDGET`` evaluations."""
    errors = []
    for kind, make_space in SPACES.items():
        space = make_space()
        try:
            if isinstance(spec, str):
                optimizer = make_optimizer(spec, space, seed=seed)
            else:
                optimizer = spec(space, seed=seed)
        except EvoregError as error:
            errors.append(f"{kind}: {error}")
            continue
        optimizer.plan(BUDGET, "evaluations")
        return optimizer, space
    raise AssertionError(f"{_label(spec)} accepts none of the toy spaces: {errors}")


def _label(spec: OptimizerSpec) -> str:
    return spec if isinstance(spec, str) else spec.__qualname__


def _step(optimizer: Optimizer, space: Space, n: int | None = None):
    pop = optimizer.ask(n)
    optimizer.tell(pop, toy_evaluation(space, pop.values))
    return pop


def _raises(error: type[Exception], call: Callable[[], Any], what: str) -> str:
    try:
        call()
    except error as raised:
        return str(raised)
    raise AssertionError(f"{what} did not raise {error.__name__}")


# --------------------------------------------------------------------------- the checks
def check_ask(spec: OptimizerSpec) -> None:
    """``ask()`` gives n >= 1 candidates of the space's shape and dtype, with unique ids."""
    optimizer, space = make(spec)
    pop = optimizer.ask()
    n = len(pop)
    assert n >= 1, "ask() gave an empty population"
    assert pop.ids.shape == (n,) and pop.ids.dtype == torch.int64, "ids must be int64 [n]"
    assert len(set(pop.ids.tolist())) == n, "ids of one population must be unique"
    if isinstance(space, Real):
        assert pop.values.shape == (n, space.dim) and pop.values.dtype == torch.float32
        assert torch.isfinite(pop.values).all(), "candidates must be finite"
    elif isinstance(space, Categorical):
        assert pop.values.shape == (n, space.dim) and pop.values.dtype == torch.int64
    else:
        assert len(pop.values) == n
    assert len(pop.rows(0, n)) == n


def check_tell(spec: OptimizerSpec) -> None:
    """``tell`` refuses losses of the wrong shape, populations of another optimizer and a
    second tell of one population; one good tell counts one generation."""
    optimizer, space = make(spec)
    pop = optimizer.ask()
    n = len(pop)
    _raises(EvoregError, lambda: optimizer.tell(pop, torch.zeros(n + 1)), "n + 1 losses")
    _raises(EvoregError, lambda: optimizer.tell(pop, torch.zeros(n, 2)), "losses [n, 2]")
    other, _ = make(spec)
    _raises(EvoregError, lambda: optimizer.tell(other.ask(), torch.zeros(n)),
            "a population of another optimizer")
    optimizer.tell(pop, toy_evaluation(space, pop.values))
    message = _raises(EvoregError, lambda: optimizer.tell(pop, toy_evaluation(space, pop.values)),
                      "a second tell of one population")
    assert "already told" in message, message
    assert optimizer.generation == 1


def check_state_round_trip(spec: OptimizerSpec) -> None:
    """A state saved (as a checkpoint holds it) and loaded into a fresh optimizer of another
    seed gives the same next ask, the same best loss, and keeps working."""
    optimizer, space = make(spec, seed=3)
    for _ in range(3):
        _step(optimizer, space)
    saved = dumps(optimizer.state_dict())
    continued = optimizer.ask()
    restored, _ = make(spec, seed=99)  # everything must come from the state
    restored.load_state_dict(loads(saved))
    again = restored.ask()
    assert torch.equal(continued.ids, again.ids), "the restored optimizer asks other ids"
    if isinstance(space, Genome):
        assert continued.values == again.values, "the restored optimizer asks other genomes"
    else:
        assert torch.equal(continued.values, again.values), "the restored one asks other values"
    assert restored.best_loss == optimizer.best_loss
    assert restored.generation == optimizer.generation
    restored.tell(again, toy_evaluation(space, again.values))


def check_improves(spec: OptimizerSpec) -> None:
    """With seed 0, the best loss within ``BUDGET`` evaluations is below 0.8 times the start
    (the space's initial point, or the first population's median)."""
    optimizer, space = make(spec, seed=0)
    start = space.initial().unsqueeze(0) if isinstance(space, Real) else None
    first = _step(optimizer, space)
    baseline = (
        float(toy_losses(space, start)[0]) if start is not None
        else float(toy_losses(space, first.values).median())
    )
    evaluations = len(first)
    while evaluations < BUDGET:
        evaluations += len(_step(optimizer, space))
    assert optimizer.best_loss < 0.8 * baseline, (
        f"best loss {optimizer.best_loss} after {evaluations} evaluations, start {baseline}"
    )
    assert optimizer.recommend() is not None


def check_recommend(spec: OptimizerSpec) -> None:
    """``recommend()`` after one generation is a candidate of the space."""
    optimizer, space = make(spec)
    _step(optimizer, space)
    x = copy.deepcopy(optimizer.recommend())
    if isinstance(space, (Real, Categorical)):
        assert torch.as_tensor(x).shape == (space.dim,), "recommend() is not one candidate"


#: The bounded toy space: the toy loss's minimum (every coordinate 1.0) lies outside it, so an
#: optimizer that improves presses against the upper bound.
BOUNDED = {"lower": -0.5, "upper": 0.25, "sigma": 0.1}


def check_bounds(spec: OptimizerSpec) -> None:
    """On ``Real(5, sigma=0.1)`` bounded to [-0.5, 0.25], an optimizer with
    ``respects_bounds`` keeps every candidate of a few generations and its recommendation
    within the bounds; one without refuses the space at construction in one line."""
    _, toy = make(spec)
    if not isinstance(toy, Real):
        return  # no Real space, no bounds
    space = Real(toy.dim, **BOUNDED)
    try:
        optimizer = make_optimizer(spec, space) if isinstance(spec, str) else spec(space)
    except EvoregError as error:
        assert "bounded" in str(error) and "\n" not in str(error), (
            f"refused a bounded space without saying so in one line: {error}"
        )
        assert not getattr(_class(spec), "respects_bounds", False), (
            f"respects_bounds is True, yet it refused a bounded space: {error}"
        )
        return
    optimizer.plan(BUDGET, "evaluations")
    lower, upper = space.bounds()
    for _ in range(4):
        try:
            pop = optimizer.ask()
        except EvoregError as error:  # the base class found candidates outside the bounds
            raise AssertionError(str(error)) from None
        values = pop.values
        assert bool(((values >= lower) & (values <= upper)).all()), "a candidate left the bounds"
        optimizer.tell(pop, toy_evaluation(space, values))
    x = torch.as_tensor(optimizer.recommend()).cpu()
    assert bool(((x >= lower) & (x <= upper)).all()), "recommend() is outside the bounds"


class ToyProblem(Problem):
    """A toy space and its toy loss as a problem that counts evaluations (with gradients on
    ``Real``), for runs through ``evoreg.run``."""

    provides_gradients = True

    def __init__(self, space: Space) -> None:
        self.toy_space = space
        super().__init__()

    def setup(self) -> None:
        self.space = self.toy_space

    def evaluate(self, pop: Any, *, gradients: bool = False) -> Evaluation:
        return toy_evaluation(self.space, pop.rows(0, len(pop)))


def check_budget(spec: OptimizerSpec) -> None:
    """``evoreg.run`` on the toy problem with a budget of three and a half generations (three
    and one evaluation for a generation of one) never passes it: an optimizer with
    ``smaller_ask`` uses it exactly, one without stops less than a generation short."""
    from .runner import run  # on use: the other checks need no runner

    _, space = make(spec)  # the toy space it accepts; built again, for run() to plan
    optimizer = make_optimizer(spec, space) if isinstance(spec, str) else spec(space)
    size = optimizer.default_popsize
    budget = 3 * size + max(1, size // 2)
    result = run(ToyProblem(space), optimizer, budget, progress=False, plot=False)
    assert result.cost <= budget, f"used {result.cost} evaluations of a budget of {budget}"
    if optimizer.smaller_ask:
        assert result.cost == budget, (
            f"used {result.cost} evaluations of a budget of {budget}, although smaller_ask "
            "says its last generation asks what the budget leaves"
        )
    else:
        assert budget - result.cost < size, (
            f"stopped at {result.cost} evaluations of {budget}, with a generation of {size}"
        )


def _class(spec: OptimizerSpec) -> type:
    if isinstance(spec, str):
        return get_registry().get("optimizer", spec).factory
    return spec


CHECKS: tuple[Callable[[OptimizerSpec], None], ...] = (
    check_ask, check_tell, check_state_round_trip, check_improves, check_recommend,
    check_bounds, check_budget,
)


def check_optimizer(spec: OptimizerSpec) -> None:
    """Run every check on ``spec`` (a registered name or an ``Optimizer`` subclass)."""
    for check in CHECKS:
        try:
            check(spec)
        except AssertionError as failure:
            raise AssertionError(f"{check.__name__} failed for {_label(spec)}: {failure}") from None


def conformance(specs: Sequence[OptimizerSpec]) -> Any:
    """A pytest decorator: the test runs once per (optimizer, check), with arguments
    ``name`` (the spec) and ``check`` (call it with the name)."""
    import pytest  # only the test suites that use this need pytest

    cases = [pytest.param(spec, check, id=f"{_label(spec)}-{check.__name__.removeprefix('check_')}")
             for spec in specs for check in CHECKS]
    return pytest.mark.parametrize(("name", "check"), cases)
