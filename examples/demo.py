"""evoreg demo: a few optimizers on two reference problems, three seeds each.

Runs random search and, when the nevergrad plugin is registered, nevergrad's (1+1) and CMA-ES
on Rastrigin (dim 10) and the sphere (dim 20) through ``evoreg.run``, prints the median best
loss over seeds, and plots median convergence curves. Every run keeps its own directory
(run.json, log.jsonl, checkpoint.pt, result.json, convergence.png) under ``--out``.

    python examples/demo.py                   # what `make demo` runs (about a minute on 2 cores)
    python examples/demo.py --budget 500      # quicker
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import statistics
import time
from pathlib import Path

import numpy as np

import evoreg
from evoreg.plots import plot_median_curves


@dataclasses.dataclass
class Args:
    budget: int = 1000  # evaluations per run
    seeds: int = 3  # runs per (problem, optimizer), seeds 0..seeds-1
    out: str = "runs/demo"  # where run directories and plots go
    # (problem, dimension) pairs and optimizers; an optimizer that is not registered is skipped
    problems: tuple[tuple[str, int], ...] = (("rastrigin", 10), ("sphere", 20))
    optimizers: tuple[str, ...] = ("random-search", "ng:OnePlusOne", "ng:CMA")


def parse_args() -> Args:
    # Only the scalar fields are command-line options; the grid is edited in the dataclass.
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    scalar_types = {"int": int, "str": str}  # annotations are strings (future import)
    for field in dataclasses.fields(Args):
        if field.type in scalar_types:
            parser.add_argument(f"--{field.name}", type=scalar_types[field.type],
                                default=field.default)
    return Args(**vars(parser.parse_args()))


if __name__ == "__main__":
    args = parse_args()
    out = Path(args.out)
    registered = evoreg.optimizers()
    optimizers = [name for name in args.optimizers if name in registered]
    skipped = sorted(set(args.optimizers) - set(optimizers))
    if skipped:
        print(f"not registered, skipped: {', '.join(skipped)}")

    started = time.perf_counter()
    best: dict[tuple[str, str], list[float]] = {}  # (problem, optimizer) -> best loss per seed
    curves: dict[str, dict[str, list[tuple[np.ndarray, np.ndarray]]]] = {}
    for problem, dim in args.problems:
        label = f"{problem}-d{dim}"
        curves[label] = {}
        for optimizer in optimizers:
            curves[label][optimizer] = []
            for seed in range(args.seeds):
                run_dir = out / label / optimizer.replace(":", "-") / f"seed{seed}"
                # The demo starts over each time: it replaces only run directories it made.
                shutil.rmtree(run_dir, ignore_errors=True)
                result = evoreg.run(
                    problem,
                    optimizer,
                    budget=args.budget,
                    seed=seed,
                    out_dir=run_dir,
                    problem_config={"dim": dim},
                    # NGOpt-style optimizers choose their algorithm from the planned budget.
                    optimizer_config={"budget": args.budget} if optimizer.startswith("ng:")
                    else None,
                    # Runs of seconds: one checkpoint at the end is enough (resume still works).
                    checkpoint_every=10_000,
                    progress=False,
                )
                best.setdefault((label, optimizer), []).append(result.best_loss)
                cost = np.array([record["cost"] for record in result.log])
                loss = np.array([record["best_loss"] for record in result.log])
                curves[label][optimizer].append((cost, loss))
                print(f"{label:14} {optimizer:14} seed {seed}: best loss {result.best_loss:10.4g}"
                      f"  ({result.wall_time:.1f} s)")

    # Median over seeds: robust to one lucky or unlucky seed, as in benchmark reports.
    print(f"\nmedian best loss over {args.seeds} seeds, {args.budget} evaluations per run\n")
    print(f"| {'problem':14} | " + " | ".join(f"{name:>14}" for name in optimizers) + " |")
    print("|" + "|".join("-" * 16 for _ in range(len(optimizers) + 1)) + "|")
    for label in curves:
        cells = [f"{statistics.median(best[label, name]):14.4g}" for name in optimizers]
        print(f"| {label:14} | " + " | ".join(cells) + " |")

    plots = []
    for label, by_optimizer in curves.items():
        path = out / f"{label}.png"
        plot_median_curves(by_optimizer, path,
                           f"{label}: median best loss (quartiles shaded)", "evaluations")
        plots.append(path)
    print(f"\n{len(best) * args.seeds} runs in {time.perf_counter() - started:.0f} s")
    print(f"plots: {', '.join(map(str, plots))}")
    print(f"runs:  {out}/<problem>/<optimizer>/seed<k>/ (log.jsonl, result.json, convergence.png)")
