"""Gaussian noise that a key names: a seed (``noise``) or a window of a shared table.

``noise(seed, dim)`` draws N(0, I) from a generator seeded with ``seed``: the same values on
every machine of a device type, so a candidate can be stored as the seeds of its mutations
(Such et al. 2017).

A ``NoiseTable`` is a shared table of Gaussian noise: a candidate's noise is a window at a
random offset.

Salimans et al., "Evolution Strategies as a Scalable Alternative to Reinforcement Learning"
(2017) and Such et al., "Deep Neuroevolution" (2017) both draw perturbations of large
networks this way: generating fresh normals costs about 4 ns a value on a CPU core (measured
here), so a 92k-weight candidate costs ~400 µs of RNG alone, while reading a window of a
pre-drawn table costs one pass over memory. Each window is marginally N(0, I); two windows
share values only when their offsets are within ``dim`` of each other, and then as shifted
copies, not as the same coordinates.
"""

from __future__ import annotations

import functools
from typing import Any

import torch

DEFAULT_SIZE = 2**25  # 128 MiB of float32, as large as the models we perturb need
MIN_SIZE = 2**20


def table_size_for(dim: int, size: int | None = None) -> int:
    """A table large enough that windows of ``dim`` values rarely overlap."""
    if size is not None:
        if size < dim:
            raise ValueError(f"a noise table of {size} values cannot hold windows of {dim}")
        return size
    return max(MIN_SIZE, min(DEFAULT_SIZE, 256 * dim), 4 * dim)


def noise(seed: int, dim: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """The N(0, 1) vector that ``seed`` names: the same values on every call and device type."""
    generator = torch.Generator(device=device).manual_seed(int(seed))
    return torch.randn(dim, generator=generator, device=device)


@functools.lru_cache(maxsize=4)
def _table(size: int, seed: int, device: str) -> torch.Tensor:
    generator = torch.Generator(device=device).manual_seed(seed)
    return torch.randn(size, generator=generator, device=device)


class NoiseTable:
    """``size`` N(0, 1) float32 values drawn once from ``seed`` (shared within a process)."""

    def __init__(self, size: int, seed: int = 0, device: torch.device | str = "cpu") -> None:
        self.size, self.seed, self.device = int(size), int(seed), torch.device(device)
        self.values = _table(self.size, self.seed, str(self.device))

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickled as its recipe, not its values (4 MiB and more): the same seed draws the same
        # table again on the same kind of device.
        return (NoiseTable, (self.size, self.seed, str(self.device)))

    def offsets(self, n: int, dim: int, generator: torch.Generator) -> torch.Tensor:
        """``n`` random window starts for windows of ``dim`` values."""
        return torch.randint(
            0, self.size - dim + 1, (n,), generator=generator, device=generator.device
        )

    def window(self, offset: int, dim: int) -> torch.Tensor:
        return self.values[offset : offset + dim]

    def windows(
        self, offsets: torch.Tensor, dim: int, out: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The windows at ``offsets`` as rows of a ``Tensor[n, dim]`` (written into ``out`` when
        given, so a caller can fill part of a buffer it already holds)."""
        windows = self.values.unfold(0, dim, 1)  # a view: row i is values[i : i + dim]
        return torch.index_select(windows, 0, offsets.to(self.device), out=out)

    def perturb(
        self, center: torch.Tensor, sigma: float | torch.Tensor, offsets: torch.Tensor
    ) -> torch.Tensor:
        """Rows ``center + sigma * window(offset)``, one per offset, as a new ``Tensor[n, d]``.

        ``sigma`` is a number or one value per row.
        """
        out = self.windows(offsets, center.shape[-1])
        sigmas = torch.as_tensor(sigma, dtype=torch.float32, device=self.device).reshape(-1, 1)
        # Two passes over the output (gather, then a fused scale-and-shift in place) as large
        # ops. A per-row loop of small ops was as fast on an idle CPU but 10-50x slower on a
        # loaded one, where torch's intra-op threads wait on each other at every row.
        return torch.addcmul(center, out, sigmas, out=out)
