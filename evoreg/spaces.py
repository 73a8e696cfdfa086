"""Search spaces: what a candidate is.

- ``Real``: flat float32 vectors (network weights, thresholds).
- ``Categorical``: one choice per slot, as int64 indices.
- ``Genome``: problem-defined objects that the problem can sample and mutate (architectures).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .errors import EvoregError
from .gaussian import noise


class Space:
    """Base class of search spaces."""

    def validate(self, values: Any, n: int) -> Any:
        """Check (and normalise) the values of a population of ``n`` candidates."""
        raise NotImplementedError


@dataclass
class Real(Space):
    """Flat float32 vectors of length ``dim``.

    ``init`` is where optimizers start: a tensor of shape ``[dim]``, a callable returning one
    (e.g. a network's initial weights), or ``None`` for zeros. ``sigma`` is the scale of the
    search around it, for optimizers that need one. ``lower``/``upper`` optionally bound it.
    ``sample_init(n, generator)`` optionally draws ``n`` independent starting points as a
    ``Tensor[n, dim]`` (fresh network initialisations), for population methods that start
    from a diverse population; it must draw only from ``generator`` (on the CPU), so that
    ``seeded_initial(seed)`` is the same vector on every machine.
    """

    dim: int
    init: torch.Tensor | Callable[[], torch.Tensor] | None = None
    sigma: float = 1.0
    lower: float | None = None
    upper: float | None = None
    sample_init: Callable[[int, torch.Generator], torch.Tensor] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.dim, int) or self.dim < 1:
            raise EvoregError(f"Real(dim={self.dim!r}): dim must be a positive int")
        if not self.sigma > 0:
            raise EvoregError(f"Real(sigma={self.sigma!r}): sigma must be > 0")

    def initial(self) -> torch.Tensor:
        """The starting point as a float32 tensor of shape ``[dim]``."""
        init = self.init() if callable(self.init) else self.init
        if init is None:
            start = torch.zeros(self.dim)
        else:
            start = torch.as_tensor(init, dtype=torch.float32).detach().flatten().clone()
        if start.shape != (self.dim,):
            raise EvoregError(f"Real(dim={self.dim}): init has {start.numel()} values")
        return start

    def initial_population(
        self, n: int, generator: torch.Generator, device: torch.device | str = "cpu"
    ) -> torch.Tensor:
        """``n`` starting points: ``sample_init``'s draws if given, else the initial point
        followed by ``n - 1`` perturbations of it with standard deviation ``sigma``."""
        if self.sample_init is not None:
            drawn = torch.as_tensor(self.sample_init(n, generator), dtype=torch.float32)
            if drawn.shape != (n, self.dim):
                raise EvoregError(
                    f"Real(dim={self.dim}).sample_init({n}) returned shape {tuple(drawn.shape)}"
                )
            return drawn.to(device)
        start = self.initial().to(device)
        noise = torch.randn(n, self.dim, generator=generator, device=generator.device)
        noise = noise.to(device).mul_(self.sigma)
        noise[0] = 0.0
        return noise.add_(start)

    def seeded_initial(self, seed: int) -> torch.Tensor:
        """One starting point named by an integer seed, the same on every machine: the draw
        of ``sample_init(1, generator)`` with a CPU generator seeded with ``seed``, or, for a
        space without ``sample_init``, ``initial() + sigma * noise(seed)``. Seed-compressed
        optimizers (``atari-ga``) store a candidate as this seed plus its mutations'."""
        if self.sample_init is None:
            return self.initial() + self.sigma * noise(seed, self.dim)
        generator = torch.Generator().manual_seed(int(seed))
        return self.initial_population(1, generator)[0]

    def validate(self, values: Any, n: int) -> torch.Tensor:
        values = torch.as_tensor(values)
        if values.shape != (n, self.dim):
            raise EvoregError(
                f"a Real({self.dim}) population of {n} must have shape ({n}, {self.dim}), "
                f"got {tuple(values.shape)}"
            )
        return values.float()


@dataclass
class Categorical(Space):
    """One choice per slot: slot ``i`` takes an int in ``range(sizes[i])``."""

    sizes: Sequence[int]

    def __post_init__(self) -> None:
        self.sizes = tuple(int(s) for s in self.sizes)
        if not self.sizes or min(self.sizes) < 1:
            raise EvoregError(f"Categorical(sizes={self.sizes}): every slot needs >= 1 choice")

    @property
    def dim(self) -> int:
        return len(self.sizes)

    def validate(self, values: Any, n: int) -> torch.Tensor:
        values = torch.as_tensor(values)
        if values.shape != (n, self.dim) or values.dtype.is_floating_point:
            raise EvoregError(
                f"a Categorical population of {n} must be int64 of shape ({n}, {self.dim}), "
                f"got {values.dtype} {tuple(values.shape)}"
            )
        values = values.long()
        upper = torch.tensor(self.sizes, device=values.device)
        if n and ((values < 0) | (values >= upper)).any():
            raise EvoregError(f"a Categorical value is outside its slot's range {self.sizes}")
        return values


@dataclass
class Genome(Space):
    """Problem-defined candidates: ``sample(rng)`` makes one, ``mutate(x, rng)`` a variant.

    ``rng`` is a ``numpy.random.Generator``; the optimizer owns it so runs are reproducible.
    """

    sample: Callable[[np.random.Generator], Any]
    mutate: Callable[[Any, np.random.Generator], Any]
    describe: Callable[[Any], str] = field(default=repr)

    def validate(self, values: Any, n: int) -> list:
        values = list(values)
        if len(values) != n:
            raise EvoregError(f"a Genome population of {n} got {len(values)} genomes")
        return values
