"""Populations: what ``ask`` returns.

Evaluators read candidates only through ``pop.rows(start, stop)``, so a dense population
(``values`` held in memory) and a lazy, seed-compressed one (row = parent + sigma * noise(seed),
Salimans et al. 2017; Such et al. 2017) are interchangeable.
"""

from __future__ import annotations

from typing import Any

import torch


class Population:
    """``values`` (a ``Tensor[n, d]`` or a list of genomes) and unique int64 ``ids``.

    An optimizer may hand out a candidate's id again to have it re-evaluated.
    """

    def __init__(self, values: Any, ids: torch.Tensor | None = None) -> None:
        self._values = values
        self.ids = ids if ids is None else torch.as_tensor(ids, dtype=torch.int64)
        # Set by the optimizer that hands the population out, to check tell().
        self.owner: int | None = None
        self.serial: int | None = None
        # Set by tell() for gradient methods: the loss's gradient at each candidate.
        self.gradients: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self._values)

    @property
    def values(self) -> Any:
        return self._values

    def rows(self, start: int, stop: int) -> Any:
        """Candidates ``start`` to ``stop`` (materialised if the population is lazy)."""
        return self._values[start:stop]

    def chunks(self, size: int):
        """Yield ``(start, rows)`` in chunks of at most ``size`` candidates."""
        for start in range(0, len(self), size):
            yield start, self.rows(start, min(start + size, len(self)))

    def __repr__(self) -> str:
        kind = type(self._values).__name__
        return f"{type(self).__name__}(n={len(self)}, values={kind})"


def noise(seed: int, dim: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """The N(0, 1) vector that ``seed`` names: the same values on every call and device type."""
    generator = torch.Generator(device=device).manual_seed(int(seed))
    return torch.randn(dim, generator=generator, device=device)


class LazyPopulation(Population):
    """Rows defined as ``parents[parent_index[i]] + sigmas[i] * noise(seeds[i])``.

    Only the parents and one (seed, sigma) per row are stored; rows are materialised on
    demand, on ``device``, in whatever chunks the evaluator asks for. A row with sigma 0 is
    its parent unchanged (an elite).
    """

    def __init__(
        self,
        parents: torch.Tensor,
        parent_index: torch.Tensor,
        seeds: torch.Tensor,
        sigmas: torch.Tensor,
        ids: torch.Tensor | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        if parents.dim() != 2:
            raise ValueError("parents must have shape [k, d]")
        n = len(parent_index)
        if len(seeds) != n or len(sigmas) != n:
            raise ValueError("parent_index, seeds and sigmas must have the same length")
        self.parents = parents
        self.parent_index = torch.as_tensor(parent_index, dtype=torch.int64)
        self.seeds = torch.as_tensor(seeds, dtype=torch.int64)
        self.sigmas = torch.as_tensor(sigmas, dtype=torch.float32)
        self.device = torch.device(device) if device is not None else parents.device
        super().__init__(values=None, ids=ids)

    def __len__(self) -> int:
        return len(self.parent_index)

    @property
    def dim(self) -> int:
        return self.parents.shape[1]

    @property
    def values(self) -> torch.Tensor:
        return self.rows(0, len(self))

    def rows(self, start: int, stop: int) -> torch.Tensor:
        stop = min(stop, len(self))
        out = self.parents[self.parent_index[start:stop]].to(self.device, copy=True)
        for row, i in enumerate(range(start, stop)):
            sigma = float(self.sigmas[i])
            if sigma != 0.0:
                out[row] += sigma * noise(int(self.seeds[i]), self.dim, self.device)
        return out
