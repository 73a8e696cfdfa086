"""nevergrad both ways: every nevergrad optimizer as ``ng:<Name>``, and evoreg's in nevergrad.

Rapin & Teytaud, "Nevergrad - A gradient-free optimization platform" (2018),
https://github.com/facebookresearch/nevergrad.

``ng:<Name>`` wraps ``nevergrad.optimizers.registry[Name]`` as an evoreg optimizer: a batch
``ask(n)`` is ``n`` nevergrad asks, ``tell`` passes each loss back in order, ``recommend`` is
nevergrad's recommendation. ``register_in_nevergrad`` goes the other way, so a nevergrad user
keeps nevergrad's API (``ask``/``tell``/``minimize``) over an evoreg optimizer.

Seeds: ``make_optimizer("ng:Name", space, seed=s)`` is nevergrad's own run with seed ``s``
(see ``NevergradOptimizer``). ``evoreg.run(..., seed=s)`` gives the optimizer the seed
``evoreg.runner.derive_seeds(s)[1]`` (and the problem ``derive_seeds(s)[0]``), so it equals
nevergrad's run with that seed, not with ``s``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import nevergrad as ng
import numpy as np
import torch
from nevergrad.optimization import base as ng_base

import evoreg
from evoreg import Categorical, EvoregError, Optimizer, Population, Real, hookimpl
from evoreg.config import bounded

#: nevergrad clips every loss >= 5e20 to 5e20 itself (inf would break its averages) and warns
#: on each such tell ("rescale the cost function?"); an evoreg +inf (a NaN/inf loss, already
#: warned about by the base class) is told as the largest float below that, without a warning.
NEVERGRAD_MAX_LOSS = float(np.nextafter(5.0e20, 0.0))
#: The budget ``ng:*`` tries when nevergrad fails to build an optimizer without one: if it
#: builds with it, the missing budget was the cause.
PROBE_BUDGET = 100


@dataclass
class Config:
    popsize: int = bounded(1, ge=1)  #: candidates per ask, given to nevergrad as ``num_workers``
    #: evaluations planned (NGOpt chooses its algorithm by it); None: the run's budget when
    #: the problem counts evaluations
    budget: int | None = bounded(None, ge=1)


def parametrization(space: Real | Categorical, seed: int) -> ng.p.Parameter:
    """The nevergrad parametrization of ``space``, its random state seeded with ``seed``."""
    if isinstance(space, Real):
        param = ng.p.Array(init=space.initial().numpy().astype(np.float64))
        param.set_mutation(sigma=space.sigma)
        if space.bounded:
            # float32 bounds (what evoreg checks candidates against) as float64 arrays: a
            # value within them stays within after the cast back to float32.
            lower, upper = (b.numpy().astype(np.float64) for b in space.bounds())
            # nevergrad's default "bouncing" needs finite bounds on both sides; "clipping"
            # takes one side, or infinite coordinates.
            finite = bool(np.isfinite(lower).all() and np.isfinite(upper).all())
            param.set_bounds(
                lower if np.isfinite(lower).any() else None,
                upper if np.isfinite(upper).any() else None,
                method="bouncing" if finite else "clipping",
            )
    else:
        # deterministic: a candidate is the most likely choice of the weights searched, not a
        # draw from their softmax (nevergrad's default), whose sampling noise the optimizer
        # would have to average out (8 slots of 4, 150 evaluations of DiscreteOnePlusOne:
        # best 0-1 mismatches instead of 2-3 over 6 seeds).
        param = ng.p.Tuple(*(ng.p.Choice(range(k), deterministic=True) for k in space.sizes))
    # Every draw of a nevergrad optimizer comes from its parametrization's random state, which
    # otherwise is seeded from numpy's global generator; seeding it makes runs reproducible.
    param.random_state = np.random.RandomState(seed % 2**32)
    return param


class NevergradOptimizer(Optimizer):
    """A nevergrad optimizer (``ng_name``) behind evoreg's batched ask/tell.

    ``Real`` is ``ng.p.Array(init=space.initial())`` with ``set_mutation(sigma=space.sigma)``
    and the space's bounds; ``Categorical`` is an ``ng.p.Tuple`` of one
    ``ng.p.Choice(range(k), deterministic=True)`` per slot. With seed ``s`` the run is exactly
    nevergrad's own with ``param.random_state = np.random.RandomState(s)`` set on that
    parametrization before ``registry[ng_name](param, budget=budget, num_workers=popsize)`` is
    built, asked and told one candidate at a time in the same order (the losses as the float64
    values evoreg keeps; seeds are taken modulo 2**32, RandomState's range).
    Many nevergrad optimizers (NGOpt on ``Real`` included) need ``budget``: when it is not
    set, ``plan`` (called by the runner before the first ask) sets it to the run's budget if
    the problem counts evaluations; a budget in other units (Atari frames) would mislead
    NGOpt's choice, so there it stays unset unless given. Whatever nevergrad raises while
    building the optimizer is reported in one line with its cause: a missing budget (when
    nevergrad builds it with one, whatever it raised without: AssertionError for NGOpt,
    TypeError for NGOptF2) at the first ask, as ``plan`` may still bring one; anything else
    (Carola4 with ``popsize`` > 1: it does not support parallelization) at once.

    ``state_dict`` pickles the nevergrad optimizer with its pending candidates. Those that
    nevergrad runs in a thread ("recast": scipy's, direct search, ...) pickle only after
    ``enable_pickling()``, called here, and then replay their history when unpickled, which
    nevergrad 1.0.12 gets wrong for most of them ("Mismatch in replay"): they run, but their
    state cannot be saved.
    """

    Config = Config
    citation = "Rapin & Teytaud (2018), Nevergrad - A gradient-free optimization platform"
    spaces = (Real, Categorical)
    respects_bounds = True  # the bounds are the parametrization's (see ``parametrization``)
    ng_name: ClassVar[str] = "NGOpt"

    def setup(self) -> None:
        # Candidates asked and not yet told, by evoreg id: nevergrad needs them back in tell.
        self.asked: dict[int, ng.p.Parameter] = {}
        self.unbuilt: str | None = None
        self.nevergrad, cause = self._build(self.config.budget)
        if self.nevergrad is not None:
            return
        if self.config.budget is None and self._build(PROBE_BUDGET)[0] is not None:
            # It fails without a budget only (NGOpt, NGOptF2, ...), and ``plan`` (the runner's
            # budget) may still bring one: the first ask reports it if none came.
            self.unbuilt = (
                f"{self.name} needs a budget: nevergrad's {self.ng_name} chooses or sizes "
                f"itself from the number of evaluations planned and fails without one "
                f"({cause}); pass budget=N"
            )
            return
        raise EvoregError(self._cause_line(cause))

    def _build(self, budget: int | None) -> tuple[Any, str]:
        """nevergrad's optimizer built with ``budget`` and ``num_workers=popsize``, or None and
        why not, as one line (whatever it raised: AssertionError, TypeError, ...)."""
        param = parametrization(self.space, self.seed)
        with _quiet_nevergrad_destructors():
            try:
                built = ng.optimizers.registry[self.ng_name](
                    param, budget=budget, num_workers=self.config.popsize
                )
                built.enable_pickling()  # state_dict pickles it (NGOpt chooses its algorithm here)
                return built, ""
            except ImportError as error:
                cause = f"it needs a package nevergrad does not require ({error})"
            except Exception as error:  # noqa: BLE001 - any of them, reported in one line
                cause = _one_line(error)
        # Out of the except block the failed, half-built optimizer is freed here, where its
        # __del__'s errors are silenced.
        return None, cause

    def _cause_line(self, cause: str) -> str:
        popsize, budget = self.config.popsize, self.config.budget
        if "does not support parallelization" in cause:
            return (f"{self.name} does not support parallelization: nevergrad runs it one "
                    f"candidate at a time, so it needs popsize=1 (nevergrad's num_workers), "
                    f"not {popsize} ({cause})")
        return f"{self.name} cannot be built with popsize={popsize}, budget={budget}: {cause}"

    def plan(self, budget: float, unit: str) -> None:
        if unit != "evaluations" or self.config.budget is not None or self._next_serial > 0:
            return
        # As if built with that budget: nevergrad sizes itself at construction.
        self.config = dataclasses.replace(self.config, budget=int(budget))
        self.setup()

    def _to_tensor(self, candidates: list[ng.p.Parameter]) -> torch.Tensor:
        if isinstance(self.space, Real):
            rows = np.stack([c.value for c in candidates])
            return torch.as_tensor(rows, dtype=torch.float32, device=self.device)
        rows = [list(c.value) for c in candidates]
        return torch.tensor(rows, dtype=torch.int64, device=self.device)

    def _ask(self, n: int) -> Population:
        if self.unbuilt is not None:
            raise EvoregError(self.unbuilt)
        try:
            candidates = [self.nevergrad.ask() for _ in range(n)]
        except Exception as error:  # noqa: BLE001 - any of them, reported in one line
            cause = _one_line(error)
        else:
            cause = None
        if cause is not None:
            raise EvoregError(f"{self.name}.ask: nevergrad's {self.ng_name} failed ({cause})")
        ids = self.new_ids(n)
        self.asked.update(zip(ids.tolist(), candidates))
        return Population(self._to_tensor(candidates), ids)

    def _tell(self, pop: Population, losses: torch.Tensor) -> None:
        for i, loss in zip(pop.ids.tolist(), losses.tolist()):
            self.nevergrad.tell(self.asked.pop(i), min(loss, NEVERGRAD_MAX_LOSS))

    def _recommend(self) -> torch.Tensor:
        return self._to_tensor([self.nevergrad.provide_recommendation()])[0]


def _description(entry: Any) -> str:
    """nevergrad's own text for a registry entry.

    Registered classes (NGOpt, ...) carry it as their (possibly inherited) docstring;
    ``ConfiguredOptimizer`` instances (OnePlusOne, DE, ...) share their configuring class's
    docstring, so the configuration itself is what tells two such entries apart.
    """
    doc = inspect.getdoc(entry) or ""
    if isinstance(entry, ng_base.ConfiguredOptimizer):
        defaults = inspect.signature(type(entry).__init__).parameters
        changed = ", ".join(
            f"{key}={value!r}"
            for key, value in entry._config.items()
            if key not in defaults or not _same(defaults[key].default, value)
        )
        if len(changed) > 300:
            changed = changed[:300] + "..."
        doc += f"\n\nnevergrad configuration: {type(entry).__name__}({changed})"
    return doc.strip()


def _same(a: Any, b: Any) -> bool:
    try:
        return bool(a == b)
    except Exception:  # noqa: BLE001 - e.g. arrays, whose == is elementwise
        return a is b


def _one_line(error: BaseException) -> str:
    """``Type: message`` on one line (the type alone when the message is empty)."""
    message = " ".join(str(error).split())
    return f"{type(error).__name__}: {message}" if message else type(error).__name__


@contextlib.contextmanager
def _quiet_nevergrad_destructors() -> Iterator[None]:
    """Silence what a half-built nevergrad optimizer's ``__del__`` raises when it is freed
    (nevergrad 1.0.12's recast optimizers read attributes their failed ``__init__`` never
    set, and Python prints that to stderr: noise beside the one-line error evoreg gives)."""
    previous = sys.unraisablehook

    def hook(unraisable: Any) -> None:
        where = getattr(unraisable.object, "__qualname__", "")
        module = getattr(unraisable.object, "__module__", "") or ""
        if not (where.endswith("__del__") and module.startswith("nevergrad")):
            previous(unraisable)

    sys.unraisablehook = hook
    try:
        yield
    finally:
        sys.unraisablehook = previous


def _factory(name: str) -> type[NevergradOptimizer]:
    # One small subclass per name: the base's __init__ takes only hyperparameters as keywords.
    return type(f"Nevergrad_{name}", (NevergradOptimizer,), {"ng_name": name, "name": f"ng:{name}"})


# ------------------------------------------------------------------ evoreg inside nevergrad
#: Hyperparameters of evoreg's built-ins that are absolute step sizes, tuned for network
#: weights (goea's sigma 0.01, leea's 0.001, atari-ga's 0.005, openai-es's sigma 0.02 and
#: Adam lr 0.01). In nevergrad's standardized space one unit is the parametrization's sigma
#: (1 for ``ng.p.Array``), where such steps barely move: sphere d=20, 1,000 evaluations,
#: median of 5 seeds, goea 12.9 and leea (popsize 20) 7.1 from 20, OnePlusOne 0.0. The bridge
#: gives them these values, in that unit, unless they are set (with them: goea 0.15, leea
#: 1.1; the other step sizes measured, 0.3 and 1, did worse up to d = 100).
STANDARDIZED_DEFAULTS: dict[str, dict[str, float]] = {
    "goea": {"sigma": 0.1},
    "leea": {"sigma": 0.1},
    "atari-ga": {"sigma": 0.1},
    "openai-es": {"sigma": 0.1, "lr": 0.1},
}


class _EvoregInNevergrad(ng_base.Optimizer):
    """nevergrad's Optimizer API over an evoreg optimizer, in nevergrad's standardized space.

    The evoreg optimizer sees ``Real(dimension)`` around 0 with sigma 1 (nevergrad maps that
    space to the parametrization's values, bounds included); built-ins whose step sizes are
    absolute get ``STANDARDIZED_DEFAULTS``. It asks a generation (``default_popsize``; with a
    budget, no more than the asks it leaves when it takes a smaller ask) and hands out its
    rows one by one; the generation is told back once every row of it has been told.

    Several asks before the tells (``num_workers > 1``) work for every optimizer: one that is
    not ``generational`` asks its next population while the earlier ones are out. A
    generational one (goea, leea, atari-ga, snes, ...) can only ask its next generation once
    the current one is told, so when every row is out and some are not yet told, the bridge
    hands out an untold row again (a backup copy: whichever copy is told first gives the row
    its loss; the other only enters nevergrad's archive). That costs at most num_workers - 1
    evaluations a generation, and keeps every worker busy.

    The recommendation is evoreg's (its best, its mean, its parent) once it has been told a
    generation; before that (leea's popsize 2000 within a budget of 1000) it is the best
    candidate told, from nevergrad's archive. Suggestions and candidates not asked are
    refused with ``TellNotAskedNotSupportedError``: evoreg's optimizers learn from the
    populations they generated.
    """

    def __init__(
        self,
        parametrization: Any,
        budget: int | None = None,
        num_workers: int = 1,
        evoreg_name: str = "random-search",
        evoreg_config: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(parametrization, budget=budget, num_workers=num_workers)
        # Drawn from the parametrization's random state so nevergrad's seeding applies.
        seed = int(self._rng.randint(2**31))
        config = {**STANDARDIZED_DEFAULTS.get(evoreg_name, {}), **(evoreg_config or {})}
        self.evoreg = evoreg.make_optimizer(evoreg_name, Real(self.dimension), seed=seed, **config)
        if budget is not None:
            self.evoreg.plan(budget, "evaluations")
        self.batch: Population | None = None  # the population whose rows are being handed out
        self.handed = 0  # rows of it handed out
        self.open: dict[int, tuple[Population, list[float | None]]] = {}  # by serial
        self.backups = 0  # rows handed out again, to choose the next one in turn

    def _internal_ask_candidate(self) -> ng.p.Parameter:
        if self.batch is None or self.handed == len(self.batch):
            if self.evoreg.generational and self.open:
                return self._backup()
            self.batch, self.handed = self.evoreg.ask(self._generation_size()), 0
            self.open[self.batch.serial] = (self.batch, [None] * len(self.batch))
        self.handed += 1
        return self._candidate(self.batch, self.handed - 1)

    def _generation_size(self) -> int:
        """A generation; with a budget, only the asks it leaves when the optimizer takes a
        smaller ask (so a budget of 1,000 is 1,000 evaluations told, none left over)."""
        size = self.evoreg.default_popsize
        if self.budget is not None and self.evoreg.smaller_ask:
            size = min(size, max(1, self.budget - self.num_ask))
        return size

    def _backup(self) -> ng.p.Parameter:
        """An untold row of the open generation, again (in turn over the untold rows)."""
        ((pop, losses),) = self.open.values()
        untold = [row for row, loss in enumerate(losses) if loss is None]
        row = untold[self.backups % len(untold)]
        self.backups += 1
        return self._candidate(pop, row)

    def _candidate(self, pop: Population, row: int) -> ng.p.Parameter:
        values = pop.rows(row, row + 1)[0]
        candidate = self.parametrization.spawn_child().set_standardized_data(
            values.cpu().double().numpy()
        )
        candidate._meta["evoreg"] = (pop.serial, row)
        return candidate

    def _internal_tell_candidate(self, candidate: ng.p.Parameter, loss: float) -> None:
        serial, row = candidate._meta["evoreg"]
        if serial not in self.open:
            return  # a backup copy of a row whose generation is already told
        pop, losses = self.open[serial]
        if losses[row] is not None:
            return  # the other copy was told first
        losses[row] = loss
        if all(value is not None for value in losses):
            del self.open[serial]
            self.evoreg.tell(pop, torch.tensor(losses, dtype=torch.float64))

    def _refusal(self, what: str) -> ng.errors.TellNotAskedNotSupportedError:
        return ng.errors.TellNotAskedNotSupportedError(
            f"evoreg's {self.evoreg.name} in nevergrad {what}: it learns only from the "
            "candidates it generated, each told once (ask() for candidates, tell() each of "
            "them its loss)"
        )

    def suggest(self, *args: Any, **kwargs: Any) -> None:
        raise self._refusal("takes no suggestions")

    def _internal_tell_not_asked(self, candidate: ng.p.Parameter, loss: float) -> None:
        raise self._refusal("was told a candidate it did not ask for, or one already told")

    def _internal_provide_recommendation(self) -> np.ndarray | None:
        if self.evoreg.generation == 0:
            return None  # nevergrad then recommends the best candidate told so far
        best = self.evoreg.recommend()
        return None if best is None else best.cpu().double().numpy()


class EvoregOptimizer(ng_base.ConfiguredOptimizer):
    """An evoreg optimizer (by its registry name and hyperparameters) as a nevergrad one.

    Refused here, in one line: unknown names (with close matches), gradient methods (adam,
    sgd: nevergrad tells a loss, not the gradient they step on) and optimizers of other
    spaces than ``Real`` (nes, niching: nevergrad hands its optimizers a real vector).
    """

    def __init__(self, evoreg_name: str, evoreg_config: dict[str, Any] | None = None) -> None:
        _check_for_nevergrad(evoreg_name)
        super().__init__(_EvoregInNevergrad, locals())


def _check_for_nevergrad(evoreg_name: str) -> None:
    factory = evoreg.get_registry().get("optimizer", evoreg_name).factory
    if dict(getattr(factory, "evaluate_with", {})).get("gradients"):
        raise EvoregError(
            f"{evoreg_name} is a gradient method and cannot run in nevergrad, whose tell gives "
            "a loss, not the gradient it steps on: register a gradient-free optimizer"
        )
    spaces = getattr(factory, "spaces", (Real,))
    if not issubclass(Real, spaces):
        accepted = ", ".join(space.__name__ for space in spaces)
        raise EvoregError(
            f"{evoreg_name} works on {accepted} spaces; in nevergrad it would search "
            "nevergrad's standardized space, a Real vector: register an optimizer of Real spaces"
        )


def register_in_nevergrad(
    evoreg_name: str, nevergrad_name: str | None = None, **config: Any
) -> EvoregOptimizer:
    """Put evoreg's ``evoreg_name`` (with hyperparameters ``config``) into nevergrad's registry.

    Registered as ``nevergrad_name`` (default ``"evoreg:<evoreg_name>"``), then
    ``ng.optimizers.registry["evoreg:random-search"](parametrization=2, budget=100)`` is a
    plain nevergrad optimizer. Raises ``ValueError`` if nevergrad already has that name, and
    ``EvoregError`` (a ValueError) for an optimizer that cannot run there (see
    ``EvoregOptimizer``). Step sizes that are absolute default to ``STANDARDIZED_DEFAULTS``.
    """
    nevergrad_name = nevergrad_name or f"evoreg:{evoreg_name}"
    if nevergrad_name in ng.optimizers.registry:
        raise ValueError(f"nevergrad already has an optimizer named {nevergrad_name!r}")
    configured = EvoregOptimizer(evoreg_name, dict(config))
    return configured.set_name(nevergrad_name, register=True)


@hookimpl
def evoreg_register_optimizers(register) -> None:
    for name, entry in sorted(ng.optimizers.registry.items()):
        if isinstance(entry, EvoregOptimizer):
            continue  # one of ours, put into nevergrad by register_in_nevergrad
        doc = _description(entry)
        register(
            f"ng:{name}",
            _factory(name),
            family="nevergrad",
            summary=doc.splitlines()[0] if doc else "",
            doc=doc,
            config=Config,
            citation=NevergradOptimizer.citation,
        )
