"""Spaces, populations and the optimizer base class's checks."""

import warnings

import numpy as np
import pytest
import torch

import evoreg
from evoreg import Categorical, EvoregError, LazyPopulation, Population, Real
from evoreg.population import Decoder


def test_real_space_initial_and_validation():
    space = Real(3, init=lambda: torch.tensor([1.0, 2.0, 3.0]))
    assert torch.equal(space.initial(), torch.tensor([1.0, 2.0, 3.0]))
    assert space.validate(torch.zeros(4, 3, dtype=torch.float64), 4).dtype == torch.float32
    with pytest.raises(EvoregError, match=r"shape \(4, 3\)"):
        space.validate(torch.zeros(4, 2), 4)
    with pytest.raises(EvoregError, match="init has 2 values"):
        Real(3, init=torch.zeros(2)).initial()
    with pytest.raises(EvoregError, match="dim must be a positive int"):
        Real(0)


def test_categorical_space_rejects_out_of_range_and_floats():
    space = Categorical([2, 3])
    assert space.validate(torch.tensor([[1, 2]]), 1).dtype == torch.int64
    with pytest.raises(EvoregError, match="outside"):
        space.validate(torch.tensor([[2, 0]]), 1)
    with pytest.raises(EvoregError, match="int64"):
        space.validate(torch.zeros(1, 2), 1)


def test_lazy_population_is_deterministic_and_chunkable():
    parents = torch.randn(3, 50)
    pop = LazyPopulation.around(
        parents,
        parent_index=torch.tensor([0, 1, 2, 0, 1]),
        seeds=torch.tensor([11, 12, 13, 14, 15]),
        sigmas=torch.tensor([0.0, 0.5, 0.5, 0.1, 0.0]),
    )
    whole = pop.values
    assert whole.shape == (5, 50)
    assert torch.equal(whole, pop.values)  # the same values on every call
    assert torch.equal(torch.cat([rows for _, rows in pop.chunks(2)]), whole)
    assert torch.equal(pop.rows(3, 4)[0], whole[3])
    assert torch.equal(whole[0], parents[0]) and torch.equal(whole[4], parents[1])
    expected = parents[0] + 0.1 * evoreg.noise(14, 50)
    assert torch.allclose(whole[3], expected)
    assert not torch.equal(whole[1], parents[1])


def _random_search(space=None, **config):
    return evoreg.make_optimizer("random-search", space or Real(4), seed=0, **config)


def test_ask_gives_fresh_unique_ids():
    opt = _random_search(popsize=6)
    first, second = opt.ask(), opt.ask(3)
    ids = torch.cat([first.ids, second.ids])
    assert ids.dtype == torch.int64 and len(set(ids.tolist())) == 9
    with pytest.raises(EvoregError, match="positive int"):
        opt.ask(0)


def test_tell_rejects_wrong_length_shape_foreign_and_repeated_populations():
    opt = _random_search(popsize=4)
    pop = opt.ask()
    with pytest.raises(EvoregError, match="expected 4 losses"):
        opt.tell(pop, torch.zeros(3))
    with pytest.raises(EvoregError, match=r"shape \(4,\)"):
        opt.tell(pop, torch.zeros(4, 1))
    with pytest.raises(EvoregError, match="not handed out"):
        opt.tell(Population(pop.values.clone()), torch.zeros(4))
    with pytest.raises(EvoregError, match="not handed out"):
        opt.tell(_random_search(popsize=4).ask(), torch.zeros(4))
    opt.tell(pop, [3.0, 1.0, 2.0, 4.0])
    with pytest.raises(EvoregError, match="already told"):
        opt.tell(pop, torch.zeros(4))
    assert opt.generation == 1
    assert opt.best_loss == 1.0
    assert torch.equal(opt.recommend(), pop.values[1])


def test_nan_and_inf_losses_count_as_worst_with_one_warning():
    opt = _random_search(popsize=3)
    pop = opt.ask()
    with pytest.warns(RuntimeWarning, match="NaN/inf"):
        opt.tell(pop, [float("nan"), 5.0, float("-inf")])
    assert opt.best_loss == 5.0
    assert torch.equal(opt.recommend(), pop.values[1])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the warning is given once, not every generation
        opt.tell(opt.ask(), [float("nan"), 1.0, 2.0])
    assert opt.best_loss == 1.0


def test_losses_accept_numpy_lists_and_tensors():
    opt = _random_search(popsize=2)
    opt.tell(opt.ask(), np.array([1.0, 2.0]))
    opt.tell(opt.ask(), torch.tensor([0.5, 2.0], dtype=torch.float64))
    with pytest.raises(EvoregError, match="numbers"):
        opt.tell(opt.ask(), ["a", "b"])
    assert opt.best_loss == 0.5


def test_unknown_and_out_of_range_hyperparameters_are_refused():
    with pytest.raises(EvoregError, match="popsize"):
        _random_search(popsze=3)
    with pytest.raises(EvoregError, match="popsize must be >= 1"):
        _random_search(popsize=0)
    with pytest.raises(EvoregError, match="is not a int"):
        _random_search(popsize="many")


def test_string_hyperparameters_are_converted_by_type():
    opt = _random_search(popsize="7")
    assert opt.config.popsize == 7


def test_state_dict_refuses_another_optimizer():
    state = _random_search().state_dict()
    other = evoreg.make_optimizer("random-search", Real(4))
    other.name = "something-else"
    with pytest.raises(EvoregError, match="cannot load"):
        other.load_state_dict(state)


def test_devices():
    from evoreg.devices import resolve_device

    assert resolve_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    with pytest.raises(EvoregError, match="use 'auto'"):
        resolve_device("tpu")


def test_noise_table_windows():
    from evoreg.gaussian import NoiseTable, table_size_for

    table = NoiseTable(table_size_for(7))
    offsets = table.offsets(6, 7, torch.Generator().manual_seed(0))
    assert offsets.min() >= 0 and offsets.max() <= table.size - 7
    center = torch.arange(7.0)
    rows = table.perturb(center, 0.5, offsets)
    for row, offset in zip(rows, offsets.tolist()):
        assert torch.allclose(row, center + 0.5 * table.values[offset : offset + 7])
    per_row = table.perturb(center, torch.linspace(0, 1, 6), offsets)
    assert torch.equal(per_row[0], center)
    assert NoiseTable(table.size).values is table.values  # one table per process
    with pytest.raises(ValueError, match="cannot hold"):
        table_size_for(100, size=10)


# ----------------------------------------------------------------- Config declarations
def test_config_bounds_types_and_literals_come_from_the_declarations():
    from dataclasses import dataclass
    from typing import Literal

    from evoreg.config import bounded, describe_bounds, make_config

    @dataclass
    class Config:
        popsize: int = bounded(20, ge=1)
        rate: float = bounded(0.5, gt=0, le=1)
        kind: Literal["best", "first"] = "best"
        limit: int | None = bounded(None, ge=0)

    assert make_config(Config, "toy", {"rate": "1", "kind": "first"}).rate == 1.0
    for values, message in [
        ({"popsize": 0}, "toy: popsize must be >= 1, got 0"),
        ({"rate": 0.0}, r"rate must be in \(0, 1\], got 0.0"),
        ({"rate": 1.5}, r"rate must be in \(0, 1\]"),
        ({"kind": "frist"}, "kind='frist' is not one of 'best', 'first'; did you mean 'first'?"),
        ({"popsize": 2.5}, "popsize=2.5 is not a int"),
        ({"popsize": True}, "popsize=True is not a int"),
        ({"limit": -1}, "limit must be >= 0"),
        ({"limit": "x"}, "is not a int | None"),
    ]:
        with pytest.raises(EvoregError, match=message):
            make_config(Config, "toy", values)
    assert make_config(Config, "toy", {"limit": "none"}).limit is None
    fields = {f.name: f for f in __import__("dataclasses").fields(Config)}
    assert describe_bounds(fields["popsize"]) == ">= 1"
    assert describe_bounds(fields["rate"]) == "in (0, 1]"
    assert describe_bounds(fields["kind"]) == ""


def test_a_config_that_is_not_a_dataclass_names_the_fix():
    from evoreg.config import make_config

    class Config:
        popsize = 3

    with pytest.raises(EvoregError, match="my-es: its Config .* must be a class decorated with "
                                          "@dataclasses.dataclass"):
        make_config(Config, "my-es", {})


def test_evoreg_info_shows_each_range():
    from evoreg.cli import describe

    text = describe(evoreg.get_registry().get("optimizer", "leea"))
    line = next(row for row in text.splitlines() if row.strip().startswith("truncation"))
    assert "in (0, 1]" in line and "rho" in line


# ----------------------------------------------------------------- lazy populations
def test_random_search_populations_are_lazy_and_read_into_the_reader_s_buffer():
    opt = _random_search(Real(1000, sigma=0.5), popsize=10)
    pop = opt.ask()
    assert isinstance(pop, LazyPopulation) and len(pop.genomes) == 10
    whole = pop.rows(0, 10)  # a fresh tensor: nobody else writes into it
    buffer = torch.full((4, 1000), float("nan"))
    chunks = []
    for _start, rows in pop.chunks(4, out=buffer):
        assert rows.data_ptr() == buffer.data_ptr()  # written where the reader asked
        chunks.append(rows.clone())
    assert torch.equal(torch.cat(chunks), whole)
    assert torch.equal(pop.values, whole) and pop.values is pop.values  # written once, kept
    table = opt.shared_table
    offset, sigma = pop.genomes[3][1]
    assert sigma == 0.5
    assert torch.equal(whole[3], torch.addcmul(torch.zeros(1000), table.window(offset, 1000),
                                               torch.tensor(0.5)))


def test_decoding_does_not_depend_on_the_chunk_or_the_neighbours():
    table = evoreg.NoiseTable(2**20, seed=4)
    bases = torch.randn(3, 50)
    decoder = Decoder(50, bases=bases, table=table)
    one_term = [((i % 3, 0.0), (17 * i, 0.1 * (i + 1))) for i in range(7)]
    mixed = [*one_term, ((1, 0.0), (5, 0.2), (9, 0.3))]  # a longer genome: the row-by-row path
    fast = decoder.decode_into(one_term, torch.empty(7, 50))
    slow = decoder.decode_into(mixed, torch.empty(8, 50))
    assert torch.equal(fast, slow[:7])
    alone = torch.stack([decoder.decode(g) for g in one_term])
    assert torch.equal(alone, fast)


def test_payloads_ship_the_cheapest_form_and_rebuild_the_same_rows():
    space = Real(40, sample_init=lambda n, g: torch.randn(n, 40, generator=g))
    seeded = LazyPopulation([((s, 0.0), (s + 1, 0.01)) for s in range(6)],
                            Decoder(40, space=space))
    payload = seeded.to_payload(2, 5)
    assert set(payload) == {"genomes", "table"} and len(payload["genomes"]) == 3
    rebuilt = Population.from_payload(payload, space)
    assert torch.equal(rebuilt.rows(0, 3), seeded.rows(2, 5))

    parents = torch.randn(2, 40)
    children = LazyPopulation.around(parents, [0, 1, 1, 0, 1], [1, 2, 3, 4, 5], [0.1] * 5)
    payload = children.to_payload(0, 5)
    assert payload["bases"].shape == (2, 40)  # two parents instead of five rows
    assert torch.equal(Population.from_payload(payload, space).rows(0, 5), children.values)
    assert set(children.to_payload(2, 4)) == {"rows"}  # two rows, two parents: the rows
    dense = Population(torch.randn(3, 40))
    assert torch.equal(Population.from_payload(dense.to_payload(0, 3), space).values, dense.values)


def test_seeded_initial_is_sample_init_from_the_seed_else_initial_plus_sigma_noise():
    plain = Real(8, init=torch.ones(8), sigma=0.5)
    assert torch.equal(plain.seeded_initial(3), torch.ones(8) + 0.5 * evoreg.noise(3, 8))
    drawn = Real(8, sample_init=lambda n, g: torch.rand(n, 8, generator=g))
    assert torch.equal(drawn.seeded_initial(3), torch.rand(1, 8, generator=torch.Generator()
                                                           .manual_seed(3))[0])


# ----------------------------------------------------------------- tell(pop, evaluation)
def test_tell_takes_a_whole_evaluation_with_updated_candidates():
    opt = _random_search(Real(3), popsize=2)
    pop = opt.ask()
    trained = torch.tensor([[9.0, 9.0, 9.0], [4.0, 4.0, 4.0]])
    opt.tell(pop, evoreg.Evaluation(torch.tensor([2.0, 1.0]), cost=2.0, candidates=trained))
    assert torch.equal(opt.recommend(), trained[1])  # the candidate as the problem left it
    assert pop.evaluation.cost == 2.0 and torch.equal(pop.evaluation.candidates, trained)
    bad = opt.ask()
    with pytest.raises(EvoregError, match="the evaluation's candidates: .*shape"):
        opt.tell(bad, evoreg.Evaluation(torch.zeros(2), cost=2.0, candidates=torch.zeros(2, 5)))
    with pytest.raises(EvoregError, match="inside the Evaluation"):
        opt.tell(bad, evoreg.Evaluation(torch.zeros(2), cost=2.0), gradients=torch.zeros(2, 3))


def test_a_generational_optimizer_refuses_an_older_population():
    # parent and children together (reevaluate_parent, the default): 3 candidates an ask
    opt = evoreg.make_optimizer("goea", Real(3), popsize=2)
    older, newer = opt.ask(), opt.ask()
    assert len(older) == len(newer) == 3
    with pytest.raises(EvoregError, match="goea is generational: tell\\(\\) the latest"):
        opt.tell(older, torch.zeros(3))
    opt.tell(newer, torch.zeros(3))


def test_a_state_of_another_version_is_refused_in_one_line():
    opt = evoreg.make_optimizer("atari-ga", Real(4, sample_init=lambda n, g: torch.zeros(n, 4)),
                                popsize=4, parents=2, elites=1)
    state = opt.state_dict()
    state["state_version"] = 1
    with pytest.raises(EvoregError, match="holds version 1 of atari-ga's state .* writes "
                                          "version 2 .*sample_init.* without --resume"):
        opt.load_state_dict(state)
    plain = evoreg.make_optimizer("atari-ga", Real(4), popsize=4, parents=2, elites=1)
    old = plain.state_dict()
    del old["state_version"]  # written before versions: version 1, decoded as before here
    plain.load_state_dict(old)
