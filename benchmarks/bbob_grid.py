"""The BBOB grid of ``examples/bbob.toml``: COCO functions x optimizers x seeds, with statistics.

Runs the grid with ``evoreg.bench`` (``--workers`` processes; the ``bbob`` problem needs
``pip install 'evoreg[bbob]'``), then ``evoreg.report`` on its directory, and records per
optimizer its average rank over the functions (by median precision f - f_opt), its mean
win rate, and the share of (run, target) pairs of the ECDF reached within the budget
(targets: 21 levels per function between the median precision after the first generation
and the best precision any run reached, log-spaced), plus the functions where one optimizer
is significantly better than every other (one-sided Mann-Whitney U, Holm-corrected).
The goal is the one of a ``make demo``-sized machine: the whole grid within 10 minutes on 2
CPU cores.

Writes ``benchmarks/results/bbob_grid.json`` (the summary rows, the statistics, the
ECDF targets and the elapsed time), ``bbob_grid_ecdf.png`` and ``bbob_grid_win_rates.png``,
and the benchmark's line in ``docs/benchmarks.md``.

    .venv/bin/python benchmarks/bbob_grid.py                  # the grid, 2 workers
    .venv/bin/python benchmarks/bbob_grid.py --quick          # smoke: 2 functions, d = 2
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import evoreg  # noqa: F401  first: it enables torch's huge-page allocations

# isort: split
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    RESULTS,
    ROOT,
    add_output_options,
    doc_line,
    relative_to_root,
    run_info,
    update_doc_table,
    write_result,
)

from evoreg.bench import bench  # noqa: E402
from evoreg.report import ECDF_PNG, PLOTS_DIR, WIN_RATE_PNG, report  # noqa: E402

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

NAME = "bbob_grid"
CONFIG = ROOT / "examples" / "bbob.toml"
GOAL_S = 600.0  # the whole grid within 10 minutes on 2 CPU cores
QUICK = {"budget": 100, "seeds": 3, "functions": 2, "dim": 2,
         "optimizers": ("random-search", "ng:OnePlusOne")}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(CONFIG), help="the bench TOML file")
    parser.add_argument("--workers", type=int, default=2, help="cells run at a time")
    parser.add_argument("--runs", default="", help="keep the bench directory here (default: "
                        "a temporary one); an existing one is resumed")
    add_output_options(parser, str(RESULTS), {k: v for k, v in QUICK.items()
                                              if k != "optimizers"})
    return parser.parse_args(argv)


def grid(args: argparse.Namespace) -> dict:
    config = tomllib.loads(Path(args.config).read_text())
    if args.quick:
        config.update(budget=QUICK["budget"], seeds=QUICK["seeds"])
        config["problem"] = [{**table, "dim": QUICK["dim"]}
                             for table in config["problem"][:QUICK["functions"]]]
        config["optimizer"] = [table for table in config["optimizer"]
                               if table["name"] in QUICK["optimizers"]]
    return config


def summarise(summary: dict, rows: list[dict]) -> dict:
    """Per optimizer: mean rank, mean win rate, ECDF share reached; the significant bests."""
    stats, ecdf = summary["statistics"], summary["ecdf"]
    rates = stats["win_rates"]
    per_optimizer = {
        row["optimizer"]: {"mean_rank": row["mean_rank"], "problems": row["problems"]}
        for row in stats["average_ranks"]
    }
    for label, mean in zip(rates["optimizers"], rates["mean"]):
        per_optimizer[label]["mean_win_rate"] = mean
    for label, pairs in ecdf["pairs"].items():
        per_optimizer[label]["ecdf_reached"] = ecdf["reached"][label] / pairs if pairs else 0.0
    return {
        "optimizers": per_optimizer,
        "best": {problem: tests["best"] for problem, tests in stats["problems"].items()},
        "costs": {f"{row['problem']}/{row['optimizer']}": row["costs"] for row in rows},
    }


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    config = grid(args)
    runs = Path(args.runs) if args.runs else Path(tempfile.mkdtemp(prefix="bbob-grid-"))
    started = time.perf_counter()
    rows = bench(config, runs, resume=runs.exists() and any(runs.iterdir()),
                 workers=args.workers)
    elapsed = time.perf_counter() - started
    summary = report(runs)
    figures = summarise(summary, rows)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name in (ECDF_PNG, WIN_RATE_PNG):
        shutil.copyfile(runs / PLOTS_DIR / name, out / f"{NAME}_{name}")
    info = run_info("cpu")
    functions = [table.get("label", table["name"]) for table in config["problem"]]
    dims = sorted({table.get("dim", 10) for table in config["problem"]})
    data = {
        "benchmark": NAME,
        **info,
        "config": config,
        "workers": args.workers,
        "elapsed_s": elapsed,
        "summary": rows,
        "statistics": summary["statistics"],
        "ecdf": summary["ecdf"],
        "figures": figures,
        "goal": {"grid_within_s": GOAL_S, "met": elapsed <= GOAL_S},
    }
    path = write_result(data, out, NAME)
    if not args.runs:
        shutil.rmtree(runs, ignore_errors=True)

    ranked = sorted(figures["optimizers"].items(), key=lambda item: item[1]["mean_rank"])
    cells = ", ".join(
        f"{label} {f['mean_rank']:.2f} / {f['mean_win_rate']:.0%} / {f['ecdf_reached']:.0%}"
        for label, f in ranked)
    best = ", ".join(f"{problem}: {label}" for problem, label in figures["best"].items()
                     if label) or "none"
    seeds = config["seeds"] if isinstance(config["seeds"], int) else len(config["seeds"])
    figure = (
        f"{len(functions)} functions ({', '.join(functions)}) x d = "
        f"{'/'.join(map(str, dims))}, budget {config['budget']:g} evaluations, {seeds} seeds, "
        f"{args.workers} workers: {elapsed / 60:.1f} min. Per optimizer, mean rank by median "
        f"f - f_opt / mean win rate / ECDF targets reached: {cells}. Significantly better "
        f"than every other (Holm): {best}"
    )
    print(figure)
    print(f"wrote {relative_to_root(path)}")
    if args.doc and not args.quick:
        update_doc_table(doc_line(
            NAME, info, figure, goal="the grid within 10 min on 2 CPU cores",
            met=f"{'yes' if elapsed <= GOAL_S else 'no'} ({elapsed / 60:.1f} min)",
        ))
    return data


if __name__ == "__main__":
    main()
