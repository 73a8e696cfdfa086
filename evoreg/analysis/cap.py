"""Cap probability: how likely a random direction is to point near a given one (GO-EA Fig. 6).

A direction drawn uniformly on the unit sphere of R^n lies within ``alpha`` of a fixed
direction (the gradient, say) with probability ``1/2 I_{sin^2 alpha}((n-1)/2, 1/2)`` for
``alpha <= 90`` degrees (the area of a hyperspherical cap over the sphere's; Li 2011), where
``I`` is the regularised incomplete beta function. Beyond 90 degrees it is one minus the cap
of ``180 - alpha``. Kucharavy et al. (ALIFE 2023) use it to say why random updates of a
network with thousands of weights almost never point along the gradient.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy.special import betainc

from evoreg.errors import EvoregError


def cap_probability(n: int, alpha_degrees: float) -> float:
    """P(angle(u, e) <= alpha) for u uniform on the sphere of R^n and a fixed unit e."""
    if n < 2:
        raise EvoregError(f"the cap probability needs n >= 2 dimensions, got {n}")
    if not 0 <= alpha_degrees <= 180:
        raise EvoregError(f"alpha must be in [0, 180] degrees, got {alpha_degrees}")
    if alpha_degrees > 90:
        return 1.0 - cap_probability(n, 180.0 - alpha_degrees)
    sin2 = math.sin(math.radians(alpha_degrees)) ** 2
    if alpha_degrees == 90:
        sin2 = 1.0
    return float(0.5 * betainc((n - 1) / 2, 0.5, sin2))


def cap_probability_monte_carlo(
    n: int, alpha_degrees: float, samples: int = 200_000, seed: int = 0
) -> float:
    """The same probability estimated from ``samples`` Gaussian directions (for checking)."""
    generator = torch.Generator().manual_seed(seed)
    hits, left = 0, samples
    while left:
        size = min(left, max(1, 4_000_000 // n))
        u = torch.randn(size, n, generator=generator, dtype=torch.float64)
        cosine = u[:, 0] / u.norm(dim=1)
        hits += int((cosine >= math.cos(math.radians(alpha_degrees))).sum())
        left -= size
    return hits / samples


def cap_table(dimensions: list[int], angles: list[float]) -> dict[str, object]:
    """``probability[i][j]``: the cap probability for ``dimensions[i]`` and ``angles[j]``."""
    table = np.array([[cap_probability(n, a) for a in angles] for n in dimensions])
    return {"dimensions": list(dimensions), "angles_degrees": list(angles),
            "probability": table.tolist()}


def plot_cap(result: dict[str, object], path: str) -> None:
    """Log-probability against n, one line per angle (Fig. 6)."""
    from evoreg.plots import _pyplot

    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(6, 4))
    table = np.array(result["probability"], dtype=float)
    for j, angle in enumerate(result["angles_degrees"]):  # type: ignore[arg-type]
        axis.semilogy(result["dimensions"], np.maximum(table[:, j], 1e-300),
                      label=f"alpha = {angle:g} deg")
    axis.set_xlabel("dimensions n")
    axis.set_ylabel("P(random direction within alpha)")
    axis.legend()
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
