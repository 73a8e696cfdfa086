"""nevergrad both ways: every nevergrad optimizer as ``ng:<Name>``, and evoreg's in nevergrad.

Rapin & Teytaud, "Nevergrad - A gradient-free optimization platform" (2018),
https://github.com/facebookresearch/nevergrad.

``ng:<Name>`` wraps ``nevergrad.optimizers.registry[Name]`` as an evoreg optimizer: a batch
``ask(n)`` is ``n`` nevergrad asks, ``tell`` passes each loss back in order, ``recommend`` is
nevergrad's recommendation. ``register_in_nevergrad`` goes the other way, so a nevergrad user
keeps nevergrad's API (``ask``/``tell``/``minimize``) over an evoreg optimizer.
"""

from __future__ import annotations

import dataclasses
import inspect
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
    NGOpt's choice, so there it stays unset unless given.

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
        param = parametrization(self.space, self.seed)
        # Built without a budget, NGOpt and others fail; ``plan`` may still bring one, so
        # that failure is reported by the first ask, not here.
        self.unbuilt: str | None = None
        self.nevergrad: Any = None
        try:
            self.nevergrad = ng.optimizers.registry[self.ng_name](
                param, budget=self.config.budget, num_workers=self.config.popsize
            )
            self.nevergrad.enable_pickling()  # state_dict pickles it
        except Exception as error:
            if self.config.budget is not None or not isinstance(error, (AssertionError,
                                                                          ValueError)):
                raise self._explain(error) from error
            self.unbuilt = str(self._explain(error))
        # Candidates asked and not yet told, by evoreg id: nevergrad needs them back in tell.
        self.asked: dict[int, ng.p.Parameter] = {}

    def plan(self, budget: float, unit: str) -> None:
        if unit != "evaluations" or self.config.budget is not None or self._next_serial > 0:
            return
        # As if built with that budget: nevergrad sizes itself at construction.
        self.config = dataclasses.replace(self.config, budget=int(budget))
        self.setup()

    def _explain(self, error: Exception) -> Exception:
        """nevergrad's errors for the two common causes, as evoreg errors that say what to do."""
        if isinstance(error, ImportError):
            return EvoregError(f"{self.name} needs a package nevergrad does not require: {error}")
        if self.config.budget is None and isinstance(error, (AssertionError, ValueError)):
            return EvoregError(
                f"{self.name} failed without a budget ({error!r}); "
                "nevergrad's NGOpt and many others choose or size themselves from it: "
                "pass budget=N (the number of evaluations planned)"
            )
        return error

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
        except Exception as error:
            raise self._explain(error) from error
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


def _factory(name: str) -> type[NevergradOptimizer]:
    # One small subclass per name: the base's __init__ takes only hyperparameters as keywords.
    return type(f"Nevergrad_{name}", (NevergradOptimizer,), {"ng_name": name, "name": f"ng:{name}"})


# ------------------------------------------------------------------ evoreg inside nevergrad
class _EvoregInNevergrad(ng_base.Optimizer):
    """nevergrad's Optimizer API over an evoreg optimizer, in nevergrad's standardized space.

    The evoreg optimizer sees ``Real(dimension)`` around 0 with sigma 1 (nevergrad maps that
    space to the parametrization's values, bounds included). It asks a population of its
    ``popsize`` (``num_workers`` if it has none) and hands out its rows one by one; the
    population is told back once every row of it has been told.
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
        self.evoreg = evoreg.make_optimizer(
            evoreg_name, Real(self.dimension), seed=seed, **(evoreg_config or {})
        )
        self.popsize = getattr(self.evoreg.config, "popsize", None) or num_workers
        self.batch: Population | None = None  # the population whose rows are being handed out
        self.handed = 0  # rows of it handed out
        self.open: dict[int, tuple[Population, list[float | None]]] = {}  # by serial

    def _internal_ask_candidate(self) -> ng.p.Parameter:
        if self.batch is None or self.handed == len(self.batch):
            self.batch, self.handed = self.evoreg.ask(self.popsize), 0
            self.open[self.batch.serial] = (self.batch, [None] * len(self.batch))
        row = self.batch.rows(self.handed, self.handed + 1)[0]
        candidate = self.parametrization.spawn_child().set_standardized_data(
            row.cpu().double().numpy()
        )
        candidate._meta["evoreg"] = (self.batch.serial, self.handed)
        self.handed += 1
        return candidate

    def _internal_tell_candidate(self, candidate: ng.p.Parameter, loss: float) -> None:
        serial, row = candidate._meta["evoreg"]
        pop, losses = self.open[serial]
        losses[row] = loss
        if all(value is not None for value in losses):
            del self.open[serial]
            self.evoreg.tell(pop, torch.tensor(losses))

    def _internal_tell_not_asked(self, candidate: ng.p.Parameter, loss: float) -> None:
        raise ng.errors.TellNotAskedNotSupportedError

    def _internal_provide_recommendation(self) -> np.ndarray | None:
        best = self.evoreg.recommend()
        return None if best is None else best.cpu().double().numpy()


class EvoregOptimizer(ng_base.ConfiguredOptimizer):
    """An evoreg optimizer (by its registry name and hyperparameters) as a nevergrad one."""

    def __init__(self, evoreg_name: str, evoreg_config: dict[str, Any] | None = None) -> None:
        super().__init__(_EvoregInNevergrad, locals())


def register_in_nevergrad(
    evoreg_name: str, nevergrad_name: str | None = None, **config: Any
) -> EvoregOptimizer:
    """Put evoreg's ``evoreg_name`` (with hyperparameters ``config``) into nevergrad's registry.

    Registered as ``nevergrad_name`` (default ``"evoreg:<evoreg_name>"``), then
    ``ng.optimizers.registry["evoreg:random-search"](parametrization=2, budget=100)`` is a
    plain nevergrad optimizer. Raises ``ValueError`` if nevergrad already has that name.
    """
    nevergrad_name = nevergrad_name or f"evoreg:{evoreg_name}"
    if nevergrad_name in ng.optimizers.registry:
        raise ValueError(f"nevergrad already has an optimizer named {nevergrad_name!r}")
    evoreg.get_registry().get("optimizer", evoreg_name)  # an unknown name lists close matches
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
