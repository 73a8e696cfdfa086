"""Update angles (GO-EA Figs. 1 and 5).

``update_angles``: draw random update vectors ``u_i ~ N(0, sigma^2 I)`` around weights ``x``
(GO-EA's children), score each ``x + u_i``, and compare the angles between pairs of the
updates that improve the loss with the angles between all pairs, by the two-sample
Kolmogorov-Smirnov test (scipy.stats.ks_2samp). In thousands of dimensions both concentrate
near 90 degrees: improving updates are not aligned with one another, which the paper reads as
GO-EA not estimating a gradient direction. As in the paper, the improving pairs are a subset
of all pairs, so the samples are not independent; the p-value is a description, not a test
of a hypothesis fixed in advance. The angle of each update to the negative gradient is
reported too (improving ones lie within 90 degrees of it, to first order).

``sgd_angles``: the angle between SGD's update on a minibatch of size B (the minibatch
gradient) and the full-batch update, over several minibatches per B (Fig. 1).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from scipy.stats import ks_2samp

from .network import Subject, angles_degrees, pairwise_angles, summary


def update_angles(subject: Subject, x: torch.Tensor, *, samples: int = 100,
                  sigma: float = 0.01, seed: int = 0) -> dict[str, Any]:
    """Angles among improving and among all random updates at ``x``, and their KS p-value."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.as_tensor(x, dtype=torch.float32).flatten().cpu()
    updates = sigma * torch.randn(samples, len(x), generator=generator)
    base_loss, base_accuracy = subject.scores(x)
    losses, accuracies = subject.scores(x + updates)
    deltas = losses - base_loss
    improving = deltas < 0
    all_angles = pairwise_angles(updates)
    improving_angles = pairwise_angles(updates[improving]) if improving.sum() >= 2 else None
    to_gradient = angles_degrees(updates, -subject.gradient(x)).flatten()
    if improving_angles is not None and len(improving_angles) >= 1:
        test = ks_2samp(improving_angles.numpy(), all_angles.numpy())
        ks = {"statistic": float(test.statistic), "p_value": float(test.pvalue)}
    else:
        ks = {"statistic": None, "p_value": None}
    bins = np.arange(0, 181, 1.0)
    return {
        "analysis": "update-angles",
        "samples": samples,
        "sigma": sigma,
        "seed": seed,
        "dimensions": len(x),
        "base_loss": float(base_loss[0]),
        "base_accuracy": float(base_accuracy[0]),
        "improving": int(improving.sum()),
        "improving_share": float(improving.double().mean()),
        "loss_change": summary(deltas),
        "angles_all": summary(all_angles),
        "angles_improving": summary(improving_angles if improving_angles is not None else []),
        "ks": ks,
        "angle_to_negative_gradient_all": summary(to_gradient),
        "angle_to_negative_gradient_improving": summary(to_gradient[improving]),
        "histogram_bins_degrees": bins.tolist(),
        "histogram_all": np.histogram(all_angles.numpy(), bins)[0].tolist(),
        "histogram_improving": (np.histogram(improving_angles.numpy(), bins)[0].tolist()
                                if improving_angles is not None else None),
    }


def sgd_angles(subject: Subject, x: torch.Tensor, *,
               batch_sizes: Sequence[int] = (1, 4, 16, 64, 256), batches: int = 20,
               seed: int = 0) -> dict[str, Any]:
    """Angles between minibatch SGD updates of each size and the full-batch update at ``x``."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.as_tensor(x, dtype=torch.float32).flatten().cpu()
    full = subject.gradient(x)
    rows = []
    for size in batch_sizes:
        size = min(int(size), len(subject.labels))
        gradients = []
        for _ in range(batches):
            index = torch.randperm(len(subject.labels), generator=generator)[:size]
            index = index.to(subject.device)
            gradients.append(subject.gradient(x, subject.images[index], subject.labels[index]))
        angles = angles_degrees(torch.stack(gradients), full).flatten()
        rows.append({"batch_size": size, "angles": angles.tolist(), **summary(angles)})
    return {"analysis": "sgd-angles", "seed": seed, "batches": batches,
            "full_batch": len(subject.labels), "full_gradient_norm": float(full.norm()),
            "batch_sizes": rows}


def plot_update_angles(result: dict[str, Any], path: str) -> None:
    """Histograms (densities) of the angles among all and among improving updates."""
    from evoreg.plots import _pyplot

    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(6, 4))
    bins = np.array(result["histogram_bins_degrees"])
    centres = (bins[:-1] + bins[1:]) / 2
    for key, label in (("histogram_all", "all updates"), ("histogram_improving", "improving")):
        counts = result.get(key)
        if counts is not None and sum(counts):
            axis.plot(centres, np.array(counts) / sum(counts), label=label)
    p = result["ks"]["p_value"]
    axis.set_title(f"update angles (KS p = {p:.3g})" if p is not None else "update angles")
    axis.set_xlabel("angle between two updates (degrees)")
    axis.set_ylabel("share of pairs")
    axis.legend()
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def plot_sgd_angles(result: dict[str, Any], path: str) -> None:
    from evoreg.plots import _pyplot

    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(6, 4))
    rows = result["batch_sizes"]
    axis.errorbar([r["batch_size"] for r in rows], [r["mean"] for r in rows],
                  [r["std"] for r in rows], marker="o")
    axis.set_xscale("log")
    axis.set_xlabel("SGD batch size")
    axis.set_ylabel("angle to the full-batch update (degrees)")
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
