"""The NES family: categorical NES (thesis ch. 8), SNES and OpenAI-ES.

Expected values are computed by hand here from the papers' formulas, not by calling the
plugins' own helpers.
"""

import math

import pytest
import torch

import evoreg
from evoreg import Categorical, Real
from evoreg.checkpoint import dumps, loads
from evoreg.plugins import openai_es
from evoreg.plugins.nes import linear_utilities
from evoreg.plugins.openai_es import centred_ranks
from evoreg.plugins.snes import log_rank_utilities


def _tell_choices(opt, choices, losses):
    """Tell ``opt`` that the assignments ``choices`` scored ``losses`` (a population it
    asked, whose sampled values are replaced by known ones)."""
    pop = opt.ask(len(choices))
    pop._values = torch.tensor(choices)
    opt.tell(pop, torch.tensor(losses))


# ------------------------------------------------------------------ categorical NES
def test_categorical_update_matches_a_hand_computed_example():
    # slots of 3 and 2 choices: pi = [1/3, 1/3, 1/3] and [1/2, 1/2]
    opt = evoreg.make_optimizer("nes", Categorical([3, 2]), eta=0.3)
    # losses 1, 3, 2: the first sample is best (u = +1), the third middle (0), the second
    # worst (-1).
    _tell_choices(opt, [[0, 1], [2, 0], [0, 0]], [1.0, 3.0, 2.0])
    # slot 0: sum_i u_i onehot(a_i) = [1, 0, -1], sum_i u_i = 0, so the gradient is
    # [1, 0, -1] / 3 and pi = 1/3 + 0.3 * [1, 0, -1] / 3 = [0.4333, 0.3333, 0.2333].
    # slot 1: sum_i u_i onehot(a_i) = [-1, 1], gradient [-1, 1] / 3, pi = [0.4, 0.6].
    expected = torch.tensor([[1 / 3 + 0.1, 1 / 3, 1 / 3 - 0.1], [0.4, 0.6, 0.0]],
                            dtype=torch.float64)
    torch.testing.assert_close(opt.pi, expected)


def test_probabilities_are_clamped_at_min_prob_and_renormalised():
    # eta 1 with the best sample on choice 0 and the worst on choice 1: pi = [1, 0] before
    # the clamp, [1, 0.001] / 1.001 after. The second slot has one choice: it stays [1, 0]
    # (its padded entry is no choice and is never clamped up).
    opt = evoreg.make_optimizer("nes", Categorical([2, 1]), eta=1.0)
    _tell_choices(opt, [[0, 0], [1, 0]], [0.0, 1.0])
    expected = torch.tensor([[1 / 1.001, 0.001 / 1.001], [1.0, 0.0]], dtype=torch.float64)
    torch.testing.assert_close(opt.pi, expected)
    assert (opt.ask(200).values[:, 1] == 0).all()


def test_linear_utilities_best_plus_one_worst_minus_one_ties_averaged():
    # 2 (rank - 1) / (lambda - 1) - 1 with rank 1 for the highest loss
    u = linear_utilities(torch.tensor([3.0, 1.0, 2.0, 5.0], dtype=torch.float64))
    torch.testing.assert_close(u, torch.tensor([-1 / 3, 1.0, 1 / 3, -1.0], dtype=torch.float64))
    # two samples tied for best share the utilities of positions 1 and 2: (1 + 0) / 2
    u = linear_utilities(torch.tensor([1.0, 1.0, 2.0], dtype=torch.float64))
    torch.testing.assert_close(u, torch.tensor([0.5, 0.5, -1.0], dtype=torch.float64))
    # equal losses: no preference, pi unchanged
    opt = evoreg.make_optimizer("nes", Categorical([3] * 4))
    before = opt.pi.clone()
    pop = opt.ask()
    opt.tell(pop, torch.ones(len(pop)))
    torch.testing.assert_close(opt.pi, before)


def test_recommend_is_the_argmax_per_slot():
    opt = evoreg.make_optimizer("nes", Categorical([3, 2, 4]))
    opt.pi = torch.tensor([[0.2, 0.5, 0.3, 0], [0.9, 0.1, 0, 0], [0.1, 0.2, 0.3, 0.4]],
                          dtype=torch.float64)
    assert opt.recommend().tolist() == [1, 0, 3]


def test_nes_refuses_real_spaces():
    with pytest.raises(evoreg.EvoregError, match="Categorical"):
        evoreg.make_optimizer("nes", Real(3))


# ------------------------------------------------------------------ SNES
def test_snes_log_rank_utilities():
    # lambda = 4: max(0, ln 3 - ln k) = [ln 3, ln 3 - ln 2, 0, 0], divided by their sum,
    # minus 1/4; the order of the losses is [2nd, 1st, 3rd, 4th]
    weights = [math.log(3), math.log(3) - math.log(2), 0.0, 0.0]
    by_position = [w / sum(weights) - 0.25 for w in weights]
    expected = [by_position[1], by_position[0], by_position[2], by_position[3]]
    u = log_rank_utilities(torch.tensor([2.0, 1.0, 3.0, 4.0], dtype=torch.float64))
    torch.testing.assert_close(u, torch.tensor(expected, dtype=torch.float64))
    assert abs(float(u.sum())) < 1e-12


def test_snes_defaults_follow_the_paper():
    opt = evoreg.make_optimizer("snes", Real(100, sigma=0.5))
    assert opt.default_popsize == 4 + int(3 * math.log(100)) == 17
    assert opt.lr_sigma == pytest.approx((3 + math.log(100)) / (5 * 10))
    assert torch.equal(opt.sigma, torch.full((100,), 0.5))


@pytest.mark.parametrize("noise_table", [True, False])
def test_snes_tell_uses_exactly_the_noise_of_its_rows(noise_table):
    opt = evoreg.make_optimizer("snes", Real(6), seed=1, noise_table=noise_table)
    for _ in range(3):  # move sigma away from its uniform start
        pop = opt.ask()
        opt.tell(pop, (pop.values - 1).pow(2).sum(1))
    mean, sigma = opt.mean.clone(), opt.sigma.clone()
    pop = opt.ask()
    s = opt.shared_table.windows(opt.offsets, 6) if noise_table else opt.samples.clone()
    assert torch.equal(pop.values, torch.addcmul(mean, s, sigma))
    losses = (pop.values - 1).pow(2).sum(1).double()
    opt.tell(pop, losses)
    # the update by hand: utilities from the sorted losses (no ties here)
    n = len(pop)
    weights = [max(0.0, math.log(n / 2 + 1) - math.log(k)) for k in range(1, n + 1)]
    u = torch.empty(n)
    u[losses.argsort()] = torch.tensor([w / sum(weights) - 1 / n for w in weights])
    torch.testing.assert_close(opt.mean, mean + sigma * (u @ s))
    grad_sigma = u @ (s * s - 1)
    torch.testing.assert_close(opt.sigma, sigma * torch.exp(opt.lr_sigma / 2 * grad_sigma))


def _sphere_run(generations, **config):
    opt = evoreg.make_optimizer("snes", Real(10), seed=0, **config)
    for _ in range(generations):
        pop = opt.ask()
        opt.tell(pop, (pop.values - 1).pow(2).sum(1))
    return float((opt.recommend() - 1).pow(2).sum())


def test_snes_converges_on_the_sphere():
    # d = 10, from 0 with sigma 1: a correct SNES is near 1e-9 after 200 generations (2,000
    # evaluations); with its sigma held fixed it stays near the noise level sigma^2 ~ 1.
    assert _sphere_run(200) < 1e-6
    assert _sphere_run(200, lr_sigma=1e-9) > 1e-2


# ------------------------------------------------------------------ OpenAI-ES
@pytest.mark.parametrize("noise_table", [True, False])
def test_openai_es_asks_antithetic_pairs(noise_table):
    opt = evoreg.make_optimizer("openai-es", Real(50, init=torch.linspace(-1, 1, 50)),
                                popsize=8, sigma=0.1, noise_table=noise_table)
    pop = opt.ask()
    assert pop.lazy == noise_table and len(pop) == 8
    eps = opt.shared_table.windows(opt.offsets, 50) if noise_table else opt.noise
    rows, theta = pop.rows(0, 8), opt.theta
    torch.testing.assert_close(rows[0::2], theta + 0.1 * eps, rtol=0, atol=1e-6)
    torch.testing.assert_close(rows[1::2], theta - 0.1 * eps, rtol=0, atol=1e-6)
    torch.testing.assert_close(rows[0::2] + rows[1::2], 2 * theta.expand(4, -1))
    with pytest.raises(evoreg.EvoregError, match="even"):
        opt.ask(3)


@pytest.mark.parametrize("optim", ["adam", "sgd"])
def test_openai_es_from_the_noise_table_matches_dense_noise(optim, monkeypatch):
    # windows read back 3 at a time, as a million-weight network's would be in chunks
    dim = 1000
    monkeypatch.setattr(openai_es, "CHUNK_VALUES", 3 * dim)
    opt = evoreg.make_optimizer("openai-es", Real(dim), popsize=20, optim=optim, seed=5)
    reference = opt.theta.clone()
    make = torch.optim.Adam if optim == "adam" else torch.optim.SGD
    extra = {} if optim == "adam" else {"momentum": 0.9, "dampening": 0.9}
    dense_opt = make([reference], lr=0.01, weight_decay=0.005, **extra)
    generator = torch.Generator().manual_seed(0)
    for _ in range(3):
        pop = opt.ask()
        eps = opt.shared_table.windows(opt.offsets, dim)  # materialised: all 10 at once
        losses = torch.rand(20, generator=generator, dtype=torch.float64)
        # centred ranks by hand: +0.5 for the lowest loss, -0.5 for the highest
        ranks = torch.empty(20)
        ranks[losses.argsort()] = torch.linspace(0.5, -0.5, 20)
        reference.grad = -((ranks[0::2] - ranks[1::2]) @ eps) / 20
        dense_opt.step()
        opt.tell(pop, losses)
        torch.testing.assert_close(opt.theta, reference, rtol=0, atol=1e-6)


def test_openai_es_centred_ranks():
    r = centred_ranks(torch.tensor([3.0, 1.0, 2.0, 5.0], dtype=torch.float64))
    torch.testing.assert_close(r, torch.tensor([-1 / 6, 0.5, 1 / 6, -0.5], dtype=torch.float64))


# ------------------------------------------------------------------ all three
@pytest.mark.parametrize("name, space, config", [
    ("nes", Categorical([3, 2, 4, 4]), {}),
    ("snes", Real(8), {}),
    ("snes", Real(8), {"noise_table": False}),
    ("openai-es", Real(8), {"popsize": 6}),
    ("openai-es", Real(8), {"popsize": 6, "optim": "sgd", "noise_table": False}),
])
def test_state_round_trip_mid_run_continues_identically(name, space, config):
    def losses(values):
        return (torch.as_tensor(values).double() - 1).pow(2).sum(1)

    def steps(opt, k):
        for _ in range(k):
            pop = opt.ask()
            opt.tell(pop, losses(pop.values))
        return opt.recommend()

    opt = evoreg.make_optimizer(name, space, seed=2, **config)
    steps(opt, 4)
    restored = evoreg.make_optimizer(name, space, seed=77, **config)
    restored.load_state_dict(loads(dumps(opt.state_dict())))
    assert torch.equal(steps(opt, 5), steps(restored, 5))
    assert opt.best_loss == restored.best_loss


def test_openai_es_trains_an_mlp_on_digits():
    result = evoreg.run("mnist-weights", "openai-es", budget=1200, seed=0,
                        problem_config={"batch_size": 128}, progress=False, plot=False)
    problem = evoreg.make_problem("mnist-weights", seed=evoreg.runner.derive_seeds(0)[0])
    before = problem.report(problem.space.initial())
    assert result.generations == 30
    assert result.report["test_loss"] < 0.8 * before["test_loss"]
    assert result.report["test_accuracy"] > before["test_accuracy"] + 0.2


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name, space", [
    ("nes", Categorical([3, 5])), ("snes", Real(20)), ("openai-es", Real(20)),
])
def test_runs_on_cuda(name, space):
    opt = evoreg.make_optimizer(name, space, device="cuda")
    for _ in range(3):
        pop = opt.ask()
        opt.tell(pop, torch.as_tensor(pop.values).float().pow(2).sum(1))
    assert torch.as_tensor(opt.recommend()).device.type == "cuda"


def test_openai_es_runs_an_atari_agent_unchanged(tmp_path):
    settings = {
        "seed": 0, "out_dir": tmp_path, "progress": False, "plot": False,
        "problem_config": {"game": "pong", "max_steps": 30, "num_envs": 4, "report_episodes": 1},
        "optimizer_config": {"popsize": 4},
    }
    result = evoreg.run("atari", "openai-es", budget=1, **settings)
    assert result.generations == 1 and result.cost == 4 * 30 * 4
    assert result.recommendation.shape == (1_687_206,)  # Nature-DQN, Pong
