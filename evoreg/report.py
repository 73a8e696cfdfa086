"""Tables and plots of finished runs: a bench directory, a directory of runs, or one run.

``report(DIR)`` (``evoreg report DIR``) finds every run under DIR (a folder that holds
``run.json``), groups the finished ones by (problem, optimizer), writes the summary table
as ``DIR/summary.md`` and ``DIR/summary.json``, and draws one PNG per problem in
``DIR/plots/``: the median over seeds of the best loss so far against the budget used, one
line per optimizer, with the band between the first and third quartiles.

Runs inside a bench directory (``DIR/<problem>/<optimizer>/seed<k>``) are grouped by those
labels, so one optimizer benchmarked with two configs stays two groups; other runs are
grouped by the problem and optimizer names in their ``run.json``.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .checkpoint import write_json
from .errors import EvoregError
from .runner import RESULT_FILE, RUN_FILE, read_log

SUMMARY_MD, SUMMARY_JSON, PLOTS_DIR, BENCH_FILE = (
    "summary.md",
    "summary.json",
    "plots",
    "bench.json",
)
SUMMARY_HEADERS = ["problem", "optimizer", "n", "median best loss", "q1", "q3", "median wall s"]


# --------------------------------------------------------------------------- reading runs
def find_runs(root: Path) -> list[Path]:
    """Every run directory at or under ``root``, in path order."""
    if (root / RUN_FILE).exists():
        return [root]
    return sorted(path.parent for path in root.rglob(RUN_FILE))


def read_cell(run_dir: Path, root: Path) -> dict[str, Any]:
    """What a run was and, when it finished, what it reached (from run.json, result.json)."""
    description = json.loads((run_dir / RUN_FILE).read_text())
    problem, optimizer = _labels(run_dir, root, description)
    cell: dict[str, Any] = {
        "problem": problem,
        "optimizer": optimizer,
        "problem_name": description["problem"],
        "optimizer_name": description["optimizer"],
        "seed": description["seed"],
        "budget": description["budget"],
        "budget_unit": description.get("budget_unit", ""),
        "dir": str(run_dir),
        "finished": False,
    }
    result_path = run_dir / RESULT_FILE
    if result_path.exists():
        result = json.loads(result_path.read_text())
        cell.update(
            finished=True,
            budget=result["budget"],
            best_loss=result["best_loss"],
            cost=result["cost"],
            generations=result["generations"],
            wall_time=result["wall_time"],
            report=result.get("report") or {},
        )
    return cell


def _labels(run_dir: Path, root: Path, description: dict[str, Any]) -> tuple[str, str]:
    parts = run_dir.relative_to(root).parts
    if len(parts) == 3 and re.fullmatch(r"seed-?\d+", parts[2]):
        return parts[0], parts[1]  # a bench cell: its labels, not its registered names
    return description["problem"], description["optimizer"]


# --------------------------------------------------------------------------- summary
def summarize(cells: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (problem, optimizer) over its finished cells, in first-seen order."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for cell in cells:
        if cell["finished"]:
            groups.setdefault((cell["problem"], cell["optimizer"]), []).append(cell)
    return [_summary_row(problem, optimizer, members)
            for (problem, optimizer), members in groups.items()]


def _summary_row(problem: str, optimizer: str, cells: list[dict[str, Any]]) -> dict[str, Any]:
    q1, median, q3 = _quartiles([cell["best_loss"] for cell in cells])
    return {
        "problem": problem,
        "optimizer": optimizer,
        "n": len(cells),
        "median": median,
        "q1": q1,
        "q3": q3,
        "median_wall_time": _quartiles([cell["wall_time"] for cell in cells])[1],
        "budget_unit": cells[0]["budget_unit"],
        "seeds": [cell["seed"] for cell in cells],
        # Held-out figures (test accuracy, noise-free loss...): the median of each number
        # that every cell of the group reported.
        "report": {key: _quartiles([cell["report"][key] for cell in cells])[1]
                   for key in _numeric_report_keys(cells)},
    }


def _quartiles(values: Sequence[float]) -> tuple[float, float, float]:
    q1, median, q3 = np.percentile(np.asarray(values, dtype=float), [25, 50, 75])
    return float(q1), float(median), float(q3)


def _numeric_report_keys(cells: list[dict[str, Any]]) -> list[str]:
    keys = list(cells[0]["report"])
    return [
        key for key in keys
        if all(_is_number(cell["report"].get(key)) for cell in cells)
    ]


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def summary_markdown(rows: list[dict[str, Any]]) -> str:
    """The summary as a Markdown table (padded, so it also reads well in a terminal)."""
    report_keys = list(dict.fromkeys(key for row in rows for key in row["report"]))
    headers = SUMMARY_HEADERS + [f"median {key}" for key in report_keys]
    table = [
        [
            row["problem"],
            row["optimizer"],
            str(row["n"]),
            _number(row["median"]),
            _number(row["q1"]),
            _number(row["q3"]),
            _number(row["median_wall_time"]),
            *(_number(row["report"][key]) if key in row["report"] else "" for key in
              report_keys),
        ]
        for row in rows
    ]
    return markdown_table(headers, table)


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows)]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths)) + " |"

    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(headers), rule, *(line(row) for row in rows)])


def _number(value: float) -> str:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return f"{value:.4g}"


def write_summary(root: Path, rows: list[dict[str, Any]], cells: list[dict[str, Any]]) -> str:
    """Write summary.md and summary.json into ``root``; return the Markdown table."""
    table = summary_markdown(rows)
    (root / SUMMARY_MD).write_text(table + "\n")
    write_json({"summary": rows, "cells": cells}, root / SUMMARY_JSON)
    return table


# --------------------------------------------------------------------------- plots
def plot_problems(root: Path, cells: list[dict[str, Any]]) -> list[Path]:
    """One PNG per problem: median best-so-far loss vs cost per optimizer, quartile band."""
    from .plots import plot_median_curves

    by_problem: dict[str, dict[str, list[tuple[np.ndarray, np.ndarray]]]] = {}
    units: dict[str, str] = {}
    for cell in cells:
        if not cell["finished"]:
            continue
        log = read_log(Path(cell["dir"]))
        if not log:
            continue
        curve = (
            np.array([record["cost"] for record in log], dtype=float),
            np.array([record["best_loss"] for record in log], dtype=float),
        )
        by_problem.setdefault(cell["problem"], {}).setdefault(cell["optimizer"], []).append(curve)
        units[cell["problem"]] = cell["budget_unit"]
    written = []
    for problem, curves in by_problem.items():
        path = root / PLOTS_DIR / f"{safe_filename(problem)}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        title = f"{problem}: median best loss over seeds (band: quartiles)"
        plot_median_curves(curves, path, title, units[problem])
        written.append(path)
    return written


def safe_filename(text: str) -> str:
    """``text`` with characters that are awkward in file names (``:``, ``/``...) replaced."""
    return re.sub(r"[^A-Za-z0-9._+-]+", "_", text).strip("._") or "unnamed"


# --------------------------------------------------------------------------- entry point
def report(root: str | Path, plots: bool = True) -> dict[str, Any]:
    """Summarise and plot the runs under ``root``.

    Returns ``{"summary": rows, "cells": cells, "plots": paths, "unfinished": count,
    "table": markdown}``; the table is also written to summary.md and summary.json.
    """
    root = Path(root)
    if not root.is_dir():
        raise EvoregError(f"{root} is not a directory; give a bench or run directory")
    run_dirs = find_runs(root)
    if not run_dirs:
        raise EvoregError(f"no runs under {root} (a run directory holds {RUN_FILE})")
    cells = _in_bench_order(root, [read_cell(run_dir, root) for run_dir in run_dirs])
    rows = summarize(cells)
    table = write_summary(root, rows, cells) if rows else ""
    return {
        "summary": rows,
        "cells": cells,
        "plots": plot_problems(root, cells) if plots else [],
        "unfinished": sum(not cell["finished"] for cell in cells),
        "table": table,
    }


def _in_bench_order(root: Path, cells: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Cells in the order of the bench config's tables when the bench left bench.json."""
    path = root / BENCH_FILE
    if not path.exists():
        return cells
    grid = json.loads(path.read_text())
    problems = [arm["label"] for arm in grid.get("problems", [])]
    optimizers = [arm["label"] for arm in grid.get("optimizers", [])]

    def rank(cell: dict[str, Any]) -> tuple[int, int, int]:
        return (
            problems.index(cell["problem"]) if cell["problem"] in problems else len(problems),
            optimizers.index(cell["optimizer"]) if cell["optimizer"] in optimizers
            else len(optimizers),
            cell["seed"] if isinstance(cell["seed"], int) else 0,
        )

    return sorted(cells, key=rank)
