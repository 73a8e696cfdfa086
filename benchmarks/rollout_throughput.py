"""Atari rollout throughput: the ``atari`` problem's batched rollout against the raw emulator.

On one game (Frostbite by default), ``--agents`` distinct agents (Nature-DQN, 1.7M weights
each, the problem's unit-norm init from different seeds), timed in ONE run with interleaved
repeats:

- ``ours``: the problem's own code path (``Atari.rollout``, as ``evaluate`` runs it): one
  vector environment of ``--agents`` slots, every step one batched forward of all slots with
  per-slot weights; each episode capped at ``--steps`` agent steps;
- ``ours_noop_steps``: the same with the problem's ``noops="steps"`` (unseeded ~15 ms resets
  and no-op agent steps drawn from the episode seed, instead of seeded resets that reload the
  ROM, ~0.2 s each, while every other slot waits);
- ``raw``: the same vector environment (same configuration, same threads) stepped ``--steps``
  times with random actions and no policy: the emulator's own limit on this machine;
- ``naive``: one environment (a 1-env ``AtariVectorEnv``, the same preprocessing) and one
  agent, ``torch.nn.Module`` forward once per step, for ``--naive-steps`` steps;
- ``forward``: the batched forward of all slots alone (no emulator), per step, and the same
  forward with grouped convolutions (``F.conv2d(groups=n)``), to show where the time goes and
  that the problem's patches + ``bmm`` forward is not slower than grouped convolution.

Throughput is emulator frames per second (4 per agent step; ``ours`` counts only frames of
agents still playing). Ratios are medians of per-repeat ratios. Goal: ``ours`` >= 70% of
``raw``. Writes ``benchmarks/results/rollout_throughput.json`` and the line in
``docs/benchmarks.md``.

    .venv/bin/python benchmarks/rollout_throughput.py            # the full run
    .venv/bin/python benchmarks/rollout_throughput.py --quick    # smoke run
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import evoreg  # first: it enables torch's huge-page allocations, read at torch's first use

# isort: split
import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    RESULTS,
    add_output_options,
    doc_line,
    fill_sizes,
    median,
    relative_to_root,
    run_info,
    synchronize,
    update_doc_table,
    write_result,
)

from evoreg.evaluate.params import load_flat_parameters_  # noqa: E402
from evoreg.problems.atari import CONVS, FRAMESKIP, SlotPolicies, nature_dqn  # noqa: E402

NAME = "rollout_throughput"
GOAL_SHARE = 0.70  # ours at least this share of the raw emulator's frames/s


@dataclass
class Args:
    game: str = "frostbite"
    agents: int = 64  #: distinct agents = environment slots
    steps: int = 200  #: agent steps per measurement of ours and raw (episode cap of ours)
    naive_steps: int = 100  #: agent steps per measurement of the naive loop
    forward_calls: int = 5  #: batched forward calls timed per repeat
    repeats: int = 3
    threads: int | None = None  #: torch threads (default: torch's own)
    num_threads: int = 0  #: emulator threads (0: all cores)
    device: str = "cpu"
    seed: int = 0
    quick: bool = False
    out: str = str(RESULTS)
    doc: bool = True


QUICK = {"agents": 4, "steps": 10, "naive_steps": 5, "forward_calls": 1, "repeats": 2}


def parse_args(argv: list[str] | None = None) -> Args:
    defaults = Args()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--game", default=defaults.game)
    for key in QUICK:
        parser.add_argument(f"--{key.replace('_', '-')}", type=int,
                            help=f"default {getattr(defaults, key)}")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    parser.add_argument("--num-threads", type=int, default=defaults.num_threads,
                        help="emulator threads (0: all cores)")
    parser.add_argument("--device", default=defaults.device, help="cpu, cuda or auto")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    add_output_options(parser, defaults.out, QUICK)
    parsed = vars(parser.parse_args(argv))
    fill_sizes(parser, parsed, QUICK, defaults)
    return Args(**parsed)


# --------------------------------------------------------------------------- measurements
def timed(fn, device: torch.device) -> float:
    synchronize(device)
    start = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - start


def measure_ours(problem, weights: torch.Tensor, seeds: np.ndarray) -> dict:
    out = {}

    def play():
        out["scores"], out["steps"] = problem.rollout(
            lambda a, b: weights[a:b], len(weights), seeds
        )

    seconds = timed(play, problem.device)
    frames = int(out["steps"].sum()) * FRAMESKIP
    return {"seconds": seconds, "frames": frames, "frames_per_second": frames / seconds,
            "mean_score": float(out["scores"].mean())}


def measure_raw(env, steps: int, num_actions: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    n = env.num_envs
    env.reset(seed=np.arange(seed, seed + n, dtype=np.int64))
    actions = rng.integers(0, num_actions, (steps, n))
    start = time.perf_counter()
    for t in range(steps):
        env.step(actions[t])
    seconds = time.perf_counter() - start
    frames = steps * n * FRAMESKIP
    return {"seconds": seconds, "frames": frames, "frames_per_second": frames / seconds}


@torch.inference_mode()
def measure_naive(env, module: torch.nn.Module, steps: int, seed: int,
                  device: torch.device) -> dict:
    obs, _ = env.reset(seed=np.array([seed], dtype=np.int64))

    def play():
        nonlocal obs
        for _ in range(steps):
            x = torch.from_numpy(obs).to(device, torch.float32).div_(255.0)
            action = module(x).argmax(dim=1).cpu().numpy()
            obs, *_ = env.step(action.astype(np.int64))

    seconds = timed(play, device)
    frames = steps * FRAMESKIP
    return {"seconds": seconds, "frames": frames, "frames_per_second": frames / seconds}


def grouped_logits(policies: SlotPolicies, obs: torch.Tensor) -> torch.Tensor:
    """The same forward with grouped convolutions (for the comparison only)."""
    n, b = policies.n, policies.buffers
    h = obs.to(policies.device, torch.float32).div_(255.0).reshape(1, -1, 84, 84)
    for layer, (kernel, stride) in enumerate(CONVS):
        weight, bias = b[2 * layer], b[2 * layer + 1]
        out_channels = weight.shape[1]
        w = weight.reshape(n * out_channels, -1, kernel, kernel)
        h = F.conv2d(h, w, bias.reshape(-1), stride=stride, groups=n).relu_()
    h = h.reshape(n, 1, -1)
    h = torch.baddbmm(b[7].transpose(1, 2), h, b[6].transpose(1, 2)).relu_()
    return torch.baddbmm(b[9].transpose(1, 2), h, b[8].transpose(1, 2)).squeeze(1)


@torch.inference_mode()
def measure_forward(policies: SlotPolicies, obs: torch.Tensor, calls: int) -> dict:
    device = policies.device
    figures = {}
    forwards = {"bmm": lambda: policies.logits(obs),
                "grouped_conv": lambda: grouped_logits(policies, obs)}
    for name, forward in forwards.items():
        forward()  # warm-up
        seconds = [timed(forward, device) for _ in range(calls)]
        figures[f"{name}_ms_per_step"] = median(seconds) * 1e3
    return figures


# --------------------------------------------------------------------------- the run
def run(args: Args) -> dict:
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    problem = evoreg.make_problem(
        "atari", game=args.game, num_envs=args.agents, max_steps=args.steps,
        num_threads=args.num_threads, device=args.device, seed=args.seed,
    )
    fast = evoreg.make_problem(
        "atari", game=args.game, num_envs=args.agents, max_steps=args.steps,
        num_threads=args.num_threads, device=args.device, seed=args.seed, noops="steps",
    )
    device = problem.device
    info = run_info(device)
    # distinct agents: the problem's init from seeds seed .. seed + agents - 1
    weights = torch.stack([problem.init_from_seed(args.seed + i) for i in range(args.agents)])
    naive_module = nature_dqn(problem.num_actions).to(device).eval()
    load_flat_parameters_(naive_module, weights[0].to(device))
    env = problem.env(args.agents)  # the vector env ours uses: same config, same threads
    naive_env = problem._make_env(1)
    policies = SlotPolicies(problem.template, args.agents, device)
    policies.load(torch.arange(args.agents), weights)
    obs = torch.from_numpy(env.reset(seed=np.arange(args.agents, dtype=np.int64))[0])

    repeats = []
    for repeat in range(args.repeats):
        seeds = np.full(args.agents, args.seed + 1000 * repeat, dtype=np.int64)
        record = {
            "ours": measure_ours(problem, weights, seeds),
            "ours_noop_steps": measure_ours(fast, weights, seeds),
            "raw": measure_raw(env, args.steps, problem.num_actions, args.seed + repeat),
            "naive": measure_naive(naive_env, naive_module, args.naive_steps,
                                   args.seed + repeat, device),
            "forward": measure_forward(policies, obs, args.forward_calls),
        }
        record["ours_over_raw"] = (record["ours"]["frames_per_second"]
                                   / record["raw"]["frames_per_second"])
        record["ours_noop_steps_over_raw"] = (record["ours_noop_steps"]["frames_per_second"]
                                              / record["raw"]["frames_per_second"])
        record["ours_over_naive"] = (record["ours"]["frames_per_second"]
                                     / record["naive"]["frames_per_second"])
        repeats.append(record)
        print(f"repeat {repeat + 1}/{args.repeats}: ours "
              f"{record['ours']['frames_per_second']:,.0f} frames/s (noop steps "
              f"{record['ours_noop_steps']['frames_per_second']:,.0f}), raw "
              f"{record['raw']['frames_per_second']:,.0f}, naive "
              f"{record['naive']['frames_per_second']:,.0f}; forward "
              f"{record['forward']['bmm_ms_per_step']:.1f} ms/step (grouped conv "
              f"{record['forward']['grouped_conv_ms_per_step']:.1f})", flush=True)
    naive_env.close()
    problem.close()
    fast.close()

    def med(*path):
        values = []
        for record in repeats:
            value = record
            for key in path:
                value = value[key]
            values.append(value)
        return median(values)

    raw_step_ms = args.agents * FRAMESKIP / med("raw", "frames_per_second") * 1e3
    medians = {
        "ours_frames_per_second": med("ours", "frames_per_second"),
        "ours_noop_steps_frames_per_second": med("ours_noop_steps", "frames_per_second"),
        "raw_frames_per_second": med("raw", "frames_per_second"),
        "naive_frames_per_second": med("naive", "frames_per_second"),
        "forward_bmm_ms_per_step": med("forward", "bmm_ms_per_step"),
        "forward_grouped_conv_ms_per_step": med("forward", "grouped_conv_ms_per_step"),
        "emulator_ms_per_step": raw_step_ms,
    }
    ratios = {"ours_over_raw": med("ours_over_raw"),
              "ours_noop_steps_over_raw": med("ours_noop_steps_over_raw"),
              "ours_over_naive": med("ours_over_naive")}
    # If emulator and forward ran back to back with nothing else, ours would take their sum.
    bound = raw_step_ms / (raw_step_ms + medians["forward_bmm_ms_per_step"])
    return {
        "benchmark": NAME,
        **info,
        "config": asdict(args) | {"out": relative_to_root(args.out)},
        "game": problem.config.game,
        "parameters_per_agent": problem.dim,
        "units": "emulator frames per second (4 per agent step); forward: ms per batched "
                 "step of all agents",
        "repeats": repeats,
        "medians": medians,
        "ratios": ratios,
        "sequential_bound_share_of_raw": bound,
        "goal": {
            "text": f"ours >= {GOAL_SHARE:.0%} of the raw emulator's frames/s",
            "share": ratios["ours_over_raw"],
            "met": ratios["ours_over_raw"] >= GOAL_SHARE,
        },
    }


def doc_row(result: dict) -> dict:
    m, r, goal = result["medians"], result["ratios"], result["goal"]
    config = result["config"]
    figure = (
        f"{result['game']}, {config['agents']} agents x {result['parameters_per_agent']:,} "
        f"weights, {result['device']['type']}: ours {m['ours_frames_per_second']:,.0f} frames/s "
        f"= {r['ours_over_raw']:.0%} of the raw emulator ({m['raw_frames_per_second']:,.0f}) "
        f"(noops=steps: {m['ours_noop_steps_frames_per_second']:,.0f} = "
        f"{r['ours_noop_steps_over_raw']:.0%}), "
        f"{r['ours_over_naive']:.1f}x the 1-env loop ({m['naive_frames_per_second']:,.0f}); "
        f"per step: forward of all agents {m['forward_bmm_ms_per_step']:.0f} ms (grouped conv "
        f"{m['forward_grouped_conv_ms_per_step']:.0f} ms), emulator "
        f"{m['emulator_ms_per_step']:.0f} ms"
    )
    return doc_line(
        NAME, result, figure,
        goal=f"ours >= {GOAL_SHARE:.0%} of raw emulator frames/s",
        met=f"{'yes' if goal['met'] else 'no'} ({goal['share']:.0%})",
    )


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    result = run(args)
    path = write_result(result, args.out, NAME)
    print(f"wrote {path}")
    if args.doc:
        print(f"updated {update_doc_table(doc_row(result))}")
    m, r = result["medians"], result["ratios"]
    print(f"ours {m['ours_frames_per_second']:,.0f} frames/s, raw "
          f"{m['raw_frames_per_second']:,.0f}, naive {m['naive_frames_per_second']:,.0f}; "
          f"ours/raw {r['ours_over_raw']:.2f} (noops=steps "
          f"{r['ours_noop_steps_over_raw']:.2f}), ours/naive {r['ours_over_naive']:.2f}; "
          f"forward {m['forward_bmm_ms_per_step']:.1f} ms/step, emulator "
          f"{m['emulator_ms_per_step']:.1f} ms/step")
    print(f"goal ({result['goal']['text']}): {'met' if result['goal']['met'] else 'NOT met'}")
    return result


if __name__ == "__main__":
    main()
