"""Distributed evaluation of a generation on Ray actors (optional extra: ``evoreg[ray]``).

A generation of a costly problem (Atari episodes, large networks) is split into contiguous
shards scored by Ray actors, each holding its own copy of the problem. The result is the
same as scoring in process: the driver keeps the problem whose random state matters, draws
the generation's shared randomness once (``Problem.draw()``: episode seeds, minibatch
indices) and sends it with every shard, and each actor scores its shard with
``Problem.evaluate_drawn``, which touches no random state. Only problems with that split
(``Problem.splittable``) can be distributed.

What travels is small: each shard is ``pop.to_payload(start, stop)``, the population's
cheapest form (a lazy population's genomes, tuples of (seed, sigma) pairs that the actor
decodes itself, else rows), rebuilt on the actor by ``Population.from_payload``. Candidate
ids stay on the driver.

``RayEvaluator`` exposes what the runner uses of a problem (``space``, ``name``, ``config``,
``report``, ``state_dict``, ...) by delegating to the driver's problem, so it can stand in
for one; its ``evaluate`` is the distributed one.

A cluster is used by address: ``ray start --head`` on one node, ``ray start
--address=HEAD:6379`` on the others, then ``address="auto"`` (on a node of the cluster) or
``address="HEAD:6379"``. ``address=None`` starts a local Ray, unless one is running already.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable
from typing import Any

import torch

from .errors import EvoregError
from .population import Population
from .problem import Evaluation, Problem
from .registry import make_problem

#: Builds one problem instance; sent to every actor, so it must pickle (a module-level
#: function or class, or a functools.partial of one).
ProblemFactory = Callable[[], Problem]

INSTALL_HINT = 'pip install "evoreg[ray]"'


def _import_ray() -> Any:
    try:
        import ray
    except ImportError as error:
        raise EvoregError(
            f"distributed evaluation needs Ray, which is not installed ({error}); {INSTALL_HINT}"
        ) from None
    return ray


def problem_factory(problem: Problem) -> ProblemFactory:
    """A factory that builds a problem like ``problem``: its class with its config, seed and
    device. A problem whose constructor takes more than that needs a factory of its own."""
    config = dataclasses.asdict(problem.config) if dataclasses.is_dataclass(problem.config) else {}
    return functools.partial(
        type(problem), seed=problem.seed, device=str(problem.device), **config
    )


class _Worker:
    """One Ray actor's problem; scores shards under the driver's draw."""

    def __init__(self, factory: ProblemFactory) -> None:
        self.problem = factory()
        # Kept between generations: their caches hold the parents, so a child of a seed
        # genome decodes in one noise draw.
        self.decoders: dict = {}

    def evaluate(self, payload: dict[str, Any], draw: dict[str, Any]) -> Evaluation:
        pop = Population.from_payload(
            payload, self.problem.space, self.problem.device, self.decoders
        )
        evaluation = self.problem.evaluate_drawn(pop, draw)
        # Results go back to a driver that may have no GPU.
        return Evaluation(
            torch.as_tensor(evaluation.losses).detach().cpu(),
            cost=float(evaluation.cost),
            info=dict(evaluation.info),
            gradients=None,
        )

    def ready(self) -> bool:
        return True


class RayEvaluator:
    """Scores each generation of a splittable problem on ``num_workers`` Ray actors.

    Workers build the problem by registry name (``problem_name``, ``problem_config``, with
    ``seed`` and ``device``), or with ``problem_factory`` (see :meth:`from_factory`,
    :meth:`from_problem`). ``problem`` is the driver's instance (built here when not given):
    it draws each generation's randomness and its state is what a checkpoint saves.
    ``num_workers`` defaults to the cluster's free CPUs; a generation with fewer candidates
    uses fewer actors. ``actor_options`` go to Ray's ``.options()`` (``{"num_gpus": 0.5}``
    for actors that evaluate on a GPU); each actor takes one CPU by default. Actors that have
    not built their problems after ``start_timeout`` seconds (the cluster has no room for
    them, say) are stopped and an EvoregError says so.
    """

    def __init__(
        self,
        problem_name: str | None = None,
        problem_config: dict[str, Any] | None = None,
        *,
        seed: int = 0,
        device: str = "cpu",
        address: str | None = None,
        num_workers: int | None = None,
        problem: Problem | None = None,
        problem_factory: ProblemFactory | None = None,
        actor_options: dict[str, Any] | None = None,
        start_timeout: float = 600.0,
    ) -> None:
        if (problem_name is None) == (problem_factory is None):
            raise EvoregError("RayEvaluator needs a problem_name or a problem_factory (one)")
        if num_workers is not None and num_workers < 1:
            raise EvoregError(f"num_workers must be >= 1, got {num_workers!r}")
        if problem_factory is None:
            problem_factory = functools.partial(
                make_problem, problem_name, seed=seed, device=device, **(problem_config or {})
            )
        self.problem = problem if problem is not None else problem_factory()
        if not self.problem.splittable:
            raise EvoregError(
                f"problem {self.problem.name!r} cannot be evaluated on Ray: it needs draw() and "
                "evaluate_drawn() (the generation's shared randomness drawn once on the driver, "
                "candidates scored under it anywhere); use the local evaluator"
            )
        ray = _import_ray()
        self._ray = ray
        self._owns_ray = False
        if not ray.is_initialized():
            if address is None:
                # A local instance with as many CPUs as workers asked for (default: all).
                ray.init(num_cpus=num_workers, include_dashboard=False, log_to_driver=False)
            else:
                ray.init(address=address, log_to_driver=False)
            self._owns_ray = True
        options = {"num_cpus": 1, **(actor_options or {})}
        if num_workers is None:
            # The CPUs free now, not the cluster's total: actors of another evaluator hold
            # theirs, and an actor waiting for a CPU that never frees would hang the run.
            free = ray.available_resources().get("CPU", 1)
            per_actor = options["num_cpus"]
            num_workers = max(1, int(free // per_actor)) if per_actor > 0 else max(1, int(free))
        actor = ray.remote(_Worker).options(**options)
        self.workers = [actor.remote(problem_factory) for _ in range(num_workers)]
        try:
            # Fail here, not in the first generation, if an actor cannot build its problem
            # or cannot be placed.
            ray.get([w.ready.remote() for w in self.workers], timeout=start_timeout)
        except ray.exceptions.GetTimeoutError:
            free = ray.available_resources()
            self.close()
            raise EvoregError(
                f"{num_workers} Ray actors ({options}) did not start within {start_timeout:g} s; "
                f"the cluster has {free} free: ask for fewer workers (--workers N) or a "
                "longer start_timeout"
            ) from None
        except BaseException:
            self.close()
            raise

    @classmethod
    def from_factory(
        cls, problem_factory: ProblemFactory, *, problem: Problem | None = None, **options: Any
    ) -> RayEvaluator:
        """Workers build their problem with ``problem_factory()`` (a picklable callable)."""
        return cls(problem_factory=problem_factory, problem=problem, **options)

    @classmethod
    def from_problem(cls, problem: Problem, **options: Any) -> RayEvaluator:
        """Use ``problem`` on the driver; workers rebuild it from its class, config, seed and
        device (:func:`problem_factory`)."""
        return cls(problem_factory=problem_factory(problem), problem=problem, **options)

    @property
    def num_workers(self) -> int:
        return len(self.workers)

    def evaluate(self, pop: Population, *, gradients: bool = False) -> Evaluation:
        """One generation: draw on the driver, score contiguous shards on the actors, merge
        in order (``Problem.merge_evaluations``)."""
        if gradients:
            raise EvoregError("the Ray evaluator returns losses only, not gradients")
        n = len(pop)
        draw = self.problem.draw()
        if n == 0:
            return self.problem.merge_evaluations([self.problem.evaluate_drawn(pop, draw)])
        shards = min(self.num_workers, n)
        size = math.ceil(n / shards)
        draw_ref = self._ray.put(draw)  # one copy in the object store, not one per shard
        futures = []
        for worker, start in zip(self.workers, range(0, n, size)):
            payload = pop.to_payload(start, min(start + size, n))
            futures.append(worker.evaluate.remote(payload, draw_ref))
        return self.problem.merge_evaluations(self._ray.get(futures))

    def close(self) -> None:
        """Stop the actors (and the Ray instance this evaluator started, if it did)."""
        for worker in getattr(self, "workers", []):
            self._ray.kill(worker)
        self.workers = []
        if getattr(self, "_owns_ray", False) and self._ray.is_initialized():
            self._ray.shutdown()
        self._owns_ray = False

    def __enter__(self) -> RayEvaluator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # What the runner reads of a problem comes from the driver's instance.
    def __getattr__(self, name: str) -> Any:
        if name in ("problem", "workers", "_ray", "_owns_ray"):
            raise AttributeError(name)  # not set yet: __init__ failed early
        return getattr(self.problem, name)

    def __repr__(self) -> str:
        return f"RayEvaluator({self.problem!r}, workers={len(getattr(self, 'workers', []))})"

