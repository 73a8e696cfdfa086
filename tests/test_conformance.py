"""One test suite that every registered optimizer must pass (plus a sample of ng: names).

A new plugin is picked up here automatically: register it and run pytest.
"""

import copy
import io

import numpy as np
import pytest
import torch

import evoreg
from evoreg import Categorical, EvoregError, Genome, Real

NEVERGRAD_SAMPLE = ["ng:OnePlusOne", "ng:CMA", "ng:NGOpt", "ng:TwoPointsDE", "ng:RandomSearch"]


def _names() -> list[str]:
    names = [name for name in evoreg.optimizers() if not name.startswith("ng:")]
    names += [name for name in NEVERGRAD_SAMPLE if name in evoreg.optimizers()]
    return sorted(names)


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


SPACES = {
    "real": lambda: Real(5),
    "categorical": lambda: Categorical([3] * 6),
    "genome": _bit_genome,
}


def _toy_losses(space, values) -> torch.Tensor:
    """A loss for each space kind whose minimum is known (0)."""
    if isinstance(space, Real):
        return (torch.as_tensor(values) - 1.0).pow(2).sum(dim=1)
    if isinstance(space, Categorical):
        return (torch.as_tensor(values) != 2).sum(dim=1).float()
    return torch.tensor([float(12 - sum(bits)) for bits in values])


def _make(name: str, seed: int = 0):
    """The optimizer on the first space kind it accepts, with that space."""
    errors = []
    for kind, make_space in SPACES.items():
        space = make_space()
        try:
            return evoreg.make_optimizer(name, space, seed=seed), space
        except EvoregError as error:
            errors.append(f"{kind}: {error}")
    pytest.fail(f"{name} accepts none of the test spaces: {errors}")


def _toy_gradients(space, values) -> torch.Tensor:
    """The gradient of the Real toy loss, for gradient methods (adam, sgd)."""
    return 2 * (torch.as_tensor(values) - 1.0)


def _tell(opt, space, pop, losses=None):
    losses = _toy_losses(space, pop.values) if losses is None else losses
    if opt.needs_gradients:
        opt.tell(pop, losses, gradients=_toy_gradients(space, pop.values))
    else:
        opt.tell(pop, losses)


def _step(opt, space, n=None):
    pop = opt.ask(n)
    _tell(opt, space, pop)
    return pop


@pytest.fixture(params=_names())
def name(request):
    return request.param


def test_ask_shapes_dtypes_and_ids(name):
    opt, space = _make(name)
    pop = opt.ask()
    n = len(pop)
    assert n >= 1 and pop.ids.shape == (n,) and pop.ids.dtype == torch.int64
    assert len(set(pop.ids.tolist())) == n
    if isinstance(space, Real):
        assert pop.values.shape == (n, space.dim) and pop.values.dtype == torch.float32
        assert torch.isfinite(pop.values).all()
    elif isinstance(space, Categorical):
        assert pop.values.shape == (n, space.dim) and pop.values.dtype == torch.int64
    else:
        assert len(pop.values) == n
    assert len(pop.rows(0, n)) == n


def test_tell_validation(name):
    opt, space = _make(name)
    pop = opt.ask()
    n = len(pop)
    with pytest.raises(EvoregError):
        opt.tell(pop, torch.zeros(n + 1))
    with pytest.raises(EvoregError):
        opt.tell(pop, torch.zeros(n, 2))
    other, _ = _make(name)
    with pytest.raises(EvoregError):
        opt.tell(other.ask(), torch.zeros(n))
    _tell(opt, space, pop)
    with pytest.raises(EvoregError, match="already told"):
        _tell(opt, space, pop, torch.zeros(n))
    assert opt.generation == 1


def test_state_dict_round_trip_gives_the_same_next_ask(name):
    opt, space = _make(name, seed=3)
    for _ in range(3):
        _step(opt, space)
    buffer = io.BytesIO()
    torch.save(opt.state_dict(), buffer)  # as a checkpoint on disk would hold it
    continued = opt.ask()
    restored, _ = _make(name, seed=99)  # another seed: everything must come from the state
    buffer.seek(0)
    restored.load_state_dict(torch.load(buffer, weights_only=False))
    again = restored.ask()
    assert torch.equal(continued.ids, again.ids)
    if isinstance(space, Genome):
        assert continued.values == again.values
    else:
        assert torch.equal(continued.values, again.values)
    assert restored.best_loss == opt.best_loss and restored.generation == opt.generation
    # The restored copy keeps working.
    _tell(restored, space, again)


def test_improves_with_a_fixed_seed(name):
    opt, space = _make(name, seed=0)
    start = space.initial().unsqueeze(0) if isinstance(space, Real) else None
    first = _step(opt, space)
    baseline = (
        float(_toy_losses(space, start)[0]) if start is not None
        else float(_toy_losses(space, first.values).median())
    )
    evaluations = len(first)
    while evaluations < 600:
        evaluations += len(_step(opt, space))
    assert opt.best_loss < 0.8 * baseline, f"{name}: {opt.best_loss} vs start {baseline}"
    assert opt.recommend() is not None


def test_recommend_is_a_candidate_of_the_space(name):
    opt, space = _make(name)
    _step(opt, space)
    x = copy.deepcopy(opt.recommend())
    if isinstance(space, (Real, Categorical)):
        assert torch.as_tensor(x).shape == (space.dim,)
