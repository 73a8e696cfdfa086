"""Seed-compressed genomes (Such et al. 2017, "Deep Neuroevolution", arXiv:1712.06567).

A genome is a tuple of ``(seed, sigma)`` pairs: the first pair names the initial weights
(``space.init_from_seed(seed)``; its sigma is ignored), every later pair one mutation
``x += sigma * N(0, 1)`` drawn from ``seed``. A 1.7M-weight Atari agent after a hundred
generations is a hundred pairs, so a population, a checkpoint or a message to a remote worker
holds seeds, not weights. Whoever evaluates decodes rows on its own device, and a small cache
of decoded prefixes (the parents) makes a child one noise draw away from its parent.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence

import torch

from .errors import EvoregError
from .population import Population, noise

#: ``((init_seed, 0.0), (seed_1, sigma_1), ...)``
SeedGenome = tuple[tuple[int, float], ...]


def as_genome(pairs: Sequence[Sequence[float]]) -> SeedGenome:
    """A genome from any sequence of (seed, sigma) pairs (lists after JSON or pickle)."""
    genome = tuple((int(seed), float(sigma)) for seed, sigma in pairs)
    if not genome:
        raise EvoregError("a seed genome needs at least its initial (seed, sigma) pair")
    return genome


class SeedDecoder:
    """Turns genomes into weight vectors, caching the most recently decoded ones.

    ``init_from_seed(seed)`` gives the initial weights as a ``Tensor[dim]`` (the same on every
    machine); mutations are drawn by :func:`evoreg.population.noise` on ``device``'s type, so a
    genome decodes to the same vector on every machine of that type.
    """

    def __init__(
        self,
        dim: int,
        init_from_seed: Callable[[int], torch.Tensor],
        device: torch.device | str = "cpu",
        cache_size: int = 64,
    ) -> None:
        self.dim = int(dim)
        self.init_from_seed = init_from_seed
        self.device = torch.device(device)
        self.cache_size = int(cache_size)
        self._cache: OrderedDict[SeedGenome, torch.Tensor] = OrderedDict()

    def decode(self, genome: SeedGenome) -> torch.Tensor:
        """The weights ``genome`` names (a fresh tensor the caller may modify).

        Only proper prefixes (the parents of what is decoded) are cached: a generation's
        thousands of children would otherwise push its few parents out of the cache.
        """
        genome = as_genome(genome)
        if genome in self._cache:
            return self._decoded(genome).clone()
        return self._build(genome)

    def _decoded(self, genome: SeedGenome) -> torch.Tensor:
        cached = self._cache.get(genome)
        if cached is not None:
            self._cache.move_to_end(genome)
            return cached
        vector = self._build(genome)
        self._remember(genome, vector)
        return vector

    def _build(self, genome: SeedGenome) -> torch.Tensor:
        if len(genome) == 1:
            vector = torch.as_tensor(self.init_from_seed(genome[0][0]), dtype=torch.float32)
            vector = vector.flatten().to(self.device, copy=True)
            if vector.numel() != self.dim:
                raise EvoregError(
                    f"init_from_seed gave {vector.numel()} values, the space has {self.dim}"
                )
            return vector
        seed, sigma = genome[-1]
        vector = self._decoded(genome[:-1]).clone()
        if sigma != 0.0:
            vector.add_(noise(seed, self.dim, self.device), alpha=sigma)
        return vector

    def _remember(self, genome: SeedGenome, vector: torch.Tensor) -> None:
        self._cache[genome] = vector
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)


class SeedPopulation(Population):
    """A population of seed genomes, decoded to rows only when a problem reads them.

    ``genomes`` is the list of genomes (what travels to workers and into checkpoints);
    ``rows(start, stop)`` returns a ``Tensor[stop - start, dim]`` on the decoder's device, and
    ``values`` decodes them all (convenient for small spaces; the forward of large networks,
    ``evoreg.nets``, reads ``rows`` chunk by chunk).
    """

    def __init__(
        self, genomes: Sequence[SeedGenome], decoder: SeedDecoder, ids: torch.Tensor | None = None
    ) -> None:
        super().__init__(values=[as_genome(g) for g in genomes], ids=ids)
        self.decoder = decoder

    @property
    def genomes(self) -> list[SeedGenome]:
        return self._values

    @property
    def values(self) -> torch.Tensor:
        return self.rows(0, len(self))

    @property
    def dim(self) -> int:
        return self.decoder.dim

    def rows(self, start: int, stop: int) -> torch.Tensor:
        stop = min(stop, len(self))
        if stop <= start:
            return torch.empty(0, self.dim, device=self.decoder.device)
        return torch.stack([self.decoder.decode(g) for g in self._values[start:stop]])
