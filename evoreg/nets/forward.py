"""``PopulationForward``: a population of flat parameter vectors through one model, scored.

``PopulationForward(model)(population, inputs, targets, score)`` runs every candidate's
forward pass on one data batch and returns, per candidate, what ``score`` makes of the
outputs (a loss, a count: the caller decides; classification's is in
``evoreg.problems.classification``). Three strategies compute the same outputs: ``batched``
(``batched.BatchedPlan``: shared-input first layer as one GEMM, later layers as bmm / grouped
convolution), ``vmap`` (``torch.func.vmap`` of ``functional_call`` over the candidate axis)
and ``loop`` (one ``functional_call`` per candidate). Which is fastest depends on the model,
the device, the sizes and the score, so ``strategy="auto"`` measures: on the first call for
a key (model structure, device, threads, precision, chunk size, batch and target shapes,
score) it times each strategy, and the batched and vmap ones at a few tile sizes (candidates
per pass inside a chunk: on a CPU, a tile whose activations stay in cache can be twice as
fast as the whole chunk), on that call's first chunk, and caches the fastest in ``CHOICES``.
The measuring run's scores are the chunk's scores, and a variant is abandoned as soon as it
has taken longer than the best so far, so measuring costs at most a few chunks' time, once
per key. Candidates are read only through ``read_rows``.
"""

from __future__ import annotations

import contextlib
import copy
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.func import functional_call, vmap

from evoreg.devices import resolve_device
from evoreg.errors import EvoregError, unknown_name
from evoreg.population import Population

from .batched import BatchedPlan, Unsupported, activation_numel
from .params import parameter_count

STRATEGIES = ("batched", "vmap", "loop")
PRECISIONS = ("fp32", "tf32", "bf16")
TILE_DIVISORS = (1, 4, 16, 64)  # tiles measured for batched and vmap: chunk // divisor

Key = tuple

#: ``score(outputs, targets)``: ``outputs`` of a tile of c candidates as ``Tensor[c, features,
#: B]`` (float32, feature-major: the batched strategy's layout; the others' transposed to it),
#: ``targets`` the batch's as given; returns ``Tensor[c]`` or a tuple of ``Tensor[c]``.
Score = Callable[[torch.Tensor, torch.Tensor], torch.Tensor | tuple[torch.Tensor, ...]]


@dataclass
class Choice:
    """What auto-selection picked for one key, and the timings it measured."""

    strategy: str
    tile: int  #: candidates per pass inside a chunk
    chunk: int  #: candidates per chunk (memory budget)
    #: seconds per candidate of each variant ("batched/25": batched, tiles of 25); a variant
    #: abandoned once slower than the best has its partial time (a lower bound) in ``abandoned``
    seconds_per_candidate: dict[str, float] = field(default_factory=dict)
    abandoned: list[str] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)  #: variants that failed to run


#: Module-level cache of auto-selection: key -> Choice. ``CHOICES.clear()`` measures anew.
CHOICES: dict[Key, Choice] = {}


def read_rows(
    population: Population | torch.Tensor,
    start: int,
    stop: int,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """Candidates ``start:stop`` of ``population`` as rows ``[stop - start, d]``.

    The one place candidates are read: a ``Population`` through ``rows(start, stop, out)``
    (a lazy one writes only those rows, into ``out`` when it is given: the reader's buffer,
    reused from chunk to chunk and call to call); a ``Tensor[n, d]`` by slicing.
    """
    if isinstance(population, Population):
        return population.rows(start, stop, out)
    return population[start:stop]


def population_size(population: Population | torch.Tensor) -> int:
    """n, the number of candidates; an error for anything ``read_rows`` cannot read."""
    if isinstance(population, Population):
        return len(population)
    if isinstance(population, torch.Tensor):
        if population.dim() != 2:
            raise EvoregError(f"a population is [n, d]; got {tuple(population.shape)}")
        return population.shape[0]
    raise EvoregError(f"expected a Population or a Tensor[n, d], got {type(population)}")


def score_identity(score: Score) -> str:
    """The score's part of the cache key: its module-qualified name, not its ``id``.

    The score runs inside every timed variant and its cost per candidate can depend on the
    tile (the loop scores one candidate at a time), so it can change which strategy wins.
    A name, because a caller may pass a fresh closure or bound method on every call: an
    ``id`` would then measure anew each time. Two scores of the same name share a choice;
    at worst that choice is slower for one of them, never wrong.
    """
    function = getattr(score, "__func__", score)  # a bound method: its function
    module = getattr(function, "__module__", None) or type(function).__module__
    name = getattr(function, "__qualname__", None) or type(function).__qualname__
    return f"{module}.{name}"


class PopulationForward:
    """Scores of a population of flat parameter vectors of ``model`` on one data batch.

    ``model`` is a template: only its structure (and buffers) is used; each candidate's
    parameters come from a row ``[d]`` (``evoreg.nets.flatten_parameters`` order). The model
    maps inputs ``[B, ...]`` to outputs ``[B, features]``. Candidates run in chunks of as many
    as fit ``memory_budget`` bytes (an estimate: parameters plus activations for the batch).
    ``precision``: ``fp32`` (default, TF32 off), or on CUDA ``tf32`` or ``bf16`` (autocast).
    The strategy and tile of the latest call are in ``last_choice``.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        device: str | torch.device = "auto",
        strategy: str = "auto",
        memory_budget: int = 1 << 30,
        precision: str = "fp32",
    ) -> None:
        if strategy != "auto" and strategy not in STRATEGIES:
            raise unknown_name("strategy", strategy, ("auto", *STRATEGIES))
        if precision not in PRECISIONS:
            raise unknown_name("precision", precision, PRECISIONS)
        self.device = resolve_device(device)
        if precision != "fp32" and self.device.type != "cuda":
            raise EvoregError(f"precision {precision!r} needs a CUDA device; use 'fp32' on the CPU")
        if memory_budget < 1:
            raise EvoregError(f"memory_budget must be >= 1 byte, got {memory_budget}")
        self.model = model
        self.strategy = strategy
        self.memory_budget = int(memory_budget)
        self.precision = precision
        self.dim = parameter_count(model)
        self._template = _on_device(model, self.device)
        self._slices = [
            (name, start, start + p.numel(), tuple(p.shape))
            for name, p, start in _with_offsets(self._template)
        ]
        try:
            self._plan: BatchedPlan | None = BatchedPlan(self._template)
            self.batched_unsupported: str | None = None
        except Unsupported as reason:
            self._plan, self.batched_unsupported = None, str(reason)
        self._vmapped = vmap(self._forward, in_dims=(0, None))
        # a layer with inplace=True may write into the shared input: give it a copy
        self._copy_input = any(getattr(m, "inplace", False) for m in model.modules())
        self._structure = f"{type(model).__module__}.{type(model).__qualname__}:{model!r}"
        self._activations: dict[tuple, int] = {}
        self._keys: list[Key] = []
        self.last_choice: Choice | None = None
        self._rows_written: torch.Tensor | None = None  # see _row_buffer

    # ----------------------------------------------------------------- public
    def strategies(self) -> list[str]:
        """The strategies that apply to this model (batched only for supported Sequentials)."""
        allowed = [s for s in STRATEGIES if s != "batched" or self._plan is not None]
        return allowed if self.strategy == "auto" else [s for s in allowed if s == self.strategy]

    @property
    def choices(self) -> dict[Key, Choice]:
        """The cached choices of the keys this forward has met."""
        return {key: CHOICES[key] for key in self._keys if key in CHOICES}

    def __call__(
        self,
        population: Population | torch.Tensor,
        inputs: torch.Tensor,
        targets: torch.Tensor,
        score: Score,
    ) -> tuple[torch.Tensor, ...]:
        """What ``score`` returns, for all n candidates: a CPU tensor ``[n]`` per tensor it returns.

        ``inputs [B, ...]`` and ``targets [B, ...]`` are one data batch shared by every
        candidate; ``score(outputs [c, features, B], targets)`` is called once per tile of c
        candidates. Its ``outputs`` live only during that call (the batched strategy reuses
        their buffers), so a result that is a view of them is copied.
        """
        return self._score_population(population, inputs, targets, score, self._allowed())

    def measure(
        self,
        population: Population | torch.Tensor,
        inputs: torch.Tensor,
        targets: torch.Tensor,
        score: Score,
        repeats: int = 3,
    ) -> dict[str, float]:
        """Seconds per call of each applicable strategy on these inputs (median of repeats).

        Repeats are interleaved across strategies. The batched and vmap strategies run with
        their best tile (measured on the first call, as auto-selection does).
        """
        times: dict[str, list[float]] = {s: [] for s in self.strategies()}
        for strategy in times:  # tile selection and warm-up, untimed
            self._score_population(population, inputs, targets, score, (strategy,))
        for _ in range(repeats):
            for strategy in times:
                self._sync()
                start = time.perf_counter()
                self._score_population(population, inputs, targets, score, (strategy,))
                self._sync()
                times[strategy].append(time.perf_counter() - start)
        return {s: sorted(t)[len(t) // 2] for s, t in times.items()}

    # ----------------------------------------------------------------- the call
    def _allowed(self) -> tuple[str, ...]:
        allowed = tuple(self.strategies())
        if not allowed:
            raise EvoregError(
                f"strategy 'batched' does not apply to this model: {self.batched_unsupported}"
            )
        return allowed

    def _score_population(
        self, population, inputs, targets, score: Score, allowed: tuple[str, ...]
    ) -> tuple[torch.Tensor, ...]:
        n = population_size(population)
        inputs = inputs.to(self.device, torch.float32)
        targets = targets.to(self.device)
        if inputs.dim() < 1 or targets.dim() < 1 or targets.shape[0] != inputs.shape[0]:
            raise EvoregError(
                f"targets must be [B, ...] for inputs [B, ...]; got {tuple(targets.shape)} and "
                f"{tuple(inputs.shape)}"
            )
        # no_grad, not inference_mode: the caller may update the scores in place afterwards
        with torch.no_grad(), self._precision(), _eval_mode(self._template):
            if n == 0:
                return self._empty_scores(inputs, targets, score)
            chunk = self._chunk_size(n, inputs)
            key = self._key(allowed, chunk, inputs, targets, score)
            if key not in self._keys:
                self._keys.append(key)
            rows = self._rows(population, 0, chunk)
            choice = CHOICES.get(key)
            if choice is None:
                choice, first, state = self._choose(allowed, rows, inputs, targets, score, chunk)
                CHOICES[key] = choice
            else:
                state = self._prepare(choice.strategy, inputs)
                first = self._run(choice.strategy, choice.tile, rows, inputs, targets, score,
                                  state)
            self.last_choice = choice
            chunks = [first]
            for start in range(chunk, n, chunk):
                rows = self._rows(population, start, min(n, start + chunk))
                chunks.append(
                    self._run(choice.strategy, choice.tile, rows, inputs, targets, score, state)
                )
            # cat even one chunk: the caller gets tensors of its own, never the score's
            return tuple(torch.cat(column).cpu() for column in _columns(chunks))

    def _empty_scores(self, inputs, targets, score: Score) -> tuple[torch.Tensor, ...]:
        """An empty population's scores: the score on no candidates, for its count and dtypes.

        The template's forward of one sample gives the outputs' width.
        """
        width = self._check_outputs(self._template(self._input(inputs[:1])), 1).shape[1]
        outputs = torch.empty(0, width, inputs.shape[0], device=self.device)
        return tuple(t.cpu() for t in self._scored(score, outputs, targets, 0))

    def _rows(self, population, start: int, stop: int) -> torch.Tensor:
        """Rows ``start:stop`` (through ``read_rows``), checked, as float32 on the device."""
        lazy = getattr(population, "lazy", False)  # dense rows are views: no buffer needed
        out = self._row_buffer(stop - start) if lazy else None
        rows = read_rows(population, start, stop, out)
        if not isinstance(rows, torch.Tensor) or rows.dim() != 2 or rows.shape[1] != self.dim:
            shape = tuple(rows.shape) if isinstance(rows, torch.Tensor) else type(rows)
            raise EvoregError(
                f"population rows must be [n, {self.dim}] tensors for this model; got {shape}"
            )
        return rows.to(self.device, torch.float32)

    def _row_buffer(self, count: int) -> torch.Tensor:
        """Where a lazy population writes the rows of a chunk: one buffer kept from call to
        call, so writing a generation's candidates faults in no fresh memory."""
        if self._rows_written is None or self._rows_written.shape[0] < count:
            self._rows_written = torch.empty(count, self.dim, device=self.device)
        return self._rows_written

    def _chunk_size(self, n: int, inputs: torch.Tensor) -> int:
        """Candidates per chunk: parameters (twice: views and copies) + activations for B."""
        shape = tuple(inputs.shape[1:])
        if shape not in self._activations:
            self._activations[shape] = activation_numel(self._template, inputs[:1])
        per_candidate = 4 * (2 * self.dim + inputs.shape[0] * self._activations[shape])
        return max(1, min(n, self.memory_budget // per_candidate))

    def _key(self, allowed: tuple[str, ...], chunk: int, inputs: torch.Tensor,
             targets: torch.Tensor, score: Score) -> Key:
        threads = torch.get_num_threads() if self.device.type == "cpu" else 0
        return (self._structure, str(self.device), threads, self.precision, chunk,
                tuple(inputs.shape), str(inputs.dtype), tuple(targets.shape),
                str(targets.dtype), score_identity(score), allowed)

    # ----------------------------------------------------------------- measuring
    def _choose(self, allowed, rows, inputs, targets, score: Score, chunk: int):
        """Time each (strategy, tile) on part of this chunk; return the fastest and the scores.

        Each strategy is warmed up on one candidate; each variant is timed on a quarter of the
        chunk (at least one tile) and abandoned once it has taken longer than the best would.
        The winner's scores are kept and it evaluates the rest of the chunk.
        """
        choice = Choice(strategy="", tile=0, chunk=chunk)
        best = None  # (seconds per candidate, strategy, tile, scores, state)
        quarter = -(-len(rows) // 4)
        warm: set[str] = set()
        for strategy, tile in self._variants(allowed, len(rows)):
            name = f"{strategy}/{tile}"
            part = rows[: min(len(rows), max(tile, quarter))]
            try:
                state = self._prepare(strategy, inputs)
                if strategy not in warm:
                    self._run(strategy, tile, rows[:1], inputs, targets, score, state)
                    warm.add(strategy)
                limit = best[0] * len(part) if best is not None else float("inf")
                seconds, scores = self._timed_run(strategy, tile, part, inputs, targets, score,
                                                  state, limit)
            except (Unsupported, RuntimeError) as error:
                if strategy == "loop":
                    raise
                choice.errors[name] = f"{type(error).__name__}: {error}"
                continue
            choice.seconds_per_candidate[name] = seconds / len(part)
            if scores is None:
                choice.abandoned.append(name)
            elif best is None or seconds / len(part) < best[0]:
                best = (seconds / len(part), strategy, tile, scores, state)
        if best is None:
            raise EvoregError(f"no strategy could evaluate this model: {choice.errors}")
        _, choice.strategy, choice.tile, scores, state = best
        done = len(scores[0])
        if done < len(rows):
            rest = self._run(choice.strategy, choice.tile, rows[done:], inputs, targets, score,
                             state)
            scores = _concatenated([scores, rest])
        return choice, scores, state

    def _variants(self, allowed, chunk: int) -> Iterator[tuple[str, int]]:
        for strategy in allowed:
            if strategy == "loop":
                yield strategy, 1
                continue
            tiles = sorted({max(1, chunk // k) for k in TILE_DIVISORS}, reverse=True)
            for tile in tiles:
                yield strategy, tile

    def _timed_run(self, strategy, tile, rows, inputs, targets, score: Score, state,
                   limit: float):
        """(seconds, scores) for ``rows``; scores None if abandoned once past ``limit``."""
        tiles = []
        self._sync()
        start = time.perf_counter()
        for first in range(0, len(rows), tile):
            tiles.append(self._run(strategy, tile, rows[first:first + tile], inputs, targets,
                                   score, state))
            self._sync()
            if time.perf_counter() - start > limit:
                return time.perf_counter() - start, None
        return time.perf_counter() - start, _concatenated(tiles)

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    # ----------------------------------------------------------------- strategies
    def _prepare(self, strategy: str, inputs: torch.Tensor) -> dict | None:
        """Per-call state of the batched strategy: the shared prefix's output, buffers."""
        if strategy != "batched":
            return None
        if self._plan is None:
            raise Unsupported(self.batched_unsupported)
        shared = self._plan.shared_input(inputs)
        if self.precision == "bf16":  # autocast leaves out= ops (the batched bmm) in fp32
            shared = shared.to(torch.bfloat16)
        return {"shared": shared, "workspace": {}}

    def _run(self, strategy, tile, rows, inputs, targets, score: Score, state):
        """The score's tensors ``[c]`` for ``rows``, on the device, ``tile`` candidates a pass."""
        if strategy == "loop":
            return self._loop(rows, inputs, targets, score)
        tiles = []
        for start in range(0, len(rows), tile):
            part = rows[start:start + tile]
            if strategy == "batched":
                if self.precision == "bf16":
                    part = part.to(torch.bfloat16)
                outputs = self._plan.outputs(part, state["shared"], state["workspace"])
            else:
                outputs = self._vmapped(self._params(part), self._input(inputs))
                outputs = self._check_outputs(outputs, 2).transpose(1, 2)
            tiles.append(self._scored(score, outputs, targets, len(part)))
        return _concatenated(tiles)

    def _loop(self, rows, inputs, targets, score: Score):
        candidates = []
        for row in rows:
            outputs = self._forward(self._params(row), self._input(inputs))
            outputs = self._check_outputs(outputs, 1).t().unsqueeze(0)
            candidates.append(self._scored(score, outputs, targets, 1))
        return _concatenated(candidates)

    @staticmethod
    def _scored(score: Score, outputs: torch.Tensor, targets: torch.Tensor, c: int):
        """``score`` on float32 ``outputs [c, features, B]``, checked: a tuple of ``[c]``."""
        outputs = outputs.float()  # bf16 under autocast; a no-op for float32
        result = score(outputs, targets)
        results = result if isinstance(result, tuple) else (result,)
        if not results or any(not isinstance(r, torch.Tensor) or r.shape != (c,)
                              for r in results):
            got = [tuple(r.shape) if isinstance(r, torch.Tensor) else type(r) for r in results]
            raise EvoregError(
                f"the score must return a Tensor[c] or a tuple of them for outputs "
                f"[c, features, B] = {tuple(outputs.shape)}; got {got}"
            )
        storage = outputs.untyped_storage().data_ptr()
        return tuple(r.clone() if r.untyped_storage().data_ptr() == storage else r
                     for r in results)

    def _input(self, inputs: torch.Tensor) -> torch.Tensor:
        return inputs.clone() if self._copy_input else inputs

    def _params(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        lead = flat.shape[:-1]
        return {name: flat[..., a:b].reshape(*lead, *shape) for name, a, b, shape in self._slices}

    def _forward(self, params: dict[str, torch.Tensor], inputs: torch.Tensor) -> torch.Tensor:
        return functional_call(self._template, params, (inputs,))

    @staticmethod
    def _check_outputs(outputs: torch.Tensor, feature_dim: int) -> torch.Tensor:
        if outputs.dim() != feature_dim + 1:
            raise EvoregError(
                f"the model must return outputs [B, features]; got {tuple(outputs.shape)}"
            )
        return outputs

    @contextlib.contextmanager
    def _precision(self):
        """fp32 with TF32 off (the default), TF32, or bf16 autocast, on CUDA only."""
        if self.device.type != "cuda":
            yield
            return
        with contextlib.ExitStack() as stack:
            stack.enter_context(_tf32(self.precision == "tf32"))
            if self.precision == "bf16":
                stack.enter_context(torch.autocast("cuda", dtype=torch.bfloat16))
            yield


# --------------------------------------------------------------------------- helpers
def _columns(parts: list[tuple[torch.Tensor, ...]]) -> list[list[torch.Tensor]]:
    """Scores of consecutive candidate ranges, regrouped: one list per score output."""
    counts = sorted({len(part) for part in parts})
    if len(counts) > 1:
        raise EvoregError(
            f"the score returned {' or '.join(map(str, counts))} tensors for different "
            "candidates; it must return the same number every time"
        )
    return [list(column) for column in zip(*parts)]


def _concatenated(parts: list[tuple[torch.Tensor, ...]]) -> tuple[torch.Tensor, ...]:
    """Scores of consecutive candidate ranges as one tuple (a single range as it is)."""
    if len(parts) == 1:
        return parts[0]
    return tuple(torch.cat(column) for column in _columns(parts))


def _with_offsets(model: nn.Module):
    start = 0
    for name, p in model.named_parameters():
        yield name, p, start
        start += p.numel()


def _on_device(model: nn.Module, device: torch.device) -> nn.Module:
    """``model`` if its tensors are on ``device``, else a copy moved there (structure only)."""
    tensors = [*model.parameters(), *model.buffers()]
    if all(t.device == device or (t.device.type == device.type and device.index is None)
           for t in tensors):
        return model
    return copy.deepcopy(model).to(device)


@contextlib.contextmanager
def _eval_mode(model: nn.Module):
    """Evaluation mode (dropout off) during the call; each module's flag restored after."""
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for module, training in flags:
            module.training = training


@contextlib.contextmanager
def _tf32(enabled: bool):
    matmul, conv = torch.backends.cuda.matmul, torch.backends.cudnn.conv
    if hasattr(matmul, "fp32_precision") and hasattr(conv, "fp32_precision"):
        saved = (matmul.fp32_precision, conv.fp32_precision)
        mode = "tf32" if enabled else "ieee"
        matmul.fp32_precision, conv.fp32_precision = mode, mode
        try:
            yield
        finally:
            matmul.fp32_precision, conv.fp32_precision = saved
    else:  # torch before 2.9
        saved = (matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
        matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = enabled
        try:
            yield
        finally:
            matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved
