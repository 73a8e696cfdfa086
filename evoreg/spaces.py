"""Search spaces: what a candidate is.

- ``Real``: flat float32 vectors (network weights, thresholds).
- ``Categorical``: one choice per slot, as int64 indices.
- ``Genome``: problem-defined objects that the problem can sample and mutate (architectures).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Iterator, Sequence
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
    (e.g. a network's initial weights), or ``None`` for zeros (clipped into the bounds).
    ``sigma`` is the scale of the search around it, for optimizers that need one.
    ``lower``/``upper`` optionally bound it: a number for every coordinate or ``dim`` numbers,
    ``-inf``/``inf`` where a coordinate is unbounded on that side; only optimizers with
    ``respects_bounds`` accept a bounded space. ``sample_init(n, generator)`` optionally
    draws ``n`` independent starting points as a ``Tensor[n, dim]`` (fresh network
    initialisations), for population methods that start from a diverse population; it must
    draw only from ``generator`` (on the CPU), so that ``seeded_initial(seed)`` is the same
    vector on every machine.

    Everything but a callable ``init`` and ``sample_init`` is checked at construction: a
    bad space is refused in one line here rather than found as NaN losses or silently wrong
    candidates generations later.
    """

    dim: int
    init: torch.Tensor | Callable[[], torch.Tensor] | None = None
    sigma: float = 1.0
    #: None, a number, or (after construction) a float32 ``Tensor[dim]``
    lower: float | Sequence[float] | torch.Tensor | None = None
    upper: float | Sequence[float] | torch.Tensor | None = None
    sample_init: Callable[[int, torch.Generator], torch.Tensor] | None = None

    def __post_init__(self) -> None:
        # bool is an int to Python, but Real(True) is a mistake, not a 1-d space.
        if (isinstance(self.dim, bool) or not isinstance(self.dim, numbers.Integral)
                or self.dim < 1):
            raise EvoregError(f"Real(dim={self.dim!r}): dim must be a positive int")
        self.dim = int(self.dim)
        where = f"Real(dim={self.dim})"
        try:  # a float, an int, a numpy or 0-d torch scalar; not a bool or a string
            if isinstance(self.sigma, (bool, str)):
                raise TypeError
            sigma = float(self.sigma)
        except (TypeError, ValueError, RuntimeError):
            raise EvoregError(f"{where}: sigma must be a number, not {self.sigma!r}") from None
        if not (math.isfinite(sigma) and sigma > 0):
            raise EvoregError(f"{where}: sigma must be finite and > 0, got {self.sigma!r}")
        self.sigma = sigma
        self.lower = self._bound("lower", self.lower)
        self.upper = self._bound("upper", self.upper)
        lower, upper = self.bounds()
        crossed = torch.nonzero(~(lower < upper)).flatten().tolist()
        if crossed:
            i = crossed[0]
            raise EvoregError(
                f"{where}: lower must be < upper, but lower {float(lower[i])} >= upper "
                f"{float(upper[i])} at {indices_text(crossed, 'coordinate')}"
            )
        if self.init is not None and not callable(self.init):
            self._checked_start(self.init)

    def _bound(self, side: str, value: Any) -> float | torch.Tensor | None:
        """``value`` as a float or a float32 ``Tensor[dim]``, refused if it holds NaN or has
        another length."""
        if value is None:
            return None
        where = f"Real(dim={self.dim})"
        if isinstance(value, bool):
            raise EvoregError(f"{where}: {side} must be a number or {self.dim} numbers, not bool")
        if isinstance(value, numbers.Real):
            if math.isnan(value):
                raise EvoregError(f"{where}: {side} is NaN")
            return float(value)
        try:
            vector = torch.as_tensor(value, dtype=torch.float32).detach().cpu().clone()
        except (TypeError, ValueError, RuntimeError) as error:
            raise EvoregError(f"{where}: {side} must be a number or {self.dim} numbers "
                              f"({error})") from None
        if vector.dim() == 0:
            return self._bound(side, float(vector))
        if vector.shape != (self.dim,):
            raise EvoregError(
                f"{where}: {side} has shape {tuple(vector.shape)}, the space needs ({self.dim},)"
            )
        nan = torch.nonzero(vector.isnan()).flatten().tolist()
        if nan:
            raise EvoregError(f"{where}: {side} is NaN at {indices_text(nan, 'coordinate')}")
        return vector

    @property
    def bounded(self) -> bool:
        """True when some coordinate has a finite bound."""
        # Asked on every ask(): no tensor of dim values for scalar (or absent) bounds.
        return any(
            bool(torch.isfinite(side).any()) if isinstance(side, torch.Tensor)
            else math.isfinite(side)
            for side in (self.lower, self.upper) if side is not None
        )

    def bounds(self, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
        """``(lower, upper)`` as float32 ``Tensor[dim]`` on ``device``, ``-inf``/``inf`` where
        unbounded. float32 because candidates are: a float64 bound rounds to the nearest
        float32, and rounding is monotone, so ``x <= upper`` survives the cast."""
        return (self._side(self.lower, -math.inf, device), self._side(self.upper, math.inf, device))

    def _side(self, value: Any, default: float, device: torch.device | str) -> torch.Tensor:
        if isinstance(value, torch.Tensor):
            return value.to(device)
        fill = default if value is None else value
        return torch.full((self.dim,), fill, dtype=torch.float32, device=device)

    def clip(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` (``[..., dim]``) clipped into the bounds, as a new tensor; ``x`` itself when
        the space is unbounded."""
        if self.lower is None and self.upper is None:
            return x
        lower, upper = self.bounds(x.device)
        return torch.clamp(x, lower.to(x.dtype), upper.to(x.dtype))

    def _checked_start(self, init: Any) -> torch.Tensor:
        """``init`` as a float32 ``Tensor[dim]``, refused unless finite and within the bounds."""
        where = f"Real(dim={self.dim})"
        start = torch.as_tensor(init, dtype=torch.float32).detach().flatten().clone()
        if start.shape != (self.dim,):
            raise EvoregError(f"{where}: init has {start.numel()} values")
        bad = torch.nonzero(~torch.isfinite(start)).flatten().tolist()
        if bad:
            raise EvoregError(f"{where}: init holds NaN/inf at {indices_text(bad, 'coordinate')}")
        lower, upper = self.bounds(start.device)
        outside = torch.nonzero((start < lower) | (start > upper)).flatten().tolist()
        if outside:
            raise EvoregError(f"{where}: init lies outside the bounds at "
                              f"{indices_text(outside, 'coordinate')}")
        return start

    def initial(self) -> torch.Tensor:
        """The starting point as a float32 tensor of shape ``[dim]``."""
        init = self.init() if callable(self.init) else self.init
        if init is None:
            return self.clip(torch.zeros(self.dim))
        return self._checked_start(init)

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
            bad = nonfinite_rows(drawn)
            if bad is not None:
                raise EvoregError(
                    f"Real(dim={self.dim}).sample_init({n}) returned NaN/inf values in "
                    f"{indices_text(bad, 'row')}"
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
        """``values`` as a float32 ``Tensor[n, dim]``: refused if of another shape or not real
        numbers. Finiteness and bounds are ``invalid_rows``'s (a problem's trained candidates
        pass here and may legitimately have diverged)."""
        try:
            values = torch.as_tensor(values)
        except (TypeError, ValueError, RuntimeError) as error:
            raise EvoregError(f"a Real({self.dim}) population must be a Tensor[n, {self.dim}] "
                              f"of numbers ({error})") from None
        if values.shape != (n, self.dim):
            raise EvoregError(
                f"a Real({self.dim}) population of {n} must have shape ({n}, {self.dim}), "
                f"got {tuple(values.shape)}"
            )
        if values.dtype == torch.bool or values.dtype.is_complex:
            raise EvoregError(f"a Real({self.dim}) population must hold real numbers, "
                              f"not {values.dtype}")
        return values.float()

    def invalid_rows(self, values: torch.Tensor) -> str | None:
        """What is wrong with rows of ``values`` (a float32 ``Tensor[n, dim]``): NaN/inf
        values, or values outside the bounds, with the rows named; None if nothing is.

        Read in chunks, so checking a population of large networks allocates no second
        population."""
        bad = nonfinite_rows(values)
        if bad is not None:
            return (f"{count_text(len(bad), 'candidate')} with NaN/inf values "
                    f"({indices_text(bad, 'row')})")
        if self.lower is None and self.upper is None:
            return None
        lower, upper = self.bounds(values.device)
        outside = []
        for start, chunk in _chunks(values):
            rows = ((chunk < lower) | (chunk > upper)).any(dim=1)
            outside += (torch.nonzero(rows).flatten() + start).tolist()
        if outside:
            return (f"{count_text(len(outside), 'candidate')} outside the space's bounds "
                    f"({indices_text(outside, 'row')})")
        return None


def nonfinite_rows(values: torch.Tensor) -> list[int] | None:
    """The rows of ``values`` (``[n, d]``) that hold NaN/inf, or None when none does.

    The common case, every row finite, costs one sum per chunk and one device sync: a sum is
    NaN/inf when any term is (NaN propagates, inf + -inf is NaN), and a sum that overflows
    although every term is finite only sends that chunk to the exact per-row test."""
    chunks = list(_chunks(values))
    if not chunks:
        return None
    sums = torch.stack([chunk.sum() for _, chunk in chunks])
    if bool(torch.isfinite(sums).all()):
        return None
    bad: list[int] = []
    for (start, chunk), total in zip(chunks, sums.tolist()):
        if not math.isfinite(total):
            rows = ~torch.isfinite(chunk).all(dim=1)
            bad += (torch.nonzero(rows).flatten() + start).tolist()
    return bad or None


def _chunks(
    values: torch.Tensor, chunk_values: int = 1 << 21
) -> Iterator[tuple[int, torch.Tensor]]:
    """Row chunks of about ``chunk_values`` values (8 MiB of float32), so that a test on a
    whole population never allocates a second one."""
    rows = max(1, chunk_values // max(1, values.shape[1] if values.dim() > 1 else 1))
    for start in range(0, len(values), rows):
        yield start, values[start:start + rows]


def count_text(count: int, noun: str) -> str:
    """``1 candidate``, ``3 candidates``."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


def indices_text(indices: Sequence[int], what: str, shown: int = 5) -> str:
    """``rows 0, 4, 7`` or ``rows 0, 4, 7, 9, 12, ... (40 in all)``: short enough for one line."""
    listed = ", ".join(str(i) for i in indices[:shown])
    more = f", ... ({len(indices)} in all)" if len(indices) > shown else ""
    plural = "s" if len(indices) > 1 else ""
    return f"{what}{plural} {listed}{more}"


@dataclass
class Categorical(Space):
    """One choice per slot: slot ``i`` takes an int in ``range(sizes[i])``."""

    sizes: Sequence[int]

    def __post_init__(self) -> None:
        if any(isinstance(s, bool) or not isinstance(s, numbers.Integral) for s in self.sizes):
            raise EvoregError(f"Categorical(sizes={self.sizes}): every size must be an int")
        self.sizes = tuple(int(s) for s in self.sizes)
        if not self.sizes or min(self.sizes) < 1:
            raise EvoregError(f"Categorical(sizes={self.sizes}): every slot needs >= 1 choice")

    @property
    def dim(self) -> int:
        return len(self.sizes)

    def validate(self, values: Any, n: int) -> torch.Tensor:
        try:
            values = torch.as_tensor(values)
        except (TypeError, ValueError, RuntimeError) as error:
            raise EvoregError(f"a Categorical population must be int64 of shape (n, {self.dim}) "
                              f"({error})") from None
        if values.shape != (n, self.dim) or not _integer(values.dtype):
            raise EvoregError(
                f"a Categorical population of {n} must be int64 of shape ({n}, {self.dim}), "
                f"got {values.dtype} {tuple(values.shape)}"
            )
        values = values.long()
        upper = torch.tensor(self.sizes, device=values.device)
        if n and ((values < 0) | (values >= upper)).any():
            raise EvoregError(f"a Categorical value is outside its slot's range {self.sizes}")
        return values


def _integer(dtype: torch.dtype) -> bool:
    """Integer dtypes, bool excluded (a mask is not a choice)."""
    return not (dtype.is_floating_point or dtype.is_complex or dtype == torch.bool)


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
