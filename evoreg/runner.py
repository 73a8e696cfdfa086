"""The ask/evaluate/tell loop, with a log of every generation, checkpoints and resume.

``out_dir`` receives ``run.json`` (what was run), ``log.jsonl`` (a line per generation),
``checkpoint.pt`` (written atomically every ``checkpoint_every`` generations, or by default
every ``checkpoint_seconds`` of wall time, and at the end), ``result.json`` and
``convergence.png``. ``resume=True`` continues a killed run from its last checkpoint; on
CPU with the same seed it ends exactly where an uninterrupted run ends, because the
optimizer's and the problem's random states are part of the checkpoint.

``run`` sets up (``_build``, ``_open``), runs ``_loop`` and writes the outputs (``_finish``);
``_loop`` is the algorithm itself, the same for every optimizer and problem.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .checkpoint import load_checkpoint, save_checkpoint, write_json
from .environment import machine, versions
from .errors import EvoregError
from .optimizer import Optimizer
from .problem import Evaluation, Problem
from .registry import get_registry, make_optimizer, make_problem

RUN_FILE, LOG_FILE, CHECKPOINT_FILE, RESULT_FILE = (
    "run.json",
    "log.jsonl",
    "checkpoint.pt",
    "result.json",
)
#: Where a generation is scored: "local" (in this process) or "ray" (evoreg.distributed).
EVALUATORS = ("local", "ray")


@dataclasses.dataclass
class RunResult:
    best_loss: float
    recommendation: Any
    report: dict[str, Any]
    generations: int
    cost: float
    wall_time: float
    out_dir: Path | None = None
    log: list[dict[str, Any]] = dataclasses.field(default_factory=list, repr=False)


def derive_seeds(seed: int) -> tuple[int, int]:
    """Independent seeds for the problem and the optimizer from one run seed."""
    problem_seq, optimizer_seq = np.random.SeedSequence(seed).spawn(2)
    return int(problem_seq.generate_state(1)[0]), int(optimizer_seq.generate_state(1)[0])


def run(
    problem: Problem | str,
    optimizer: Optimizer | str,
    budget: float,
    *,
    seed: int = 0,
    out_dir: str | Path | None = None,
    checkpoint_every: int | None = None,
    checkpoint_seconds: float = 30.0,
    resume: bool = False,
    device: str = "cpu",
    problem_config: dict[str, Any] | None = None,
    optimizer_config: dict[str, Any] | None = None,
    progress: bool | None = None,
    plot: bool = True,
    evaluator: str = "local",
    ray_address: str | None = None,
    workers: int | None = None,
) -> RunResult:
    """Minimise ``problem`` with ``optimizer`` until ``budget`` (in the problem's unit) is used.

    ``problem`` and ``optimizer`` are registered names (built here with ``seed`` and
    ``device``) or ready objects. The last generation may overshoot the budget.
    Checkpoints are written every ``checkpoint_every`` generations when it is given, else
    whenever ``checkpoint_seconds`` have passed: an optimizer with a large state (nevergrad's
    archive grows with every candidate) would otherwise spend its time saving.
    ``evaluator="ray"`` scores each generation on ``workers`` Ray actors (default: one per
    CPU) of the cluster at ``ray_address`` ("auto", "host:port"; None starts a local Ray),
    with the same result as ``"local"`` (see :mod:`evoreg.distributed`).
    """
    _check_settings(budget, evaluator, checkpoint_every)
    problem_name = problem if isinstance(problem, str) else None
    problem, optimizer = _build(
        problem, optimizer, seed, device, problem_config, optimizer_config
    )
    optimizer.plan(budget, problem.budget_unit)
    _check_pairing(problem, optimizer, evaluator)
    session = _Session(problem, optimizer, _describe(problem, optimizer, seed, budget),
                       checkpoint_every, checkpoint_seconds)
    if out_dir is not None:
        session.open(Path(out_dir), resume)
        if session.finished(budget):
            return session.earlier_result()
    ray = {"address": ray_address, "num_workers": workers} if evaluator == "ray" else None
    with _scoring(problem, problem_name, problem_config, device, ray) as evaluate, \
            session.outputs(budget, progress):
        _loop(session, evaluate, budget)
    return session.finish(plot, seed)


def _loop(session: _Session, evaluate: Callable[..., Evaluation], budget: float) -> None:
    """The run itself: ask, evaluate, tell, record, checkpoint, until the budget is used."""
    optimizer = session.optimizer
    while session.cost < budget:
        pop = optimizer.ask()
        evaluation = evaluate(pop, **optimizer.evaluate_with)
        optimizer.tell(pop, evaluation)
        session.record(evaluation)
        session.checkpoint_if_due()


# --------------------------------------------------------------------------- setting up
def _check_settings(budget: float, evaluator: str, checkpoint_every: int | None) -> None:
    if evaluator not in EVALUATORS:
        raise EvoregError(
            f"unknown evaluator {evaluator!r}; valid evaluators: {', '.join(EVALUATORS)}"
        )
    if not budget > 0:
        raise EvoregError(f"budget must be > 0, got {budget!r}")
    if checkpoint_every is not None and checkpoint_every < 1:
        raise EvoregError(f"checkpoint_every must be >= 1, got {checkpoint_every!r}")


def _build(
    problem: Problem | str,
    optimizer: Optimizer | str,
    seed: int,
    device: str,
    problem_config: dict[str, Any] | None,
    optimizer_config: dict[str, Any] | None,
) -> tuple[Problem, Optimizer]:
    """The problem and the optimizer, built by name with seeds derived from ``seed``."""
    problem_seed, optimizer_seed = derive_seeds(seed)
    if isinstance(problem, str):
        problem = make_problem(problem, seed=problem_seed, device=device, **(problem_config or {}))
    if isinstance(optimizer, str):
        optimizer = make_optimizer(
            optimizer, problem.space, seed=optimizer_seed, device=device,
            **(optimizer_config or {}),
        )
    return problem, optimizer


def _check_pairing(problem: Problem, optimizer: Optimizer, evaluator: str) -> None:
    if optimizer.needs_gradients and not problem.provides_gradients:
        raise EvoregError(
            f"{optimizer.name} is a gradient method and {problem.name} provides no gradients; "
            "problems that do: " + ", ".join(_gradient_problems())
        )
    if evaluator != "local" and optimizer.evaluate_with:
        raise EvoregError(
            f"{optimizer.name} asks the problem for {', '.join(optimizer.evaluate_with)}; the "
            f"{evaluator} evaluator returns losses only (use evaluator='local')"
        )


def _gradient_problems() -> list[str]:
    entries = get_registry().entries["problem"].values()
    names = [e.name for e in entries if getattr(e.factory, "provides_gradients", False)]
    return sorted(names) or ["none registered"]


def _describe(problem: Problem, optimizer: Optimizer, seed: int, budget: float) -> dict:
    """What ``run.json`` records, and what a resumed run must match."""
    return {
        "problem": problem.name,
        "problem_config": dataclasses.asdict(problem.config),
        "optimizer": optimizer.name,
        "optimizer_config": dataclasses.asdict(optimizer.config),
        "seed": seed,
        "budget": budget,
        "budget_unit": problem.budget_unit,
        "device": str(optimizer.device),
    }


@contextlib.contextmanager
def _scoring(
    problem: Problem,
    problem_name: str | None,
    problem_config: dict[str, Any] | None,
    device: str,
    ray: dict[str, Any] | None,
) -> Iterator[Callable[..., Evaluation]]:
    """Where generations are scored: the problem itself, or (``ray``: the address and number
    of workers) Ray actors that build copies of it; the driver's problem stays the one
    checkpointed and reported."""
    if ray is None:
        yield problem.evaluate
        return
    from .distributed import RayEvaluator

    if problem_name is not None:
        distributed = RayEvaluator(
            problem_name, problem_config, seed=problem.seed, device=device, problem=problem,
            **ray,
        )
    else:
        distributed = RayEvaluator.from_problem(problem, **ray)
    try:
        yield distributed.evaluate
    finally:
        distributed.close()


# --------------------------------------------------------------------------- one run
class _Session:
    """A run's state and outputs: counters, the log, the run directory and progress bar."""

    def __init__(
        self,
        problem: Problem,
        optimizer: Optimizer,
        description: dict,
        checkpoint_every: int | None,
        checkpoint_seconds: float,
    ) -> None:
        self.problem, self.optimizer, self.description = problem, optimizer, description
        self.checkpoint_every, self.checkpoint_seconds = checkpoint_every, checkpoint_seconds
        self.generation, self.cost, self.elapsed = 0, 0.0, 0.0
        self.log: list[dict[str, Any]] = []
        self.out: Path | None = None
        self._log_file: Any = None
        self._bar: Any = None
        self._started = self._last_checkpoint = time.perf_counter()

    # ------------------------------------------------------------- the run directory
    def open(self, out: Path, resume: bool) -> None:
        """Take ``out`` for this run; with ``resume``, continue the run it holds."""
        run_file = out / RUN_FILE
        if run_file.exists():
            if not resume:
                raise EvoregError(
                    f"{out} already holds a run; pass resume=True (--resume) or another directory"
                )
            earlier = json.loads(run_file.read_text())
            changed = [
                key for key in self.description
                if key not in ("budget", "device") and earlier.get(key) != _plain(
                    self.description[key]
                )
            ]
            if changed:
                raise EvoregError(
                    f"cannot resume {out}: {', '.join(changed)} differ from the run it holds"
                )
        out.mkdir(parents=True, exist_ok=True)
        for abandoned in out.glob(".*.tmp"):  # temporaries of writes that a kill cut short
            abandoned.unlink()
        write_json(self.description, run_file)
        self.out = out
        if resume and (out / CHECKPOINT_FILE).exists():
            self._restore(load_checkpoint(out / CHECKPOINT_FILE))
        # Lines written after the last checkpoint belong to generations that are run again.
        with open(out / LOG_FILE, "w") as log_file:
            log_file.writelines(json.dumps(record) + "\n" for record in self.log)

    def _restore(self, checkpoint: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        self.problem.load_state_dict(checkpoint["problem"])
        self.generation, self.cost = checkpoint["generation"], checkpoint["cost"]
        self.elapsed = checkpoint["elapsed"]
        self.log = read_log(self.out)[: checkpoint["log_lines"]]

    def finished(self, budget: float) -> bool:
        return self.out is not None and (self.out / RESULT_FILE).exists() and self.cost >= budget

    def earlier_result(self) -> RunResult:
        """The result a finished run directory holds."""
        result = json.loads((self.out / RESULT_FILE).read_text())
        return RunResult(
            best_loss=result["best_loss"],
            recommendation=self.optimizer.recommend(),
            report=result["report"],
            generations=result["generations"],
            cost=result["cost"],
            wall_time=result["wall_time"],
            out_dir=self.out,
            log=self.log,
        )

    # ------------------------------------------------------------- during the loop
    @contextlib.contextmanager
    def outputs(self, budget: float, progress: bool | None):
        """The log file and the progress bar, open for the loop and closed after it."""
        show = sys.stderr.isatty() if progress is None else progress
        if show:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=budget, initial=self.cost,
                             unit=f" {self.problem.budget_unit}", dynamic_ncols=True)
        if self.out is not None:
            self._log_file = open(self.out / LOG_FILE, "a")  # noqa: SIM115
        self._started = time.perf_counter() - self.elapsed
        self._last_checkpoint = time.perf_counter()
        try:
            yield
        finally:
            for handle in (self._log_file, self._bar):
                if handle is not None:
                    handle.close()
            self._log_file = self._bar = None

    def record(self, evaluation: Evaluation) -> None:
        """Count the generation and write its line to the log."""
        self.generation += 1
        self.cost += float(evaluation.cost)
        self.elapsed = time.perf_counter() - self._started
        record = _record(self, evaluation)
        self.log.append(record)
        if self._log_file is not None:
            self._log_file.write(json.dumps(record) + "\n")
            self._log_file.flush()
        if self._bar is not None:
            self._bar.update(float(evaluation.cost))
            self._bar.set_postfix(best=f"{self.optimizer.best_loss:.4g}")

    def checkpoint_if_due(self) -> None:
        if self.out is None:
            return
        if self.checkpoint_every is not None:
            due = self.generation % self.checkpoint_every == 0
        else:
            due = time.perf_counter() - self._last_checkpoint >= self.checkpoint_seconds
        if due:
            self.checkpoint()

    def checkpoint(self) -> None:
        save_checkpoint(
            {
                "generation": self.generation,
                "cost": self.cost,
                "elapsed": self.elapsed,
                "log_lines": len(self.log),
                "optimizer": self.optimizer.state_dict(),
                "problem": self.problem.state_dict(),
            },
            self.out / CHECKPOINT_FILE,
        )
        self._last_checkpoint = time.perf_counter()

    # ------------------------------------------------------------- after the loop
    def finish(self, plot: bool, seed: int) -> RunResult:
        """The result: the recommendation's report, and the files of a run directory."""
        recommendation = self.optimizer.recommend()
        report = self.problem.report(recommendation) if recommendation is not None else {}
        result = RunResult(
            best_loss=self.optimizer.best_loss,
            recommendation=recommendation,
            report=report,
            generations=self.generation,
            cost=self.cost,
            wall_time=self.elapsed,
            out_dir=self.out,
            log=self.log,
        )
        if self.out is not None:
            self.checkpoint()
            write_json(
                {
                    **self.description,
                    "best_loss": result.best_loss,
                    "report": report,
                    "generations": result.generations,
                    "cost": result.cost,
                    "wall_time": result.wall_time,
                    "versions": versions(),
                    "machine": machine(),
                },
                self.out / RESULT_FILE,
            )
            if plot and self.log:
                from .plots import plot_convergence

                title = f"{self.problem.name} / {self.optimizer.name} (seed {seed})"
                plot_convergence(self.log, self.out / "convergence.png", title,
                                 self.problem.budget_unit)
        return result


def _record(session: _Session, evaluation: Evaluation) -> dict[str, Any]:
    losses = evaluation.losses.detach().float().cpu()
    finite = losses[torch.isfinite(losses)]
    record = {
        "generation": session.generation,
        "cost": session.cost,
        "best_loss": session.optimizer.best_loss,
        "loss_median": float(finite.median()) if len(finite) else float("inf"),
        "loss_min": float(losses.min()),
        "seconds": round(session.elapsed, 4),
    }
    for key, value in evaluation.info.items():
        record[key] = value.item() if hasattr(value, "item") else value
    return record


def _plain(value: Any) -> Any:
    return json.loads(json.dumps(value, default=repr))


def read_log(run_dir: Path) -> list[dict[str, Any]]:
    """The generation records of a run directory, up to a line cut by a kill."""
    path = Path(run_dir) / LOG_FILE
    records = []
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                break  # a line cut by a kill
    return records
