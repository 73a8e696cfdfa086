"""Play an Atari 2600 game with a Nature-DQN policy; the search space is all 1.7M weights.

The problem of Such, Madhavan, Conti, Lehman, Stanley & Clune, "Deep Neuroevolution"
(arXiv:1712.06567, 2017) and of Prellberg's thesis (2020, ch. 6; code
jprellberg/genetic-algorithm-rl). Any ALE game by name (``frostbite``, ``Frostbite``,
``ALE/Frostbite-v5``); the ROMs ship inside ale-py. Frame skip 4 with the max over the last
two frames, grey 84x84, a stack of 4, no termination on life loss, unclipped rewards, sticky
actions off, episodes capped at ``max_steps`` = 3000 agent steps (12,000 emulator frames).

Two resets. ``reset="reference"`` (default) is the thesis code's, openai/baselines' wrappers
as it stacks them: 1..30 no-op EMULATOR frames (drawn from the episode seed), then for games
whose action 1 is FIRE one agent step of FIRE and one of action 2, and the frame stack starts
with that first observation repeated 4 times (``ReferenceSlot``; emulated in Python, several
times slower than ale-py's C++ vector environment). ``reset="ale"`` is ale-py's vector
environment: one FIRE frame, then up to ``noop_max`` no-ops, and a stack that starts with
zeros; ``noops="frames"`` draws them at a seeded ALE reset, which reloads the ROM (~0.2 s on a
CPU core, while every slot waits); ``noops="steps"`` instead resets unseeded (deterministic,
~15 ms) and plays 1-8 no-op agent steps of 4 frames drawn from the episode seed.

The policy is the Nature-DQN network (32 8x8/4, 64 4x4/2, 64 3x3/1, dense 512, ReLU, no
padding; input obs / 255); the action is the argmax of its outputs. Initialisation as the
thesis code: every weight N(0, 1), then each output unit's row scaled to unit L2 norm, biases
0; the space's ``sample_init`` draws agents one after the other from its generator, so
``space.seeded_initial(seed)`` is the same agent on every machine (for seed genomes).

One ``evaluate`` is one generation, one episode per candidate. ``episode_seeds="independent"``
(default, as the reference, whose workers never reseed) gives every episode its own seed,
derived from the generation's ``draw()`` and the candidate's id (so an elite re-evaluated
beside the children plays a fresh episode, and a remote shard agrees with the driver);
``"shared"`` plays every candidate under the draw's one seed (less noise between candidates).
The loss is minus the episode score; the cost is emulator frames (4 per agent step) or, with
``budget_unit="steps"``, agent steps: the unit of the thesis' and Such et al.'s budgets (the
reference's ``--total-frames`` counts agent steps, so its "1e9 frames" are 4e9 emulator
frames). Episodes run in ``num_envs`` slots of one ``ale_py`` vector environment: when a
slot's episode ends the next candidate is loaded into it and only that environment is reset,
and each step's forward passes of all slots are one batched call with per-slot weights
(patches + ``bmm``, which on CPU gives the same bits whatever the batch, so a candidate's score
does not depend on its slot or its neighbours). ``report(x)`` plays ``report_episodes``
episodes with fixed seeds, none used in training, each capped at ``report_max_steps`` agent
steps (default ``max_steps``). The thesis code scores the elite every generation on 50 fresh
episodes, outside the budget and without a cap of its own (gym's NoFrameskip-v4 limit,
100,000 agent steps): ``report_episodes=50, report_max_steps=0`` is that protocol, applied to
the recommendation at the end of a run.
"""

from __future__ import annotations

import difflib
import re
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from evoreg import Evaluation, EvoregError, Population, Problem, Real, hookimpl
from evoreg.config import bounded
from evoreg.nets import flatten_parameters, parameter_count, unflatten_parameters

FRAMESKIP = 4
NO_CAP_STEPS = 100_000  # gym's TimeLimit on NoFrameskip-v4 games: 400,000 frames
REPORT_SEED_BASE = 1_000_000  # report episodes use seeds 1_000_000 + i, disjoint from draws
SEED_BOUND = 2**31 - 1  # ALE takes int seeds
# (kernel, stride) of the three convolutions, in the order of the network's parameters
CONVS = ((8, 4), (4, 2), (3, 1))


# --------------------------------------------------------------------------- games
def rom_ids() -> list[str]:
    """The snake_case names of the ROMs installed with ale-py."""
    from ale_py import roms

    return sorted(roms.get_all_rom_ids())


def _squash(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def game_id(name: str) -> str:
    """The ROM id of ``name``: snake_case (``ms_pacman``), CamelCase (``MsPacman``) or a gym id
    (``ALE/MsPacman-v5``, ``MsPacmanNoFrameskip-v4``); an unknown name lists close matches."""
    ids = rom_ids()
    base = name.strip()
    base = re.sub(r"^ALE/", "", base)
    base = re.sub(r"-v\d+$", "", base)
    base = re.sub(r"(NoFrameskip|Deterministic)$", "", base)
    by_squashed = {_squash(i): i for i in ids}
    found = by_squashed.get(_squash(base))
    if found is not None:
        return found
    # Compare snake_case forms, so "FrostByte" and "frostbyte" both suggest "frostbite".
    snake = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", base).lower()
    matches = difflib.get_close_matches(snake, ids, n=5, cutoff=0.6)
    hint = ("did you mean " + ", ".join(repr(m) for m in matches) + "?") if matches else (
        f"{len(ids)} ROMs are installed, e.g. {', '.join(ids[:5])}"
    )
    raise EvoregError(f"unknown Atari game {name!r}; {hint}")


# --------------------------------------------------------------------------- policy
def nature_dqn(num_actions: int, in_channels: int = 4) -> nn.Module:
    """Mnih et al. (2015)'s network: 32 8x8/4, 64 4x4/2, 64 3x3/1, dense 512, no padding."""
    return nn.Sequential(
        nn.Conv2d(in_channels, 32, 8, stride=4), nn.ReLU(),
        nn.Conv2d(32, 64, 4, stride=2), nn.ReLU(),
        nn.Conv2d(64, 64, 3, stride=1), nn.ReLU(),
        nn.Flatten(),
        nn.Linear(3136, 512), nn.ReLU(),
        nn.Linear(512, num_actions),
    )


def unit_row_init_(model: nn.Module, generator: torch.Generator) -> nn.Module:
    """The thesis' init: weights N(0, 1), each output unit's row scaled to unit norm, biases 0."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                w = torch.randn(module.weight.shape, generator=generator)
                rows = w.view(w.shape[0], -1)
                rows /= rows.norm(p=2, dim=1, keepdim=True)
                module.weight.copy_(w)
                module.bias.zero_()
    return model


def _patches(h: torch.Tensor, kernel: int, stride: int) -> torch.Tensor:
    """``[n, c, H, W] -> [n, c*k*k, L]`` in ``F.unfold``'s order, from strided views.

    ``F.unfold`` was measured ~15x slower than this on the 2-core CPU (440 vs 8 ms for 64
    frames of the first layer), so the patches are gathered by ``Tensor.unfold`` views.
    """
    n, c = h.shape[:2]
    p = h.unfold(2, kernel, stride).unfold(3, kernel, stride)  # n, c, oh, ow, k, k
    oh, ow = p.shape[2:4]
    return p.permute(0, 1, 4, 5, 2, 3).reshape(n, c * kernel * kernel, oh * ow)


class SlotPolicies:
    """``n`` Nature-DQN agents, one per slot, each with its own weights, run as one batch.

    Weights live in per-layer buffers ``[n, out, fan_in]`` on ``device``; ``load`` writes rows
    of flat vectors into chosen slots. ``act`` is one forward of all slots: each convolution
    as patches + ``bmm`` and each dense layer as ``bmm``. Grouped convolution
    (``F.conv2d(groups=n)``) is faster on the 2-core CPU (45 against 57 ms a step of 64
    agents in ``rollout_throughput``), but its results change in the last bits with the number
    of groups, which would let a candidate's score depend on how many slots are busy or on
    the Ray shard; ``bmm`` gives the same bits for a slot whatever the batch.
    """

    def __init__(self, template: nn.Module, n: int, device: torch.device) -> None:
        self.template, self.n, self.device = template, n, device
        self.shapes = [(name, p.shape) for name, p in template.named_parameters()]
        self.buffers = [
            torch.zeros(n, shape[0], int(np.prod(shape[1:])) if len(shape) > 1 else 1,
                        device=device)
            for _, shape in self.shapes
        ]

    def load(self, slots: torch.Tensor, rows: torch.Tensor) -> None:
        """Weights of ``rows [k, d]`` into ``slots [k]``."""
        params = unflatten_parameters(self.template, rows.to(self.device, torch.float32))
        slots = slots.to(self.device)
        for buffer, (name, _) in zip(self.buffers, self.shapes):
            buffer[slots] = params[name].reshape(len(slots), buffer.shape[1], buffer.shape[2])

    def logits(self, obs: torch.Tensor) -> torch.Tensor:
        """``obs [n, 4, 84, 84]`` (uint8) -> ``[n, actions]``, each slot with its weights."""
        h = obs.to(self.device, torch.float32).div_(255.0)
        b = self.buffers
        for layer, (kernel, stride) in enumerate(CONVS):
            weight, bias = b[2 * layer], b[2 * layer + 1]
            size = (h.shape[2] - kernel) // stride + 1
            h = torch.baddbmm(bias, weight, _patches(h, kernel, stride)).relu_()
            h = h.view(self.n, weight.shape[1], size, size)
        h = h.reshape(self.n, 1, -1)
        h = torch.baddbmm(b[7].transpose(1, 2), h, b[6].transpose(1, 2)).relu_()
        return torch.baddbmm(b[9].transpose(1, 2), h, b[8].transpose(1, 2)).squeeze(1)

    def act(self, obs: torch.Tensor) -> np.ndarray:
        return self.logits(obs).argmax(dim=1).cpu().numpy()

    def subset(self, slots: np.ndarray) -> SlotPolicies:
        """The agents of ``slots`` alone, in that order (a copy of their weights)."""
        index = torch.as_tensor(slots, device=self.device)
        kept = SlotPolicies.__new__(SlotPolicies)
        kept.template, kept.n, kept.device = self.template, len(slots), self.device
        kept.shapes = self.shapes
        kept.buffers = [buffer[index] for buffer in self.buffers]
        return kept



# --------------------------------------------------------------------------- reference env
def _area_weights(source: int, target: int) -> np.ndarray:
    """``[target, source]``: each output pixel the area-weighted mean of the source pixels it
    covers (OpenCV's ``INTER_AREA`` for a downscale by a non-integer factor)."""
    scale = source / target
    weights = np.zeros((target, source), dtype=np.float64)
    for i in range(target):
        lo, hi = i * scale, (i + 1) * scale
        for j in range(int(np.floor(lo)), min(source, int(np.ceil(hi)))):
            weights[i, j] = (min(hi, j + 1) - max(lo, j)) / scale
    return weights


_ROWS = _area_weights(210, 84).astype(np.float32)
_COLS_T = np.ascontiguousarray(_area_weights(160, 84).T.astype(np.float32))
#: cv2's fixed-point RGB -> grey weights (sum 2^14); exact in float32 for uint8 pixels
_GREY = np.array([4899, 9617, 1868], dtype=np.float32)


def warp_frame(rgb: np.ndarray) -> np.ndarray:
    """baselines' ``WarpFrame``: RGB -> grey (OpenCV's fixed-point BT.601 weights, as
    ``cv2.COLOR_RGB2GRAY``) -> 84x84 by area averaging (as ``cv2.INTER_AREA``), uint8. Written
    without OpenCV; its rounding of the area step may differ from OpenCV's in the last bit."""
    grey = np.floor((rgb.astype(np.float32) @ _GREY + (1 << 13)) / (1 << 14))
    small = _ROWS @ grey @ _COLS_T
    return np.clip(np.rint(small), 0, 255).astype(np.uint8)


def reference_noop_counts(seed: int, noop_max: int) -> Iterator[int]:
    """The no-op frame counts, 1..noop_max, an episode of seed ``seed`` draws at its resets."""
    rng = np.random.default_rng(int(seed))
    while True:
        yield int(rng.integers(1, noop_max + 1))


class ReferenceSlot:
    """One emulator with the reset and step logic of baselines' Atari wrappers as the thesis
    code stacks them (``make_atari`` + ``wrap_deepmind(episode_life=False, frame_stack=True,
    clip_rewards=False)``, on a ``NoFrameskip-v4`` game: no sticky actions, minimal actions).

    Reset: the game is reset and 1..``noop_max`` no-op EMULATOR frames are played (a game
    over among them resets again); then, for games whose action 1 is FIRE, one agent step
    (4 frames) of FIRE and one of action 2, each followed by a reset if it ends the game; the
    frame stack starts as the observation of that last step repeated 4 times. A step repeats
    its action for 4 frames, sums the rewards, and observes the max of the last two RGB
    frames (a 2-frame buffer kept across steps, as ``MaxAndSkipEnv``), warped to grey 84x84.
    """

    def __init__(self, game: str, noop_max: int) -> None:
        from ale_py import Action, ALEInterface, LoggerMode, roms

        ALEInterface.setLoggerMode(LoggerMode.Error)
        self.ale = ALEInterface()
        self.ale.setFloat("repeat_action_probability", 0.0)
        self.ale.loadROM(str(roms.get_rom_path(game)))
        self.actions = list(self.ale.getMinimalActionSet())
        self.fire = len(self.actions) >= 3 and self.actions[1] == Action.FIRE
        self.noop_max = noop_max
        self.buffer = np.zeros((2, 210, 160, 3), dtype=np.uint8)
        self.noops: Iterator[int] = iter(())
        self.frames = 0  # emulator frames played, reset sequences included

    def _frame(self, action: int) -> tuple[float, bool]:
        reward = self.ale.act(self.actions[action])
        self.frames += 1
        return float(reward), self.ale.game_over()

    def _noop_reset(self) -> np.ndarray:
        self.ale.reset_game()
        obs = self.ale.getScreenRGB()
        for _ in range(next(self.noops)):
            _, done = self._frame(0)
            obs = self.ale.getScreenRGB()
            if done:
                self.ale.reset_game()
                obs = self.ale.getScreenRGB()
        return obs

    def skip_step(self, action: int) -> tuple[np.ndarray, float, bool]:
        """``MaxAndSkipEnv.step``: 4 frames, the max of the last two, the summed reward."""
        total, done = 0.0, False
        for i in range(FRAMESKIP):
            reward, done = self._frame(action)
            if i >= FRAMESKIP - 2:
                self.buffer[i - (FRAMESKIP - 2)] = self.ale.getScreenRGB()
            total += reward
            if done:
                break
        return self.buffer.max(axis=0), total, done

    def reset(self, seed: int) -> np.ndarray:
        """A new episode of ``seed``; the first stacked observation ``[4, 84, 84]``."""
        self.noops = reference_noop_counts(seed, self.noop_max)
        obs = self._noop_reset()
        if self.fire:
            obs, _, done = self.skip_step(1)
            if done:
                self._noop_reset()
            obs, _, done = self.skip_step(2)
            if done:
                obs = self._noop_reset()
        frame = warp_frame(obs)
        return np.stack([frame] * 4)

    def step(self, action: int) -> tuple[np.ndarray, float, bool]:
        obs, reward, done = self.skip_step(action)
        return warp_frame(obs), reward, done


class ReferenceVectorEnv:
    """``n`` ``ReferenceSlot`` emulators behind the part of ``AtariVectorEnv``'s interface the
    rollout uses; stepped one after the other in Python (several times slower than ale-py's
    threaded C++ vector environment, which cannot play single no-op frames)."""

    def __init__(self, game: str, n: int, max_steps: int, noop_max: int) -> None:
        import gymnasium

        self.num_envs, self.max_steps = n, max_steps
        self.slots = [ReferenceSlot(game, noop_max) for _ in range(n)]
        self.single_action_space = gymnasium.spaces.Discrete(len(self.slots[0].actions))
        self.single_observation_space = gymnasium.spaces.Box(0, 255, (4, 84, 84), np.uint8)
        self.obs = np.zeros((n, 4, 84, 84), dtype=np.uint8)
        self.steps = np.zeros(n, dtype=np.int64)
        self.over = np.ones(n, dtype=bool)

    def reset_slots(self, slots: np.ndarray, seeds: np.ndarray) -> np.ndarray:
        for slot, seed in zip(np.asarray(slots).tolist(), np.asarray(seeds).tolist()):
            self.obs[slot] = self.slots[slot].reset(int(seed))
            self.steps[slot], self.over[slot] = 0, False
        return self.obs.copy()

    def step(self, actions: np.ndarray):
        n = self.num_envs
        reward = np.zeros(n, dtype=np.float64)
        terminated, truncated = self.over.copy(), np.zeros(n, dtype=bool)
        for i in np.flatnonzero(~self.over).tolist():
            frame, reward[i], done = self.slots[i].step(int(actions[i]))
            self.obs[i, :-1] = self.obs[i, 1:].copy()
            self.obs[i, -1] = frame
            self.steps[i] += 1
            terminated[i] = done
            truncated[i] = not done and self.steps[i] >= self.max_steps
            self.over[i] = done or truncated[i]
        return self.obs.copy(), reward, terminated, truncated, {}

    def close(self) -> None:
        self.slots = []

# --------------------------------------------------------------------------- problem
@dataclass
class Config:
    game: str = "frostbite"  #: ALE game: frostbite, Frostbite or ALE/Frostbite-v5
    max_steps: int = bounded(3000, ge=1)  #: agent steps an episode (thesis: 3000 = 12k frames)
    num_envs: int = bounded(64, ge=1)  #: environments stepped together, one candidate each
    num_threads: int = bounded(0, ge=0)  #: emulator threads (0: all cores)
    report_episodes: int = bounded(30, ge=1)  #: fixed-seed episodes that report() averages
    #: agent steps a report episode may last: None: max_steps; 0: no cap of evoreg's own,
    #: i.e. gym's NoFrameskip-v4 limit of 400,000 frames (100,000 agent steps), as the thesis
    #: code's final scores (50 episodes of the elite, ``report_episodes=50``)
    report_max_steps: int | None = bounded(None, ge=0)
    noop_max: int = bounded(30, ge=0)  #: up to this many random no-op frames at reset
    #: frames: ALE's 1..noop_max no-op frames, drawn at a seeded reset (the thesis' exact
    #: preprocessing; a seeded reset reloads the ROM, ~0.2 s measured, and stalls every slot);
    #: steps: a deterministic unseeded reset (~0.015 s), then 1..ceil(noop_max / 4) no-op
    #: agent steps of 4 frames drawn from the episode seed
    noops: Literal["frames", "steps"] = "frames"
    #: reference: the thesis code's baselines wrappers (1..noop_max no-op frames, FIRE and
    #: action 2 one step each, the stack starting with the first frame 4 times), emulated in
    #: Python; ale: ale-py's C++ vector environment (its own reset: ``noops`` applies)
    reset: Literal["reference", "ale"] = "reference"
    #: independent: every episode its own seed (the reference, whose workers never reseed);
    #: shared: one seed for the whole generation (less noise between candidates, but an elite
    #: re-evaluated beside them replays the same start's luck)
    episode_seeds: Literal["independent", "shared"] = "independent"
    #: frames (emulator frames) or steps (agent steps of 4 frames: the unit of the thesis'
    #: and Such et al.'s "frames" budgets, which count what the reference calls total frames)
    budget_unit: Literal["frames", "steps"] = "frames"

    def __post_init__(self) -> None:
        self.game = game_id(self.game)  # the ROM's id, or an error listing close matches


class Atari(Problem):
    """Minus the score of one episode per candidate, all under the generation's episode seed."""

    Config = Config
    citation = (
        "Such et al. (2017), Deep Neuroevolution, arXiv:1712.06567; Prellberg (2020), thesis ch. 6"
    )
    budget_unit = "frames"
    info_merge = {"max_score": "max", "episode_seed": "first"}
    #: vector environments kept, by number of slots (a generation, report, a worker's shard)
    env_cache_size = 3

    def setup(self) -> None:
        self.budget_unit = self.config.budget_unit
        self._envs: OrderedDict[int, Any] = OrderedDict()
        probe = self._make_env(1)
        self.num_actions = int(probe.single_action_space.n)
        probe.close()
        self.template = nature_dqn(self.num_actions)
        self.dim = parameter_count(self.template)
        self.space = Real(
            dim=self.dim,
            init=lambda: self.space.seeded_initial(0),
            sigma=0.005,
            sample_init=self.sample_agents,
        )

    def sample_agents(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """``n`` agents with the thesis' initial weights, drawn one after the other from
        ``generator`` (a CPU generator, whatever the problem's device): the first of them is
        the same ``Tensor[d]`` on every machine for a generator seeded alike."""
        return torch.stack([
            flatten_parameters(unit_row_init_(nature_dqn(self.num_actions), generator))
            for _ in range(n)
        ])

    # ----------------------------------------------------------------- environments
    def _make_env(self, n: int, max_steps: int | None = None):
        from ale_py.vector_env import AtariVectorEnv

        c = self.config
        max_steps = max_steps or c.max_steps
        if c.reset == "reference":
            return ReferenceVectorEnv(c.game, n, max_steps, c.noop_max)
        return AtariVectorEnv(
            c.game, n,
            num_threads=c.num_threads,
            # ALE counts this in emulator frames of agent steps (reset no-ops excluded):
            # measured, an episode is truncated after exactly max_frames / frameskip steps.
            max_num_frames_per_episode=max_steps * FRAMESKIP,
            reward_clipping=False, noop_max=c.noop_max if c.noops == "frames" else 0,
            frameskip=FRAMESKIP, maxpool=True,
            grayscale=True, img_height=84, img_width=84, stack_num=4, episodic_life=False,
            use_fire_reset=True, repeat_action_probability=0.0,
            # NextStep: a finished env is reset by us (with our seed) before its next step,
            # so the emulator never spends frames on an automatic reset we would discard.
            autoreset_mode="NextStep",
        )

    def env(self, n: int, max_steps: int | None = None):
        """A vector environment of ``n`` slots, episodes capped at ``max_steps`` agent steps
        (default: the config's), kept for reuse."""
        key: Any = n if max_steps in (None, self.config.max_steps) else (n, max_steps)
        if key in self._envs:
            self._envs.move_to_end(key)
            return self._envs[key]
        while len(self._envs) >= self.env_cache_size:
            _, old = self._envs.popitem(last=False)
            old.close()
        self._envs[key] = self._make_env(n, max_steps)
        return self._envs[key]

    def close(self) -> None:
        for env in self._envs.values():
            env.close()
        self._envs.clear()

    def __getstate__(self) -> dict[str, Any]:  # environments are rebuilt where unpickled
        state = self.__dict__.copy()
        state["_envs"] = OrderedDict()
        return state

    # ----------------------------------------------------------------- rollouts
    def _reset(self, env, slots: np.ndarray, seeds: np.ndarray, noops: np.ndarray):
        """Reset ``slots`` for episodes of ``seeds``; in ``noops="steps"`` mode also set
        each slot's count of no-op agent steps, drawn from its seed."""
        if isinstance(env, ReferenceVectorEnv):
            return env.reset_slots(slots, seeds)
        n = env.num_envs
        mask = np.zeros(n, dtype=bool)
        mask[slots] = True
        if self.config.noops == "frames":
            seed = seeds.astype(np.int64)
        else:
            # ALE with noop_max=0 and no seed resets to the same state every time (measured)
            seed = None
            most = max(1, -(-self.config.noop_max // FRAMESKIP))
            noops[slots] = [np.random.default_rng(int(s)).integers(1, most + 1) for s in seeds]
        if mask.all():  # the first reset of an environment must reset every slot
            return env.reset(seed=seed)[0]
        return env.reset(seed=seed, options={"reset_mask": mask})[0]

    @torch.inference_mode()
    def rollout(
        self,
        rows: Callable[[int, int], torch.Tensor] | None,
        count: int,
        seeds: np.ndarray,
        max_steps: int | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Scores and agent steps of ``count`` episodes, one per candidate, each capped at
        ``max_steps`` agent steps (default: the config's).

        Candidate ``i`` has weights ``rows(i, j)[i - i0]`` (materialised only as slots free
        up, never all at once) and plays with episode seed ``seeds[i]``. ``rows=None`` plays
        uniformly random actions (drawn from the seed, for ``report_random``).
        """
        n = min(self.config.num_envs, count)
        env = self.env(n, max_steps)
        policies = SlotPolicies(self.template, n, self.device) if rows is not None else None
        scores = np.zeros(count, dtype=np.float64)
        steps = np.zeros(count, dtype=np.int64)
        slot = np.arange(n)  # candidate in each slot; -1: idle (none left)
        if policies is not None:
            policies.load(torch.arange(n), rows(0, n))
        noops = np.zeros(n, dtype=np.int64)
        obs = self._reset(env, np.arange(n), seeds[:n], noops)
        following = n
        random_actions = np.random.default_rng(int(seeds[0])) if rows is None else None
        acting = np.arange(n)  # the slots whose agents `policies` holds, in its order
        while (slot >= 0).any():
            if policies is not None:
                busy = np.flatnonzero(slot >= 0)
                if following == count and 2 * len(busy) <= len(acting):
                    # No candidate is left to refill a slot: drop the finished agents from
                    # the forward, which costs 3x the emulator. Idle slots still step (the
                    # vector environment steps all), on action 0. bmm gives a slot the same
                    # bits in any batch size, so scores do not change.
                    policies = policies.subset(np.searchsorted(acting, busy))
                    acting = busy
                actions = np.zeros(n, dtype=np.int64)
                actions[acting] = policies.act(
                    torch.from_numpy(obs if len(acting) == n else obs[acting])
                )
            else:
                actions = random_actions.integers(0, self.num_actions, n)
            if self.config.noops == "steps" and self.config.reset == "ale":
                actions[noops > 0] = 0  # NOOP is action 0 of every minimal action set
                noops[noops > 0] -= 1
            obs, reward, terminated, truncated, _ = env.step(actions.astype(np.int64))
            busy = slot >= 0
            scores[slot[busy]] += reward[busy]
            steps[slot[busy]] += 1
            done = np.flatnonzero(busy & (terminated | truncated))
            if len(done) == 0:
                continue
            slot[done] = -1
            refill = done[: count - following]
            if len(refill) == 0:
                continue  # idle slots keep stepping (uncounted) until the last episode ends
            new = np.arange(following, following + len(refill))
            if policies is not None:
                policies.load(torch.from_numpy(refill), rows(following, following + len(refill)))
            slot[refill] = new
            following += len(refill)
            obs = self._reset(env, refill, seeds[new], noops)
        return scores, steps

    # ----------------------------------------------------------------- scoring
    def draw(self) -> dict[str, Any]:
        """The generation's episode seed (advances the problem's random state)."""
        return {"episode_seed": int(self.rng.integers(0, SEED_BOUND))}

    def episode_seeds(self, pop: Population, draw: dict[str, Any]) -> np.ndarray:
        """One episode seed per candidate. shared: the draw's seed for all; independent: a
        seed of (draw's seed, candidate id), so every episode of a generation differs, an
        elite re-evaluated gets a fresh one each generation, and a shard on a remote worker
        gives a candidate the seed it gets on the driver."""
        seed = int(draw["episode_seed"])
        if self.config.episode_seeds == "shared":
            return np.full(len(pop), seed, dtype=np.int64)
        ids = pop.ids.tolist() if pop.ids is not None else range(len(pop))
        return np.array([int(np.random.SeedSequence([seed, int(i) % 2**63]).generate_state(1)[0])
                         % SEED_BOUND for i in ids], dtype=np.int64)

    def evaluate_drawn(self, pop: Population, draw: dict[str, Any]) -> Evaluation:
        """One episode per candidate under ``draw``'s seed(s); loss = -score; cost = emulator
        frames (4 per agent step) or, with ``budget_unit="steps"``, agent steps."""
        count = len(pop)
        if count == 0:
            return Evaluation(torch.zeros(0), cost=0.0, info={"frames": 0})
        seeds = self.episode_seeds(pop, draw)
        scores, steps = self.rollout(pop.rows, count, seeds)
        frames = int(steps.sum()) * FRAMESKIP
        info = {
            "frames": frames,
            "agent_steps": int(steps.sum()),
            "episodes": count,
            "mean_score": float(scores.mean()),
            "max_score": float(scores.max()),
            "episode_seed": int(draw["episode_seed"]),
        }
        cost = float(frames if self.budget_unit == "frames" else steps.sum())
        return Evaluation(torch.from_numpy(-scores).float(), cost=cost, info=info)

    def report(self, x: Any) -> dict[str, float]:
        """Mean, median, min and max score of ``x`` over ``report_episodes`` fixed seeds."""
        weights = torch.as_tensor(x, dtype=torch.float32).reshape(1, -1)
        if weights.shape[1] != self.dim:
            raise EvoregError(f"atari: a candidate has {self.dim:,} weights, got {weights.shape}")
        return self._report(lambda start, stop: weights.expand(stop - start, -1))

    def report_random(self, episodes: int | None = None) -> dict[str, float]:
        """``report``'s figures for uniformly random actions (a baseline)."""
        return self._report(None, episodes)

    def _report(self, rows, episodes: int | None = None) -> dict[str, float]:
        episodes = episodes or self.config.report_episodes
        seeds = REPORT_SEED_BASE + np.arange(episodes, dtype=np.int64)
        cap = self.config.report_max_steps
        cap = NO_CAP_STEPS if cap == 0 else cap
        scores, steps = self.rollout(rows, episodes, seeds, cap)
        return {
            "mean_score": float(np.mean(scores)),
            "median_score": float(np.median(scores)),
            "min_score": float(np.min(scores)),
            "max_score": float(np.max(scores)),
            "std_score": float(np.std(scores)),
            "episodes": int(episodes),
            "mean_steps": float(np.mean(steps)),
        }


@hookimpl
def evoreg_register_problems(register):
    register("atari", Atari, family="weights")
