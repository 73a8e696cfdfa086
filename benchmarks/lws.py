"""Learned weight sharing against full and no sharing: Prellberg's Table 8.1 row, offline.

Prellberg (2020), Evolving Deep Neural Networks, PhD thesis, ch. 8 (code
jprellberg/learned-weight-sharing): on DKL-MNIST (EMNIST digits, EMNIST letters, KMNIST; 500
training examples per task) with the same 5,000 iterations, learned sharing (categorical NES,
lambda 8, eta 0.01, over K = 3 versions per layer, the weights trained by Adam) reached a
mean test error of 11.83%, no sharing 12.80% and full sharing 14.16%.

Here the ``weight-sharing`` problem runs the three settings on its offline task set
(scikit-learn digits scaled to 28x28 and Fashion-MNIST, 500 training examples each, full test
sets) with the same iteration budget per setting:

- ``learned``: ``sharing=learned`` searched by ``--optimizer`` (default ``nes``, popsize 8,
  eta 0.01: the thesis' values), the weights trained on the first 8 sampled assignments;
- ``full`` and ``none``: the baselines, whose space has one choice per slot; they are run by
  ``random-search`` with popsize 1 (the optimizer has nothing to choose; the problem's Adam
  steps are the whole training).

Each run is reported (test error of the recommended assignment, NES's most probable one) at
``--points`` evenly spaced iterations: ``evoreg.run`` to the first, then resumed with larger
budgets (a resume with a larger budget continues). The figure is the final mean +- sd test
error (mean over tasks) per setting over ``--seeds`` seeds and a one-sided Mann-Whitney U test
of learned (lower) against the better baseline (the lower mean). Runs are seed-major, so a
machine's changing load hits the settings alike.

CPU setting: 2,000 iterations (the thesis: 5,000), 5 seeds, one torch thread (the network's
ops are small: on a loaded 2-core CPU two threads made them 20x slower). One learned
iteration took about 0.09 s and a baseline's 0.02 s on 2 shared cores; a report on the
Fashion-MNIST test set about 3 s. ``nes`` is another plugin: ``--quick`` falls back to
``random-search`` (and says so) when it is not installed.

Writes ``lws.json`` and ``lws.png`` (test error against iterations: mean per setting, a thin
line per seed) to ``--out`` and the benchmark's line in ``docs/benchmarks.md``.

    .venv/bin/python benchmarks/lws.py                    # the CPU setting (about 30 min)
    .venv/bin/python benchmarks/lws.py --quick            # smoke run on digits
    .venv/bin/python benchmarks/lws.py --tasks emnist-digits,emnist-letters,kmnist \\
        --iterations 5000 --data-root DIR --no-doc        # the thesis' tasks
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import evoreg  # first: it enables torch's huge-page allocations

# isort: split
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    RESULTS,
    add_output_options,
    doc_line,
    relative_to_root,
    run_info,
    update_doc_table,
    write_result,
)

from evoreg.problems.weight_sharing import Config as WeightSharingConfig  # noqa: E402

NAME = "lws"
SETTINGS = ("learned", "full", "none")
LABELS = {"learned": "learned sharing", "full": "full sharing", "none": "no sharing"}
#: What --quick uses unless given: two tasks from the digits alone, a few iterations.
QUICK = {"tasks": "digits,digits-inverted", "train_size": 50, "iterations": 20, "points": 2,
         "seeds": 2}
DEFAULTS = {"tasks": WeightSharingConfig().tasks, "train_size": 500, "iterations": 2000,
            "points": 10, "seeds": 5}
THESIS = {"tasks": "emnist-digits,emnist-letters,kmnist", "iterations": 5000,
          "test_error": {"learned": 0.1183, "none": 0.1280, "full": 0.1416}}
GOAL = ("learned sharing has the lowest mean test error of the three, p < 0.05 against the "
        "better baseline (one-sided Mann-Whitney U over seeds)")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", help=f"comma-separated tasks; default {DEFAULTS['tasks']}")
    parser.add_argument("--data-root", default="")
    parser.add_argument("--train-size", type=int, help="training examples per task")
    parser.add_argument("--iterations", type=int, help="iterations (theta steps) per run")
    parser.add_argument("--points", type=int, help="test reports per run, evenly spaced")
    parser.add_argument("--seeds", type=int, help="runs per setting (seeds 0, 1, ...)")
    parser.add_argument("--optimizer", default="nes",
                        help="optimizer of the learned assignment (default nes)")
    parser.add_argument("--popsize", type=int, default=8, help="lambda (thesis: 8)")
    parser.add_argument("--eta", type=float, default=0.01, help="nes' eta (thesis: 0.01)")
    parser.add_argument("--versions", type=int, default=3, help="K (thesis: 3)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--runs-dir", help="keep the run folders here (default: a temporary "
                        "folder, removed at the end)")
    add_output_options(parser, str(RESULTS), QUICK)
    args = parser.parse_args()
    for key, default in DEFAULTS.items():
        if getattr(args, key) is None:
            setattr(args, key, QUICK[key] if args.quick else default)
    for key in ("train_size", "iterations", "points", "seeds", "popsize", "versions",
                "threads"):
        if getattr(args, key) < 1:
            parser.error(f"--{key.replace('_', '-')} must be >= 1")
    if args.points > args.iterations:
        parser.error("--points must be <= --iterations")
    args.fallback = None
    if args.optimizer not in evoreg.optimizers():
        if not args.quick:
            parser.error(f"optimizer {args.optimizer!r} is not installed")
        args.fallback, args.optimizer = args.optimizer, "random-search"
        print(f"{args.fallback} is not installed: --quick uses random-search", flush=True)
    return args


# --------------------------------------------------------------------------- running
def problem_config(args: argparse.Namespace, sharing: str) -> dict[str, Any]:
    config = {"tasks": args.tasks, "train_size": args.train_size, "sharing": sharing,
              "versions": args.versions}
    if args.data_root:
        config["data_root"] = args.data_root
    return config


def optimizer_of(args: argparse.Namespace, sharing: str) -> tuple[str, dict[str, Any]]:
    if sharing != "learned":
        return "random-search", {"popsize": 1}
    if args.optimizer == "nes":
        return "nes", {"popsize": args.popsize, "eta": args.eta}
    return args.optimizer, {"popsize": args.popsize}


def budgets(args: argparse.Namespace) -> list[int]:
    return sorted({round(args.iterations * (i + 1) / args.points) for i in range(args.points)})


def one_run(args: argparse.Namespace, sharing: str, seed: int, runs: Path) -> dict[str, Any]:
    """One setting and seed, reported at every budget of ``budgets``."""
    out = runs / f"{sharing}-seed{seed}"
    optimizer, config = optimizer_of(args, sharing)
    trace, started = [], time.perf_counter()
    for index, budget in enumerate(budgets(args)):
        result = evoreg.run(
            "weight-sharing", optimizer, budget, seed=seed, out_dir=out, resume=index > 0,
            device=args.device, problem_config=problem_config(args, sharing),
            optimizer_config=config, progress=False, plot=False,
        )
        report = result.report
        trace.append({"iterations": result.cost, "test_error": report["test_error"],
                      "test_error_pooled": report["test_error_pooled"],
                      "test_error_per_task": report["test_error_per_task"],
                      "distinct_weights": report["distinct_weights"]})
    seconds = time.perf_counter() - started
    print(f"{sharing}, seed {seed}: test error {report['test_error']:.4f} "
          f"({report['distinct_weights']} distinct weights), {seconds:.0f} s", flush=True)
    return {"setting": sharing, "seed": seed, "optimizer": optimizer,
            "optimizer_config": config, "trace": trace, "final_report": report,
            "search_seconds": result.wall_time, "call_seconds": seconds}


# --------------------------------------------------------------------------- summarising
def final_errors(runs: list[dict[str, Any]], sharing: str) -> list[float]:
    return [r["final_report"]["test_error"] for r in runs if r["setting"] == sharing]


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    table = {}
    for sharing in SETTINGS:
        errors = final_errors(runs, sharing)
        table[sharing] = {
            "test_error_mean": statistics.fmean(errors),
            "test_error_sd": statistics.stdev(errors) if len(errors) > 1 else 0.0,
            "test_error_values": errors,
            "distinct_weights": [r["final_report"]["distinct_weights"]
                                 for r in runs if r["setting"] == sharing],
        }
    return table


def compare(runs: list[dict[str, Any]], table: dict[str, Any]) -> dict[str, Any]:
    """Learned against the better baseline (lower mean test error): one-sided U test."""
    from scipy.stats import mannwhitneyu  # only here: scipy is slow to import

    better = min(("full", "none"), key=lambda s: table[s]["test_error_mean"])
    a, b = final_errors(runs, "learned"), final_errors(runs, better)
    test = mannwhitneyu(a, b, alternative="less")
    return {"a": "learned", "b": better, "a_values": a, "b_values": b,
            "mann_whitney_u": float(test.statistic), "p_value": float(test.pvalue),
            "alternative": "less"}


def plot(runs: list[dict[str, Any]], path: Path, title: str) -> None:
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for colour, sharing in zip(("C0", "C1", "C2"), SETTINGS):
        traces = [r["trace"] for r in runs if r["setting"] == sharing]
        x = [point["iterations"] for point in traces[0]]
        errors = np.array([[point["test_error"] for point in t] for t in traces])
        for row in errors:
            ax.plot(x, row, color=colour, alpha=0.25, linewidth=0.8)
        ax.plot(x, errors.mean(axis=0), "o-", color=colour, markersize=3,
                label=LABELS[sharing])
    ax.set_xlabel("iterations")
    ax.set_ylabel("test error (mean over tasks)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# --------------------------------------------------------------------------- main
def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="lws-") as temporary:
        runs_dir = Path(args.runs_dir or temporary)
        runs = [one_run(args, sharing, seed, runs_dir)
                for seed in range(args.seeds) for sharing in SETTINGS]
    wall = time.perf_counter() - started

    table = summarise(runs)
    comparison = compare(runs, table)
    means = {s: table[s]["test_error_mean"] for s in SETTINGS}
    met = min(means, key=means.get) == "learned" and comparison["p_value"] < 0.05
    info = run_info(args.device)
    data = {
        "benchmark": NAME,
        **info,
        "config": {
            "tasks": args.tasks, "train_size": args.train_size,
            "iterations": args.iterations, "report_at": budgets(args),
            "seeds": list(range(args.seeds)), "optimizer": args.optimizer,
            "optimizer_fallback_for": args.fallback, "popsize": args.popsize,
            "eta": args.eta, "versions": args.versions, "threads": args.threads,
            "device": args.device, "quick": args.quick,
            "settings": {s: problem_config(args, s) for s in SETTINGS},
        },
        "runs": runs,
        "table": table,
        "comparison": comparison,
        "wall_time_s": wall,
        "thesis": THESIS,
        "goal": {"text": GOAL, "met": met},
    }
    out = Path(args.out)
    path = write_result(data, out, NAME)
    plot(runs, out / f"{NAME}.png",
         f"{args.tasks}: {args.optimizer} vs baselines, {args.seeds} seeds")

    cells = [f"{s} {100 * table[s]['test_error_mean']:.2f} +- "
             f"{100 * table[s]['test_error_sd']:.2f}%" for s in SETTINGS]
    figure = (
        f"{args.tasks} ({args.train_size} train per task), {args.iterations} iterations, "
        f"{args.seeds} seeds, {args.optimizer}: mean test error {'; '.join(cells)}; learned < "
        f"{comparison['b']}: one-sided Mann-Whitney p = {comparison['p_value']:.3g}; "
        f"{wall / 60:.0f} min; thesis (DKL-MNIST, 5,000 iterations): 11.83 / 14.16 / 12.80%"
    )
    print(figure)
    print(f"wrote {relative_to_root(path)}")
    if args.doc and not args.quick:
        update_doc_table(doc_line(NAME, info, figure, goal=GOAL, met="yes" if met else "no"))


if __name__ == "__main__":
    main()
