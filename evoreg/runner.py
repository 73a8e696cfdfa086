"""The ask/evaluate/tell loop, with a log of every generation, checkpoints and resume.

``out_dir`` receives ``run.json`` (what was run), ``log.jsonl`` (a line per generation),
``checkpoint.pt`` (written atomically every ``checkpoint_every`` generations, or by default
every ``checkpoint_seconds`` of wall time, and at the end), ``result.json`` and
``convergence.png``. ``resume=True`` continues a killed run from its last checkpoint; on
CPU with the same seed it ends exactly where an uninterrupted run ends, because the
optimizer's and the problem's random states are part of the checkpoint.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .checkpoint import load_checkpoint, save_checkpoint, write_json
from .config import config_fields
from .environment import machine, versions
from .errors import EvoregError
from .optimizer import Optimizer
from .problem import Problem
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
    if evaluator not in EVALUATORS:
        raise EvoregError(
            f"unknown evaluator {evaluator!r}; valid evaluators: {', '.join(EVALUATORS)}"
        )
    if not budget > 0:
        raise EvoregError(f"budget must be > 0, got {budget!r}")
    if checkpoint_every is not None and checkpoint_every < 1:
        raise EvoregError(f"checkpoint_every must be >= 1, got {checkpoint_every!r}")
    problem_seed, optimizer_seed = derive_seeds(seed)
    problem_name = problem if isinstance(problem, str) else None
    if isinstance(problem, str):
        problem = make_problem(problem, seed=problem_seed, device=device, **(problem_config or {}))
    if isinstance(optimizer, str):
        optimizer_config = dict(optimizer_config or {})
        entry_config = get_registry().get("optimizer", optimizer).config
        plans = entry_config is not None and "budget" in {
            f.name for f in config_fields(entry_config)
        }
        if plans and problem.budget_unit == "evaluations":
            # Optimizers that plan by their number of evaluations (nevergrad's NGOpt, say) get
            # the run's; a budget in other units (Atari frames) would mislead their choice.
            optimizer_config.setdefault("budget", int(budget))
        optimizer = make_optimizer(
            optimizer, problem.space, seed=optimizer_seed, device=device, **optimizer_config
        )
    if optimizer.needs_gradients and not problem.provides_gradients:
        raise EvoregError(
            f"{optimizer.name} is a gradient method and {problem.name} provides no gradients; "
            "problems that do: " + ", ".join(_gradient_problems())
        )
    if evaluator != "local" and optimizer.needs_gradients:
        raise EvoregError(
            f"{optimizer.name} is a gradient method; the {evaluator} evaluator returns no "
            "gradients (use evaluator='local')"
        )
    description = {
        "problem": problem.name,
        "problem_config": dataclasses.asdict(problem.config),
        "optimizer": optimizer.name,
        "optimizer_config": dataclasses.asdict(optimizer.config),
        "seed": seed,
        "budget": budget,
        "budget_unit": problem.budget_unit,
        "device": str(optimizer.device),
    }
    out = Path(out_dir) if out_dir is not None else None
    state = {"generation": 0, "cost": 0.0, "elapsed": 0.0}
    log: list[dict[str, Any]] = []
    if out is not None:
        state, log = _prepare_out_dir(out, description, resume, problem, optimizer)
        if (out / RESULT_FILE).exists() and state["cost"] >= budget:
            return _finished(out, optimizer, log)

    # The driver's problem stays the one checkpointed and reported; only scoring moves.
    distributed = None
    if evaluator == "ray":
        from .distributed import RayEvaluator

        options = {"address": ray_address, "num_workers": workers}
        if problem_name is not None:
            distributed = RayEvaluator(
                problem_name, problem_config, seed=problem_seed, device=device,
                problem=problem, **options,
            )
        else:
            distributed = RayEvaluator.from_problem(problem, **options)
    evaluate = problem.evaluate if distributed is None else distributed.evaluate

    show = sys.stderr.isatty() if progress is None else progress
    bar = _progress_bar(show, budget, problem.budget_unit, state["cost"])
    started = time.perf_counter() - state["elapsed"]
    last_checkpoint = time.perf_counter()
    log_file = open(out / LOG_FILE, "a") if out is not None else None  # noqa: SIM115
    try:
        while state["cost"] < budget:
            pop = optimizer.ask()
            if optimizer.needs_gradients:
                evaluation = problem.evaluate(pop, gradients=True)
                optimizer.tell(pop, evaluation.losses, gradients=evaluation.gradients)
            else:
                evaluation = evaluate(pop)
                optimizer.tell(pop, evaluation.losses)
            state["generation"] += 1
            state["cost"] += float(evaluation.cost)
            state["elapsed"] = time.perf_counter() - started
            record = _record(state, optimizer, evaluation)
            log.append(record)
            if log_file is not None:
                log_file.write(json.dumps(record) + "\n")
                log_file.flush()
            if bar is not None:
                bar.update(float(evaluation.cost))
                bar.set_postfix(best=f"{optimizer.best_loss:.4g}")
            due = (
                state["generation"] % checkpoint_every == 0
                if checkpoint_every is not None
                else time.perf_counter() - last_checkpoint >= checkpoint_seconds
            )
            if out is not None and due:
                _checkpoint(out, state, len(log), problem, optimizer)
                last_checkpoint = time.perf_counter()
    finally:
        if distributed is not None:
            distributed.close()
        if log_file is not None:
            log_file.close()
        if bar is not None:
            bar.close()

    recommendation = optimizer.recommend()
    report = problem.report(recommendation) if recommendation is not None else {}
    result = RunResult(
        best_loss=optimizer.best_loss,
        recommendation=recommendation,
        report=report,
        generations=state["generation"],
        cost=state["cost"],
        wall_time=state["elapsed"],
        out_dir=out,
        log=log,
    )
    if out is not None:
        _checkpoint(out, state, len(log), problem, optimizer)
        write_json(
            {
                **description,
                "best_loss": result.best_loss,
                "report": report,
                "generations": result.generations,
                "cost": result.cost,
                "wall_time": result.wall_time,
                "versions": versions(),
                "machine": machine(),
            },
            out / RESULT_FILE,
        )
        if plot and log:
            from .plots import plot_convergence

            title = f"{problem.name} / {optimizer.name} (seed {seed})"
            plot_convergence(log, out / "convergence.png", title, problem.budget_unit)
    return result


def _gradient_problems() -> list[str]:
    entries = get_registry().entries["problem"].values()
    names = [e.name for e in entries if getattr(e.factory, "provides_gradients", False)]
    return sorted(names) or ["none registered"]


def _record(state: dict[str, Any], optimizer: Optimizer, evaluation: Any) -> dict[str, Any]:
    losses = evaluation.losses.detach().float().cpu()
    finite = losses[torch.isfinite(losses)]
    record = {
        "generation": state["generation"],
        "cost": state["cost"],
        "best_loss": optimizer.best_loss,
        "loss_median": float(finite.median()) if len(finite) else float("inf"),
        "loss_min": float(losses.min()),
        "seconds": round(state["elapsed"], 4),
    }
    for key, value in evaluation.info.items():
        record[key] = value.item() if hasattr(value, "item") else value
    return record


def _checkpoint(out: Path, state: dict, log_lines: int, problem: Problem, opt: Optimizer) -> None:
    save_checkpoint(
        {
            **state,
            "log_lines": log_lines,
            "optimizer": opt.state_dict(),
            "problem": problem.state_dict(),
        },
        out / CHECKPOINT_FILE,
    )


def _prepare_out_dir(
    out: Path, description: dict, resume: bool, problem: Problem, optimizer: Optimizer
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    run_file = out / RUN_FILE
    if run_file.exists():
        if not resume:
            raise EvoregError(
                f"{out} already holds a run; pass resume=True (--resume) or another directory"
            )
        earlier = json.loads(run_file.read_text())
        changed = [
            key for key in description
            if key not in ("budget", "device") and earlier.get(key) != _plain(description[key])
        ]
        if changed:
            raise EvoregError(
                f"cannot resume {out}: {', '.join(changed)} differ from the run it holds"
            )
    out.mkdir(parents=True, exist_ok=True)
    for abandoned in out.glob(".*.tmp"):  # temporaries of writes that a kill cut short
        abandoned.unlink()
    write_json(description, run_file)
    state = {"generation": 0, "cost": 0.0, "elapsed": 0.0}
    log: list[dict[str, Any]] = []
    checkpoint_path = out / CHECKPOINT_FILE
    if resume and checkpoint_path.exists():
        checkpoint = load_checkpoint(checkpoint_path)
        optimizer.load_state_dict(checkpoint["optimizer"])
        problem.load_state_dict(checkpoint["problem"])
        state = {key: checkpoint[key] for key in ("generation", "cost", "elapsed")}
        log = read_log(out)[: checkpoint["log_lines"]]
    # Lines written after the last checkpoint belong to generations that are run again.
    with open(out / LOG_FILE, "w") as log_file:
        log_file.writelines(json.dumps(record) + "\n" for record in log)
    return state, log


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


def _finished(out: Path, optimizer: Optimizer, log: list[dict[str, Any]]) -> RunResult:
    result = json.loads((out / RESULT_FILE).read_text())
    return RunResult(
        best_loss=result["best_loss"],
        recommendation=optimizer.recommend(),
        report=result["report"],
        generations=result["generations"],
        cost=result["cost"],
        wall_time=result["wall_time"],
        out_dir=out,
        log=log,
    )


def _progress_bar(show: bool, budget: float, unit: str, done: float):
    if not show:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=budget, initial=done, unit=f" {unit}", dynamic_ncols=True)
