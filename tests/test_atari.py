"""The ``atari`` problem (Such et al. 2017; thesis ch. 6): ALE preprocessing, Nature-DQN
weights, one shared episode seed a generation, slot-independent scores, frames as cost."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import evoreg
from evoreg import EvoregError, LazyPopulation, Population
from evoreg.problems.atari import SlotPolicies, game_id

# Ms. Pac-Man: after its ~60-step intro, random agents score differently within 100 steps, so
# equal losses in different arrangements mean something; max_steps cuts every episode short.
GAME, STEPS = "ms_pacman", 100
# These tests are about ale-py's C++ vector environment with one episode seed a generation
# (test_atari_protocol.py covers the reference reset and independent episode seeds).
FAST = {"reset": "ale", "episode_seeds": "shared"}


ONE_TORCH_THREAD = True  # conftest.one_torch_thread


@pytest.fixture(scope="module")
def problem():
    return evoreg.make_problem("atari", game=GAME, **FAST, max_steps=STEPS, num_envs=4, seed=3)


@pytest.fixture(scope="module")
def population(problem):
    return Population(torch.stack([problem.space.seeded_initial(s) for s in range(6)]))


class RecordingPopulation(Population):
    """Records the row ranges the problem materialises."""

    def __init__(self, values: torch.Tensor) -> None:
        super().__init__(values)
        self.calls: list[tuple[int, int]] = []

    def rows(self, start: int, stop: int, out: torch.Tensor | None = None) -> torch.Tensor:
        self.calls.append((start, stop))
        return super().rows(start, stop, out)


def test_observations_are_stacks_of_four_grey_84x84_frames(problem):
    obs, info = problem.env(2).reset(seed=np.array([1, 2]))
    assert obs.shape == (2, 4, 84, 84) and obs.dtype == np.uint8
    assert problem.env(2).single_observation_space.shape == (4, 84, 84)


def test_nature_dqn_parameter_count_for_pong():
    pong = evoreg.make_problem("atari", game="pong")
    layers = [m for m in pong.template.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    counts = [sum(p.numel() for p in m.parameters()) for m in layers]
    assert pong.num_actions == 6
    assert counts == [8224, 32832, 36928, 1606144, 3078]
    assert pong.dim == pong.space.dim == sum(counts) == 1_687_206
    assert pong.budget_unit == "frames" and pong.space.sigma == 0.005


def test_init_rows_have_unit_norm_and_biases_are_zero(problem):
    x = problem.space.seeded_initial(7)
    assert torch.equal(x, problem.space.seeded_initial(7))
    assert not torch.equal(x, problem.space.seeded_initial(8))
    assert torch.equal(problem.space.initial(), problem.space.seeded_initial(0))
    params = evoreg.nets.unflatten_parameters(problem.template, x)
    for name, p in params.items():
        if name.endswith("bias"):
            assert torch.count_nonzero(p) == 0, name
        else:
            norms = p.reshape(p.shape[0], -1).norm(dim=1)
            assert torch.allclose(norms, torch.ones_like(norms), atol=1e-5), name


def test_batched_forward_matches_the_module(problem, population):
    rows = population.rows(0, 3)
    policies = SlotPolicies(problem.template, 3, problem.device)
    policies.load(torch.arange(3), rows)
    obs = torch.randint(0, 256, (3, 4, 84, 84), dtype=torch.uint8)
    with torch.inference_mode():
        batched = policies.logits(obs)
        for i in range(3):
            evoreg.nets.params.load_flat_parameters_(problem.template, rows[i])
            expected = problem.template(obs[i:i + 1].float() / 255)[0]
            torch.testing.assert_close(batched[i], expected, rtol=1e-4, atol=1e-5)


def test_game_names_are_normalised_and_typos_suggest_close_matches():
    assert game_id("frostbite") == game_id("Frostbite") == game_id("ALE/Frostbite-v5")
    assert game_id("MsPacman") == game_id("MsPacmanNoFrameskip-v4") == "ms_pacman"
    with pytest.raises(EvoregError, match="frostbite"):
        evoreg.make_problem("atari", game="frostbyte")


def test_same_candidate_same_draw_same_loss_in_any_slot_or_batch(problem, population,
                                                                 monkeypatch):
    subsets = []
    original_subset = SlotPolicies.subset

    def recording_subset(self, slots):
        subsets.append((self.n, len(slots)))
        return original_subset(self, slots)

    monkeypatch.setattr(SlotPolicies, "subset", recording_subset)
    draw = problem.draw()
    whole = problem.evaluate_drawn(population, draw)
    # 6 candidates in 4 slots: after the refills, 2 slots idle and the forward drops them
    assert subsets == [(4, 2)]
    assert len(set(whole.losses.tolist())) > 1  # the candidates differ, so the check bites
    assert torch.equal(problem.evaluate_drawn(population, draw).losses, whole.losses)
    # reversed order in 3 slots instead of 4: other slots, other neighbours, other refills
    order = torch.arange(5, -1, -1)
    other = evoreg.make_problem("atari", game=GAME, **FAST, max_steps=STEPS, num_envs=3)
    shuffled = other.evaluate_drawn(Population(population.values[order]), draw)
    assert torch.equal(shuffled.losses, whole.losses[order])


def test_halves_of_a_population_give_the_losses_of_the_whole(problem, population):
    draw = problem.draw()
    whole = problem.evaluate_drawn(population, draw)
    parts = [problem.evaluate_drawn(Population(population.values[a:b]), draw)
             for a, b in ((0, 2), (2, 6))]
    merged = problem.merge_evaluations(parts)
    assert torch.equal(merged.losses, whole.losses)
    assert merged.cost == whole.cost
    assert merged.info["max_score"] == whole.info["max_score"]
    assert merged.info["episode_seed"] == draw["episode_seed"]


def test_draw_advances_the_state_and_evaluate_drawn_does_not(problem, population):
    before = problem.state_dict()["rng"]
    draw = problem.draw()
    after = problem.state_dict()["rng"]
    assert after != before and problem.draw() != draw
    state = problem.state_dict()["rng"]
    problem.evaluate_drawn(Population(population.values[:1]), draw)
    assert problem.state_dict()["rng"] == state


def test_cost_is_four_frames_per_agent_step_and_rows_come_in_slot_sized_chunks(problem):
    pop = RecordingPopulation(torch.stack([problem.space.seeded_initial(s) for s in range(5)]))
    evaluation = problem.evaluate(pop)
    info = evaluation.info
    assert info["agent_steps"] == 5 * STEPS  # every episode truncated at max_steps
    assert evaluation.cost == info["frames"] == 4 * info["agent_steps"]
    assert info["episodes"] == 5 and info["max_score"] == -float(evaluation.losses.min())
    assert all(stop - start <= 4 for start, stop in pop.calls)  # never the whole population
    assert sorted(pop.calls) == [(0, 4), (4, 5)]


def test_lazy_population(problem, population):
    parents = population.values[:2]
    lazy = LazyPopulation.around(parents, torch.tensor([0, 1, 1]), torch.tensor([5, 6, 7]),
                          torch.tensor([0.0, 0.0, 0.005]))
    draw = problem.draw()
    losses = problem.evaluate_drawn(lazy, draw).losses
    dense = problem.evaluate_drawn(Population(lazy.values), draw).losses
    assert torch.equal(losses, dense)


def test_report_plays_fixed_seed_episodes(problem, population):
    small = evoreg.make_problem("atari", game=GAME, **FAST, max_steps=30, num_envs=3,
                                report_episodes=4)
    x = population.values[1]
    figures = small.report(x)
    for key in ("mean_score", "median_score", "min_score", "max_score"):
        assert isinstance(figures[key], float), key
    assert figures["episodes"] == 4
    assert figures["min_score"] <= figures["median_score"] <= figures["max_score"]
    assert small.report(x) == figures  # fixed seeds, independent of the training draws
    assert small.report_random(3)["episodes"] == 3


def test_noop_steps_mode_is_as_deterministic(population):
    # noops="steps": unseeded (cheap) resets, no-op agent steps drawn from the episode seed
    fast = [evoreg.make_problem("atari", game=GAME, **FAST, max_steps=STEPS, num_envs=k,
                                noops="steps")
            for k in (2, 4)]
    pop = Population(population.values[:4])
    draw = {"episode_seed": 12345}
    first = fast[1].evaluate_drawn(pop, draw)
    order = torch.arange(3, -1, -1)
    reordered = fast[0].evaluate_drawn(Population(pop.values[order]), draw)
    assert torch.equal(reordered.losses, first.losses[order])
    assert first.info["agent_steps"] == 4 * STEPS and first.cost == 16 * STEPS
    other_seed = fast[1].evaluate_drawn(pop, {"episode_seed": 7})
    assert other_seed.info["episode_seed"] == 7
