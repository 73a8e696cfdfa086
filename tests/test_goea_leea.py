"""goea and leea do what their papers say: operators, selection, acceptance, schedules."""


import pytest
import torch

import evoreg
from evoreg import EvoregError, Real
from evoreg.checkpoint import dumps, loads
from evoreg.plugins.leea import offspring_counts


def make(name, dim=5, seed=0, **config):
    return evoreg.make_optimizer(name, Real(dim), seed=seed, **config)


def sphere(values):
    return (torch.as_tensor(values) - 1.0).pow(2).sum(dim=1)


def random_losses(n, seed=1):
    return torch.rand(n, generator=torch.Generator().manual_seed(seed))


def leea_second_generation(dim=5, **config):
    """A leea whose first generation is told random losses, and the offspring it asks next."""
    opt = make("leea", dim, **config)
    first = opt.ask()
    opt.tell(first, random_losses(len(first)))
    parents = opt.population.clone()
    return opt, parents, opt.ask()


# ---------------------------------------------------------------------------------- leea
@pytest.mark.parametrize(
    ("popsize", "shares", "counts"),
    [(2000, (0.05, 0.75, 0.20), (100, 1500, 400)), (40, (0.05, 0.75, 0.20), (2, 30, 8))],
)
def test_leea_counts_of_each_kind_match_the_shares(popsize, shares, counts):
    assert offspring_counts(popsize, shares) == counts
    config = dict(zip(("elite_share", "crossover_share", "mutation_share"), shares))
    opt, parents, pop = leea_second_generation(popsize=popsize, **config)
    first, second = opt.children["parents"]
    elites, crossed, mutated = counts
    same = first == second
    assert same[:elites].all() and same[elites + crossed :].all()
    assert len(pop) == popsize and (~same).sum() <= crossed
    assert len(set(pop.ids.tolist())) == popsize


@pytest.mark.parametrize("noise_table", [True, False])
def test_leea_uniform_crossover_children_take_each_weight_from_one_parent(noise_table):
    rate = 0.8
    opt, parents, pop = leea_second_generation(
        dim=300,
        popsize=60,
        elite_share=0,
        crossover_share=1,
        mutation_share=0,
        crossover_rate=rate,
        noise_table=noise_table,
    )
    first, second = opt.children["parents"]
    assert (opt.losses[first] <= opt.losses[second]).all()  # the fitter parent first
    crossed = first != second
    assert crossed.sum() > 50
    a, b, child = parents[first][crossed], parents[second][crossed], pop.values[crossed]
    from_first, from_second = child == a, child == b
    assert (from_first | from_second).all()  # every coordinate is a parent's: no mutation
    share = from_first.float().mean().item()
    assert abs(share - rate) < 0.02, share
    assert torch.equal(pop.values[~crossed], parents[first][~crossed])  # a parent with itself


def test_leea_arithmetic_crossover_children_are_the_weighted_mean():
    opt, parents, pop = leea_second_generation(
        dim=50,
        popsize=30,
        elite_share=0,
        crossover_share=1,
        mutation_share=0,
        crossover="arithmetic",
        crossover_rate=0.3,
    )
    first, second = opt.children["parents"]
    expected = 0.3 * parents[first] + 0.7 * parents[second]
    assert torch.allclose(pop.values, expected, atol=1e-6)
    assert not torch.allclose(pop.values, parents[first])


def test_leea_elites_pass_unchanged_with_their_ids():
    opt = make("leea", 40, popsize=20, elite_share=0.25, crossover_share=0.5, mutation_share=0.25)
    first = opt.ask()
    losses = random_losses(20)
    opt.tell(first, losses)
    best = torch.argsort(losses)[:5]
    pop = opt.ask()
    assert torch.equal(pop.values[:5], first.values[best])  # bit-identical rows
    assert torch.equal(pop.ids[:5], first.ids[best])  # the same candidates, evaluated again
    assert set(pop.ids[5:].tolist()).isdisjoint(first.ids.tolist())


@pytest.mark.parametrize("noise_table", [True, False])
def test_leea_mutation_adds_noise_of_std_sigma_to_a_parent(noise_table):
    opt, parents, pop = leea_second_generation(
        dim=4000,
        popsize=10,
        elite_share=0,
        crossover_share=0,
        mutation_share=1,
        sigma=0.02,
        noise_table=noise_table,
    )
    first, second = opt.children["parents"]
    assert torch.equal(first, second)
    step = pop.values - parents[first]
    assert step.mean().abs() < 0.002
    assert torch.allclose(step.std(dim=1), torch.full((10,), 0.02), rtol=0.05)


def test_leea_parents_come_only_from_the_best_truncation_share():
    opt, parents, pop = leea_second_generation(popsize=100, truncation=0.2)
    pool = torch.argsort(opt.losses)[:20]
    drawn = opt.children["parents"][:, 5:].flatten()  # all but the 5 elites
    assert torch.isin(drawn, pool).all()
    assert len(set(drawn.tolist())) >= 15  # uniform over the whole pool, with replacement


@pytest.mark.parametrize("alpha", [0.3, 1.0])
def test_leea_fitness_inheritance_mixes_inherited_and_measured(alpha):
    opt, parents, pop = leea_second_generation(
        popsize=40, measured_weight=alpha, crossover_rate=0.6
    )
    old = opt.losses.clone()
    first, second = opt.children["parents"]
    inherited = 0.6 * old[first] + 0.4 * old[second]
    same = first == second
    assert torch.allclose(inherited[same], old[first][same])  # elites, mutations: the parent's
    measured = random_losses(40, seed=7)
    opt.tell(pop, measured)
    assert torch.allclose(opt.losses, (1 - alpha) * inherited + alpha * measured)


def test_leea_exponential_decay_schedule():
    opt = make(
        "leea",
        3000,
        popsize=4,
        elite_share=0,
        crossover_share=0,
        mutation_share=1,
        sigma=0.1,
        sigma_schedule="exponential",
        decay_steps=2,
    )
    pop = opt.ask()
    opt.tell(pop, random_losses(4))
    for t in range(4):
        parents = opt.population.clone()
        pop = opt.ask()
        sigma = 0.1 * 0.99 ** (t / 2)
        assert torch.allclose(opt.children["sigmas"], torch.full((4,), sigma))
        first = opt.children["parents"][0]
        steps = (pop.values - parents[first]).std(dim=1)
        assert torch.allclose(steps, torch.full((4,), sigma), rtol=0.06)
        opt.tell(pop, random_losses(4, seed=t))


def test_leea_self_adaptive_sigma_is_inherited_used_then_perturbed():
    opt = make(
        "leea",
        2000,
        popsize=200,
        elite_share=0,
        crossover_share=0.5,
        mutation_share=0.5,
        sigma=0.05,
        sigma_schedule="self-adaptive",
        tau=0.3,
    )
    opt.tell(opt.ask(), random_losses(200))
    for generation in range(3):
        parent_sigmas, parents = opt.sigmas.clone(), opt.population.clone()
        pop = opt.ask()
        first = opt.children["parents"][0]
        mutated = slice(100, 200)  # mutation children use the sigma they inherited
        steps = (pop.values[mutated] - parents[first[mutated]]).std(dim=1)
        assert torch.allclose(steps, parent_sigmas[first[mutated]], rtol=0.08)
        # Then every child's sigma is multiplied by exp(tau * N(0, 1)).
        carried = opt.children["sigmas"]
        log_ratio = (carried[mutated] / parent_sigmas[first[mutated]]).log()
        assert 0.2 < log_ratio.std() < 0.4 and log_ratio.mean().abs() < 0.1
        opt.tell(pop, random_losses(200, seed=generation))
        assert torch.equal(opt.sigmas, carried)
    assert opt.sigmas.std() > 0


@pytest.mark.parametrize("crossover", ["uniform", "arithmetic"])
def test_leea_self_adaptive_sigma_is_inherited_through_crossover(crossover):
    opt, _, _ = leea_second_generation(
        popsize=400,
        elite_share=0,
        crossover_share=1,
        mutation_share=0,
        crossover=crossover,
        crossover_rate=0.7,
        sigma_schedule="self-adaptive",
    )
    opt.sigmas = torch.linspace(0.01, 0.02, 400)  # one sigma per individual, all different
    first, second = opt.children["parents"]
    crossed = first != second
    inherited = opt.child_sigmas(first, second)[crossed]
    a, b = opt.sigmas[first][crossed], opt.sigmas[second][crossed]
    if crossover == "arithmetic":
        assert torch.allclose(inherited, 0.7 * a + 0.3 * b)
    else:
        assert ((inherited == a) | (inherited == b)).all()
        assert abs((inherited == a).float().mean() - 0.7) < 0.08


def test_leea_constant_sigma_stays():
    opt, _, _ = leea_second_generation(popsize=20, sigma=0.003)
    assert torch.equal(opt.children["sigmas"], torch.full((20,), 0.003))


def test_leea_resumes_exactly_with_every_state_in_use():
    config = dict(popsize=30, measured_weight=0.5, sigma_schedule="self-adaptive", sigma=0.1)
    opt = make("leea", 8, seed=4, **config)
    for _ in range(3):
        pop = opt.ask()
        opt.tell(pop, sphere(pop.values))
    saved = dumps(opt.state_dict())
    restored = make("leea", 8, seed=5, **config)
    restored.load_state_dict(loads(saved))
    for _ in range(3):
        a, b = opt.ask(), restored.ask()
        assert torch.equal(a.values, b.values) and torch.equal(a.ids, b.ids)
        opt.tell(a, sphere(a.values))
        restored.tell(b, sphere(b.values))
    assert torch.equal(opt.losses, restored.losses) and torch.equal(opt.sigmas, restored.sigmas)


def test_leea_refuses_other_sizes_and_stale_populations():
    opt = make("leea", popsize=10)
    with pytest.raises(EvoregError, match="popsize=10"):
        opt.ask(7)
    stale = opt.ask()
    fresh = opt.ask()
    opt.tell(fresh, sphere(fresh.values))
    with pytest.raises(EvoregError, match="latest"):
        opt.tell(stale, sphere(stale.values))


def test_leea_improves_on_a_quadratic():
    opt = make("leea", 10, popsize=100, sigma=0.05)
    pop = opt.ask()
    opt.tell(pop, sphere(pop.values))
    start = float(sphere(opt.recommend()[None]))
    for _ in range(60):
        pop = opt.ask()
        opt.tell(pop, sphere(pop.values))
    assert float(sphere(opt.recommend()[None])) < 0.01 * start


# ---------------------------------------------------------------------------------- goea
def test_goea_asks_for_the_parent_first_then_for_n_children():
    space = Real(4, init=torch.arange(4.0))
    opt = evoreg.make_optimizer("goea", space, popsize=6, reevaluate_parent=False)
    first = opt.ask()
    assert torch.equal(first.values, space.initial()[None])
    opt.tell(first, [1.0])
    children = opt.ask()
    assert len(children) == 6 and first.ids[0] not in children.ids


def tell_scripted(opt, losses):
    pop = opt.ask()
    opt.tell(pop, torch.tensor(losses))
    return pop


def test_goea_parent_moves_only_on_strict_improvement():
    opt = make("goea", popsize=4, reevaluate_parent=False)
    start = opt.recommend()
    tell_scripted(opt, [1.0])
    tell_scripted(opt, [1.0, 1.0, 1.0, 1.0])  # ties
    tell_scripted(opt, [2.0, 1.5, 3.0, 1.0])  # worse or tied
    assert torch.equal(opt.recommend(), start)
    pop = tell_scripted(opt, [2.0, 0.999, 3.0, 1.0])
    assert torch.equal(opt.recommend(), pop.values[1]) and opt.parent_loss == pytest.approx(0.999)


@pytest.mark.parametrize(("accept", "chosen"), [("first", 1), ("best", 3)])
def test_goea_accept_first_or_best(accept, chosen):
    opt = make("goea", popsize=5, accept=accept, reevaluate_parent=False)
    tell_scripted(opt, [1.0])
    pop = tell_scripted(opt, [1.0, 0.8, 1.2, 0.3, 0.5])
    assert torch.equal(opt.recommend(), pop.values[chosen])


def test_goea_reevaluate_parent_puts_the_parent_first_with_its_id():
    opt = make("goea", popsize=3)  # the reference's default: parent re-evaluated
    pop = tell_scripted(opt, [1.0, 2.0, 3.0, 4.0])  # parent and children from the start
    assert len(pop) == 4 and torch.equal(pop.values[0], opt.space.initial())
    parent_id = pop.ids[0]
    pop = tell_scripted(opt, [5.0, 3.0, 6.0, 7.0])  # worse than 1.0, better than the parent now
    assert pop.ids[0] == parent_id and opt.parent_loss == 3.0
    moved_to = (pop.ids[1], pop.values[1])
    pop = opt.ask()
    assert pop.ids[0] == moved_to[0] and torch.equal(pop.values[0], moved_to[1])
    assert len(set(pop.ids.tolist())) == 4


@pytest.mark.parametrize("noise_table", [True, False])
def test_goea_children_are_the_parent_plus_noise_of_std_sigma(noise_table):
    opt = make("goea", dim=20000, popsize=4, noise_table=noise_table, reevaluate_parent=False)
    tell_scripted(opt, [1.0])
    pop = opt.ask()
    steps = pop.values - opt.parent
    assert torch.allclose(steps.std(dim=1), torch.full((4,), 0.01), rtol=0.03)
    assert steps.mean().abs() < 1e-3


def test_goea_alg1_moves_several_times_in_one_generation():
    """Alg. 1: after a move, the generation's later candidates are drawn around the new parent."""
    opt = make("goea", popsize=6, accept="first")  # parent re-evaluated in every batch
    pop = tell_scripted(opt, [1.0, 2.0, 0.9, 5.0, 0.1, 0.2, 0.3])  # moves at candidate 2 of 6
    assert len(pop) == 7 and opt.tried == 2 and opt.moves == 1
    assert torch.equal(opt.recommend(), pop.values[2])
    first_parent = pop.values[2]
    pop = opt.ask()  # the remaining 4 candidates, around the new parent (first in the batch)
    assert len(pop) == 5 and torch.equal(pop.values[0], first_parent)
    assert pop.ids[0] == opt.parent_id[0]
    steps = pop.values[1:] - first_parent
    assert steps.abs().max() < 0.1  # drawn around the new parent, sigma 0.01
    opt.tell(pop, torch.tensor([0.9, 0.95, 0.5, 0.4, 0.3]))  # second move, same generation
    assert opt.moves == 2 and opt.tried == 4 and torch.equal(opt.recommend(), pop.values[2])
    pop = opt.ask()
    assert len(pop) == 3  # parent + the generation's last 2 candidates
    opt.tell(pop, torch.tensor([0.5, 0.6, 0.7]))
    assert opt.tried == 0 and opt.moves == 2 and len(opt.ask()) == 7  # a new generation


def test_goea_alg1_strictly_sequential_batches_of_one():
    opt = make("goea", popsize=3, accept="first", first_batch=1, reevaluate_parent=False)
    tell_scripted(opt, [1.0])
    sizes = []
    for losses in ([1.2], [0.9], [0.8], [2.0]):  # two moves in the first generation
        sizes.append(len(tell_scripted(opt, losses)))
    assert sizes == [1, 1, 1, 1] and opt.moves == 2 and opt.tried == 1
    assert opt.parent_loss == pytest.approx(0.8)


def test_goea_best_compares_children_with_the_parent_of_the_same_batch():
    """Default (reevaluate_parent): a child better than the parent's old loss but worse than
    the parent's loss on this batch does not move it."""
    opt = make("goea", popsize=2)
    tell_scripted(opt, [1.0, 2.0, 3.0])
    start = opt.recommend()
    tell_scripted(opt, [0.1, 0.5, 0.6])  # this batch is easier: children beat 1.0, not 0.1
    assert torch.equal(opt.recommend(), start) and opt.parent_loss == pytest.approx(0.1)


def test_goea_improves_on_a_quadratic():
    opt = make("goea", 10, sigma=0.05)
    start = float(sphere(opt.recommend()[None]))
    for _ in range(150):
        pop = opt.ask()
        opt.tell(pop, sphere(pop.values))
    assert float(sphere(opt.recommend()[None])) < 0.01 * start


# ------------------------------------------------------------------------ hyperparameters
@pytest.mark.parametrize(
    ("name", "config", "message"),
    [
        ("leea", {"elite_share": 0.1}, r"sum to 1 \(within 1e-6\)"),
        ("leea", {"mutation_share": -0.05, "crossover_share": 1.0}, r"must be in \[0, 1\]"),
        (
            "leea",
            {"popsize": 5, "elite_share": 0.1, "crossover_share": 0.5, "mutation_share": 0.4},
            "does not sum to popsize",
        ),
        ("leea", {"sigma": 0.0}, "sigma must be > 0"),
        ("leea", {"popsize": 1}, "popsize must be >= 2"),
        ("leea", {"truncation": 0.0}, r"truncation must be in \(0, 1\]"),
        ("leea", {"truncation": 1.5}, r"truncation must be in \(0, 1\]"),
        ("leea", {"measured_weight": -0.1}, r"measured_weight must be in \[0, 1\]"),
        ("leea", {"measured_weight": 1.1}, r"measured_weight must be in \[0, 1\]"),
        ("leea", {"crossover_rate": 2.0}, r"crossover_rate must be in \[0, 1\]"),
        ("leea", {"crossover": "one-point"}, "'uniform', 'arithmetic'"),
        ("leea", {"sigma_schedule": "cyclic"}, "'constant', 'exponential', 'self-adaptive'"),
        ("leea", {"tau": 0.0}, "tau must be > 0"),
        ("leea", {"decay_steps": -1.0}, "decay_steps must be > 0"),
        ("goea", {"sigma": -0.01}, "sigma must be > 0"),
        ("goea", {"popsize": 0}, "popsize must be >= 1"),
        ("goea", {"accept": "worst"}, "'best', 'first'"),
    ],
)
def test_bad_hyperparameters_are_refused_with_the_range(name, config, message):
    with pytest.raises(EvoregError, match=message):
        make(name, **config)


def test_leea_shares_within_the_tolerance_are_accepted():
    opt = make("leea", popsize=20, elite_share=0.05 + 5e-7)
    assert opt.counts == (1, 15, 4)
