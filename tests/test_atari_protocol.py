"""The Atari protocol of the thesis code (jprellberg/genetic-algorithm-rl on openai/baselines'
wrappers): the reset sequence frame by frame, independent or shared episode seeds, budgets in
agent steps, and atari-ga's presets."""

from __future__ import annotations

from collections import deque

import gymnasium
import numpy as np
import pytest
import torch

import evoreg
from evoreg import Population
from evoreg.problems.atari import ReferenceSlot, reference_noop_counts, warp_frame


# ------------------------------------------------------- baselines' wrappers, re-implemented
class BaselinesChain:
    """make_atari + wrap_deepmind(episode_life=False, frame_stack=True, clip_rewards=False)
    written out wrapper by wrapper (NoopResetEnv -> MaxAndSkipEnv -> FireResetEnv -> WarpFrame
    -> FrameStack) over gymnasium's own single-frame ALE environment (no sticky actions, the
    minimal action set: a NoFrameskip-v4 game). WarpFrame uses evoreg's ``warp_frame`` (no
    OpenCV here); everything else (the order of resets, no-ops, FIRE steps, max pooling,
    stacking) is independent of the code under test."""

    def __init__(self, game: str, noops: list[int]) -> None:
        import ale_py

        gymnasium.register_envs(ale_py)
        self.env = gymnasium.make(game, frameskip=1, repeat_action_probability=0.0,
                                  full_action_space=False, max_num_frames_per_episode=10**6)
        self.noops = list(noops)  # override_num_noops for each NoopResetEnv.reset, in order
        meanings = self.env.unwrapped.get_action_meanings()
        self.fire = "FIRE" in meanings
        self.buffer = np.zeros((2, 210, 160, 3), dtype=np.uint8)
        self.frames: deque = deque([], maxlen=4)

    def _raw_step(self, action):  # the NoFrameskip env
        obs, reward, terminated, truncated, _ = self.env.step(action)
        return obs, reward, terminated or truncated

    def _noop_reset(self):  # NoopResetEnv.reset
        obs, _ = self.env.reset(seed=0)
        for _ in range(self.noops.pop(0)):
            obs, _, done = self._raw_step(0)
            if done:
                obs, _ = self.env.reset()
        return obs

    def _skip_step(self, action):  # MaxAndSkipEnv.step
        total, done = 0.0, False
        for i in range(4):
            obs, reward, done = self._raw_step(action)
            if i == 2:
                self.buffer[0] = obs
            if i == 3:
                self.buffer[1] = obs
            total += reward
            if done:
                break
        return self.buffer.max(axis=0), total, done

    def reset(self):  # FrameStack.reset(FireResetEnv.reset(...))
        obs = self._noop_reset()
        if self.fire:
            obs, _, done = self._skip_step(1)
            if done:
                self._noop_reset()
            obs, _, done = self._skip_step(2)
            if done:
                obs = self._noop_reset()
        frame = warp_frame(obs)
        for _ in range(4):
            self.frames.append(frame)
        return np.stack(self.frames)

    def step(self, action):
        obs, reward, done = self._skip_step(action)
        self.frames.append(warp_frame(obs))
        return np.stack(self.frames), reward, done


@pytest.mark.parametrize(("game", "gym_id"), [("frostbite", "ALE/Frostbite-v5"),
                                               ("ms_pacman", "ALE/MsPacman-v5")])
def test_reset_and_steps_match_the_baselines_wrappers_frame_by_frame(game, gym_id):
    seed = 7
    counts = reference_noop_counts(seed, 30)
    noops = [next(counts) for _ in range(3)]
    assert all(1 <= k <= 30 for k in noops)
    chain = BaselinesChain(gym_id, noops)
    trace = [(chain.reset(), 0.0, False)]
    actions = np.random.default_rng(0).integers(0, chain.env.action_space.n, 60)
    trace += [chain.step(int(a)) for a in actions]

    slot = ReferenceSlot(game, noop_max=30)
    assert slot.fire == chain.fire == (game == "frostbite")
    first = slot.reset(seed)
    # the stack starts with the first frame repeated 4 times (not zeros, as ale-py's)
    assert all(np.array_equal(first[k], first[3]) for k in range(3)) and first.max() > 0
    assert np.array_equal(first, trace[0][0])
    stack = first.copy()
    for t, action in enumerate(actions, start=1):
        frame, reward, done = slot.step(int(action))
        stack = np.concatenate([stack[1:], frame[None]])
        expected_stack, expected_reward, expected_done = trace[t]
        assert np.array_equal(stack, expected_stack), f"step {t}"
        assert (reward, done) == (expected_reward, expected_done), f"step {t}"
    # the no-op frames are emulator frames: 1..30 of them, then 2 agent steps of 4 if FIRE
    reset_frames = noops[0] + (8 if slot.fire else 0)
    assert slot.frames == reset_frames + 4 * len(actions)


def test_the_reference_reset_is_what_the_problem_plays():
    problem = evoreg.make_problem("atari", game="frostbite", max_steps=5, num_envs=2, seed=0)
    assert (problem.config.reset, problem.config.episode_seeds) == ("reference", "independent")
    env = problem.env(2)
    obs = problem._reset(env, np.arange(2), np.array([7, 8]), np.zeros(2, dtype=np.int64))
    assert np.array_equal(obs[0], ReferenceSlot("frostbite", 30).reset(7))


# ------------------------------------------------------------------ episode seeds
GAME, STEPS = "ms_pacman", 60


def agents(problem, n):
    return Population(torch.stack([problem.space.seeded_initial(s) for s in range(n)]))


@pytest.mark.parametrize("reset", ["ale", "reference"])
def test_independent_episode_seeds_differ_per_candidate_and_are_deterministic(reset):
    def run():
        problem = evoreg.make_problem("atari", game=GAME, max_steps=STEPS, num_envs=3,
                                      seed=5, reset=reset)
        pop = agents(problem, 1)
        same = Population(pop.values.expand(4, -1).clone())  # one agent, 4 ids
        draw = problem.draw()
        seeds = problem.episode_seeds(same, draw)
        return seeds, problem.evaluate_drawn(same, draw).losses

    seeds, losses = run()
    assert len(set(seeds.tolist())) == 4  # every episode its own seed
    seeds2, losses2 = run()
    assert np.array_equal(seeds, seeds2) and torch.equal(losses, losses2)  # the run seed decides


def test_shared_episode_seeds_give_one_agent_one_score():
    problem = evoreg.make_problem("atari", game=GAME, max_steps=STEPS, num_envs=3, seed=5,
                                  reset="ale", episode_seeds="shared")
    pop = Population(agents(problem, 1).values.expand(4, -1).clone())
    draw = problem.draw()
    assert len(set(problem.episode_seeds(pop, draw).tolist())) == 1
    losses = problem.evaluate_drawn(pop, draw).losses
    assert (losses == losses[0]).all()
    again = evoreg.make_problem("atari", game=GAME, max_steps=STEPS, num_envs=3, seed=5,
                                reset="ale", episode_seeds="shared")
    assert again.draw() == draw


def test_independent_seeds_follow_the_candidate_id_so_shards_agree():
    problem = evoreg.make_problem("atari", game=GAME, max_steps=STEPS, num_envs=2, seed=1,
                                  reset="ale")
    pop = Population(agents(problem, 4).values, torch.arange(100, 104))  # ids as from ask()
    draw = problem.draw()
    whole = problem.episode_seeds(pop, draw)
    half = Population(pop.values[2:], pop.ids[2:])
    assert np.array_equal(problem.episode_seeds(half, draw), whole[2:])


def test_budget_unit_steps_counts_agent_steps():
    kwargs = {"game": GAME, "max_steps": 20, "num_envs": 2, "seed": 0, "reset": "ale"}
    frames = evoreg.make_problem("atari", **kwargs)
    steps = evoreg.make_problem("atari", budget_unit="steps", **kwargs)
    assert (frames.budget_unit, steps.budget_unit) == ("frames", "steps")
    pop = agents(frames, 2)
    a, b = frames.evaluate(pop), steps.evaluate(pop)
    assert a.cost == 4 * b.cost == 4 * a.info["agent_steps"] == 4 * 40


# ------------------------------------------------------------------ atari-ga presets
@pytest.mark.parametrize(("preset", "values"), [
    ("thesis", (10, 40, 2000, 20)),
    ("released", (40, 100, 2000, 20)),
    ("such2017", (1, 10, 5000, 1)),
])
def test_atari_ga_presets(preset, values):
    opt = evoreg.make_optimizer("atari-ga", evoreg.Real(3), preset=preset)
    c = opt.config
    assert (c.elites, c.parents, c.popsize, c.max_evals) == values


def test_report_offers_the_reference_final_score_protocol():
    kwargs = {"game": GAME, "max_steps": 5, "num_envs": 2, "seed": 0, "reset": "ale",
              "report_episodes": 2}
    capped = evoreg.make_problem("atari", **kwargs)
    longer = evoreg.make_problem("atari", report_max_steps=40, **kwargs)
    x = capped.space.seeded_initial(0)
    assert capped.report(x)["mean_steps"] == 5
    assert 5 < longer.report(x)["mean_steps"] <= 40
