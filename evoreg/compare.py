"""Comparing optimizers over a benchmark's runs: tests, effect sizes, ranks, win rates, ECDFs.

Everything here reads the final best loss of each finished run (lower is better) or, for the
ECDF, each run's best-so-far curve; nothing is problem-specific.

- ``problem_tests``: per problem, a one-sided Mann-Whitney U test of every ordered pair of
  optimizers (H1: the row's losses are stochastically smaller than the column's), the
  p-values Holm-corrected over all the problem's ordered pairs, and the Vargha-Delaney A12
  effect size (the probability that a run of the row ends with a lower loss than a run of
  the column, ties counting half: 0.5 is no difference, 1 the row always lower). An
  optimizer is the problem's ``best`` only when its corrected p-value is below ``alpha``
  against every other optimizer; otherwise the problem has no best. ``attainable`` says
  whether the numbers of runs allow any pair to reach ``alpha`` after the correction at all
  (with 6 optimizers, 30 ordered pairs, 5 runs each cannot; 6 can).
- ``average_ranks``: per problem, optimizers ranked by median best loss (1 the lowest, ties
  averaged), then averaged over the problems each one ran on.
- ``win_rates``: for each ordered pair, the share of the (problem, seed) cells that both ran
  in which the row ended with a lower loss than the column (a tie counts half, so
  ``W[a, b] + W[b, a] = 1``), as in nevergrad's "fight" plots. Cells are paired by seed:
  the same run seed gives both optimizers the same problem instance.
- ``ecdf``: COCO-style run-length distributions. Each problem gets ``targets`` loss levels
  from the range its runs saw: between the median over runs of the loss after the first
  generation (the easiest target) and the best loss any run reached (the hardest), spaced
  evenly on a log scale when both are > 0, else linearly. For each optimizer, the curve is
  the share of (run, target) pairs whose target was reached (best loss so far <= target)
  within a given budget, aggregated over problems; the budget is a fraction of each
  problem's budget, so problems with different budgets or units mix.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

ALPHA = 0.05
ECDF_TARGETS = 21


# --------------------------------------------------------------------------- two samples
def a12(row: Sequence[float], column: Sequence[float]) -> float:
    """Vargha-Delaney A12 for losses: P(row < column) + P(row == column) / 2."""
    x = np.asarray(row, dtype=float)[:, None]
    y = np.asarray(column, dtype=float)[None, :]
    if x.size == 0 or y.size == 0:
        return math.nan
    return float(((x < y).sum() + 0.5 * (x == y).sum()) / (x.size * y.size))


def effect_label(value: float) -> str:
    """Vargha and Delaney's (2000) magnitude of an A12: |A12 - 0.5| < 0.06 negligible,
    < 0.14 small, < 0.21 medium, else large."""
    if math.isnan(value):
        return ""
    distance = abs(value - 0.5)
    if distance < 0.06:
        return "negligible"
    return "small" if distance < 0.14 else "medium" if distance < 0.21 else "large"


def one_sided_p(row: Sequence[float], column: Sequence[float]) -> float:
    """p-value of the one-sided Mann-Whitney U test that ``row``'s losses are stochastically
    smaller than ``column``'s (NaN when a side has no run)."""
    from scipy.stats import mannwhitneyu

    x, y = np.asarray(row, dtype=float), np.asarray(column, dtype=float)
    if x.size == 0 or y.size == 0:
        return math.nan
    if np.all(np.concatenate([x, y]) == x[0]):
        return 1.0  # all equal: nothing to test (scipy's normal approximation would give NaN)
    # scipy ranks infinite losses (no finite candidate) last, as they should be.
    return float(mannwhitneyu(x, y, alternative="less").pvalue)


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjustment of a family of p-values (NaN ones are left out of the
    family and stay NaN); an adjusted p-value below alpha rejects at family-wise level alpha."""
    indexed = sorted((p, i) for i, p in enumerate(pvalues) if not math.isnan(p))
    adjusted = [math.nan] * len(pvalues)
    running = 0.0
    for rank, (p, i) in enumerate(indexed):
        running = max(running, min(1.0, (len(indexed) - rank) * p))
        adjusted[i] = running
    return adjusted


# --------------------------------------------------------------------------- per problem
def problem_tests(
    losses: Mapping[str, Sequence[float]], alpha: float = ALPHA
) -> dict[str, Any]:
    """Every ordered pair of optimizers on one problem (``losses``: best losses per label).

    Returns ``{"pairs": [{"row", "column", "n_row", "n_column", "p", "p_holm", "a12",
    "effect", "significant"}], "best": label or None, "alpha": alpha}``.
    """
    labels = [label for label, values in losses.items() if len(values)]
    pairs = [
        {"row": row, "column": column, "n_row": len(losses[row]),
         "n_column": len(losses[column]), "p": one_sided_p(losses[row], losses[column]),
         "a12": a12(losses[row], losses[column])}
        for row in labels for column in labels if row != column
    ]
    for pair, adjusted in zip(pairs, holm([pair["p"] for pair in pairs])):
        pair["p_holm"] = adjusted
        pair["effect"] = effect_label(pair["a12"])
        pair["significant"] = bool(adjusted < alpha)  # NaN compares False
    best = None
    if len(labels) > 1:
        winners = [label for label in labels
                   if all(pair["significant"] for pair in pairs if pair["row"] == label)]
        best = winners[0] if winners else None  # at most one can beat all others
    # Holm multiplies the smallest p-value by the number of pairs: with few runs even a
    # complete separation cannot reach alpha, and the reader should know it.
    smallest = min((smallest_p(pair["n_row"], pair["n_column"]) for pair in pairs),
                   default=1.0)
    return {"pairs": pairs, "best": best, "alpha": alpha,
            "attainable": bool(len(pairs) * smallest < alpha)}


def smallest_p(n_row: int, n_column: int) -> float:
    """The smallest one-sided Mann-Whitney p-value ``n_row`` and ``n_column`` runs can give:
    every row run below every column run, 1 / C(n_row + n_column, n_row) (exact test)."""
    return 1.0 / math.comb(n_row + n_column, n_row)


def ranks(values: Sequence[float]) -> list[float]:
    """1-based ranks of ``values`` (lowest first), ties given their average rank."""
    from scipy.stats import rankdata

    return [float(rank) for rank in rankdata(np.asarray(values, dtype=float))]


def average_ranks(medians: Mapping[str, Mapping[str, float]]) -> list[dict[str, Any]]:
    """Mean over problems of each optimizer's rank by median best loss, best first.

    ``medians``: per problem, the median best loss per optimizer label. An optimizer is
    ranked among those that ran on the same problem; ``problems`` says on how many.
    """
    collected: dict[str, list[float]] = {}
    for per_optimizer in medians.values():
        labels = list(per_optimizer)
        for label, rank in zip(labels, ranks([per_optimizer[label] for label in labels])):
            collected.setdefault(label, []).append(rank)
    rows = [{"optimizer": label, "mean_rank": float(np.mean(values)), "problems": len(values)}
            for label, values in collected.items()]
    return sorted(rows, key=lambda row: row["mean_rank"])


# --------------------------------------------------------------------------- win rates
def win_rates(cells: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """The pairwise win-rate matrix over finished cells (``problem``, ``optimizer``,
    ``seed``, ``best_loss`` each).

    Returns ``{"optimizers": labels sorted by mean win rate (best first), "matrix":
    W[i][j] (None on the diagonal and where two optimizers share no cell), "cells":
    C[i][j] (shared cells), "mean": the mean of each row's win rates}``.
    """
    by_cell: dict[tuple[str, Any], dict[str, float]] = {}
    labels: list[str] = []
    for cell in cells:
        by_cell.setdefault((cell["problem"], cell["seed"]), {})[cell["optimizer"]] = float(
            cell["best_loss"])
        if cell["optimizer"] not in labels:
            labels.append(cell["optimizer"])
    k = len(labels)
    wins = np.zeros((k, k))
    shared = np.zeros((k, k), dtype=int)
    for results in by_cell.values():
        for i, row in enumerate(labels):
            for j, column in enumerate(labels):
                if i != j and row in results and column in results:
                    shared[i, j] += 1
                    a, b = results[row], results[column]
                    wins[i, j] += 1.0 if a < b else 0.5 if a == b else 0.0
    with np.errstate(invalid="ignore", divide="ignore"):
        rates = np.where(shared > 0, wins / np.maximum(shared, 1), np.nan)
    np.fill_diagonal(rates, np.nan)
    means = [float(np.nanmean(row)) if np.any(~np.isnan(row)) else math.nan for row in rates]
    order = sorted(range(k), key=lambda i: (-means[i] if not math.isnan(means[i]) else 1.0))
    return {
        "optimizers": [labels[i] for i in order],
        "matrix": [[None if math.isnan(rates[i, j]) else float(rates[i, j]) for j in order]
                   for i in order],
        "cells": [[int(shared[i, j]) for j in order] for i in order],
        "mean": [means[i] for i in order],
    }


# --------------------------------------------------------------------------- ECDF
def targets(initial: float, best: float, count: int = ECDF_TARGETS) -> list[float]:
    """``count`` loss levels from ``initial`` (easiest) down to ``best`` (hardest): evenly
    spaced on a log scale when both are > 0, else linearly; one level when there is no
    range (no run improved on the first generation's median)."""
    if not (math.isfinite(initial) and math.isfinite(best)) or initial <= best:
        return [best] if math.isfinite(best) else []
    if best > 0:
        return [float(t) for t in np.geomspace(initial, best, count)]
    return [float(t) for t in np.linspace(initial, best, count)]


def hitting_fractions(cost: np.ndarray, loss: np.ndarray, levels: Sequence[float],
                      budget: float) -> list[float]:
    """For each target level, the fraction of ``budget`` used when a run's best loss so far
    first reached it (inf when it never did)."""
    hits = []
    for level in levels:
        reached = np.nonzero(loss <= level)[0]
        hits.append(float(cost[reached[0]] / budget) if len(reached) else math.inf)
    return hits


def ecdf(
    runs: Iterable[Mapping[str, Any]], count: int = ECDF_TARGETS
) -> dict[str, Any]:
    """Run-length ECDFs per optimizer (see the module docstring).

    ``runs``: dicts with ``problem``, ``optimizer``, ``budget`` and ``curve`` (``(cost,
    best_loss)`` arrays from the run's log). Returns ``{"targets": {problem: levels},
    "hits": {optimizer: sorted fractions of budget at which each (run, target) pair was
    reached, inf where never}, "pairs": {optimizer: number of (run, target) pairs}}``.
    """
    runs = [run for run in runs if len(run["curve"][0])]
    by_problem: dict[str, list[Mapping[str, Any]]] = {}
    for run in runs:
        by_problem.setdefault(run["problem"], []).append(run)
    levels: dict[str, list[float]] = {}
    for problem, members in by_problem.items():
        initial = float(np.median([run["curve"][1][0] for run in members]))
        best = float(min(np.min(run["curve"][1]) for run in members))
        levels[problem] = targets(initial, best, count)
    hits: dict[str, list[float]] = {}
    for run in runs:
        cost, loss = (np.asarray(part, dtype=float) for part in run["curve"])
        hits.setdefault(run["optimizer"], []).extend(
            hitting_fractions(cost, loss, levels[run["problem"]], float(run["budget"])))
    return {
        "targets": levels,
        "hits": {label: sorted(values) for label, values in hits.items()},
        "pairs": {label: len(values) for label, values in hits.items()},
    }
