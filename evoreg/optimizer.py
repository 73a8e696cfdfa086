"""The optimizer base class: bookkeeping, so that a plugin holds only its algorithm.

A plugin subclasses ``Optimizer``, declares a ``Config`` dataclass whose defaults are its
paper's, and writes ``_ask(n)`` and ``_tell(pop, losses)``. The base validates what ``_ask``
returns (a population of the space: shape, dtype, finite values, within the bounds; a lazy
one without writing out its rows), refuses populations it did not hand out or that were
already told, keeps losses as float64 and turns NaN/inf ones into the worst loss, tracks the
best candidate, counts generations, keeps its random generators (``self.generator`` for
torch, ``self.rng`` for numpy) in its state, and draws Gaussian noise for the plugin
(``perturb``, ``normals``).
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import pickle
import warnings
from typing import Any, ClassVar

import numpy as np
import torch

from . import statecodec
from .config import NoConfig, make_config
from .devices import resolve_device
from .errors import EvoregError
from .gaussian import NoiseTable, table_size_for
from .population import Decoder, LazyPopulation, Population
from .problem import Evaluation
from .spaces import Real, Space

_owner_tokens = itertools.count(1)

__all__ = ["NoConfig", "Optimizer"]


class Optimizer:
    """Minimises a loss over ``space`` by batched ask/tell."""

    Config: ClassVar[type] = NoConfig
    #: The paper the algorithm follows, shown by ``evoreg info``.
    citation: ClassVar[str] = ""
    #: Spaces the algorithm accepts.
    spaces: ClassVar[tuple[type, ...]] = (Space,)
    #: True for algorithms that keep every candidate within a ``Real`` space's
    #: ``lower``/``upper`` bounds (``ask`` checks that they do); the others refuse a bounded
    #: space at construction rather than hand out candidates outside it.
    respects_bounds: ClassVar[bool] = False
    #: Attributes rebuilt by ``setup()`` and left out of ``state_dict()`` (caches, tables).
    #: Every other attribute is saved in checkpoints: as data (tensors, arrays, numbers,
    #: strings, containers of them), which anyone can load safely, or else pickled, which
    #: only the user who saved it loads without ``--trust-checkpoint``.
    transient: ClassVar[tuple[str, ...]] = ()
    #: Keywords the runner passes to ``Problem.evaluate`` for this optimizer's populations:
    #: gradient methods ask for ``{"gradients": True}`` and find them in ``pop.evaluation``.
    evaluate_with: ClassVar[dict[str, Any]] = {}
    #: True for algorithms whose ``tell`` continues their latest ``ask`` (most population
    #: methods): ``tell`` then refuses any other population.
    generational: ClassVar[bool] = False
    #: True when ``ask(n)`` takes any ``n`` from 1 to a generation's size
    #: (``default_popsize``): the runner's last generation then asks only what the budget
    #: leaves, so a run uses its budget exactly. False for algorithms whose update needs a
    #: whole generation (leea's lambda individuals, openai-es's mirrored pairs): the runner
    #: then never starts a generation the budget cannot pay for in full, so such a run may
    #: end below its budget. Either way a run does not pass its budget on a problem that
    #: knows what a candidate costs (``Problem.candidate_cost``). ``evoreg info`` shows it.
    smaller_ask: ClassVar[bool] = True
    #: Raised by a plugin when what its saved state means changes: ``load_state_dict`` then
    #: refuses a state of another version unless ``accept_state_version`` allows it.
    state_version: ClassVar[int] = 1

    def __init__(
        self, space: Space, *, seed: int = 0, device: str | torch.device = "cpu", **config: Any
    ) -> None:
        self.name = getattr(self, "name", None) or _registered_name(type(self))
        self._check_plugin()
        if not isinstance(space, self.spaces):
            accepted = ", ".join(s.__name__ for s in self.spaces)
            raise EvoregError(
                f"{self.name} works on {accepted} spaces, not {type(space).__name__}"
            )
        if isinstance(space, Real) and space.bounded and not self.respects_bounds:
            raise EvoregError(
                f"{self.name} does not support bounded spaces (Real with lower/upper): use "
                "an optimizer that respects bounds, e.g. random-search, adam, sgd or ng:*"
            )
        self.config = make_config(self.Config, self.name, config)
        self.space = space
        self.seed = int(seed)
        self.device = resolve_device(device)
        self.generator = torch.Generator(device=self.device).manual_seed(self.seed)
        self.rng = np.random.default_rng(self.seed)
        self.generation = 0
        self.best_loss = float("inf")
        self.best_x: Any = None
        self._next_id = 0
        self._next_serial = 0
        self._latest_serial = -1
        self._pending: set[int] = set()
        self._owner = next(_owner_tokens)
        self._warned_nonfinite = False
        self._noise_table: NoiseTable | None = None
        self._base_attributes = set(vars(self)) | {"_base_attributes"}
        self.setup()

    # ----------------------------------------------------------------- plugin API
    def setup(self) -> None:
        """Initialise the algorithm's state (called once, after the config is set)."""

    def _ask(self, n: int) -> Population | torch.Tensor | list:
        raise NotImplementedError

    def _tell(self, pop: Population, losses: torch.Tensor) -> None:
        raise NotImplementedError

    def _recommend(self) -> Any:
        """The candidate to deploy; by default the best one evaluated so far."""
        return self.best_x

    def plan(self, budget: float, unit: str) -> None:
        """Called by the runner before the first ask with the run's budget, in the problem's
        unit ("evaluations", "frames", ...), for algorithms that plan by it. Does nothing by
        default."""

    def keep_candidate(self, pop: Population, index: int) -> Any:
        """What ``best_x`` keeps when candidate ``index`` of ``pop`` is the best so far: a
        copy of the candidate, as the problem left it when it returned updated candidates
        (trained weights). A plugin may keep something smaller (a seed genome)."""
        updated = pop.evaluation.candidates if pop.evaluation is not None else None
        row = updated[index : index + 1] if updated is not None else pop.rows(index, index + 1)
        return copy.deepcopy(row[0]) if isinstance(row, list) else row[0].clone()

    def accept_state_version(self, version: int) -> str | None:
        """None if a saved state of ``version`` continues correctly here, else why not."""
        return None if version == self.state_version else "what it holds has changed"

    @property
    def default_popsize(self) -> int:
        """Candidates that ``ask()`` hands out at most, a generation: the Config's ``popsize``,
        or one when the Config has no such field. An algorithm whose generation size changes
        (elites re-evaluated beside the children) says so here: the runner reads it to keep
        within the budget."""
        popsize = getattr(self.config, "popsize", None)
        return 1 if popsize is None else popsize

    @property
    def needs_gradients(self) -> bool:
        return bool(self.evaluate_with.get("gradients", False))

    def new_ids(self, n: int) -> torch.Tensor:
        """``n`` fresh candidate ids."""
        ids = torch.arange(self._next_id, self._next_id + n, dtype=torch.int64)
        self._next_id += n
        return ids

    # ----------------------------------------------------------------- noise for plugins
    @property
    def shared_table(self) -> NoiseTable | None:
        """The shared Gaussian noise table for this space's dim on this device, or None
        when the Config sets ``noise_table=False`` (fresh normals instead)."""
        if not getattr(self.config, "noise_table", True):
            return None
        if self._noise_table is None:
            size = table_size_for(self.space.dim)
            self._noise_table = NoiseTable(size, device=self.device)
        return self._noise_table

    def normals(self, out: torch.Tensor) -> torch.Tensor:
        """Fill ``out [n, d]`` with N(0, 1) rows: windows of the noise table at offsets drawn
        from ``self.generator``, or fresh draws from it."""
        n, dim = out.shape
        table = self.shared_table
        if table is None:
            return torch.randn(n, dim, generator=self.generator, device=self.device, out=out)
        return table.windows(table.offsets(n, dim, self.generator), dim, out=out)

    def perturb(
        self, center: torch.Tensor, sigma: float, n: int, ids: torch.Tensor | None = None
    ) -> Population:
        """``n`` candidates ``center + sigma * N(0, I)`` on this device. With the noise table
        they are a ``LazyPopulation`` (one window offset each, written out where they are
        read); without it, fresh normals drawn now."""
        table = self.shared_table
        if table is None:
            noise = self.normals(torch.empty(n, self.space.dim, device=self.device))
            return Population(noise.mul_(sigma).add_(center), ids)
        offsets = table.offsets(n, self.space.dim, self.generator).tolist()
        genomes = [((0, 0.0), (offset, float(sigma))) for offset in offsets]
        # A copy of the centre: a plugin that later updates its own in place must not change
        # the candidates it has handed out.
        decoder = Decoder(self.space.dim, bases=center.unsqueeze(0).clone(), table=table,
                          device=self.device)
        return LazyPopulation(genomes, decoder, ids)

    # ----------------------------------------------------------------- public API
    def ask(self, n: int | None = None) -> Population:
        """A population of at most ``n`` candidates (default: ``default_popsize``, a
        generation; some algorithms hand out fewer, such as goea's first ask, its parent
        alone). Algorithms without ``smaller_ask`` may refuse an ``n`` below a generation's
        size, in one line."""
        n = self.default_popsize if n is None else n
        if not isinstance(n, (int, np.integer)) or n < 1:
            raise EvoregError(f"ask(n={n!r}): n must be a positive int")
        pop = self._checked_population(self._ask(int(n)))
        if len(pop) > n:
            # The runner asks what the budget leaves: more would spend budget it does not have.
            raise EvoregError(f"{self.name}.ask({n}) returned {len(pop)} candidates, more "
                              "than asked")
        pop.owner = self._owner
        pop.serial = self._latest_serial = self._next_serial
        self._next_serial += 1
        self._pending.add(pop.serial)
        return pop

    def tell(
        self,
        pop: Population,
        evaluation: Evaluation | Any,
        gradients: torch.Tensor | None = None,
    ) -> None:
        """Report how ``pop`` scored (lower is better): the problem's ``Evaluation``, or the
        losses alone (a ``Tensor[n]``, an array, a list), as in your own loop.

        ``gradients`` (``Tensor[n, d]``) with bare losses is the same as an ``Evaluation``
        with gradients: read by optimizers that need them, and required by them. Updated
        candidates in the evaluation (``candidates``: trained weights) are what ``best_x``
        keeps and what a plugin finds in ``pop.evaluation``.
        """
        if not isinstance(pop, Population) or pop.owner != self._owner:
            raise EvoregError(
                f"{self.name}.tell: this population was not handed out by this optimizer's ask()"
            )
        if pop.serial not in self._pending:
            raise EvoregError(f"{self.name}.tell: this population was already told")
        if self.generational and pop.serial != self._latest_serial:
            raise EvoregError(f"{self.name} is generational: tell() the latest ask()'s population")
        pop.evaluation = self._check_evaluation(evaluation, gradients, pop)
        self._pending.discard(pop.serial)
        self._track_best(pop, pop.evaluation.losses)
        self._tell(pop, pop.evaluation.losses)
        self.generation += 1

    def recommend(self) -> Any:
        """The candidate this optimizer would deploy now."""
        return self._recommend()

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly: counters, best, RNGs and the algorithm's state."""
        return {
            "name": self.name,
            "state_version": self.state_version,
            "config": dataclasses.asdict(self.config),
            "generation": self.generation,
            "best_loss": self.best_loss,
            "best_x": statecodec.snapshot(self.best_x, f"{self.name}.best_x"),
            "next_id": self._next_id,
            "next_serial": self._next_serial,
            "latest_serial": self._latest_serial,
            "pending": sorted(self._pending),
            "generator": self.generator.get_state(),
            "rng": statecodec.snapshot(self.rng.bit_generator.state),
            "warned_nonfinite": self._warned_nonfinite,
            # A copy as data (later steps cannot change it), loadable without running code;
            # or, when an attribute is an object only pickle can hold, one pickle of them
            # all, so references between them survive (nevergrad's optimizer and the
            # candidates it handed out).
            "algorithm": self._algorithm_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("name") != self.name:
            raise EvoregError(f"state of {state.get('name')!r} cannot load into {self.name!r}")
        version = state.get("state_version", 1)
        refusal = self.accept_state_version(version)
        if refusal is not None:
            raise EvoregError(
                f"this checkpoint holds version {version} of {self.name}'s state and this evoreg "
                f"writes version {self.state_version} ({refusal}): start the run again "
                "without --resume, or continue it with the evoreg that wrote it"
            )
        self.generation = state["generation"]
        self.best_loss = state["best_loss"]
        self.best_x = statecodec.revive(state["best_x"])
        self._next_id = state["next_id"]
        self._next_serial = state["next_serial"]
        # States saved before "latest_serial" existed: the last population asked.
        self._latest_serial = state.get("latest_serial", self._next_serial - 1)
        self._pending = set(state["pending"])
        self.generator.set_state(state["generator"])
        self.rng.bit_generator.state = state["rng"]
        self._warned_nonfinite = state["warned_nonfinite"]
        algorithm = statecodec.revive(state["algorithm"])
        if not isinstance(algorithm, dict):
            raise EvoregError(f"the saved state of {self.name} holds no algorithm state")
        for key, value in algorithm.items():
            setattr(self, key, value)

    # ----------------------------------------------------------------- internals
    def _check_plugin(self) -> None:
        missing = [m for m in ("_ask", "_tell") if getattr(type(self), m) is getattr(Optimizer, m)]
        if missing:
            where = f"{type(self).__module__}.{type(self).__qualname__}"
            raise EvoregError(
                f"optimizer {self.name} ({where}) does not implement {' and '.join(missing)}: "
                "a plugin writes _ask(self, n) -> Tensor[n, d] | Population and "
                "_tell(self, pop, losses) -> None"
            )

    def _algorithm_state(self) -> dict[str, Any] | statecodec.Pickled:
        skip = self._base_attributes | set(self.transient)
        algorithm = {key: value for key, value in vars(self).items() if key not in skip}
        if not statecodec.needs_pickle(algorithm):
            return statecodec.snapshot(algorithm, self.name)
        try:
            return statecodec.Pickled(
                pickle.dumps(algorithm, protocol=pickle.HIGHEST_PROTOCOL), trusted=True,
                what=f"{self.name}'s " + ", ".join(
                    key for key, value in algorithm.items() if statecodec.needs_pickle(value)
                ),
            )
        except Exception:  # noqa: BLE001 - name the attribute, whatever pickle raised
            for key, value in algorithm.items():
                try:
                    pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
                except Exception as culprit:  # noqa: BLE001
                    raise EvoregError(
                        f"{self.name}: attribute {key!r} ({type(value).__name__}) cannot be "
                        f"saved in a checkpoint ({type(culprit).__name__}: {culprit}); if "
                        f"setup() rebuilds it, list it in the class's transient = "
                        f"({key!r},)"
                    ) from None
            raise

    def _checked_population(self, returned: Any) -> Population:
        """What ``_ask`` returned as a ``Population`` of this space, with ids; anything else is
        refused in one line naming this optimizer: not a population, no candidates, another
        shape or dtype, NaN/inf values, values outside the bounds."""
        where = f"{self.name}.ask returned"
        if not isinstance(returned, Population):
            if not isinstance(returned, (torch.Tensor, np.ndarray, list, tuple)):
                raise EvoregError(
                    f"{where} {_short(returned)}, not a population (a Tensor[n, d], a list of "
                    "genomes or a Population)"
                )
            if getattr(returned, "ndim", 1) == 0:
                raise EvoregError(f"{where} a 0-d {type(returned).__name__}, not a population")
            returned = Population(returned)
        pop = returned
        try:
            count = len(pop)
        except TypeError:
            raise EvoregError(
                f"{where} a {type(pop).__name__} of {_short(pop._values)}, not of candidates"
            ) from None
        if count == 0:
            raise EvoregError(f"{where} 0 candidates")
        if pop.ids is None:
            pop.ids = self.new_ids(count)
        if pop.ids.shape != (count,):
            raise EvoregError(
                f"{where} {count} candidates but ids of shape {tuple(pop.ids.shape)}"
            )
        if isinstance(pop, LazyPopulation):
            self._check_lazy(pop)
        elif not pop.lazy:  # held values: reading them all is a view, not a copy
            # A plain Population's values are normalised (float32, int64) in place; a
            # subclass's are checked through rows(), the one way every reader has.
            held = pop.values if type(pop) is Population else pop.rows(0, count)
            try:
                values = self.space.validate(held, count)
            except EvoregError as error:
                raise EvoregError(f"{self.name}.ask: {error}") from None
            if type(pop) is Population:
                pop._values = values
            if isinstance(self.space, Real):
                problem = self.space.invalid_rows(values)
                if problem is not None:
                    if "NaN/inf" in problem and _finite_before_float32(held):
                        problem += " (finite, but beyond float32's range)"
                    raise EvoregError(f"{where} {problem}")
        return pop

    def _check_lazy(self, pop: LazyPopulation) -> None:
        """A lazy population is checked without writing out its rows (see
        ``LazyPopulation.check``); the rows are written out only where they are read."""
        where = f"{self.name}.ask returned"
        if not isinstance(self.space, Real):
            raise EvoregError(f"{where} a LazyPopulation for a {type(self.space).__name__} "
                              "space: lazy rows are real vectors")
        if self.space.bounded:
            # Its rows are base + sigma * Gaussian noise, which no bound holds, and checking
            # them would write them all out.
            raise EvoregError(f"{where} a LazyPopulation for a bounded space: return the "
                              "rows, kept within the bounds, instead")
        try:
            pop.check(self.space.dim)
        except EvoregError as error:
            raise EvoregError(f"{where} {error}") from None

    def _check_evaluation(self, evaluation: Any, gradients: Any, pop: Population) -> Evaluation:
        if isinstance(evaluation, Evaluation):
            if gradients is not None:
                raise EvoregError(
                    f"{self.name}.tell: gradients go inside the Evaluation, not beside it"
                )
            losses = self._check_losses(evaluation.losses, len(pop))
            gradients, candidates = evaluation.gradients, evaluation.candidates
            evaluation = dataclasses.replace(evaluation, losses=losses)
        else:
            losses = self._check_losses(evaluation, len(pop))
            evaluation, candidates = Evaluation(losses, cost=float(len(pop))), None
        if self.needs_gradients:
            evaluation.gradients = self._check_gradients(gradients, pop)
        if candidates is not None:
            evaluation.candidates = self._check_candidates(candidates, len(pop))
        return evaluation

    def _check_losses(self, losses: Any, n: int) -> torch.Tensor:
        if isinstance(losses, torch.Tensor):
            losses = losses.detach()
        else:
            try:
                losses = torch.as_tensor(np.asarray(losses, dtype=np.float64))
            except (TypeError, ValueError) as error:
                raise EvoregError(f"{self.name}.tell: losses must be numbers ({error})") from None
        if losses.shape != (n,):
            raise EvoregError(
                f"{self.name}.tell: expected {n} losses of shape ({n},), "
                f"got shape {tuple(losses.shape)}"
            )
        # float64, as numbers are in Python: float32 would turn a finite 1e300 into inf and
        # make near-ties (1.0 and 1.0 + 1e-12) equal, so the best could be the wrong one.
        # float32 losses (most problems') convert exactly, so their runs are unchanged.
        losses = losses.to(dtype=torch.float64, device=self.device)
        finite = torch.isfinite(losses)
        if not bool(finite.all()):
            if not self._warned_nonfinite:
                warnings.warn(
                    f"{self.name}: NaN/inf losses are counted as the worst loss (+inf)",
                    RuntimeWarning,
                    stacklevel=4,
                )
                self._warned_nonfinite = True
            losses = torch.where(finite, losses, torch.full_like(losses, float("inf")))
        return losses

    def _check_gradients(self, gradients: Any, pop: Population) -> torch.Tensor:
        if gradients is None:
            raise EvoregError(
                f"{self.name} is a gradient method: tell it an Evaluation with gradients (or "
                "tell(pop, losses, gradients=...)) holding the loss's gradient at each "
                "candidate (evoreg.run gets them from problems that provide gradients)"
            )
        gradients = torch.as_tensor(gradients).detach()
        shape = (len(pop), getattr(self.space, "dim", -1))
        if gradients.shape != shape:
            raise EvoregError(
                f"{self.name}.tell: expected gradients of shape {shape}, "
                f"got {tuple(gradients.shape)}"
            )
        gradients = gradients.to(dtype=torch.float32, device=self.device)
        if not bool(torch.isfinite(gradients).all()):
            raise EvoregError(f"{self.name}.tell: the gradients hold NaN or inf")
        return gradients

    def _check_candidates(self, candidates: Any, n: int) -> Any:
        try:
            candidates = self.space.validate(candidates, n)
        except EvoregError as error:
            raise EvoregError(f"{self.name}.tell: the evaluation's candidates: {error}") from None
        if isinstance(self.space, Real):
            candidates = candidates.to(self.device)
        return candidates

    def _track_best(self, pop: Population, losses: torch.Tensor) -> None:
        i = int(torch.argmin(losses))
        loss = float(losses[i])
        if loss < self.best_loss:
            self.best_loss = loss
            self.best_x = self.keep_candidate(pop, i)

    def __getstate__(self) -> dict[str, Any]:
        # A pickle (nevergrad pickles the evoreg optimizer it wraps) holds state, not caches:
        # the noise table is 4 MiB or more of values that ``shared_table`` draws again, the
        # same ones, from its fixed seed on first use.
        state = dict(vars(self))
        state["_noise_table"] = None
        return state

    def __repr__(self) -> str:
        return f"{self.name}({self.config})"


def _registered_name(cls: type) -> str:
    """The name ``cls`` is registered under (what a user typed, so what errors raised while
    it is built should say), else its class name. The registry sets ``name`` only once
    built, and is looked at only if this process already loaded it."""
    from . import registry  # on use: nothing else in the base class needs the registry

    if registry.is_loaded():
        names = [e.name for e in registry.optimizers().values() if e.factory is cls]
        if len(names) == 1:
            return names[0]
    return cls.__name__


def _finite_before_float32(values: Any) -> bool:
    """Whether ``values`` were finite before their cast to float32 (an error path only)."""
    values = torch.as_tensor(values)
    return values.dtype == torch.float64 and bool(torch.isfinite(values).all())


def _short(value: Any) -> str:
    """``value`` for a one-line message: its type and a clipped repr."""
    if value is None:
        return "None"
    text = repr(value).replace("\n", " ")
    text = text if len(text) <= 40 else text[:37] + "..."
    return f"a {type(value).__name__} ({text})"
