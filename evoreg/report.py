"""Tables and plots of finished runs: a bench directory, a directory of runs, or one run.

``report(DIR)`` (``evoreg report DIR``) finds every run under DIR (a folder that holds
``run.json``), groups the finished ones by (problem, optimizer), writes the summary table
as ``DIR/summary.md`` and ``DIR/summary.json``, and draws one PNG per problem in
``DIR/plots/``: the median over seeds of the best loss so far against the budget used, one
line per optimizer, with the band between the first and third quartiles.

Runs inside a bench directory (``DIR/<problem>/<optimizer>/seed<k>``) are grouped by those
labels, so one optimizer benchmarked with two configs stays two groups; other runs are
grouped by the problem and optimizer names in their ``run.json``.

A run whose ``run.json``, ``result.json`` or ``log.jsonl`` cannot be read as what the runner
writes (truncated, not JSON, a string where a number belongs, NaN...) is left out with a
warning naming the file; the other runs are reported. A damaged ``bench.json`` only loses
the order of its tables.
"""

from __future__ import annotations

import json
import math
import re
import reprlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .checkpoint import write_json
from .errors import EvoregError
from .runner import LOG_FILE, RESULT_FILE, RUN_FILE

SUMMARY_MD, SUMMARY_JSON, PLOTS_DIR, BENCH_FILE = (
    "summary.md",
    "summary.json",
    "plots",
    "bench.json",
)
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
    return cell


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
        if all(_loss(cell["report"].get(key)) for cell in cells)
    ]


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
def plot_problems(
    root: Path,
    cells: list[dict[str, Any]],
    curves: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None,
) -> list[Path]:
    """One PNG per problem: median best-so-far loss vs cost per optimizer, quartile band.

    ``curves`` holds each finished cell's curve by its ``dir`` (``read_curve``); read from
    the logs when not given.
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
    written: list[Path] = []
    for problem, problem_curves in by_problem.items():
        path = _unused(root / PLOTS_DIR / f"{safe_filename(problem)}.png", written)
        path.parent.mkdir(parents=True, exist_ok=True)
        title = f"{problem}: median best loss over seeds (band: quartiles)"
        plot_median_curves(problem_curves, path, title, units[problem])
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

    Returns ``{"summary": rows, "cells": cells, "plots": paths, "unfinished": count,
    "table": markdown, "warnings": lines}``; the table is also written to summary.md and
    summary.json. A damaged run is left out, and ``warnings`` holds one line for it naming
    the damaged file (and one for a damaged bench.json).
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
    table = write_summary(root, rows, cells) if rows else ""
    return {
        "summary": rows,
        "cells": cells,
        "plots": plot_problems(root, cells, curves) if plots else [],
        "unfinished": sum(not cell["finished"] for cell in cells),
        "table": table,
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
