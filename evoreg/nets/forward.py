"""``PopulationForward``: every candidate's loss on one data batch, in one call.

Three strategies compute the same losses: ``batched`` (``batched.BatchedPlan``: shared-input
first layer as one GEMM, later layers as bmm / grouped convolution), ``vmap``
(``torch.func.vmap`` of ``functional_call`` over the candidate axis) and ``loop`` (one
``functional_call`` per candidate). Which is fastest depends on the model, the device and
the sizes, so ``strategy="auto"`` measures: on the first call for a key (model structure,
device, threads, precision, chunk size, batch size, input shape) it times each strategy,
and the batched and vmap ones at a few tile sizes (candidates per pass inside a chunk: on
a CPU, a tile whose activations stay in cache can be twice as fast as the whole chunk), on
that call's first chunk, and caches the fastest in ``CHOICES``. The measuring run's scores
are the chunk's scores, and a variant is abandoned as soon as it has taken longer than the
best so far, so measuring costs at most a few chunks' time, once per key.
"""

from __future__ import annotations

import contextlib
import copy
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

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


@dataclass
class Scores:
    losses: torch.Tensor  #: [n] float32, mean cross-entropy over the batch, on the CPU
    correct: torch.Tensor  #: [n] int64, correct argmax predictions, on the CPU
    strategy: str  #: the strategy that computed them


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


def cross_entropy_scores(
    logits: torch.Tensor, targets: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean cross-entropy ``[c]`` and correct counts ``[c]`` of logits ``[c, classes, B]``."""
    c, _, batch = logits.shape
    logits = logits.float()
    top, predicted = logits.max(dim=1)  # one pass for both (argmax alone is slower here)
    log_sum_exp = (logits - top.unsqueeze(1)).exp_().sum(dim=1).log_().add_(top)
    picked = logits.gather(1, targets.view(1, 1, batch).expand(c, 1, batch)).squeeze(1)
    nll = log_sum_exp.sub_(picked)  # [c, B]
    correct = (predicted == targets).sum(dim=1)
    return nll.mean(dim=1), correct


class PopulationForward:
    """Losses of a population of flat parameter vectors of ``model`` on one data batch.

    ``model`` is a template: only its structure (and buffers) is used; each candidate's
    parameters come from a row ``[d]`` (``evoreg.nets.flatten_parameters`` order).
    Candidates are evaluated in chunks of as many as fit ``memory_budget`` bytes (an
    estimate: parameters plus activations for the batch). ``precision``: ``fp32``
    (default, TF32 off), or on CUDA ``tf32`` or ``bf16`` (autocast).
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

    # ----------------------------------------------------------------- public
    def strategies(self) -> list[str]:
        """The strategies that apply to this model (batched only for supported Sequentials)."""
        allowed = [s for s in STRATEGIES if s != "batched" or self._plan is not None]
        return allowed if self.strategy == "auto" else [s for s in allowed if s == self.strategy]

    @property
    def choices(self) -> dict[Key, Choice]:
        """The cached choices of the keys this evaluator has met."""
        return {key: CHOICES[key] for key in self._keys if key in CHOICES}

    def __call__(self, population: Any, inputs: torch.Tensor, targets: torch.Tensor) -> Scores:
        return self._evaluate(population, inputs, targets, self._allowed())

    def measure(
        self, population: Any, inputs: torch.Tensor, targets: torch.Tensor, repeats: int = 3
    ) -> dict[str, float]:
        """Seconds per call of each applicable strategy on these inputs (median of repeats).

        Repeats are interleaved across strategies. The batched and vmap strategies run with
        their best tile (measured on the first call, as auto-selection does).
        """
        times: dict[str, list[float]] = {s: [] for s in self.strategies()}
        for strategy in times:  # tile selection and warm-up, untimed
            self._evaluate(population, inputs, targets, (strategy,))
        for _ in range(repeats):
            for strategy in times:
                self._sync()
                start = time.perf_counter()
                self._evaluate(population, inputs, targets, (strategy,))
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

    def _evaluate(self, population, inputs, targets, allowed: tuple[str, ...]) -> Scores:
        read, n = self._reader(population)
        inputs = inputs.to(self.device, torch.float32)
        targets = targets.to(self.device, torch.int64)
        if inputs.dim() < 1 or targets.shape != (inputs.shape[0],):
            raise EvoregError(
                f"targets must be [B] for inputs [B, ...]; got {tuple(targets.shape)} and "
                f"{tuple(inputs.shape)}"
            )
        if n == 0:
            return Scores(torch.zeros(0), torch.zeros(0, dtype=torch.int64), allowed[0])
        # no_grad, not inference_mode: the caller may update the scores in place afterwards
        with torch.no_grad(), self._precision(), _eval_mode(self._template):
            chunk = self._chunk_size(n, inputs)
            key = self._key(allowed, chunk, inputs)
            if key not in self._keys:
                self._keys.append(key)
            rows = read(0, chunk)
            choice = CHOICES.get(key)
            if choice is None:
                choice, first, state = self._choose(allowed, rows, inputs, targets, chunk)
                CHOICES[key] = choice
            else:
                state = self._prepare(choice.strategy, inputs)
                first = self._run(choice.strategy, choice.tile, rows, inputs, targets, state)
            self.last_choice = choice
            losses, correct = [first[0]], [first[1]]
            for start in range(chunk, n, chunk):
                rows = read(start, min(n, start + chunk))
                scores = self._run(choice.strategy, choice.tile, rows, inputs, targets, state)
                losses.append(scores[0])
                correct.append(scores[1])
            return Scores(torch.cat(losses).cpu(), torch.cat(correct).cpu(), choice.strategy)

    def _reader(self, population: Any) -> tuple[Callable[[int, int], torch.Tensor], int]:
        if isinstance(population, Population):
            source, n = population.rows, len(population)
        elif isinstance(population, torch.Tensor):
            if population.dim() != 2:
                raise EvoregError(f"a population is [n, d]; got {tuple(population.shape)}")
            source, n = (lambda a, b: population[a:b]), population.shape[0]
        else:
            raise EvoregError(f"expected a Population or a Tensor[n, d], got {type(population)}")

        def read(start: int, stop: int) -> torch.Tensor:
            rows = source(start, stop)
            if not isinstance(rows, torch.Tensor) or rows.dim() != 2 or rows.shape[1] != self.dim:
                shape = tuple(rows.shape) if isinstance(rows, torch.Tensor) else type(rows)
                raise EvoregError(
                    f"population rows must be [n, {self.dim}] tensors for this model; got {shape}"
                )
            return rows.to(self.device, torch.float32)

        return read, n

    def _chunk_size(self, n: int, inputs: torch.Tensor) -> int:
        """Candidates per chunk: parameters (twice: views and copies) + activations for B."""
        shape = tuple(inputs.shape[1:])
        if shape not in self._activations:
            self._activations[shape] = activation_numel(self._template, inputs[:1])
        per_candidate = 4 * (2 * self.dim + inputs.shape[0] * self._activations[shape])
        return max(1, min(n, self.memory_budget // per_candidate))

    def _key(self, allowed: tuple[str, ...], chunk: int, inputs: torch.Tensor) -> Key:
        threads = torch.get_num_threads() if self.device.type == "cpu" else 0
        return (self._structure, str(self.device), threads, self.precision, chunk,
                tuple(inputs.shape), str(inputs.dtype), allowed)

    # ----------------------------------------------------------------- measuring
    def _choose(self, allowed, rows, inputs, targets, chunk: int):
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
                    self._run(strategy, tile, rows[:1], inputs, targets, state)
                    warm.add(strategy)
                limit = best[0] * len(part) if best is not None else float("inf")
                seconds, scores = self._timed_run(strategy, tile, part, inputs, targets, state,
                                                  limit)
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
            rest = self._run(choice.strategy, choice.tile, rows[done:], inputs, targets, state)
            scores = (torch.cat([scores[0], rest[0]]), torch.cat([scores[1], rest[1]]))
        return choice, scores, state

    def _variants(self, allowed, chunk: int) -> Iterator[tuple[str, int]]:
        for strategy in allowed:
            if strategy == "loop":
                yield strategy, 1
                continue
            tiles = sorted({max(1, chunk // k) for k in TILE_DIVISORS}, reverse=True)
            for tile in tiles:
                yield strategy, tile

    def _timed_run(self, strategy, tile, rows, inputs, targets, state, limit: float):
        """(seconds, scores) for ``rows``; scores None if abandoned once past ``limit``."""
        losses, correct = [], []
        self._sync()
        start = time.perf_counter()
        for first in range(0, len(rows), tile):
            part = self._run(strategy, tile, rows[first:first + tile], inputs, targets, state)
            losses.append(part[0])
            correct.append(part[1])
            self._sync()
            if time.perf_counter() - start > limit:
                return time.perf_counter() - start, None
        return time.perf_counter() - start, (torch.cat(losses), torch.cat(correct))

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

    def _run(self, strategy, tile, rows, inputs, targets, state):
        """(losses [c], correct [c]) on the device, ``tile`` candidates per pass."""
        if strategy == "loop":
            return self._loop(rows, inputs, targets)
        losses, correct = [], []
        for start in range(0, len(rows), tile):
            part = rows[start:start + tile]
            if strategy == "batched":
                if self.precision == "bf16":
                    part = part.to(torch.bfloat16)
                logits = self._plan.logits(part, state["shared"], state["workspace"])
            else:
                logits = self._vmapped(self._params(part), self._input(inputs))
                logits = self._check_logits(logits, 2)
                logits = logits.transpose(1, 2)
            scores = cross_entropy_scores(logits, targets)
            losses.append(scores[0])
            correct.append(scores[1])
        if len(losses) == 1:
            return losses[0], correct[0]
        return torch.cat(losses), torch.cat(correct)

    def _loop(self, rows, inputs, targets):
        losses, correct = [], []
        for row in rows:
            logits = self._check_logits(self._forward(self._params(row), self._input(inputs)), 1)
            scores = cross_entropy_scores(logits.t().unsqueeze(0), targets)
            losses.append(scores[0])
            correct.append(scores[1])
        return torch.cat(losses), torch.cat(correct)

    def _input(self, inputs: torch.Tensor) -> torch.Tensor:
        return inputs.clone() if self._copy_input else inputs

    def _params(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        lead = flat.shape[:-1]
        return {name: flat[..., a:b].reshape(*lead, *shape) for name, a, b, shape in self._slices}

    def _forward(self, params: dict[str, torch.Tensor], inputs: torch.Tensor) -> torch.Tensor:
        return functional_call(self._template, params, (inputs,))

    @staticmethod
    def _check_logits(logits: torch.Tensor, class_dim: int) -> torch.Tensor:
        if logits.dim() != class_dim + 1:
            raise EvoregError(f"the model must return logits [B, classes]; got {logits.shape}")
        return logits

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
