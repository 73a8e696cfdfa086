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
        stop = max(run[0][-1] for run in runs)
        # On a log cost axis the grid must be log-spaced too, or the start is one step.
        spaced = np.geomspace if _spans_decades(start, stop) else np.linspace
        grid = spaced(start, stop, 200)
        stacked = np.stack([_step(grid, cost, loss) for cost, loss in runs])
        median = np.nanmedian(stacked, axis=0)
        (line,) = axis.plot(grid, median)
        lines.append(line)
        labels.append(f"{label} (n={len(runs)})")
        if len(runs) > 1:
            low, high = np.nanpercentile(stacked, [25, 75], axis=0)
            axis.fill_between(grid, low, high, color=line.get_color(), alpha=0.2)
    low, high = axis.dataLim.x0, axis.dataLim.x1
    if _spans_decades(low, high):  # budgets over decades (COCO-style runs): log cost axis
        axis.set_xscale("log")
    _finish(axis, title, unit, lines, labels)
    figure.savefig(path, dpi=100)
    plt.close(figure)


def _spans_decades(low: float, high: float) -> bool:
    return bool(low > 0 and np.isfinite(high) and high / low > 100)


def plot_win_rates(
    labels: Sequence[str],
    matrix: Sequence[Sequence[float | None]],
    path: str | os.PathLike,
    title: str,
) -> None:
    """A heat map of the pairwise win rates (row beats column), each cell written out."""
    plt = _pyplot()
    values = np.array([[np.nan if v is None else v for v in row] for row in matrix], dtype=float)
    size = max(4.0, 0.6 * len(labels) + 2.5)
    figure, axis = plt.subplots(figsize=(size + 1, size))
    image = axis.imshow(values, cmap="RdYlGn", vmin=0, vmax=1)
    for i in range(len(labels)):
        for j in range(len(labels)):
            if not np.isnan(values[i, j]):
                axis.text(j, i, f"{100 * values[i, j]:.0f}", ha="center", va="center",
                          fontsize=8).set_parse_math(False)
    axis.set_xticks(range(len(labels)))
    axis.set_yticks(range(len(labels)))
    texts = [*axis.set_xticklabels(labels, rotation=45, ha="right"),
             *axis.set_yticklabels(labels), axis.set_title(title, fontsize=9),
             axis.set_xlabel("column"), axis.set_ylabel("row")]
    figure.colorbar(image, ax=axis, fraction=0.046, pad=0.04, label="win rate")
    _plain_text(texts)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def plot_ecdf(
    hits: Mapping[str, Sequence[float]], path: str | os.PathLike, title: str
) -> None:
    """Per label, the share of (run, target) pairs reached against the fraction of the
    budget used (``hits``: the fraction at which each pair was reached, inf if never)."""
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(6, 4))
    finite = [h for values in hits.values() for h in values if np.isfinite(h) and h > 0]
    low = min(finite) if finite else 1e-3
    high = max([1.0, *finite])
    lines, labels = [], []
    for label, values in hits.items():
        values = np.sort(np.asarray(values, dtype=float))
        if not len(values):
            continue
        reached = values[np.isfinite(values)]
        # A step up at each pair's budget, flat to the end once no further target is hit.
        x = np.concatenate([[low], np.maximum(reached, low), [high]])
        y = np.concatenate([[0.0], np.arange(1, len(reached) + 1), [len(reached)]]) / len(values)
        (line,) = axis.step(x, y, where="post")
        lines.append(line)
        labels.append(f"{label} ({len(reached)}/{len(values)})")
    if _spans_decades(low, high) or low < 1e-2:
        axis.set_xscale("log")
    axis.set_ylim(-0.02, 1.02)
    _finish(axis, title, "fraction of the budget used", lines, labels)
    axis.set_ylabel("share of (run, target) pairs reached")
    figure.tight_layout()
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
    _plain_text(texts)
    axis.figure.tight_layout()


def _plain_text(texts: Sequence[Any]) -> None:
    for text in texts:
        text.set_parse_math(False)  # "$...$" in a name is text, not a formula
        text.set_usetex(False)  # even under a matplotlibrc with text.usetex: True
