"""The ask/evaluate/tell loop, with a log of every generation, checkpoints and resume.

``out_dir`` receives ``run.json`` (what was run), ``log.jsonl`` (a line per generation),
``checkpoint.pt`` (written atomically every ``checkpoint_every`` generations, or by default
every ``checkpoint_seconds`` of wall time, on SIGINT/SIGTERM, and at the end),
``result.json`` and ``convergence.png``. ``resume=True`` continues a killed run from its last
checkpoint; on CPU with the same seed it ends exactly where an uninterrupted run ends,
because the optimizer's and the problem's random states are part of the checkpoint.

A run directory is held by one process at a time (``DIR/.lock``). Its files are written
once the first generation has been scored, so a run that fails to start leaves nothing to
refuse a corrected retry. Checkpoints are data (see :mod:`evoreg.checkpoint`): they carry
the run's identity, which a resume must match, and a checksum. The log is fsynced before
each checkpoint; on resume the lines after the checkpoint's count, whose generations run
again, are moved to ``log.superseded.jsonl`` rather than deleted.

``run`` sets up (``_build``, ``_open``), runs ``_loop`` and writes the outputs (``_finish``);
``_loop`` is the algorithm itself, the same for every optimizer and problem.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import signal
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import statecodec
from .checkpoint import exclusive_lock, load_checkpoint, save_checkpoint, write_json
from .environment import machine, versions
from .errors import EvoregError, RunInterrupted
from .optimizer import Optimizer
from .problem import Evaluation, Problem
from .registry import get_registry, make_optimizer, make_problem, provenance

RUN_FILE, LOG_FILE, CHECKPOINT_FILE, RESULT_FILE = (
    "run.json",
    "log.jsonl",
    "checkpoint.pt",
    "result.json",
)
#: Where resume puts the log lines of generations that run again.
SUPERSEDED_LOG_FILE = "log.superseded.jsonl"
#: What a resumed run must share with the checkpoint it continues.
IDENTITY_KEYS = ("problem", "problem_config", "optimizer", "optimizer_config", "seed",
                 "budget_unit")

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
    trust_checkpoint: bool = False,
) -> RunResult:
    """Minimise ``problem`` with ``optimizer`` until ``budget`` (in the problem's unit) is used.

    ``problem`` and ``optimizer`` are registered names (built here with seeds derived from
    ``seed`` by ``derive_seeds``, and ``device``) or ready objects. When the problem knows
    what a candidate costs (``Problem.candidate_cost``: 1 per evaluation, ``architecture``'s
    epochs per candidate) the run does not pass its budget: the last generation asks only
    what the budget leaves, and an optimizer without ``smaller_ask`` (leea, openai-es) stops
    before a generation the budget cannot pay for in full (a budget below one generation is
    refused). When it does not (atari's frames, known once the episodes end) generations
    are whole and the last may pass the budget; ``RunResult.cost`` says by how much.
    Checkpoints are written every ``checkpoint_every`` generations when it is given, else
    whenever ``checkpoint_seconds`` have passed: an optimizer with a large state (nevergrad's
    archive grows with every candidate) would otherwise spend its time saving.
    ``evaluator="ray"`` scores each generation on ``workers`` Ray actors (default: one per
    CPU) of the cluster at ``ray_address`` ("auto", "host:port"; None starts a local Ray),
    with the same result as ``"local"`` (see :mod:`evoreg.distributed`).
    ``trust_checkpoint`` loads a checkpoint's pickled state (nevergrad's optimizers) even
    when another user saved it: only for files from someone you trust.
    SIGINT and SIGTERM stop the run after the current generation, with a checkpoint, and
    raise ``RunInterrupted``.
    """
    _check_settings(budget, evaluator, checkpoint_every, seed)
    problem_name = problem if isinstance(problem, str) else None
    problem, optimizer = _build(
        problem, optimizer, seed, device, problem_config, optimizer_config
    )
    optimizer.plan(budget, problem.budget_unit)
    _check_pairing(problem, optimizer, evaluator)
    session = _Session(problem, optimizer, _describe(problem, optimizer, seed, budget),
                       checkpoint_every, checkpoint_seconds)
    with contextlib.ExitStack() as held:
        if out_dir is not None:
            held.enter_context(exclusive_lock(out_dir, "run"))
            session.open(Path(out_dir), resume, trust_checkpoint)
            if session.finished(budget):
                return session.earlier_result()
        session.check_budget(budget)
        ray = ({"address": ray_address, "num_workers": workers} if evaluator == "ray"
               else None)
        with _scoring(problem, problem_name, problem_config, device, ray) as evaluate, \
                session.outputs(budget, progress), _stop_on_signals() as stop:
            _loop(session, evaluate, budget, stop)
        return session.finish(plot, seed)


def _loop(
    session: _Session,
    evaluate: Callable[..., Evaluation],
    budget: float,
    stop: list[int] | None = None,
) -> None:
    """The run itself: ask, evaluate, tell, record, checkpoint, until the budget is used
    or a signal asked to ``stop`` (the signal's number is put in the list)."""
    optimizer = session.optimizer
    while (size := session.next_ask(budget)) is not None:
        pop = optimizer.ask(size)
        evaluation = evaluate(pop, **optimizer.evaluate_with)
        optimizer.tell(pop, evaluation)
        session.record(evaluation)
        if stop:
            session.stop(stop[0])
        session.checkpoint_if_due()


@contextlib.contextmanager
def _stop_on_signals() -> Iterator[list[int]]:
    """While the loop runs, SIGINT and SIGTERM ask it to stop after the current generation
    (a second one acts as usual: Ctrl-C twice stops at once). Signals can only be handled
    in the main thread; elsewhere they keep their usual effect."""
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return
    previous = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}

    def handle(signum: int, frame: Any) -> None:
        if not received:
            received.append(signum)
            print(f"evoreg: {signal.Signals(signum).name}: stopping after this generation "
                  "to save a checkpoint (send it again to stop at once)", file=sys.stderr)
        signal.signal(signum, previous[signum])

    for signum in previous:
        signal.signal(signum, handle)
    try:
        yield received
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


# --------------------------------------------------------------------------- setting up
def _check_settings(
    budget: float, evaluator: str, checkpoint_every: int | None, seed: int
) -> None:
    if evaluator not in EVALUATORS:
        raise EvoregError(
            f"unknown evaluator {evaluator!r}; valid evaluators: {', '.join(EVALUATORS)}"
        )
    if isinstance(budget, bool) or not isinstance(budget, (int, float)):
        raise EvoregError(f"budget must be a number, got {budget!r}")
    if not math.isfinite(budget) or not budget > 0:
        # An infinite budget would run until killed, writing log lines all the while.
        raise EvoregError(f"budget must be > 0 and finite, got {budget!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise EvoregError(f"seed must be an int >= 0, got {seed!r}")
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
        # Which installed package provided each: a plugin could otherwise pass for another.
        "provenance": {"problem": _provenance("problem", problem),
                       "optimizer": _provenance("optimizer", optimizer)},
    }


def _provenance(kind: str, built: Problem | Optimizer) -> dict[str, Any]:
    """The distribution that registered ``built``'s name, if its class is the one there."""
    entry = get_registry().entries[kind].get(built.name)
    if entry is None or (isinstance(entry.factory, type) and not isinstance(built, entry.factory)):
        return {"distribution": None, "version": None, "plugin": None,
                "class": f"{type(built).__module__}.{type(built).__qualname__}"}
    return provenance(kind, built.name)


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
        self._files_started = False
        self._log_keep: int | None = None  # bytes of the log that resume keeps
        self._started = self._last_checkpoint = time.perf_counter()

    # ------------------------------------------------------------- the run directory
    def open(self, out: Path, resume: bool, trust_checkpoint: bool = False) -> None:
        """Take ``out`` (whose lock the caller holds) for this run; with ``resume``,
        continue the run it holds. Reads only: nothing is written until the first
        generation has been scored (``_start_files``)."""
        held = [name for name in (RUN_FILE, CHECKPOINT_FILE, LOG_FILE) if (out / name).exists()]
        if held and not resume:
            raise EvoregError(
                f"{out} already holds a run ({', '.join(held)}); pass resume=True (--resume) "
                "or another directory"
            )
        self.out = out
        for abandoned in out.glob(".*.tmp"):  # temporaries of writes that a kill cut short
            abandoned.unlink()
        if (out / RUN_FILE).exists():
            self._check_identity(read_json(out / RUN_FILE, "run"), RUN_FILE)
        if (out / CHECKPOINT_FILE).exists():
            checkpoint = load_checkpoint(out / CHECKPOINT_FILE, trust=trust_checkpoint,
                                         device=self.optimizer.device)
            if not isinstance(checkpoint, dict) or "identity" not in checkpoint:
                raise EvoregError(f"{out / CHECKPOINT_FILE} is not a run's checkpoint")
            self._check_identity(checkpoint["identity"], CHECKPOINT_FILE)
            _warn_of_other_versions(checkpoint["identity"].get("versions"), out)
            self._restore(checkpoint)
        else:
            self._log_keep = 0
            self.log = []

    def _check_identity(self, earlier: Any, source: str) -> None:
        if not isinstance(earlier, dict):
            raise EvoregError(f"cannot resume {self.out}: {source} does not describe a run")
        changed = [
            f"{key} {_short(earlier.get(key))} -> {_short(self.description[key])}"
            for key in IDENTITY_KEYS if earlier.get(key) != _plain(self.description[key])
        ]
        if changed:
            raise EvoregError(
                f"cannot resume {self.out}: this run differs from the one its {source} "
                f"holds ({'; '.join(changed)})"
            )

    def _restore(self, checkpoint: dict[str, Any]) -> None:
        try:
            self.optimizer.load_state_dict(checkpoint["optimizer"])
            self.problem.load_state_dict(statecodec.revive(checkpoint["problem"]))
            self.generation, self.cost = checkpoint["generation"], checkpoint["cost"]
            self.elapsed, lines = checkpoint["elapsed"], checkpoint["log_lines"]
        except (KeyError, TypeError, ValueError, RuntimeError) as error:
            if isinstance(error, EvoregError):
                raise
            raise EvoregError(
                f"{self.out / CHECKPOINT_FILE} does not hold a state this run can continue "
                f"({type(error).__name__}: {error})"
            ) from None
        self.log, self._log_keep = _checked_log(self.out, lines)

    def finished(self, budget: float) -> bool:
        return (self.out is not None and (self.out / RESULT_FILE).exists()
                and self.next_ask(budget) is None)

    def next_ask(self, budget: float) -> int | None:
        """How many candidates the next generation asks, or None when the run is over.

        A whole generation (``default_popsize``) while the budget pays for it. Then, on a
        problem that knows what a candidate costs, what the budget leaves for an optimizer
        with ``smaller_ask``, and nothing for the others. On a problem that does not, a whole
        generation until the budget is used (the last one may pass it)."""
        left = budget - self.cost
        if left <= 0:
            return None
        size = self.optimizer.default_popsize
        per_candidate = self.problem.candidate_cost
        if per_candidate is None:
            return size
        # floor, forgiving the rounding of a float budget (0.3 / 0.1 is 2.9999999999999996)
        affordable = math.floor(left / per_candidate + 1e-9)
        if affordable >= size:
            return size
        if affordable >= 1 and self.optimizer.smaller_ask:
            return affordable
        return None

    def check_budget(self, budget: float) -> None:
        """Refuse, before anything is written, a run whose budget cannot pay for its first
        generation (an optimizer without ``smaller_ask`` whose generation costs more)."""
        if self.generation == 0 and self.next_ask(budget) is None:
            optimizer, problem = self.optimizer, self.problem
            size, unit = optimizer.default_popsize, problem.budget_unit
            per_candidate = problem.candidate_cost or 1.0
            if optimizer.smaller_ask or size == 1:
                raise EvoregError(
                    f"one candidate of {problem.name} costs {per_candidate:g} {unit} and the "
                    f"budget of {budget:g} {unit} does not pay for one: raise the budget to at "
                    f"least {per_candidate:g}"
                )
            cost = size * per_candidate
            raise EvoregError(
                f"{optimizer.name} evaluates whole generations of {size} candidates "
                f"({cost:g} {unit}) and the budget of {budget:g} {unit} does not pay for one: "
                f"raise the budget to at least {cost:g}, or lower popsize"
            )

    def earlier_result(self) -> RunResult:
        """The result a finished run directory holds."""
        result = read_json(self.out / RESULT_FILE, "result")
        try:
            return RunResult(
                best_loss=float(result["best_loss"]),
                recommendation=self.optimizer.recommend(),
                report=dict(result["report"]),
                generations=int(result["generations"]),
                cost=float(result["cost"]),
                wall_time=float(result["wall_time"]),
                out_dir=self.out,
                log=self.log,
            )
        except (KeyError, TypeError, ValueError):
            raise EvoregError(
                f"{self.out / RESULT_FILE} is damaged; move it away and resume to write it "
                "again from the checkpoint"
            ) from None

    def _start_files(self) -> None:
        """Write ``run.json`` and set the log to the checkpoint's lines: done when the run
        is known to start (its first generation scored) or to be finished."""
        if self.out is None or self._files_started:
            return
        self._files_started = True
        write_json(self.description, self.out / RUN_FILE)
        path = self.out / LOG_FILE
        if path.exists() and path.stat().st_size > (self._log_keep or 0):
            with open(path, "rb") as log_file:
                log_file.seek(self._log_keep or 0)
                superseded = log_file.read()
            if superseded.strip():
                if not superseded.endswith(b"\n"):
                    superseded += b"\n"  # a line cut by a kill stays a line of its own
                with open(self.out / SUPERSEDED_LOG_FILE, "ab") as kept:
                    kept.write(superseded)
                    kept.flush()
                    os.fsync(kept.fileno())
            os.truncate(path, self._log_keep or 0)
        self._log_file = open(path, "a")  # noqa: SIM115 - closed by outputs()

    # ------------------------------------------------------------- during the loop
    @contextlib.contextmanager
    def outputs(self, budget: float, progress: bool | None):
        """The log file and the progress bar, open for the loop and closed after it."""
        show = sys.stderr.isatty() if progress is None else progress
        if show:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=budget, initial=self.cost,
                             unit=f" {self.problem.budget_unit}", dynamic_ncols=True)
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
        self._start_files()
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
        self._start_files()
        if self._log_file is not None:
            # The checkpoint counts log lines: they must be on disk before it is.
            self._log_file.flush()
            os.fsync(self._log_file.fileno())
        save_checkpoint(
            {
                "identity": {**_plain(self.description), "versions": versions()},
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

    def stop(self, signum: int) -> None:
        """Save what a resume needs and raise ``RunInterrupted`` (a signal arrived)."""
        name = signal.Signals(signum).name
        where = f"generation {self.generation}"
        if self.out is None:
            raise RunInterrupted(signum, f"{name}: stopped after {where}; nothing was saved "
                                         "(the run has no out_dir)")
        self.checkpoint()
        raise RunInterrupted(
            signum, f"{name}: stopped after {where}; checkpoint saved in {self.out}: run the "
                    "same command with --resume to continue"
        )

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
            if self._log_file is not None:
                self._log_file.close()
                self._log_file = None
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
    losses = evaluation.losses.detach().double().cpu()  # float32 would turn 1e300 into inf
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


def _warn_of_other_versions(saved: Any, out: Path) -> None:
    """A resume with other versions of the packages that draw and compute may not end
    where an uninterrupted run would: say so (it still runs)."""
    if not isinstance(saved, dict):
        return
    now = versions()
    changed = [f"{name} {saved[name]} -> {now.get(name)}" for name in ("evoreg", "torch",
               "numpy", "nevergrad") if name in saved and saved[name] != now.get(name)]
    if changed:
        warnings.warn(
            f"{out} was checkpointed with other versions ({', '.join(changed)}): the resumed "
            "run continues, but may not match an uninterrupted one exactly",
            RuntimeWarning, stacklevel=4,
        )


def _short(value: Any) -> str:
    text = json.dumps(value, default=repr)
    return text if len(text) <= 60 else text[:57] + "..."


def read_json(path: Path, what: str) -> Any:
    """A JSON file of a run directory, or one line saying it is damaged."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as error:
        raise EvoregError(f"{path} is damaged ({type(error).__name__}); it should hold the "
                          f"{what}'s JSON") from None


def _checked_log(run_dir: Path, lines: int) -> tuple[list[dict[str, Any]], int]:
    """The first ``lines`` records of the log (what the checkpoint counts) and their size in
    bytes; one line of refusal, with nothing changed, when they are not all there."""
    path = Path(run_dir) / LOG_FILE
    data = path.read_bytes() if path.exists() else b""
    records, offset = [], 0
    for number in range(1, lines + 1):
        end = data.find(b"\n", offset)
        if end < 0:
            raise EvoregError(
                f"cannot resume {run_dir}: {LOG_FILE} holds {number - 1} whole lines and the "
                f"checkpoint counts {lines}; restore the log from a copy or start again "
                "(nothing was changed)"
            )
        try:
            record = json.loads(data[offset:end])
            if not isinstance(record, dict):
                raise ValueError("not a record")
        except (ValueError, UnicodeDecodeError):
            raise EvoregError(
                f"cannot resume {run_dir}: line {number} of {LOG_FILE} is damaged and the "
                f"checkpoint counts {lines} lines; restore the log from a copy or start again "
                "(nothing was changed)"
            ) from None
        records.append(record)
        offset = end + 1
    return records, offset


def read_log(run_dir: Path) -> list[dict[str, Any]]:
    """The generation records of a run directory, up to a line cut by a kill."""
    path = Path(run_dir) / LOG_FILE
    records = []
    if path.exists():
        for line in path.read_text(errors="replace").splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                break  # a line cut by a kill
    return records
