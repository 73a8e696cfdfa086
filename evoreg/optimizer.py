"""The optimizer base class: bookkeeping, so that a plugin holds only its algorithm.

A plugin subclasses ``Optimizer``, declares a ``Config`` dataclass whose defaults are its
paper's, and writes ``_ask(n)`` and ``_tell(pop, losses)``. The base validates shapes,
refuses populations it did not hand out or that were already told, turns NaN/inf losses
into the worst loss, tracks the best candidate, counts generations, and keeps its random
generators (``self.generator`` for torch, ``self.rng`` for numpy) in its state.
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

from .config import make_config
from .devices import resolve_device
from .errors import EvoregError
from .population import Population
from .spaces import Space

_owner_tokens = itertools.count(1)


@dataclasses.dataclass
class NoConfig:
    """An optimizer without hyperparameters."""


class Optimizer:
    """Minimises a loss over ``space`` by batched ask/tell."""

    Config: ClassVar[type] = NoConfig
    #: The paper the algorithm follows, shown by ``evoreg info``.
    citation: ClassVar[str] = ""
    #: Spaces the algorithm accepts.
    spaces: ClassVar[tuple[type, ...]] = (Space,)
    #: Attributes rebuilt by ``setup()`` and left out of ``state_dict()`` (caches, tables).
    transient: ClassVar[tuple[str, ...]] = ()
    #: Gradient methods (the ``adam`` and ``sgd`` baselines) need ``tell(pop, losses,
    #: gradients=...)``; ``_tell`` finds them as ``pop.gradients``.
    needs_gradients: ClassVar[bool] = False

    def __init__(
        self, space: Space, *, seed: int = 0, device: str | torch.device = "cpu", **config: Any
    ) -> None:
        self.name = getattr(self, "name", type(self).__name__)
        if not isinstance(space, self.spaces):
            accepted = ", ".join(s.__name__ for s in self.spaces)
            raise EvoregError(
                f"{self.name} works on {accepted} spaces, not {type(space).__name__}"
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
        self._pending: set[int] = set()
        self._owner = next(_owner_tokens)
        self._warned_nonfinite = False
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

    @property
    def default_popsize(self) -> int | None:
        return getattr(self.config, "popsize", None)

    def new_ids(self, n: int) -> torch.Tensor:
        """``n`` fresh candidate ids."""
        ids = torch.arange(self._next_id, self._next_id + n, dtype=torch.int64)
        self._next_id += n
        return ids

    # ----------------------------------------------------------------- public API
    def ask(self, n: int | None = None) -> Population:
        """A population of ``n`` candidates (default: the configured population size)."""
        n = self.default_popsize if n is None else n
        if n is None:
            raise EvoregError(f"{self.name} has no default population size: call ask(n)")
        if not isinstance(n, (int, np.integer)) or n < 1:
            raise EvoregError(f"ask(n={n!r}): n must be a positive int")
        pop = self._ask(int(n))
        if not isinstance(pop, Population):
            pop = Population(pop)
        if pop.ids is None:
            pop.ids = self.new_ids(len(pop))
        if len(pop) != len(pop.ids):
            raise EvoregError(f"{self.name}: {len(pop)} candidates but {len(pop.ids)} ids")
        if type(pop) is Population:
            pop._values = self.space.validate(pop.values, len(pop))
        pop.owner = self._owner
        pop.serial = self._next_serial
        self._next_serial += 1
        self._pending.add(pop.serial)
        return pop

    def tell(self, pop: Population, losses: Any, gradients: torch.Tensor | None = None) -> None:
        """Report the loss of every candidate of ``pop`` (lower is better).

        ``gradients`` (``Tensor[n, d]``, the loss's gradient at each candidate) is read only
        by optimizers with ``needs_gradients``, and required by them.
        """
        if not isinstance(pop, Population) or pop.owner != self._owner:
            raise EvoregError(
                f"{self.name}.tell: this population was not handed out by this optimizer's ask()"
            )
        if pop.serial not in self._pending:
            raise EvoregError(f"{self.name}.tell: this population was already told")
        losses = self._check_losses(losses, len(pop))
        if self.needs_gradients:
            pop.gradients = self._check_gradients(gradients, pop)
        self._pending.discard(pop.serial)
        self._track_best(pop, losses)
        self._tell(pop, losses)
        self.generation += 1

    def recommend(self) -> Any:
        """The candidate this optimizer would deploy now."""
        return self._recommend()

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly: counters, best, RNGs and the algorithm's state."""
        skip = self._base_attributes | set(self.transient)
        algorithm = {key: value for key, value in vars(self).items() if key not in skip}
        return {
            "name": self.name,
            "config": dataclasses.asdict(self.config),
            "generation": self.generation,
            "best_loss": self.best_loss,
            "best_x": self.best_x,
            "next_id": self._next_id,
            "next_serial": self._next_serial,
            "pending": sorted(self._pending),
            "generator": self.generator.get_state(),
            "rng": self.rng.bit_generator.state,
            "warned_nonfinite": self._warned_nonfinite,
            # Pickled: a copy (later steps cannot change it) that is also quick to save, where
            # deepcopy plus torch.save of a large object graph (nevergrad's archive) is not.
            "algorithm": pickle.dumps(algorithm, protocol=pickle.HIGHEST_PROTOCOL),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("name") != self.name:
            raise EvoregError(f"state of {state.get('name')!r} cannot load into {self.name!r}")
        self.generation = state["generation"]
        self.best_loss = state["best_loss"]
        self.best_x = state["best_x"]
        self._next_id = state["next_id"]
        self._next_serial = state["next_serial"]
        self._pending = set(state["pending"])
        self.generator.set_state(state["generator"])
        self.rng.bit_generator.state = state["rng"]
        self._warned_nonfinite = state["warned_nonfinite"]
        for key, value in pickle.loads(state["algorithm"]).items():
            setattr(self, key, value)

    # ----------------------------------------------------------------- internals
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
        losses = losses.to(dtype=torch.float32, device=self.device)
        finite = torch.isfinite(losses)
        if not bool(finite.all()):
            if not self._warned_nonfinite:
                warnings.warn(
                    f"{self.name}: NaN/inf losses are counted as the worst loss (+inf)",
                    RuntimeWarning,
                    stacklevel=3,
                )
                self._warned_nonfinite = True
            losses = torch.where(finite, losses, torch.full_like(losses, float("inf")))
        return losses

    def _check_gradients(self, gradients: Any, pop: Population) -> torch.Tensor:
        if gradients is None:
            raise EvoregError(
                f"{self.name} is a gradient method: call tell(pop, losses, gradients=...) with "
                "the loss's gradient at each candidate (evoreg.run gets them from problems "
                "that provide gradients)"
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

    def _track_best(self, pop: Population, losses: torch.Tensor) -> None:
        i = int(torch.argmin(losses))
        loss = float(losses[i])
        if loss < self.best_loss:
            self.best_loss = loss
            row = pop.rows(i, i + 1)
            self.best_x = copy.deepcopy(row[0]) if isinstance(row, list) else row[0].clone()

    def __repr__(self) -> str:
        return f"{self.name}({self.config})"
