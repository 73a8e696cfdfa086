"""evoreg demo: optimizers on reference problems, then evolved network weights vs Adam.

Part 1 runs random search and, when the nevergrad plugin is registered, nevergrad's (1+1)
and CMA-ES on Rastrigin (dim 10) and the sphere (dim 20), prints the median best loss over
seeds and plots median convergence curves.

Part 2 evolves all 2,410 weights of a small MLP on scikit-learn's 8x8 digits (real images,
shipped with scikit-learn) with ``leea`` (Prellberg 2020, ch. 5) and ``goea`` (Kucharavy et al.,
ALIFE 2023), trains the same network on the same data with ``adam``, and prints each one's
test accuracy and its ratio to Adam's.

Every run keeps its own directory (run.json, log.jsonl, checkpoint.pt, result.json,
convergence.png) under ``--out``.

    python examples/demo.py                   # what `make demo` runs (a few minutes on 2 cores)
    python examples/demo.py --budget 500      # quicker part 1
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
    weight_seeds: int = 3  # runs per optimizer in part 2
    # Part 2: (optimizer, budget in evaluations, problem config, optimizer config). One
    # evaluation is one network on one minibatch; Adam takes one step per evaluation.
    weight_runs: tuple[tuple[str, int, dict, dict], ...] = (
        ("leea", 40_000, {"batch_size": 256}, {"popsize": 200, "sigma": 0.01}),
        ("goea", 12_600, {"batch_size": 256}, {"reevaluate_parent": True}),
        ("adam", 1_000, {"batch_size": 64}, {}),
    )


def parse_args() -> Args:
    # Only the scalar fields are command-line options; the grid is edited in the dataclass.
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    scalar_types = {"int": int, "str": str}  # annotations are strings (future import)
    for field in dataclasses.fields(Args):
        if field.type in scalar_types:
            parser.add_argument(f"--{field.name}", type=scalar_types[field.type],
                                default=field.default)
    return Args(**vars(parser.parse_args()))


def weights_on_digits(args: Args, out: Path) -> None:
    """Part 2: leea and goea against Adam on the same network and data."""
    accuracy: dict[str, list[float]] = {}
    seconds: dict[str, list[float]] = {}
    for optimizer, budget, problem_config, optimizer_config in args.weight_runs:
        if optimizer not in evoreg.optimizers():
            print(f"{optimizer} not registered, skipped")
            continue
        for seed in range(args.weight_seeds):
            run_dir = out / "digits-weights" / optimizer / f"seed{seed}"
            shutil.rmtree(run_dir, ignore_errors=True)
            result = evoreg.run(
                "mnist-weights", optimizer, budget=budget, seed=seed, out_dir=run_dir,
                problem_config={"dataset": "digits", **problem_config},
                optimizer_config=optimizer_config, checkpoint_every=10_000, progress=False,
            )
            accuracy.setdefault(optimizer, []).append(result.report["test_accuracy"])
            seconds.setdefault(optimizer, []).append(result.wall_time)
            print(f"digits weights {optimizer:6} seed {seed}: test accuracy "
                  f"{result.report['test_accuracy']:.3f}  ({result.wall_time:.1f} s)")
    if not accuracy:
        return
    adam = statistics.median(accuracy["adam"]) if "adam" in accuracy else None
    print(f"\nmnist-weights on digits (mlp-digits, 2,410 weights): median over "
          f"{args.weight_seeds} seeds\n")
    print("| optimizer | evaluations | test accuracy | / Adam | seconds |")
    print("|---|---|---|---|---|")
    for optimizer, budget, _, _ in args.weight_runs:
        if optimizer in accuracy:
            median = statistics.median(accuracy[optimizer])
            ratio = f"{median / adam:.3f}" if adam else "-"
            print(f"| {optimizer} | {budget:,} | {median:.3f} | {ratio} | "
                  f"{statistics.median(seconds[optimizer]):.1f} |")


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

    print("\n--- part 2: network weights on digits ---\n")
    weights_on_digits(args, out)
