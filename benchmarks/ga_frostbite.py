"""atari-ga on Frostbite against nevergrad and a random agent, at a CPU-sized frame budget.

Prellberg's thesis (2020, ch. 6) runs its GA (kappa 10 elites re-evaluated up to 20 episodes,
mu 40 parents, lambda 2000 children, sigma 0.005) on Atari for billions of frames and reports
a Frostbite score of 6,440 against 5,547 for the Such et al. (2017) baseline. This script runs
``atari-ga`` with the same operators, scaled to a budget one 2-core CPU can give (``--frames``
per run, each generation one episode per candidate; by default the thesis code's protocol:
its reset and an independent seed per episode, ``--reset ale --episode-seeds shared`` for
ale-py's faster C++ environment and one seed a generation), for
``--seeds`` seeds, and on the same ``atari`` problem with the same frame budget
``ng:NGOpt`` and ``ng:OnePlusOne`` (nevergrad over all 1.7M weights, ``--ng-popsize``
candidates a generation), and a random-action agent. Each run's recommendation is scored by
the problem's ``report`` as the thesis code's final score: 50 fixed-seed episodes (none seen
in training) without evoreg's step cap (gym's 100,000-agent-step limit), mean and median.

Writes ``benchmarks/results/ga_frostbite.json`` (every run), ``ga_frostbite.png`` (best
episode score against emulator frames, median over seeds) and the line in
``docs/benchmarks.md``.

    .venv/bin/python benchmarks/ga_frostbite.py                 # the CPU run
    .venv/bin/python benchmarks/ga_frostbite.py --quick         # smoke run (Pong, tiny)
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import resource
import shutil
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

import evoreg  # first: it enables torch's huge-page allocations

# isort: split
import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    RESULTS,
    doc_line,
    relative_to_root,
    run_info,
    update_doc_table,
    write_result,
)

from evoreg.devices import resolve_device  # noqa: E402

NAME = "ga_frostbite"
FINISHED = "benchmark_run.json"  # in a run directory: that run's figures
THESIS = {"game": "frostbite", "atari_ga": 6440, "such2017_baseline": 5547}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--game", default="frostbite")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--frames", type=int, default=200_000, help="emulator frames per run")
    parser.add_argument("--popsize", type=int, default=32, help="lambda (thesis: 2000)")
    parser.add_argument("--parents", type=int, default=8, help="mu (thesis: 40)")
    parser.add_argument("--elites", type=int, default=2, help="kappa (thesis: 10)")
    parser.add_argument("--max-evals", type=int, default=3, help="thesis: 20")
    parser.add_argument("--sigma", type=float, default=0.005)
    parser.add_argument("--ng", default="ng:NGOpt,ng:OnePlusOne", help="comma-separated peers")
    parser.add_argument("--ng-popsize", type=int, default=16)
    parser.add_argument("--ng-budget", type=int, default=None,
                        help="evaluations nevergrad plans for (default: --frames). NGOpt "
                             "picks by it: at <= 500 (this budget allows ~200 episodes) "
                             "MetaModel over a full-covariance CMA, which cannot allocate "
                             "its 1.7M x 1.7M matrix; at >= 1000 DE")
    parser.add_argument("--ng-checkpoint-seconds", type=float, default=float("inf"),
                        help="default: never. Pickling NGOpt's state (DE over 1.7M weights) "
                             "after 11 generations grew the process to 24 GB and the kernel "
                             "killed it on a 23 GB machine")
    parser.add_argument("--max-steps", type=int, default=1000,
                        help="agent steps per episode (thesis: 3000; 1000 fits the CPU budget)")
    parser.add_argument("--num-envs", type=int, default=64)
    parser.add_argument("--noops", choices=("frames", "steps"), default="frames",
                        help="--reset ale only: its no-ops, 1-30 frames (a seeded reset costs "
                             "~0.2 s) or 1-8 agent steps after a cheap deterministic reset")
    parser.add_argument("--reset", choices=("reference", "ale"), default="reference",
                        help="the thesis code's reset (baselines' wrappers) or ale-py's")
    parser.add_argument("--episode-seeds", choices=("independent", "shared"),
                        default="independent")
    parser.add_argument("--report-episodes", type=int, default=50,
                        help="final-score episodes (the thesis code: 50)")
    parser.add_argument("--report-max-steps", type=int, default=0,
                        help="agent steps a final-score episode may last (0: no cap of "
                             "evoreg's, as the thesis code)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--runs", default="",
                        help="keep run directories here (default: temp); a rerun with the same "
                             "--runs keeps the runs that finished")
    parser.add_argument("--out", default=str(RESULTS))
    parser.add_argument("--no-doc", action="store_true", help="do not touch docs/benchmarks.md")
    parser.add_argument("--quick", action="store_true", help="tiny smoke run on Pong")
    args = parser.parse_args()
    if args.quick:
        args.game, args.seeds, args.frames = "pong", 1, 800
        args.popsize, args.parents, args.elites, args.max_evals = 4, 2, 1, 2
        args.ng, args.ng_popsize = "ng:OnePlusOne", 2
        args.max_steps, args.num_envs, args.report_episodes = 50, 4, 2
        args.noops, args.report_max_steps = "steps", 50
    return args


def one_run(optimizer: str, optimizer_config: dict, problem_config: dict, frames: int,
            seed: int, device: str, runs: Path, checkpoint_seconds: float) -> dict:
    """One run, its figures written to ``FINISHED`` in its run directory (run in a child)."""
    run_dir = run_directory(runs, optimizer, seed)
    settings = run_settings(optimizer, optimizer_config, problem_config, frames, seed)
    shutil.rmtree(run_dir, ignore_errors=True)
    started = time.perf_counter()
    result = evoreg.run(
        "atari", optimizer, budget=frames, seed=seed, out_dir=run_dir, device=device,
        problem_config=problem_config, optimizer_config=optimizer_config, progress=False,
        checkpoint_seconds=checkpoint_seconds,
    )
    wall = time.perf_counter() - started
    # Best single-episode score so far, against frames: what the search saw.
    curve = [(r["cost"], -r["best_loss"]) for r in result.log]
    run = {
        "seed": seed,
        "report": result.report,
        "generations": result.generations,
        "frames": result.cost,
        "wall_time": wall,
        "frames_per_second": result.cost / wall,
        "peak_memory_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6,
        "curve": curve,
    }
    # Written as each run ends, so a crash loses only the run in progress: rerun with the
    # same --runs to go on.
    (run_dir / FINISHED).write_text(json.dumps({"settings": settings, "run": run}))
    return run


def run_directory(runs: Path, optimizer: str, seed: int) -> Path:
    return runs / optimizer.replace(":", "_") / f"seed{seed}"


def run_settings(optimizer: str, optimizer_config: dict, problem_config: dict, frames: int,
                 seed: int) -> dict:
    return {"optimizer": optimizer, "optimizer_config": optimizer_config,
            "problem_config": problem_config, "frames": frames, "seed": seed}


def run_in_child(optimizer: str, optimizer_config: dict, problem_config: dict, frames: int,
                 seed: int, device: str, runs: Path, checkpoint_seconds: float) -> dict:
    """``one_run`` in a fresh process, or the figures of the same run finished before.

    nevergrad's NGOpt (DE) over 1.7M weights grew past this machine's 23 GB and the kernel
    killed it; in a child that kill ends one run, recorded as failed, not the benchmark.
    """
    finished = run_directory(runs, optimizer, seed) / FINISHED
    settings = run_settings(optimizer, optimizer_config, problem_config, frames, seed)
    if finished.exists():
        kept = json.loads(finished.read_text())
        if kept["settings"] == settings:  # a finished run of this very plan: keep it
            print(f"{optimizer} seed {seed}: kept from {finished}", flush=True)
            return kept["run"]
    child = multiprocessing.get_context("spawn").Process(
        target=one_run, args=(optimizer, optimizer_config, problem_config, frames, seed,
                              device, runs, checkpoint_seconds),
    )
    child.start()
    child.join()
    if child.exitcode == 0 and finished.exists():
        return json.loads(finished.read_text())["run"]
    if child.exitcode is not None and child.exitcode < 0:
        signal_name = signal.Signals(-child.exitcode).name
        why = f"killed by {signal_name}"
        if signal_name == "SIGKILL":
            why += " (on Linux, most likely the kernel's out-of-memory killer)"
    else:
        why = f"exited with status {child.exitcode}"
    return {"seed": seed, "failed": why}


def random_agent(problem_config: dict, episodes: int, device: str) -> dict:
    """The problem's report for a policy that picks uniformly random actions."""
    problem = evoreg.make_problem("atari", seed=0, device=device, **problem_config)
    return problem.report_random(episodes)


def plot(results: dict[str, list[dict]], random_score: float, path: Path, title: str) -> None:
    figure, axis = plt.subplots(figsize=(7, 4.5))
    for name, runs in results.items():
        end = max(r["curve"][-1][0] for r in runs)
        start = max(r["curve"][0][0] for r in runs)  # from where every seed has a point
        grid = np.linspace(start, end, 200)
        curves = []
        for run in runs:
            frames = np.array([c[0] for c in run["curve"]], dtype=float)
            scores = np.array([c[1] for c in run["curve"]], dtype=float)
            index = np.searchsorted(frames, grid, side="right") - 1
            curves.append(np.where(index >= 0, scores[np.clip(index, 0, None)], np.nan))
        stacked = np.vstack(curves)
        axis.plot(grid, np.nanmedian(stacked, axis=0), label=name)
        axis.fill_between(grid, np.nanmin(stacked, axis=0), np.nanmax(stacked, axis=0), alpha=0.2)
    axis.axhline(random_score, color="grey", linestyle="--", label="random actions (report)")
    axis.set_xlabel("emulator frames")
    axis.set_ylabel("best episode score so far")
    axis.set_title(title)
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def main() -> None:
    args = parse_args()
    device = str(resolve_device(args.device))
    problem_config = {
        "game": args.game, "max_steps": args.max_steps, "num_envs": args.num_envs,
        "report_episodes": args.report_episodes, "noops": args.noops, "reset": args.reset,
        "episode_seeds": args.episode_seeds, "report_max_steps": args.report_max_steps,
    }
    ga_config = {
        "popsize": args.popsize, "parents": args.parents, "elites": args.elites,
        "max_evals": args.max_evals, "sigma": args.sigma,
    }
    plan = {"atari-ga": ga_config}
    for name in filter(None, args.ng.split(",")):
        plan[name] = {"popsize": args.ng_popsize, "budget": args.ng_budget or args.frames}
    runs = Path(args.runs) if args.runs else Path(tempfile.mkdtemp(prefix="ga_frostbite-"))
    results: dict[str, list[dict]] = {name: [] for name in plan}
    for seed in range(args.seeds):  # interleaved, so machine noise hits all alike
        for name, config in plan.items():
            every = 30.0 if name == "atari-ga" else args.ng_checkpoint_seconds
            run = run_in_child(name, config, problem_config, args.frames, seed, device, runs,
                               every)
            results[name].append(run)
            if "failed" in run:
                print(f"{name} seed {seed}: FAILED, {run['failed']}", flush=True)
                continue
            print(f"{name} seed {seed}: report mean {run['report']['mean_score']:.1f}, "
                  f"median {run['report']['median_score']:.1f} ({run['generations']} gens, "
                  f"{run['wall_time']:.0f} s, {run['frames_per_second']:.0f} frames/s)",
                  flush=True)
    if not args.runs:
        shutil.rmtree(runs, ignore_errors=True)
    random = random_agent(problem_config, args.report_episodes, device)
    print(f"random actions: mean {random['mean_score']:.1f}", flush=True)

    done = {name: [r for r in runs_ if "failed" not in r] for name, runs_ in results.items()}
    failed = {name: len(runs_) - len(done[name]) for name, runs_ in results.items()}
    done = {name: runs_ for name, runs_ in done.items() if runs_}
    medians = {name: statistics.median(r["report"]["mean_score"] for r in runs_)
               for name, runs_ in done.items()}
    wall = {name: statistics.median(r["wall_time"] for r in runs_)
            for name, runs_ in done.items()}
    info = run_info(device)
    data = {
        "benchmark": NAME,
        **info,
        "config": {
            "game": args.game, "seeds": args.seeds, "frames_per_run": args.frames,
            "problem": problem_config, "atari-ga": ga_config,
            "nevergrad": {"names": list(plan)[1:], "popsize": args.ng_popsize,
                          "budget": args.ng_budget or args.frames},
        },
        "median_report_mean_score": medians,
        "random_actions": random,
        "median_wall_time_s": wall,
        "failed_runs": failed,
        "runs": results,
        "thesis": THESIS,
    }
    out = Path(args.out)
    path = write_result(data, out, NAME)
    plot(done, random["mean_score"], out / f"{NAME}.png",
         f"{args.game}: {args.frames:,} frames a run, median of {args.seeds} seeds")
    parts = []
    for name, runs_ in results.items():
        why = next((r["failed"] for r in runs_ if "failed" in r), "")
        if name not in medians:
            parts.append(f"{name} failed in all {len(runs_)} runs ({why})")
            continue
        part = f"{name} {medians[name]:.0f} ({wall[name]:.0f} s a run"
        if failed[name]:
            part += f"; {failed[name]} of {len(runs_)} runs failed: {why}"
        parts.append(part + ")")
    parts = ", ".join(parts)
    figure = (
        f"{args.game}, {args.frames:,} frames a run, episodes capped at {args.max_steps} agent "
        f"steps, {args.seeds} seeds, median of each run's "
        f"30-episode mean score: {parts}; random actions {random['mean_score']:.0f} "
        f"(atari-ga lambda {args.popsize}, mu {args.parents}, kappa {args.elites}, max_evals "
        f"{args.max_evals}; thesis at ~1e9 frames: 6,440)"
    )
    print(figure)
    print(f"wrote {relative_to_root(path)}")
    if not args.no_doc:
        best_peer = max((s for n, s in medians.items() if n != "atari-ga"), default=float("-inf"))
        beats = medians.get("atari-ga", float("-inf")) > max(best_peer, random["mean_score"])
        update_doc_table(doc_line(
            NAME, info, figure, goal="atari-ga above random actions and the nevergrad peers",
            met="yes" if beats else "no",
        ))


if __name__ == "__main__":
    main()
