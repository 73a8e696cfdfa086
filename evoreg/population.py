"""Populations: what ``ask`` returns.

A ``Population`` holds its candidates: ``values`` is a ``Tensor[n, d]`` (or a list of genomes).
A ``LazyPopulation`` only describes them: each row is a base vector plus scaled Gaussian
noise, ``base + sigma_1 * noise(key_1) + ...``, written out where and when it is read. That
one form covers the seed compression of Salimans et al. (2017) and Such et al. (2017): a
child of a dense parent is (parent, one noise key); a seed genome is (init seed, the keys of
all its mutations). A population of a thousand 92k-weight networks is then a few kilobytes
until an evaluator reads it, chunk by chunk, into a buffer of its own.

Whoever reads candidates does so through ``rows(start, stop, out=None)`` or
``chunks(size, out=None)``, so both kinds are interchangeable; with ``out`` given, a lazy
population writes its rows into that buffer (the reader's, reused from chunk to chunk)
instead of a fresh tensor. Nothing the user was handed is ever written into.
``to_payload(start, stop)`` / ``from_payload`` move a part of a population to another
process (a Ray worker) in its cheapest form: genomes, or rows when those are smaller.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from typing import Any

import torch

from .errors import EvoregError
from .gaussian import NoiseTable, noise
from .spaces import count_text, indices_text, nonfinite_rows

#: ``((base, 0.0), (noise key, sigma), ...)``: a base (a row of ``bases``, or an integer seed
#: of the space's ``seeded_initial``) and one (key, sigma) term per mutation.
LazyGenome = tuple[tuple[int, float], ...]

#: Bytes of the rows that ``chunks()`` hands out at once when no size is given.
CHUNK_BYTES = 8 << 20


class Population:
    """``values`` (a ``Tensor[n, d]`` or a list of genomes) and unique int64 ``ids``.

    An optimizer may hand out a candidate's id again to have it re-evaluated. After
    ``tell``, ``evaluation`` holds the ``Evaluation`` it was told (losses, gradients,
    candidates updated by the problem).
    """

    #: True when rows are written out as they are read: a reader then offers a buffer.
    lazy = False

    def __init__(self, values: Any, ids: torch.Tensor | None = None) -> None:
        self._values = values
        self.ids = ids if ids is None else torch.as_tensor(ids, dtype=torch.int64)
        # Set by the optimizer that hands the population out, to check tell().
        self.owner: int | None = None
        self.serial: int | None = None
        self.evaluation: Any = None  # set by tell()

    def __len__(self) -> int:
        return len(self._values)

    @property
    def values(self) -> Any:
        return self._values

    def rows(self, start: int, stop: int, out: torch.Tensor | None = None) -> Any:
        """Candidates ``start`` to ``stop``. A lazy population writes them into ``out`` (a
        float32 ``Tensor[>= stop - start, d]`` on its device) when it is given, else into a
        fresh tensor; held values are returned as they are (a view), whatever ``out``."""
        return self._values[start:stop]

    def chunks(
        self, size: int | None = None, out: torch.Tensor | None = None
    ) -> Iterator[tuple[int, Any]]:
        """Yield ``(start, rows)`` in chunks of at most ``size`` candidates (default: about
        ``CHUNK_BYTES`` of rows). With ``out``, a lazy population writes every chunk into
        that one buffer: each chunk is valid until the next is read."""
        size = size or self.default_chunk()
        for start in range(0, len(self), size):
            yield start, self.rows(start, min(start + size, len(self)), out)

    def default_chunk(self) -> int:
        dim = getattr(self, "dim", None)
        if dim is None and isinstance(self._values, torch.Tensor) and self._values.dim() == 2:
            dim = self._values.shape[1]
        return max(1, CHUNK_BYTES // (4 * dim)) if dim else max(1, len(self))

    def to_payload(self, start: int, stop: int) -> dict[str, Any]:
        """Candidates ``start`` to ``stop`` as plain data for another process (rows on the
        CPU, so a worker on any machine can read them); ``from_payload`` rebuilds them."""
        rows = self.rows(start, stop)
        if isinstance(rows, torch.Tensor):
            return {"rows": rows.cpu()}
        return {"values": list(rows)}

    @staticmethod
    def from_payload(
        payload: dict[str, Any],
        space: Any,
        device: torch.device | str = "cpu",
        decoders: dict | None = None,
    ) -> Population:
        """The population ``to_payload`` described, on ``device``. ``decoders`` (a dict the
        caller keeps between calls) keeps decoded parents cached from one call to the next."""
        if "rows" in payload:
            return Population(payload["rows"].to(device))
        if "values" in payload:
            return Population(payload["values"])
        decoders = {} if decoders is None else decoders
        table = payload.get("table")
        if payload.get("bases") is not None:
            decoder = Decoder(space.dim, bases=payload["bases"], table=table, device=device)
        else:
            key = ("seeded", table, str(device))
            if key not in decoders:
                decoders[key] = Decoder(space.dim, space=space, table=table, device=device)
            decoder = decoders[key]
        return LazyPopulation(payload["genomes"], decoder)

    def __repr__(self) -> str:
        kind = type(self._values).__name__
        return f"{type(self).__name__}(n={len(self)}, values={kind})"


def as_genome(pairs: Sequence[Sequence[float]]) -> LazyGenome:
    """A genome from any sequence of (key, sigma) pairs (lists after JSON or pickle)."""
    genome = tuple((int(key), float(sigma)) for key, sigma in pairs)
    if not genome:
        raise EvoregError("a lazy genome needs at least its base (key, sigma) pair")
    return genome


class Decoder:
    """Writes lazy genomes out as rows on ``device``.

    A genome's base is row ``key`` of ``bases`` (a ``Tensor[k, d]``: dense parents) or, when
    ``bases`` is None, ``space.seeded_initial(key)`` (the same vector on every machine). Its
    noise terms are windows of ``table`` at offset ``key`` when a table is given (a
    ``NoiseTable`` or its ``(size, seed)``), else ``noise(key)`` drawn on ``device``'s type.
    The most recently decoded proper prefixes (the parents of what is decoded) are cached,
    so a child of a cached parent costs one noise term.
    """

    def __init__(
        self,
        dim: int,
        *,
        bases: torch.Tensor | None = None,
        space: Any = None,
        table: NoiseTable | tuple[int, int] | None = None,
        device: torch.device | str = "cpu",
        cache_size: int = 64,
    ) -> None:
        if (bases is None) == (space is None):
            raise EvoregError("a Decoder needs its bases or its space (one)")
        self.dim = int(dim)
        self.device = torch.device(device)
        self.bases = None if bases is None else bases.to(self.device)
        self.space = space
        if isinstance(table, tuple):
            table = NoiseTable(table[0], table[1], device=self.device)
        self.table = table
        self.cache_size = int(cache_size)
        self._cache: OrderedDict[LazyGenome, torch.Tensor] = OrderedDict()

    def __getstate__(self) -> dict[str, Any]:
        # A pickle holds what names the rows, not the rows decoded so far (a cache of up to
        # ``cache_size`` whole networks).
        state = dict(vars(self))
        state["_cache"] = OrderedDict()
        return state

    @property
    def table_key(self) -> tuple[int, int] | None:
        return None if self.table is None else (self.table.size, self.table.seed)

    def decode(self, genome: LazyGenome) -> torch.Tensor:
        """The row ``genome`` names (a fresh tensor the caller may modify)."""
        genome = as_genome(genome)
        if genome in self._cache:
            return self._decoded(genome).clone()
        return self._build(genome)

    def decode_into(self, genomes: Sequence[LazyGenome], out: torch.Tensor) -> torch.Tensor:
        """Rows of ``genomes`` written into ``out[: len(genomes)]``, which is returned."""
        out = out[: len(genomes)]
        if genomes and self._one_term_on_bases(genomes):
            # The common lazy child, a dense base plus one table window, in two large ops.
            base_index = [g[0][0] for g in genomes]
            offsets = torch.tensor([g[1][0] for g in genomes], device=self.device)
            sigmas = torch.tensor([g[1][1] for g in genomes], device=self.device).unsqueeze(1)
            self.table.windows(offsets, self.dim, out=out)
            if len(set(base_index)) == 1:  # one centre, broadcast as in NoiseTable.perturb
                return torch.addcmul(self.bases[base_index[0]], out, sigmas, out=out)
            return torch.addcmul(self.bases[base_index], out, sigmas, out=out)
        for row, genome in enumerate(genomes):
            out[row] = self.decode(genome)
        return out

    def _one_term_on_bases(self, genomes: Sequence[LazyGenome]) -> bool:
        return (
            self.bases is not None and self.table is not None
            and all(len(g) == 2 for g in genomes)
        )

    def _decoded(self, genome: LazyGenome) -> torch.Tensor:
        cached = self._cache.get(genome)
        if cached is not None:
            self._cache.move_to_end(genome)
            return cached
        vector = self._build(genome)
        self._cache[genome] = vector
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return vector

    def _build(self, genome: LazyGenome) -> torch.Tensor:
        if len(genome) == 1:
            return self._base(genome[0][0])
        key, sigma = genome[-1]
        vector = self._decoded(genome[:-1]).clone()
        if sigma == 0.0:
            return vector
        if self.table is not None:
            scale = torch.tensor(sigma, device=self.device)
            return torch.addcmul(vector, self.table.window(key, self.dim), scale, out=vector)
        return vector.add_(noise(key, self.dim, self.device), alpha=sigma)

    def _base(self, key: int) -> torch.Tensor:
        if self.bases is not None:
            return self.bases[key].clone()
        vector = torch.as_tensor(self.space.seeded_initial(key), dtype=torch.float32)
        vector = vector.flatten().to(self.device, copy=True)
        if vector.numel() != self.dim:
            raise EvoregError(
                f"seeded_initial gave {vector.numel()} values, the space has {self.dim}"
            )
        # Checked here, once per base (then cached), since a seeded base is only known when
        # decoded: one pass over a vector that took several to draw.
        if nonfinite_rows(vector.unsqueeze(0)) is not None:
            raise EvoregError(f"seeded_initial({key}) gave NaN/inf values")
        return vector


class LazyPopulation(Population):
    """Candidates described as lazy genomes and written out only where they are read.

    ``genomes[i]`` is ``((base, 0.0), (key_1, sigma_1), ...)``: row i is the decoder's base
    plus ``sigma_j`` times the noise ``key_j`` names (see :class:`Decoder`). ``values``
    writes every row once and keeps them; evaluators of large networks read ``rows`` or
    ``chunks`` into a buffer of their own instead.
    """

    lazy = True

    def __init__(
        self, genomes: Sequence[LazyGenome], decoder: Decoder, ids: torch.Tensor | None = None
    ) -> None:
        super().__init__(values=[as_genome(g) for g in genomes], ids=ids)
        self.decoder = decoder
        self._written: torch.Tensor | None = None

    @classmethod
    def around(
        cls,
        parents: torch.Tensor,
        parent_index: torch.Tensor | Sequence[int],
        seeds: torch.Tensor | Sequence[int],
        sigmas: torch.Tensor | Sequence[float],
        ids: torch.Tensor | None = None,
        device: torch.device | str | None = None,
    ) -> LazyPopulation:
        """Rows ``parents[parent_index[i]] + sigmas[i] * noise(seeds[i])``; sigma 0 is the
        parent unchanged (an elite)."""
        if parents.dim() != 2:
            raise EvoregError("parents must have shape [k, d]")
        index, seeds, sigmas = (torch.as_tensor(v).tolist() for v in (parent_index, seeds, sigmas))
        if not len(index) == len(seeds) == len(sigmas):
            raise EvoregError("parent_index, seeds and sigmas must have the same length")
        genomes = [((int(p), 0.0), (int(s), float(sigma)))
                   for p, s, sigma in zip(index, seeds, sigmas)]
        device = parents.device if device is None else device
        return cls(genomes, Decoder(parents.shape[1], bases=parents, device=device), ids)

    @property
    def genomes(self) -> list[LazyGenome]:
        return self._values

    def check(self, dim: int) -> None:
        """Refuse (``EvoregError``) a population that cannot be candidates of a ``Real(dim)``
        space, without writing out a single row: the decoder's dim, each genome's base (a row
        of the bases, which must be finite) and noise terms (finite sigmas, windows inside the
        table). It reads the genomes and the bases, not the rows: a population of 2000
        1.7M-weight agents is lazy precisely so that nothing writes it out whole."""
        decoder = self.decoder
        if decoder.dim != dim:
            raise EvoregError(
                f"a LazyPopulation of {decoder.dim}-value candidates for a Real({dim}) space"
            )
        bases = None if decoder.bases is None else len(decoder.bases)
        last = None if decoder.table is None else decoder.table.size - dim
        faults = {}
        for row, genome in enumerate(self._values):
            fault = _genome_fault(genome, bases, last)
            if fault is not None:
                faults[row] = fault
        if faults:
            rows = list(faults)
            raise EvoregError(
                f"{count_text(len(rows), 'candidate')} with invalid lazy genomes "
                f"({indices_text(rows, 'row')}; row {rows[0]}: {faults[rows[0]]})"
            )
        bad_bases = None if bases is None else nonfinite_rows(decoder.bases)
        if bad_bases is not None:
            bad = set(bad_bases)
            rows = [row for row, genome in enumerate(self._values) if genome[0][0] in bad]
            verb = "holds" if len(bad_bases) == 1 else "hold"
            raise EvoregError(
                f"{count_text(len(rows), 'candidate')} with NaN/inf values "
                f"({indices_text(rows, 'row')}, whose decoder {indices_text(bad_bases, 'base')} "
                f"{verb} NaN/inf)"
            )

    @property
    def dim(self) -> int:
        return self.decoder.dim

    @property
    def values(self) -> torch.Tensor:
        """Every row, written out once and kept (for small spaces and user code)."""
        if self._written is None:
            self._written = self.rows(0, len(self))
        return self._written

    def rows(self, start: int, stop: int, out: torch.Tensor | None = None) -> torch.Tensor:
        stop = min(stop, len(self))
        count = max(0, stop - start)
        if self._written is not None:
            return self._written[start:stop]
        if (out is None or out.shape[0] < count or out.shape[1:] != (self.dim,)
                or out.device != self.decoder.device or out.dtype != torch.float32):
            out = torch.empty(count, self.dim, device=self.decoder.device)
        return self.decoder.decode_into(self._values[start:stop], out)

    def to_payload(self, start: int, stop: int) -> dict[str, Any]:
        """The genomes of ``start`` to ``stop`` with what decodes them: nothing more for
        seed-initialised genomes, the dense bases they use otherwise, or the rows themselves
        when those are smaller than the bases."""
        genomes = self._values[start:stop]
        payload: dict[str, Any] = {"genomes": genomes, "table": self.decoder.table_key}
        if self.decoder.bases is None:
            return payload
        used = sorted({g[0][0] for g in genomes})
        if len(used) >= len(genomes):  # as many bases as rows: the rows are no larger
            return super().to_payload(start, stop)
        renumber = {old: new for new, old in enumerate(used)}
        payload["genomes"] = [((renumber[g[0][0]], g[0][1]), *g[1:]) for g in genomes]
        payload["bases"] = self.decoder.bases[used].cpu()
        return payload


def _genome_fault(genome: LazyGenome, bases: int | None, last: int | None) -> str | None:
    """Why ``genome`` does not name a row (``bases``: how many the decoder has, None for
    seeded bases; ``last``: the table's last window offset, None without a table)."""
    base = genome[0][0]
    if bases is not None and not 0 <= base < bases:
        # A negative key would silently index from the end of the bases.
        return f"base {base} is not one of the decoder's {bases} bases"
    for key, sigma in genome[1:]:
        if not math.isfinite(sigma):
            return f"noise term ({key}, {sigma}) has a non-finite sigma"
        if last is not None and not 0 <= key <= last:
            return f"noise offset {key} is outside the table's windows 0..{last}"
    return None
