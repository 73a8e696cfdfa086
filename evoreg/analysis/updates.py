"""Random-update sweep (GO-EA Fig. 4): how often a random update helps, and by how much.

For each edit distance ``sigma`` (the std of the Gaussian noise added to every weight, GO-EA's
step), draw ``samples`` updates around weights ``x`` and score each. An update is beneficial
when it lowers the loss by more than ``neutral_tolerance`` times the loss at ``x``,
deleterious when it raises it by more, and neutral otherwise (a relative band, so that a start
and an optimum, whose losses differ by orders of magnitude, are judged alike). Effect sizes
are the loss and accuracy changes of each kind. ``layers="each"`` repeats the sweep with the
noise on one parameter tensor at a time, beside the whole network.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from .network import Subject, summary


def _sweep(subject: Subject, x: torch.Tensor, span: tuple[int, int], distances: Sequence[float],
           samples: int, tolerance: float, generator: torch.Generator,
           base: tuple[float, float]) -> list[dict[str, Any]]:
    base_loss, base_accuracy = base
    start, stop = span
    rows = []
    for sigma in distances:
        updates = torch.zeros(samples, len(x))
        updates[:, start:stop] = sigma * torch.randn(samples, stop - start, generator=generator)
        losses, accuracies = subject.scores(x + updates)
        loss_change = losses - base_loss
        accuracy_change = accuracies - base_accuracy
        band = tolerance * abs(base_loss)
        kinds = {"beneficial": loss_change < -band, "deleterious": loss_change > band}
        kinds["neutral"] = ~(kinds["beneficial"] | kinds["deleterious"])
        row: dict[str, Any] = {"edit_distance": sigma}
        for kind, mask in kinds.items():
            row[f"p_{kind}"] = float(mask.double().mean())
            row[f"loss_change_{kind}"] = summary(loss_change[mask])
            row[f"accuracy_change_{kind}"] = summary(accuracy_change[mask])
        row["loss_change"] = summary(loss_change)
        row["accuracy_change"] = summary(accuracy_change)
        rows.append(row)
    return rows


def update_sweep(subject: Subject, x: torch.Tensor, *,
                 distances: Sequence[float] = (0.001, 0.003, 0.01, 0.03, 0.1),
                 samples: int = 50, layers: str = "whole", neutral_tolerance: float = 1e-3,
                 seed: int = 0) -> dict[str, Any]:
    """P(beneficial / neutral / deleterious) and effect sizes by edit distance, at ``x``."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.as_tensor(x, dtype=torch.float32).flatten().cpu()
    loss, accuracy = subject.scores(x)
    base = (float(loss[0]), float(accuracy[0]))
    result: dict[str, Any] = {
        "analysis": "update-sweep", "samples": samples, "seed": seed,
        "neutral_tolerance": neutral_tolerance, "dimensions": len(x),
        "base_loss": base[0], "base_accuracy": base[1],
        "whole": _sweep(subject, x, (0, len(x)), distances, samples, neutral_tolerance,
                        generator, base),
    }
    if layers == "each":
        result["layers"] = {
            name: _sweep(subject, x, (start, stop), distances, samples, neutral_tolerance,
                         generator, base)
            for name, start, stop in subject.layers()
        }
    elif layers != "whole":
        raise ValueError(f"layers must be 'whole' or 'each', got {layers!r}")
    return result


def plot_update_sweep(result: dict[str, Any], path: str) -> None:
    """Probabilities of each kind of update, and the mean loss change, by edit distance."""
    from evoreg.plots import _pyplot

    plt = _pyplot()
    rows = result["whole"]
    sigmas = [r["edit_distance"] for r in rows]
    figure, (top, bottom) = plt.subplots(2, sharex=True, figsize=(6, 6))
    for kind in ("beneficial", "neutral", "deleterious"):
        top.plot(sigmas, [r[f"p_{kind}"] for r in rows], marker="o", label=kind)
    top.set_ylabel("probability")
    top.legend()
    for kind in ("beneficial", "deleterious"):
        means = [r[f"loss_change_{kind}"]["mean"] for r in rows]
        bottom.plot(sigmas, [abs(m) for m in means], marker="o", label=f"|loss change|, {kind}")
    bottom.set_xscale("log")
    bottom.set_yscale("log")
    bottom.set_xlabel("edit distance (std of the noise on each weight)")
    bottom.set_ylabel("mean |loss change|")
    bottom.legend()
    figure.suptitle(f"random updates at loss {result['base_loss']:.3g}")
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
