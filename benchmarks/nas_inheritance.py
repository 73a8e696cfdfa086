"""Weight inheritance in architecture search: Prellberg's Table 7.1 as a ratio.

Prellberg (2020), Evolving Deep Neural Networks, PhD thesis, ch. 7: the (1+1)-EA with niching
(``niching``) searches ConvNet architectures (``architecture``) under a budget of training
epochs, in three settings:

- ``inheritance``: children inherit their parent's trained weights, e = 4 epochs per child;
- ``baseline I``: no inheritance (every child starts from fresh weights), e = 4;
- ``baseline II``: no inheritance, e = 16 (fewer children, each trained longer).

The same seed gives the three settings the same initial network (common random numbers).
Each run is checkpointed at B/4 and at B epochs: ``evoreg.run`` with budget B/4 (its result
reports the recommendation: ``final_epochs`` more epochs of training, then test accuracy),
then the same run resumed with budget B (a resume with a larger budget continues) and
reported again. The thesis (CIFAR-10, B = 512): inheritance reaches 85% mean test accuracy
after 128 epochs, which baseline I does not reach after 512 (82%). The figure here is the
same comparison as a ratio, mean test accuracy of inheritance at B/4 over baseline I's at
B, with a one-sided Mann-Whitney U test over seeds (inheritance at B/4 greater). With
``--seeds 5`` the smallest possible p is 1/252, so p < 0.05 can be reached; with 2 seeds
it cannot (1/6).

A run uses no more epochs than its budget: the runner asks a child only while the budget
pays for its e epochs (``Problem.candidate_cost``), so B/4 must pay for one child of
baseline II (4e epochs); the epochs actually used are in the JSON. Runs are seed-major
(the three settings of one seed, then the next seed), so a machine's changing load hits the
settings alike. Run folders go to a temporary folder unless ``--runs-dir`` keeps them.

Writes ``nas_inheritance.json`` and ``nas_inheritance.png`` (best validation accuracy
against epochs: a mean line per setting, a dot per seed and log line, like the thesis'
Figure 7.3) to ``--out`` and the benchmark's line in ``docs/benchmarks.md``.

    .venv/bin/python benchmarks/nas_inheritance.py                 # the CPU setting
    .venv/bin/python benchmarks/nas_inheritance.py --quick         # smoke run on digits
    .venv/bin/python benchmarks/nas_inheritance.py --dataset digits --seeds 3 --budget 64 \\
        --no-doc
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

from evoreg.problems.architecture import Config as ArchitectureConfig  # noqa: E402
from evoreg.problems.datasets import default_dataset  # noqa: E402

NAME = "nas_inheritance"
#: The three settings of Table 7.1: weight inheritance, and epochs per child as a multiple
#: of ``--epochs-per-eval`` (baseline II trains each child 4x as long: 16 for e = 4).
SETTINGS = {
    "inheritance": {"inherit": True, "e_multiple": 1},
    "baseline I": {"inherit": False, "e_multiple": 1},
    "baseline II": {"inherit": False, "e_multiple": 4},
}
#: What --quick uses unless given: digits, tiny splits and networks, 2 seeds.
QUICK = {"dataset": "digits", "train_size": 200, "val_size": 100, "budget": 16, "seeds": 2,
         "channels": "8,16,32", "final_epochs": 1, "batch_size": 32, "epochs_per_eval": 1}
#: The CPU setting's defaults: one seed of all three settings took 6 min on 2 shared cores
#: (2026-12-02; inheritance and baseline I about 2.5 min each, their networks grown to 6
#: blocks and 35-70 MFLOPs per image by 64 epochs; baseline II 0.5 min), so 5 seeds take
#: about 30-40 min. The cost grows faster than B: networks grow with every accepted child.
DEFAULTS = {"dataset": "auto", "train_size": 2000, "val_size": 500, "budget": 64, "seeds": 5,
            "channels": "16,32,64", "final_epochs": 4, "batch_size": 64, "epochs_per_eval": 4}
THESIS = {"dataset": "cifar-10", "budget": 512, "inheritance_at_128": 0.85,
          "baseline_I_at_512": 0.82, "final_epochs": 30,
          "channels": list(ArchitectureConfig().channels)}
GOAL = ("inheritance at B/4 reaches at least baseline I's mean test accuracy at B, "
        "with p < 0.05 (one-sided Mann-Whitney U over seeds)")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", help="digits, mnist, fashion-mnist, kmnist or auto "
                        f"(fashion-mnist if present, else digits); default {DEFAULTS['dataset']}")
    parser.add_argument("--data-root", default="")
    parser.add_argument("--train-size", type=int, help="training images")
    parser.add_argument("--val-size", type=int, help="validation images")
    parser.add_argument("--budget", type=int, help="B: training epochs per run")
    parser.add_argument("--seeds", type=int, help="runs per setting (seeds 0, 1, ...)")
    parser.add_argument("--channels", help="allowed channel counts, comma-separated "
                        f"(the thesis': {','.join(map(str, THESIS['channels']))})")
    parser.add_argument("--final-epochs", type=int, help="training before each test")
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--epochs-per-eval", type=int,
                        help="e of inheritance and baseline I; baseline II uses 4e "
                        f"(default {DEFAULTS['epochs_per_eval']}; --quick: "
                        f"{QUICK['epochs_per_eval']})")
    parser.add_argument("--lr", type=float, default=ArchitectureConfig().lr)
    parser.add_argument("--omega", type=float, help="niching's omega (default: its own)")
    parser.add_argument("--niche-steps", type=int, help="niching's k (default: its own)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--runs-dir", help="keep the run folders here (default: a temporary "
                        "folder, removed at the end)")
    add_output_options(parser, str(RESULTS), QUICK)
    args = parser.parse_args()
    for key, default in DEFAULTS.items():
        if getattr(args, key) is None:
            setattr(args, key, QUICK[key] if args.quick else default)
    for key in ("train_size", "val_size", "budget", "seeds", "batch_size", "epochs_per_eval"):
        if getattr(args, key) < 1:
            parser.error(f"--{key.replace('_', '-')} must be >= 1")
    if args.final_epochs < 0:
        parser.error("--final-epochs must be >= 0")
    if args.budget % 4:
        parser.error("--budget must be a multiple of 4 (checkpoints at B/4 and B)")
    if args.budget // 4 < 4 * args.epochs_per_eval:
        parser.error(f"--budget / 4 must pay for one child of baseline II (4 x --epochs-per-eval "
                     f"= {4 * args.epochs_per_eval} epochs), got {args.budget // 4}")
    try:
        args.channels = tuple(int(c) for c in args.channels.split(","))
    except ValueError:
        parser.error(f"--channels must be comma-separated integers, got {args.channels!r}")
    if args.dataset == "auto":
        args.dataset = default_dataset(args.data_root)
    return args


# --------------------------------------------------------------------------- running
def problem_config(args: argparse.Namespace, setting: dict[str, Any]) -> dict[str, Any]:
    config = {"dataset": args.dataset, "train_size": args.train_size,
              "val_size": args.val_size, "channels": args.channels,
              "epochs_per_eval": args.epochs_per_eval * setting["e_multiple"],
              "batch_size": args.batch_size, "lr": args.lr,
              "final_epochs": args.final_epochs, "inherit": setting["inherit"]}
    if args.data_root:
        config["data_root"] = args.data_root
    return config


def optimizer_config(args: argparse.Namespace) -> dict[str, Any]:
    config: dict[str, Any] = {}
    if args.omega is not None:
        config["omega"] = args.omega
    if args.niche_steps is not None:
        config["niche_steps"] = args.niche_steps
    return config


def one_run(args: argparse.Namespace, name: str, seed: int, runs: Path) -> dict[str, Any]:
    """One setting and seed: run to B/4, report; resume to B, report."""
    out = runs / f"{name.replace(' ', '_')}-seed{seed}"
    checkpoints = []
    for budget, resume in ((args.budget // 4, False), (args.budget, True)):
        started = time.perf_counter()
        result = evoreg.run(
            "architecture", "niching", budget, seed=seed, out_dir=out, resume=resume,
            device=args.device, problem_config=problem_config(args, SETTINGS[name]),
            optimizer_config=optimizer_config(args), progress=False, plot=False,
        )
        checkpoints.append({
            "budget": budget, "epochs_used": result.cost, "generations": result.generations,
            "best_validation_accuracy": -result.best_loss, "report": result.report,
            # the search's loop time so far (a resume continues the clock), and this call's
            # whole time: loading data, the search since the last checkpoint, the report
            # (the very first call also pays for torch's warm-up, several seconds)
            "search_seconds": result.wall_time,
            "call_seconds": time.perf_counter() - started,
        })
        print(f"{name}, seed {seed}, {budget} epochs: test accuracy "
              f"{result.report['test_accuracy']:.4f}, {result.report['architecture']}, "
              f"{checkpoints[-1]['call_seconds']:.0f} s", flush=True)
    # The log holds every generation of both calls: cost (epochs) and best loss so far.
    trace = [[line["cost"], -line["best_loss"]] for line in result.log]
    return {"setting": name, "seed": seed, "checkpoints": checkpoints, "trace": trace}


# --------------------------------------------------------------------------- summarising
def spread(values: list[float]) -> dict[str, float]:
    return {"min": min(values), "mean": statistics.fmean(values), "max": max(values)}


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Test (and best validation) accuracy min/mean/max per setting at B/4 and at B."""
    table: dict[str, Any] = {}
    for name in SETTINGS:
        mine = [r for r in runs if r["setting"] == name]
        table[name] = {}
        for index, label in enumerate(("B/4", "B")):
            at = [r["checkpoints"][index] for r in mine]
            table[name][label] = {
                "test_accuracy": spread([c["report"]["test_accuracy"] for c in at]),
                "best_validation_accuracy": spread([c["best_validation_accuracy"] for c in at]),
                "epochs_used": spread([c["epochs_used"] for c in at]),
                "parameters": spread([c["report"]["parameters"] for c in at]),
            }
    return table


def test_accuracies(runs: list[dict[str, Any]], name: str, index: int) -> list[float]:
    return [r["checkpoints"][index]["report"]["test_accuracy"]
            for r in runs if r["setting"] == name]


def compare(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Inheritance at B/4 against baseline I at B: ratio of means, one-sided U test."""
    from scipy.stats import mannwhitneyu  # only here: scipy is slow to import

    a = test_accuracies(runs, "inheritance", 0)
    b = test_accuracies(runs, "baseline I", 1)
    test = mannwhitneyu(a, b, alternative="greater")
    return {
        "a": "inheritance at B/4", "b": "baseline I at B", "a_values": a, "b_values": b,
        "ratio_of_means": statistics.fmean(a) / statistics.fmean(b),
        "mann_whitney_u": float(test.statistic), "p_value": float(test.pvalue),
        "alternative": "greater",
    }


def plot(runs: list[dict[str, Any]], budget: int, path: Path, title: str) -> None:
    """Best validation accuracy against epochs: a dot per log line of each seed, and the
    mean over seeds of the best-so-far step functions (where every seed has one)."""
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    grid = np.arange(1, int(max(r["trace"][-1][0] for r in runs)) + 1)  # whole epochs
    for colour, name in zip(("C0", "C1", "C2"), SETTINGS):
        traces = [np.array(r["trace"]) for r in runs if r["setting"] == name]
        steps = []
        for trace in traces:
            ax.scatter(trace[:, 0], trace[:, 1], s=8, color=colour, alpha=0.35)
            at = np.searchsorted(trace[:, 0], grid, side="right") - 1  # last line <= epoch
            steps.append(np.where(at >= 0, trace[np.maximum(at, 0), 1], np.nan))
        mean = np.mean(steps, axis=0)  # NaN until every seed has scored a child
        ax.plot(grid, mean, color=colour, label=name, drawstyle="steps-post")
        # Markers where a child was scored: baseline II's few children would leave a
        # line of one point invisible.
        scored = np.unique(np.concatenate([t[:, 0] for t in traces])).astype(int)
        ax.plot(scored, mean[scored - 1], "o", color=colour, markersize=4)
    for x in (budget // 4, budget):
        ax.axvline(x, color="grey", linestyle=":", linewidth=1)
    ax.set_xlabel("training epochs")
    ax.set_ylabel("best validation accuracy")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# --------------------------------------------------------------------------- main
def main() -> None:
    args = parse_args()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="nas_inheritance-") as temporary:
        runs_dir = Path(args.runs_dir or temporary)
        runs = [one_run(args, name, seed, runs_dir)
                for seed in range(args.seeds) for name in SETTINGS]
    wall = time.perf_counter() - started

    table, comparison = summarise(runs), compare(runs)
    mean_a = table["inheritance"]["B/4"]["test_accuracy"]["mean"]
    mean_b = table["baseline I"]["B"]["test_accuracy"]["mean"]
    met = mean_a >= mean_b and comparison["p_value"] < 0.05
    scaled = args.channels != tuple(THESIS["channels"])
    info = run_info(args.device)
    data = {
        "benchmark": NAME,
        **info,
        "config": {
            "dataset": args.dataset, "train_size": args.train_size, "val_size": args.val_size,
            "budget": args.budget, "checkpoints": [args.budget // 4, args.budget],
            "seeds": list(range(args.seeds)), "channels": list(args.channels),
            "channels_scaled_down": scaled, "final_epochs": args.final_epochs,
            "batch_size": args.batch_size, "lr": args.lr, "device": args.device,
            "optimizer": "niching", "optimizer_config": optimizer_config(args),
            "settings": {name: problem_config(args, s) for name, s in SETTINGS.items()},
            "quick": args.quick,
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
    channels = ",".join(map(str, args.channels)) + (" (scaled down)" if scaled else "")
    plot(runs, args.budget, out / f"{NAME}.png",
         f"niching on {args.dataset}, B = {args.budget}, {args.seeds} seeds, channels {channels}")

    for name in SETTINGS:
        cells = [f"{label} {table[name][label]['test_accuracy']['mean']:.3f} "
                 f"[{table[name][label]['test_accuracy']['min']:.3f}, "
                 f"{table[name][label]['test_accuracy']['max']:.3f}]" for label in ("B/4", "B")]
        print(f"{name:12s} test accuracy " + "; ".join(cells))
    figure = (
        f"{args.dataset} ({args.train_size} train / {args.val_size} val images), B = "
        f"{args.budget} epochs, {args.seeds} seeds, channels {channels}, final training "
        f"{args.final_epochs} epochs: mean test accuracy inheritance@B/4 {mean_a:.3f} / "
        f"baseline I@B {mean_b:.3f} = {comparison['ratio_of_means']:.3f} (one-sided "
        f"Mann-Whitney p = {comparison['p_value']:.3g}); baseline II@B "
        f"{table['baseline II']['B']['test_accuracy']['mean']:.3f}; {wall / 60:.0f} min; "
        "thesis (CIFAR-10, B = 512): 0.85 / 0.82"
    )
    print(figure)
    print(f"wrote {relative_to_root(path)}")
    if args.doc and not args.quick:
        update_doc_table(doc_line(NAME, info, figure, goal=GOAL, met="yes" if met else "no"))


if __name__ == "__main__":
    main()
