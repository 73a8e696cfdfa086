"""Property tests of the core's bookkeeping (hypothesis)."""

import math
import warnings

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import evoreg
from evoreg import LazyPopulation

losses_lists = st.lists(
    st.lists(
        st.one_of(st.floats(allow_nan=False, allow_infinity=False), st.just(float("nan")),
                  st.just(float("inf"))),
        min_size=3, max_size=3,
    ),
    min_size=1, max_size=6,
)


@settings(max_examples=40, deadline=None)
@given(losses_lists)
def test_best_loss_is_the_minimum_of_the_finite_losses_told(generations):
    opt = evoreg.make_optimizer("random-search", evoreg.Real(2), popsize=3)
    told = []
    for losses in generations:
        pop = opt.ask()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # NaN/inf: tested elsewhere
            opt.tell(pop, losses)
        told += [value for value in losses if math.isfinite(value)]
    # The optimizer keeps the losses as told (float64): every finite float, 1e308 included.
    assert opt.best_loss == min(told, default=float("inf"))
    assert opt.generation == len(generations)


@settings(max_examples=25, deadline=None)
@given(
    st.integers(1, 40),
    st.integers(1, 9),
    st.lists(st.integers(0, 2**40), min_size=1, max_size=12),
)
def test_lazy_rows_do_not_depend_on_chunking(dim, chunk, seeds):
    n = len(seeds)
    parents = torch.arange(2 * dim, dtype=torch.float32).reshape(2, dim)
    pop = LazyPopulation.around(
        parents,
        parent_index=torch.tensor([i % 2 for i in range(n)]),
        seeds=torch.tensor(seeds),
        sigmas=torch.linspace(0, 1, n),
    )
    assert torch.equal(torch.cat([rows for _, rows in pop.chunks(chunk)]), pop.values)
