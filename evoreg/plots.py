"""Plots people would rather look at than read: convergence curves of runs.

Titles, axis labels and legend entries hold names that users chose (bench labels, problem
and optimizer names, from files that may be damaged): they are drawn as plain text, never
parsed as mathtext or TeX, so ``$x^$`` shows as written instead of failing the plot.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only; no display here or in CI
    import matplotlib.pyplot as plt

    return plt


def plot_convergence(
    records: Sequence[Mapping[str, Any]], path: str | os.PathLike, title: str, unit: str
) -> None:
    """Best loss so far and the generation median against the budget used."""
    plt = _pyplot()
    cost = [r["cost"] for r in records]
    figure, axis = plt.subplots(figsize=(6, 4))
    (best,) = axis.plot(cost, [r["best_loss"] for r in records])
    (median,) = axis.plot(cost, [r["loss_median"] for r in records], alpha=0.5)
    _finish(axis, title, unit, [best, median], ["best so far", "generation median"])
    figure.savefig(path, dpi=100)
    plt.close(figure)


def plot_median_curves(
    curves: Mapping[str, Sequence[tuple[np.ndarray, np.ndarray]]],
    path: str | os.PathLike,
    title: str,
    unit: str,
) -> None:
    """For each label, the median over seeds of best-so-far loss, with the quartile band."""
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(6, 4))
    lines, labels = [], []
    for label, runs in curves.items():
        runs = [run for run in runs if len(run[0])]
        if not runs:
            continue
        # From the first generation's end: before it no run has a loss to show.
        start = min(run[0][0] for run in runs)
        grid = np.linspace(start, max(run[0][-1] for run in runs), 200)
        stacked = np.stack([_step(grid, cost, loss) for cost, loss in runs])
        median = np.nanmedian(stacked, axis=0)
        (line,) = axis.plot(grid, median)
        lines.append(line)
        labels.append(f"{label} (n={len(runs)})")
        if len(runs) > 1:
            low, high = np.nanpercentile(stacked, [25, 75], axis=0)
            axis.fill_between(grid, low, high, color=line.get_color(), alpha=0.2)
    _finish(axis, title, unit, lines, labels)
    figure.savefig(path, dpi=100)
    plt.close(figure)


def _step(grid: np.ndarray, cost: np.ndarray, loss: np.ndarray) -> np.ndarray:
    """Best-so-far loss at each grid point (NaN before the first generation ended)."""
    index = np.searchsorted(cost, grid, side="right") - 1
    values = np.where(index >= 0, loss[np.clip(index, 0, None)], np.nan)
    values[grid > cost[-1]] = np.nan
    return values


def _finish(axis, title: str, unit: str, lines: Sequence[Any], labels: Sequence[str]) -> None:
    low, high = axis.dataLim.y0, axis.dataLim.y1
    if low > 0 and high / low > 100:  # losses spanning decades: convergence shows on a log axis
        axis.set_yscale("log")
    texts = [axis.set_xlabel(unit), axis.set_ylabel("loss"), axis.set_title(title)]
    axis.grid(alpha=0.3)
    if lines:
        # Handles and labels given: matplotlib would drop a label starting with "_".
        texts += axis.legend(lines, labels).get_texts()
    for text in texts:
        text.set_parse_math(False)  # "$...$" in a name is text, not a formula
        text.set_usetex(False)  # even under a matplotlibrc with text.usetex: True
    axis.figure.tight_layout()
