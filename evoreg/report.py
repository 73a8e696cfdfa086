"""Tables and plots of finished runs: a bench directory, a directory of runs, or one run.

``report(DIR)`` (``evoreg report DIR``) finds every run under DIR (a folder that holds
``run.json``), groups the finished ones by (problem, optimizer) and writes into DIR:

- ``summary.md``: per (problem, optimizer), the number of runs, median and quartiles of the
  best loss, median wall time, each cell's budget and the cost it actually used, ``*`` for
  the optimizer significantly better than every other on the problem, and the medians of
  the held-out figures;
- ``statistics.md``: per problem, the one-sided Mann-Whitney U test of every ordered pair of
  optimizers (Holm-corrected within the problem) with the Vargha-Delaney A12 effect size;
  the average rank of each optimizer over problems; the pairwise win-rate matrix (see
  :mod:`evoreg.compare`);
- ``summary.json``: the rows, the statistics, the ECDF targets and every run;
- ``runs.csv``: one row per run (problem, optimizer, seed, every config value, best loss,
  held-out figures, cost used, wall time, error if any), for pandas;
- ``plots/<problem>.png``: the median over seeds of the best loss so far against the budget
  used, one line per optimizer, with the band between the first and third quartiles (log
  axes where the loss or the budget spans decades); ``plots/win_rates.png``: the win-rate
  matrix as a heat map; ``plots/ecdf.png``: the share of (run, target) pairs reached against
  the fraction of the budget used, per optimizer over all problems (targets: 21 levels per
  problem between the median loss after the first generation and the best loss any run
  reached, log-spaced when both are positive).

Runs inside a bench directory (``DIR/<problem>/<optimizer>/seed<k>``) are grouped by those
labels, so one optimizer benchmarked with two configs stays two groups; other runs are
grouped by the problem and optimizer names in their ``run.json``.

A run whose ``run.json``, ``result.json`` or ``log.jsonl`` cannot be read as what the runner
writes (truncated, not JSON, a string where a number belongs, NaN...) is left out with a
warning naming the file; the other runs are reported. A damaged ``bench.json`` only loses
the order of its tables.
"""

from __future__ import annotations

import csv
import json
import math
import re
import reprlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .checkpoint import atomic_path, write_json
from .compare import ALPHA, average_ranks, ecdf, problem_tests, win_rates
from .errors import EvoregError
from .runner import LOG_FILE, RESULT_FILE, RUN_FILE

SUMMARY_MD, SUMMARY_JSON, PLOTS_DIR, BENCH_FILE = (
    "summary.md",
    "summary.json",
    "plots",
    "bench.json",
)
STATISTICS_MD, RUNS_CSV, ERROR_FILE = "statistics.md", "runs.csv", "error.txt"
WIN_RATE_PNG, ECDF_PNG = "win_rates.png", "ecdf.png"
SUMMARY_HEADERS = ["problem", "optimizer", "n", "median best loss", "q1", "q3", "median wall s"]


# --------------------------------------------------------------------------- reading runs
class DamagedFileError(EvoregError):
    """A file of a run or bench directory that is not what evoreg wrote: truncated, not
    JSON, or JSON of the wrong shape. The message names the file and what is wrong."""


def find_runs(root: Path) -> list[Path]:
    """Every run directory at or under ``root``, in path order."""
    if (root / RUN_FILE).exists():
        return [root]
    return sorted(path.parent for path in root.rglob(RUN_FILE))


def read_json(path: Path) -> Any:
    """The JSON in ``path``; DamagedFileError, naming it, when it cannot be read as JSON."""
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as error:  # a directory, no permission
        raise DamagedFileError(f"{path} cannot be read ({error.strerror})") from None
    except UnicodeDecodeError:
        raise DamagedFileError(f"{path} is damaged: not UTF-8 text") from None
    if not text.strip():
        raise DamagedFileError(f"{path} is damaged: empty")
    try:
        return json.loads(text)
    except ValueError as error:
        raise DamagedFileError(f"{path} is damaged: not JSON ({error})") from None
    except RecursionError:  # nested deeper than the parser's recursion allows
        raise DamagedFileError(f"{path} is damaged: not JSON (nested too deeply)") from None


def _real(value: Any) -> bool:
    """A JSON number (not a bool) that converts to a float: a huge integer overflows."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return False
    try:
        float(value)
    except OverflowError:
        return False
    return True


def _loss(value: Any) -> bool:
    # inf is a best loss the runner writes when no candidate got a finite loss; NaN never.
    return _real(value) and not math.isnan(value)


def _amount(value: Any) -> bool:
    return _real(value) and math.isfinite(value) and value >= 0


def _budget(value: Any) -> bool:
    return _real(value) and math.isfinite(value) and value > 0


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


#: What each field the report reads must hold: a test and its description.
Check = tuple[Callable[[Any], bool], str]
RUN_FIELDS: dict[str, Check] = {
    "problem": (lambda v: isinstance(v, str), "a name"),
    "optimizer": (lambda v: isinstance(v, str), "a name"),
    "seed": (_count, "an integer >= 0"),
    "budget": (_budget, "a finite number > 0"),
}
RESULT_FIELDS: dict[str, Check] = {
    "budget": (_budget, "a finite number > 0"),
    "best_loss": (_loss, "a number"),
    "cost": (_amount, "a finite number >= 0"),
    "generations": (_count, "an integer >= 0"),
    "wall_time": (_amount, "a finite number >= 0"),
}
OPTIONAL_FIELDS: dict[str, Check] = {
    "budget_unit": (lambda v: isinstance(v, str), "a string"),
    "report": (lambda v: v is None or isinstance(v, dict), "an object"),
}
LOG_FIELDS: dict[str, Check] = {
    "cost": (lambda v: _real(v) and math.isfinite(v), "a finite number"),
    "best_loss": (_loss, "a number"),
}


def _checked(data: Any, fields: Mapping[str, Check], where: str) -> dict[str, Any]:
    """``data`` if it is an object whose fields pass their checks, else DamagedFileError."""
    if not isinstance(data, dict):
        raise DamagedFileError(f"{where} is damaged: a JSON {_json_type(data)}, not an object")
    for key, (test, what) in fields.items():
        if key not in data:
            if key in OPTIONAL_FIELDS:
                continue
            raise DamagedFileError(f"{where} is damaged: no {key!r}")
        if not test(data[key]):
            raise DamagedFileError(
                f"{where} is damaged: {key} is {reprlib.repr(data[key])}, not {what}"
            )
    return data


def _json_type(value: Any) -> str:
    names = {list: "array", str: "string", bool: "boolean", type(None): "null"}
    return names.get(type(value), "number")


def read_result(run_dir: Path) -> dict[str, Any]:
    """A finished run's ``result.json``, checked; DamagedFileError when it is damaged."""
    path = run_dir / RESULT_FILE
    return _checked(read_json(path), {**RESULT_FIELDS, **OPTIONAL_FIELDS}, str(path))


def read_cell(run_dir: Path, root: Path) -> dict[str, Any]:
    """What a run was and, when it finished, what it reached (from run.json, result.json);
    DamagedFileError when either cannot be read as what the runner writes."""
    path = run_dir / RUN_FILE
    description = _checked(read_json(path), {**RUN_FIELDS, **OPTIONAL_FIELDS}, str(path))
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
    # Every config value, defaults included (the runner records them), for runs.csv.
    for key in ("problem_config", "optimizer_config"):
        value = description.get(key)
        cell[key] = value if isinstance(value, dict) else {}
    if (run_dir / RESULT_FILE).exists():
        result = read_result(run_dir)
        cell.update(
            finished=True,
            budget=result["budget"],
            best_loss=result["best_loss"],
            cost=result["cost"],
            generations=result["generations"],
            wall_time=result["wall_time"],
            report=result.get("report") or {},
        )
    elif (run_dir / ERROR_FILE).exists():  # a bench cell that failed (--keep-going)
        cell["error"] = _last_line(run_dir / ERROR_FILE)
    return cell


def _last_line(path: Path) -> str:
    """The last non-empty line of a traceback file: the exception and its message."""
    try:
        lines = path.read_bytes().decode("utf-8", "replace").strip().splitlines()
    except OSError as error:
        return f"({path.name} cannot be read: {error.strerror})"
    return lines[-1].strip() if lines else ""


def read_curve(run_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """A run's best loss so far against the budget used, from its ``log.jsonl``.

    A last line without its newline was cut by a kill and is left out, as the runner does;
    any other line that is not a generation record makes the log damaged
    (DamagedFileError). A missing log gives empty arrays.
    """
    path = run_dir / LOG_FILE
    if not path.exists():
        return np.zeros(0), np.zeros(0)
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as error:
        raise DamagedFileError(f"{path} cannot be read ({error.strerror})") from None
    except UnicodeDecodeError:
        raise DamagedFileError(f"{path} is damaged: not UTF-8 text") from None
    *complete, _cut = text.split("\n")  # _cut: "" after the last newline, or a cut record
    records = []
    for number, line in enumerate(complete, 1):
        where = f"{path} line {number}"
        try:
            record = json.loads(line)
        except (ValueError, RecursionError):
            raise DamagedFileError(f"{where} is damaged: not JSON") from None
        records.append(_checked(record, LOG_FIELDS, where))
    cost = np.array([record["cost"] for record in records], dtype=float)
    if np.any(np.diff(cost) < 0):
        raise DamagedFileError(f"{path} is damaged: the cost goes down")
    return cost, np.array([record["best_loss"] for record in records], dtype=float)


def _labels(run_dir: Path, root: Path, description: dict[str, Any]) -> tuple[str, str]:
    parts = run_dir.relative_to(root).parts
    if len(parts) == 3 and re.fullmatch(r"seed-?\d+", parts[2]):
        return parts[0], parts[1]  # a bench cell: its labels, not its registered names
    return description["problem"], description["optimizer"]


# --------------------------------------------------------------------------- summary
def summarize(cells: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (problem, optimizer) over its finished cells, in first-seen order.

    ``best`` is True for the row whose optimizer is significantly better than every other
    on its problem (see :func:`evoreg.compare.problem_tests`).
    """
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for cell in cells:
        if cell["finished"]:
            groups.setdefault((cell["problem"], cell["optimizer"]), []).append(cell)
    rows = [_summary_row(problem, optimizer, members)
            for (problem, optimizer), members in groups.items()]
    for problem, tests in _tests_by_problem(groups).items():
        for row in rows:
            if row["problem"] == problem:
                row["best"] = tests["best"] == row["optimizer"]
    return rows


def _tests_by_problem(
    groups: Mapping[tuple[str, str], list[dict[str, Any]]]
) -> dict[str, dict[str, Any]]:
    losses: dict[str, dict[str, list[float]]] = {}
    for (problem, optimizer), members in groups.items():
        losses.setdefault(problem, {})[optimizer] = [cell["best_loss"] for cell in members]
    return {problem: problem_tests(per_optimizer) for problem, per_optimizer in losses.items()}


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
        # What each cell was given and what it actually used: the last generation of some
        # optimizers can overshoot the budget, and the table must show it.
        "budgets": [cell["budget"] for cell in cells],
        "costs": [cell["cost"] for cell in cells],
        "best": False,
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
        if all(_loss(cell["report"].get(key)) for cell in cells)
    ]


def summary_markdown(rows: list[dict[str, Any]]) -> str:
    """The summary as a Markdown table (padded, so it also reads well in a terminal), with a
    note under it when some optimizer is significantly the best on its problem."""
    report_keys = list(dict.fromkeys(key for row in rows for key in row["report"]))
    headers = SUMMARY_HEADERS + ["budget", "cost used", "best"] + [
        f"median {key}" for key in report_keys]
    table = [
        [
            row["problem"],
            row["optimizer"],
            str(row["n"]),
            _number(row["median"]),
            _number(row["q1"]),
            _number(row["q3"]),
            _number(row["median_wall_time"]),
            _span(row.get("budgets", [])),
            _span(row.get("costs", [])),
            "*" if row.get("best") else "",
            *(_number(row["report"][key]) if key in row["report"] else "" for key in
              report_keys),
        ]
        for row in rows
    ]
    text = markdown_table(headers, table)
    if any(row.get("best") for row in rows):
        text += (f"\n\n\\* significantly better than every other optimizer on the problem "
                 f"(one-sided Mann-Whitney U, Holm-corrected, alpha {ALPHA}); see "
                 f"{STATISTICS_MD}")
    return text


def _span(values: Sequence[float]) -> str:
    """One number when all cells agree, else ``min-max``: the cells' actual figures."""
    if not values:
        return ""
    low, high = min(values), max(values)
    return _number(low) if low == high else f"{_number(low)}-{_number(high)}"


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


# --------------------------------------------------------------------------- statistics
def statistics(cells: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Tests per problem, average ranks and win rates over the finished cells (see
    :mod:`evoreg.compare`)."""
    finished = [cell for cell in cells if cell["finished"]]
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for cell in finished:
        groups.setdefault((cell["problem"], cell["optimizer"]), []).append(cell)
    medians: dict[str, dict[str, float]] = {}
    for (problem, optimizer), members in groups.items():
        medians.setdefault(problem, {})[optimizer] = _quartiles(
            [cell["best_loss"] for cell in members])[1]
    return {
        "alpha": ALPHA,
        "problems": _tests_by_problem(groups),
        "average_ranks": average_ranks(medians),
        "win_rates": win_rates(finished),
    }


def statistics_markdown(stats: Mapping[str, Any]) -> str:
    """The statistics as Markdown: a pairwise table per problem, the average ranks and the
    win-rate matrix, each with a line saying what it holds."""
    alpha = stats["alpha"]
    parts = [
        "# Statistics",
        "",
        "## Pairwise tests per problem",
        "",
        "Each cell: A12 / p. A12 is the Vargha-Delaney effect size, the probability that a run "
        "of the row ends with a lower best loss than a run of the column (ties count half; 0.5 "
        "is no difference). p is the one-sided Mann-Whitney U test that the row's best losses "
        "are lower than the column's, Holm-corrected over the problem's ordered pairs; "
        f"\\* marks p < {alpha}. The best optimizer is named only where it is significantly "
        "better than every other.",
    ]
    for problem, tests in stats["problems"].items():
        labels = list(dict.fromkeys(pair["row"] for pair in tests["pairs"]))
        parts += ["", f"### {problem}", ""]
        if len(labels) < 2:
            parts.append("one optimizer only: nothing to compare")
            continue
        best = tests["best"]
        parts += [f"best: {best}" if best else
                  "best: none (no optimizer is significantly better than every other)", ""]
        if not tests.get("attainable", True):
            parts += [f"(with these numbers of runs no difference can reach p < {alpha} after "
                      "the Holm correction, however large: run more seeds)", ""]
        cell = {(pair["row"], pair["column"]): pair for pair in tests["pairs"]}
        rows = []
        for row in labels:
            rows.append([row] + [
                "-" if row == column else _pair_text(cell[row, column]) for column in labels])
        parts.append(markdown_table(["row \\ column", *labels], rows))
    parts += [
        "",
        "## Average rank",
        "",
        "Rank of each optimizer's median best loss on each problem (1 = lowest, ties "
        "averaged), averaged over the problems it ran on.",
        "",
        markdown_table(["optimizer", "mean rank", "problems"], [
            [row["optimizer"], f"{row['mean_rank']:.2f}", str(row["problems"])]
            for row in stats["average_ranks"]]),
    ]
    rates = stats["win_rates"]
    labels = rates["optimizers"]
    parts += [
        "",
        "## Win rates",
        "",
        "Share of the (problem, seed) cells both optimizers ran where the row ended with a "
        "lower best loss than the column (a tie counts half); rows sorted by their mean.",
        "",
        markdown_table(["row \\ column", "mean", *labels], [
            [row, _percent(mean), *("-" if i == j else _percent(value)
                                    for j, value in enumerate(values))]
            for i, (row, mean, values) in enumerate(zip(labels, rates["mean"],
                                                        rates["matrix"]))]),
    ]
    return "\n".join(parts)


def _pair_text(pair: Mapping[str, Any]) -> str:
    if math.isnan(pair["p_holm"]):
        return "n/a"
    return f"{pair['a12']:.2f} / {pair['p_holm']:.2g}" + (" *" if pair["significant"] else "")


def _percent(value: float | None) -> str:
    if value is None or math.isnan(value):
        return "n/a"
    return f"{100 * value:.0f}%"


# --------------------------------------------------------------------------- files
RUN_COLUMNS = ["problem", "optimizer", "problem_name", "optimizer_name", "seed", "status",
               "finished", "budget", "budget_unit", "cost", "generations", "best_loss",
               "wall_time", "error", "dir"]


def write_runs_csv(path: Path, cells: Sequence[dict[str, Any]]) -> None:
    """One row per run: the RUN_COLUMNS, then every config value (``problem.KEY``,
    ``optimizer.KEY``) and held-out figure (``report.KEY``) any run has; a value that is not
    a number or a string is written as JSON."""
    extra: dict[str, None] = {}
    for prefix, key in (("problem", "problem_config"), ("optimizer", "optimizer_config"),
                        ("report", "report")):
        for cell in cells:
            for name in cell.get(key) or {}:
                extra[f"{prefix}.{name}"] = None
    columns = RUN_COLUMNS + list(extra)
    with atomic_path(path) as temporary, open(temporary, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        for cell in cells:
            values = {key: cell.get(key, "") for key in RUN_COLUMNS}
            if not values["status"]:  # a report of run directories: no bench said it
                values["status"] = ("finished" if cell["finished"] else
                                    "failed" if cell.get("error") else "unfinished")
            for prefix, key in (("problem", "problem_config"),
                                ("optimizer", "optimizer_config"), ("report", "report")):
                for name, value in (cell.get(key) or {}).items():
                    values[f"{prefix}.{name}"] = value
            writer.writerow([_csv_value(values.get(column, "")) for column in columns])


def _csv_value(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, (bool, int, float, str)):
        return value
    return json.dumps(value, default=repr)


def write_summary(root: Path, rows: list[dict[str, Any]], cells: list[dict[str, Any]],
                  extra: Mapping[str, Any] | None = None) -> str:
    """Write summary.md, statistics.md, summary.json and runs.csv into ``root``; return the
    summary table (``extra`` goes into summary.json as well)."""
    table = summary_markdown(rows) if rows else "no finished runs"
    stats = statistics(cells)
    (root / SUMMARY_MD).write_text(table + "\n")
    (root / STATISTICS_MD).write_text(statistics_markdown(stats) + "\n")
    write_json({"summary": rows, "statistics": stats, **(extra or {}), "cells": cells},
               root / SUMMARY_JSON)
    write_runs_csv(root / RUNS_CSV, cells)
    return table


# --------------------------------------------------------------------------- plots
def plot_problems(
    root: Path,
    cells: list[dict[str, Any]],
    curves: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None,
) -> list[Path]:
    """One PNG per problem: median best-so-far loss vs cost per optimizer, quartile band.

    ``curves`` holds each finished cell's curve by its ``dir`` (``read_curve``); read from
    the logs when not given. A problem labelled like a comparison plot ("ecdf") is numbered
    (ecdf-2.png) instead of being overwritten by it.
    """
    from .plots import plot_median_curves

    by_problem: dict[str, dict[str, list[tuple[np.ndarray, np.ndarray]]]] = {}
    units: dict[str, str] = {}
    for cell in cells:
        if not cell["finished"]:
            continue
        curve = curves[cell["dir"]] if curves is not None else read_curve(Path(cell["dir"]))
        if not len(curve[0]):
            continue
        by_problem.setdefault(cell["problem"], {}).setdefault(cell["optimizer"], []).append(curve)
        units[cell["problem"]] = cell["budget_unit"]
    reserved = [root / PLOTS_DIR / name for name in (WIN_RATE_PNG, ECDF_PNG)]
    written: list[Path] = []
    for problem, problem_curves in by_problem.items():
        path = _unused(root / PLOTS_DIR / f"{safe_filename(problem)}.png", written + reserved)
        path.parent.mkdir(parents=True, exist_ok=True)
        title = f"{problem}: median best loss over seeds (band: quartiles)"
        plot_median_curves(problem_curves, path, title, units[problem])
        written.append(path)
    return written


def plot_comparisons(root: Path, stats: Mapping[str, Any],
                     curves: Mapping[str, Any]) -> list[Path]:
    """The win-rate heat map (two optimizers or more) and the ECDF of targets reached
    against the budget used (``curves``: :func:`evoreg.compare.ecdf`'s result)."""
    from .plots import plot_ecdf, plot_win_rates

    written = []
    rates = stats["win_rates"]
    if len(rates["optimizers"]) > 1:
        path = root / PLOTS_DIR / WIN_RATE_PNG
        path.parent.mkdir(parents=True, exist_ok=True)
        plot_win_rates(rates["optimizers"], rates["matrix"], path,
                       "win rate: share of (problem, seed) cells where row beats column")
        written.append(path)
    if curves["hits"]:
        path = root / PLOTS_DIR / ECDF_PNG
        path.parent.mkdir(parents=True, exist_ok=True)
        problems = len(curves["targets"])
        plot_ecdf(curves["hits"], path,
                  f"targets reached over {problems} problem(s), "
                  f"{len(next(iter(curves['targets'].values()), []))} targets each")
        written.append(path)
    return written


def _unused(path: Path, taken: list[Path]) -> Path:
    """``path``, numbered when another problem's name gave the same file name ("a b" and
    "a_b" are both a_b.png): one plot must not overwrite another."""
    candidate, number = path, 1
    while candidate in taken:
        number += 1
        candidate = path.with_name(f"{path.stem}-{number}{path.suffix}")
    return candidate


def safe_filename(text: str) -> str:
    """``text`` with characters that are awkward in file names (``:``, ``/``...) replaced."""
    return re.sub(r"[^A-Za-z0-9._+-]+", "_", text).strip("._") or "unnamed"


# --------------------------------------------------------------------------- entry point
def report(root: str | Path, plots: bool = True) -> dict[str, Any]:
    """Summarise and plot the runs under ``root``.

    Returns ``{"summary": rows, "statistics": tests, ranks and win rates, "ecdf": targets
    and hits, "cells": cells, "plots": paths, "unfinished": count, "table": markdown,
    "statistics_table": markdown, "warnings": lines}``. Written into ``root``: summary.md
    (the table), statistics.md, summary.json (all of the above), runs.csv (one row per run)
    and, with ``plots``, plots/<problem>.png, plots/win_rates.png and plots/ecdf.png. A
    damaged run is left out, and ``warnings`` holds one line for it naming the damaged file
    (and one for a damaged bench.json).
    """
    root = Path(root)
    if not root.is_dir():
        raise EvoregError(f"{root} is not a directory; give a bench or run directory")
    run_dirs = find_runs(root)
    if not run_dirs:
        raise EvoregError(f"no runs under {root} (a run directory holds {RUN_FILE})")
    warnings: list[str] = []
    cells, curves = [], {}
    for run_dir in run_dirs:
        try:
            cell = read_cell(run_dir, root)
            if cell["finished"]:  # only finished runs are plotted
                curves[cell["dir"]] = read_curve(run_dir)
        except DamagedFileError as error:
            warnings.append(f"{error}; that run is left out")
            continue
        cells.append(cell)
    cells = _in_bench_order(root, cells, warnings)
    rows = summarize(cells)
    stats = statistics(cells)
    curves_ecdf = ecdf(
        {"problem": cell["problem"], "optimizer": cell["optimizer"], "budget": cell["budget"],
         "curve": curves[cell["dir"]]}
        for cell in cells if cell["finished"]
    )
    ecdf_summary = {"targets": curves_ecdf["targets"], "pairs": curves_ecdf["pairs"],
                    "reached": {label: sum(math.isfinite(hit) for hit in hits)
                                for label, hits in curves_ecdf["hits"].items()}}
    table = write_summary(root, rows, cells, {"ecdf": ecdf_summary}) if rows else ""
    written = []
    if plots and rows:
        written = plot_problems(root, cells, curves) + plot_comparisons(root, stats, curves_ecdf)
    return {
        "summary": rows,
        "statistics": stats,
        "ecdf": ecdf_summary,
        "cells": cells,
        "plots": written,
        "unfinished": sum(not cell["finished"] for cell in cells),
        "table": table,
        "statistics_table": statistics_markdown(stats) if rows else "",
        "warnings": warnings,
    }


def _in_bench_order(
    root: Path, cells: list[dict[str, Any]], warnings: list[str]
) -> list[dict[str, Any]]:
    """Cells in the order of the bench config's tables when the bench left bench.json
    (else, or when it is damaged, in path order)."""
    path = root / BENCH_FILE
    if not path.exists():
        return cells
    try:
        grid = read_json(path)
        problems = _grid_labels(path, grid, "problems")
        optimizers = _grid_labels(path, grid, "optimizers")
    except DamagedFileError as error:
        warnings.append(f"{error}; runs are listed in path order")
        return cells

    def rank(cell: dict[str, Any]) -> tuple[int, int, int]:
        return (
            problems.index(cell["problem"]) if cell["problem"] in problems else len(problems),
            optimizers.index(cell["optimizer"]) if cell["optimizer"] in optimizers
            else len(optimizers),
            cell["seed"],
        )

    return sorted(cells, key=rank)


def _grid_labels(path: Path, grid: Any, kind: str) -> list[str]:
    """The labels of bench.json's ``problems`` or ``optimizers``, in their order."""
    if not isinstance(grid, dict):
        raise DamagedFileError(f"{path} is damaged: a JSON {_json_type(grid)}, not an object")
    arms = grid.get(kind, [])
    if not isinstance(arms, list) or not all(
        isinstance(arm, dict) and isinstance(arm.get("label"), str) for arm in arms
    ):
        raise DamagedFileError(f"{path} is damaged: {kind} is not a list of labelled tables")
    return [arm["label"] for arm in arms]
