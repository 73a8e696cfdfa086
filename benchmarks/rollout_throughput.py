"""Atari rollout throughput: the ``atari`` problem's batched rollout against the raw emulator.

On one game (Frostbite by default), ``--agents`` distinct agents (Nature-DQN, 1.7M weights
each, the problem's unit-norm init from different seeds), timed in ONE run with interleaved
repeats:

- ``ours``: the problem's own code path with ``reset="ale"`` (``Atari.rollout``, as
  ``evaluate`` runs it; the default ``reset="reference"`` is not measured here): one
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
  what the problem's patches + ``bmm`` forward (bit-stable across batch sizes, which grouped
  convolution is not) costs against it.

On the CPU each repeat also measures the machine's own limits: its float32 matmul rate
(2048 x 2048) and the read rate of a matrix-vector product over all agents' dense weights
(from DRAM) and over four agents' (from cache). With the policy's FLOPs and weight bytes per
step these give ceilings on ours/raw that no forward on this machine could pass, since the
emulator and the forward share the same cores (``machine_limits``).

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
    time_matmul,
    update_doc_table,
    write_result,
)

from evoreg.nets.params import load_flat_parameters_  # noqa: E402
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


def policy_flops(template: torch.nn.Module) -> int:
    """Floating-point operations of one agent step (2 per multiply-add, biases ignored)."""
    flops = 0
    convs = [m for m in template if isinstance(m, torch.nn.Conv2d)]
    denses = [m for m in template if isinstance(m, torch.nn.Linear)]
    size = 84
    for conv in convs:
        size = (size - conv.kernel_size[0]) // conv.stride[0] + 1
        flops += 2 * size * size * conv.weight.numel()
    return flops + sum(2 * dense.weight.numel() for dense in denses)


def gemv_read_rate(agents: int, fan_in: int, out: int, calls: int) -> float:
    """Bytes/s of a matrix-vector product over ``agents`` dense layers' worth of weights.

    With 64 agents the 400+ MB come from DRAM, as in the batched forward; with a few agents
    they fit the last-level cache: the two rates bound the dense layer's cost from below.
    """
    weight = torch.ones(out, fan_in * agents)
    vector = torch.ones(fan_in * agents)
    torch.mv(weight, vector)  # touch
    seconds = []
    for _ in range(calls):
        start = time.perf_counter()
        torch.mv(weight, vector)
        seconds.append(time.perf_counter() - start)
    return weight.numel() * 4 / median(seconds)


def machine_limits(template: torch.nn.Module, agents: int, emulator_ms: float,
                   calls: int) -> dict:
    """Lower bounds on the forward from this machine's own matmul and memory rates.

    The emulator and the forward share the same cores, so a step of all agents costs at
    least ``emulator + forward``; the forward costs at least the larger of its arithmetic at
    the machine's matmul rate and its weight reads at the machine's read rate (roofline).
    The resulting shares of raw are ceilings no implementation on this machine can pass.
    """
    matmul = time_matmul(2048, calls, torch.device("cpu"), torch.Generator().manual_seed(0))
    dense = next(m for m in template if isinstance(m, torch.nn.Linear))
    fan_in, out = dense.in_features, dense.out_features
    dram = gemv_read_rate(agents, fan_in, out, calls)
    cache = gemv_read_rate(4, fan_in, out, calls)
    flops = policy_flops(template) * agents
    weight_bytes = sum(p.numel() for p in template.parameters()) * 4 * agents
    compute_ms = flops / (matmul["gflops"] * 1e9) * 1e3
    ceilings = {}
    for name, rate in (("weights_from_dram", dram), ("weights_from_cache", cache),
                       ("compute_only", float("inf"))):
        forward_ms = max(compute_ms, weight_bytes / rate * 1e3)
        ceilings[name] = {"forward_ms": forward_ms,
                          "share_of_raw": emulator_ms / (emulator_ms + forward_ms)}
    return {
        "matmul_gflops": matmul["gflops"],
        "dram_read_gb_per_s": dram / 1e9,
        "cache_read_gb_per_s": cache / 1e9,
        "policy_gflop_per_step": flops / 1e9,
        "weight_mb_per_step": weight_bytes / 1e6,
        "ceilings": ceilings,
    }


# ale-py's C++ vector environment, the path this benchmark measures (not the problem's default
# reset="reference", baselines' wrappers emulated in Python, which is several times slower)
ALE_PATH = {"reset": "ale", "episode_seeds": "shared"}


# --------------------------------------------------------------------------- the run
def run(args: Args) -> dict:
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    problem = evoreg.make_problem(
        "atari", game=args.game, num_envs=args.agents, max_steps=args.steps,
        num_threads=args.num_threads, device=args.device, seed=args.seed, **ALE_PATH,
    )
    fast = evoreg.make_problem(
        "atari", game=args.game, num_envs=args.agents, max_steps=args.steps,
        num_threads=args.num_threads, device=args.device, seed=args.seed, noops="steps",
        **ALE_PATH,
    )
    device = problem.device
    info = run_info(device)
    # distinct agents: the problem's init from seeds seed .. seed + agents - 1
    weights = torch.stack([problem.space.seeded_initial(args.seed + i) for i in range(args.agents)])
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
        if device.type == "cpu":
            emulator_ms = args.agents * FRAMESKIP / record["raw"]["frames_per_second"] * 1e3
            record["limits"] = machine_limits(problem.template, args.agents, emulator_ms,
                                              args.forward_calls)
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
    limits = None
    if device.type == "cpu":
        limits = {key: med("limits", key) for key in (
            "matmul_gflops", "dram_read_gb_per_s", "cache_read_gb_per_s",
            "policy_gflop_per_step", "weight_mb_per_step")}
        limits["ceilings"] = {
            name: {key: med("limits", "ceilings", name, key)
                   for key in ("forward_ms", "share_of_raw")}
            for name in repeats[0]["limits"]["ceilings"]
        }
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
        "machine_limits": limits,
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
    limits = result.get("machine_limits")
    if limits:
        ceilings = limits["ceilings"]
        figure += (
            f"; this machine's ceiling for any forward ({limits['policy_gflop_per_step']:.2f} "
            f"GFLOP and {limits['weight_mb_per_step']:.0f} MB of weights a step, matmul "
            f"{limits['matmul_gflops']:.0f} GFLOP/s, reads {limits['dram_read_gb_per_s']:.0f} "
            f"GB/s DRAM, {limits['cache_read_gb_per_s']:.0f} GB/s cache): "
            f"{ceilings['weights_from_dram']['share_of_raw']:.0%} of raw, "
            f"{ceilings['weights_from_cache']['share_of_raw']:.0%} if the weights stayed in "
            f"cache, {ceilings['compute_only']['share_of_raw']:.0%} for the arithmetic alone"
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
    limits = result["machine_limits"]
    if limits:
        print("ceilings on ours/raw from this machine's matmul and read rates: " + ", ".join(
            f"{name} {c['share_of_raw']:.0%}" for name, c in limits["ceilings"].items()))
    print(f"goal ({result['goal']['text']}): {'met' if result['goal']['met'] else 'NOT met'}")
    return result


if __name__ == "__main__":
    main()
