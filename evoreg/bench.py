"""A benchmark grid: problems x optimizers x seeds from a TOML file, resumable.

``bench(config, out_dir)`` (``evoreg bench CONFIG.toml --out DIR``) runs every cell of the
grid with ``evoreg.run`` into ``DIR/<problem-label>/<optimizer-label>/seed<k>`` and writes
the summary table (per problem and optimizer: n, median best loss, first and third
quartiles, median wall time per cell, budget and cost used, the significantly best) to
``DIR/summary.md``, the pairwise tests, average ranks and win rates to
``DIR/statistics.md``, all of it with every cell to ``DIR/summary.json``, and one row per
cell to ``DIR/runs.csv`` (see :mod:`evoreg.report`; ``evoreg report DIR`` adds the plots).
``workers=N`` (``--workers N``) runs N cells at a time in separate processes.

The config file::

    budget = 2000            # per cell, in each problem's unit (evaluations, frames...)
    seeds = [0, 1, 2]        # integers >= 0, or a count: seeds = 3 means 0, 1, 2
    device = "cpu"           # optional: "auto" (default), "cpu", "cuda", "cuda:1"
    checkpoint_every = 10    # optional: generations between checkpoints (default: every 30 s)

    [[problem]]
    name = "sphere"          # a registered problem (`evoreg list problems`)
    dim = 30                 # every other key is one of its hyperparameters

    [[problem]]
    name = "rastrigin"
    budget = 5000            # optional: this problem's own budget (its unit may differ)

    [[optimizer]]
    name = "random-search"   # a registered optimizer (`evoreg list optimizers`)

    [[optimizer]]
    name = "random-search"
    label = "random-search-256"   # labels tell apart two configs of one optimizer
    popsize = 256

In a ``[[problem]]`` or ``[[optimizer]]`` table, ``name`` is required, ``label`` defaults
to the name and must be unique among the tables of its kind, and ``budget`` (problems
only) overrides the top-level budget; every other key is a hyperparameter (see
``evoreg info NAME``). Names, labels, seeds, budgets, the device and hyperparameters are
all checked before anything is written into ``out_dir``, so a corrected retry of a refused
grid needs no ``--resume``.

Resuming (``resume=True``, ``--resume``): a cell whose ``result.json`` reached the budget is
skipped; any other cell continues from its checkpoint (or starts again if it has none), so
a killed bench picks up where it stopped and raising ``budget`` extends finished cells.
Without ``resume`` a non-empty ``out_dir`` is refused, so results are never mixed. A cell
whose ``result.json`` (or, when finished, ``run.json``) is damaged is refused in one line
that says which files to move away; nothing is deleted. One bench at a time holds
``out_dir`` (the lock file ``out_dir/.lock``): a second is refused in one line.

A cell that raises stops the bench, unless ``keep_going=True`` (``--keep-going``): then its
traceback goes to the cell's ``error.txt``, its record says ``"status": "failed"``, the
other cells run, and a later ``--resume`` tries it again.
"""

from __future__ import annotations

import dataclasses
import math
import os
import traceback
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from .checkpoint import LOCK_FILE, exclusive_lock, write_json
from .config import make_config
from .devices import resolve_device
from .errors import EvoregError, unknown_name
from .registry import get_registry
from .report import (
    BENCH_FILE,
    ERROR_FILE,
    DamagedFileError,
    read_cell,
    read_result,
    summarize,
    write_summary,
)
from .runner import CHECKPOINT_FILE, RESULT_FILE, run

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

SETTINGS = ("budget", "seeds", "device", "checkpoint_every", "problem", "optimizer")
RESERVED = {"problem": ("name", "label", "budget"), "optimizer": ("name", "label")}

#: Called after each cell with (index from 1, number of cells, the cell's record).
Progress = Callable[[int, int, dict[str, Any]], None]


@dataclasses.dataclass(frozen=True)
class Arm:
    """One ``[[problem]]`` or ``[[optimizer]]`` table."""

    label: str
    name: str
    config: dict[str, Any]
    budget: float | None = None


@dataclasses.dataclass(frozen=True)
class Grid:
    budget: float | None
    seeds: list[int]
    device: str
    checkpoint_every: int | None
    problems: list[Arm]
    optimizers: list[Arm]

    def cells(self) -> Iterator[tuple[Arm, Arm, int]]:
        for problem in self.problems:
            for optimizer in self.optimizers:
                for seed in self.seeds:
                    yield problem, optimizer, seed

    def budget_of(self, problem: Arm) -> float:
        budget = problem.budget if problem.budget is not None else self.budget
        assert budget is not None  # load_grid guarantees one of the two
        return budget


# --------------------------------------------------------------------------- loading
def load_grid(source: str | os.PathLike | Mapping[str, Any]) -> Grid:
    """Read and check a bench config (a TOML file or the same content as a dict)."""
    if isinstance(source, Mapping):
        return parse_grid(source)
    path = Path(source)
    if path.is_dir():
        raise EvoregError(f"bench config {path} is a directory; give a TOML file (evoreg.bench)")
    if not path.is_file():
        raise EvoregError(f"bench config {path} not found; give a TOML file (see evoreg.bench)")
    try:
        data = tomllib.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as error:  # TOML is UTF-8 by definition
        raise EvoregError(f"{path} is not UTF-8 text, so not TOML: {error}") from None
    except tomllib.TOMLDecodeError as error:
        raise EvoregError(f"{path} is not valid TOML: {error}") from None
    try:
        return parse_grid(data)
    except EvoregError as error:
        raise EvoregError(f"{path}: {error}") from None


def parse_grid(data: Mapping[str, Any]) -> Grid:
    for key in data:
        if key not in SETTINGS:
            raise unknown_name("bench setting", key, SETTINGS)
    problems = _arms(data, "problem")
    budget = data.get("budget")
    if budget is not None or any(arm.budget is None for arm in problems):
        budget = _positive_number("budget", budget)
    checkpoint_every = data.get("checkpoint_every")
    if checkpoint_every is not None and (not _is_int(checkpoint_every) or checkpoint_every < 1):
        raise EvoregError(f"checkpoint_every must be an integer >= 1, got {checkpoint_every!r}")
    device = data.get("device", "auto")
    if not isinstance(device, str):
        raise EvoregError(f"device must be a string such as \"auto\" or \"cpu\", got {device!r}")
    resolve_device(device)  # a typo, or cuda on a machine without, before any cell runs
    return Grid(
        budget=budget,
        seeds=_seeds(data.get("seeds", 1)),
        device=device,
        checkpoint_every=checkpoint_every,
        problems=problems,
        optimizers=_arms(data, "optimizer"),
    )


def _arms(data: Mapping[str, Any], kind: str) -> list[Arm]:
    tables = data.get(kind)
    if isinstance(tables, Mapping):
        tables = [tables]  # a single [problem] table instead of [[problem]]
    if not tables or not isinstance(tables, list):
        raise EvoregError(f"no [[{kind}]] tables; add at least one with name = \"...\"")
    arms = [_arm(kind, table) for table in tables]
    seen: set[str] = set()
    for arm in arms:
        if arm.label in seen:
            raise EvoregError(
                f"two [[{kind}]] tables are labelled {arm.label!r}; give each a distinct label"
            )
        seen.add(arm.label)
    return arms


def _arm(kind: str, table: Any) -> Arm:
    if not isinstance(table, Mapping) or not isinstance(table.get("name"), str):
        raise EvoregError(f"each [[{kind}]] table needs name = \"...\" (a registered {kind})")
    name = table["name"]
    entry = get_registry().get(kind, name)  # an unknown name lists close matches
    label = table.get("label", name)
    if not _directory_name(label):
        raise EvoregError(f"[[{kind}]] label {label!r} must be usable as a directory name")
    config = {key: value for key, value in table.items() if key not in RESERVED[kind]}
    if dataclasses.is_dataclass(entry.config):
        make_config(entry.config, f"{kind} {label!r}", config)  # fail now, not mid-bench
    budget = table.get("budget")
    if budget is not None:
        budget = _positive_number(f"budget of {kind} {label!r}", budget)
    return Arm(label=label, name=name, config=config, budget=budget)


def _directory_name(label: Any) -> bool:
    """A name that makes one directory level on any common file system."""
    return (
        isinstance(label, str)
        and label not in ("", ".", "..")
        and not any(char in label for char in "/\\\0")
        and len(label.encode("utf-8", "surrogatepass")) <= 255
    )


def _seeds(value: Any) -> list[int]:
    # Run seeds are >= 0: numpy's SeedSequence, which derives the problem's and the
    # optimizer's seeds from them, refuses negative ones.
    if _is_int(value) and value >= 1:
        return list(range(value))
    if isinstance(value, list) and value and all(_is_int(seed) and seed >= 0 for seed in value):
        if len(set(value)) == len(value):
            return list(value)
    raise EvoregError(
        f"seeds must be a list of distinct integers >= 0 such as [0, 1, 2] or a count such as "
        f"3, got {value!r}"
    )


def _positive_number(what: str, value: Any) -> float:
    # TOML has inf and nan: a budget of inf would run a cell forever.
    if (isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0
            and math.isfinite(value)):
        return value
    raise EvoregError(
        f"{what} must be a finite number > 0 (in the problem's unit), got {value!r}"
    )


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# --------------------------------------------------------------------------- running
def bench(
    config: str | os.PathLike | Mapping[str, Any],
    out_dir: str | os.PathLike,
    resume: bool = False,
    progress: Progress | None = None,
    keep_going: bool = False,
    trust_checkpoint: bool = False,
    workers: int = 1,
) -> list[dict[str, Any]]:
    """Run the grid of ``config`` into ``out_dir``; return the summary rows.

    Each row is one (problem, optimizer) pair: ``problem``, ``optimizer`` (labels), ``n``,
    ``median``, ``q1``, ``q3`` (of the best loss over seeds), ``median_wall_time`` (seconds
    per cell), ``budget_unit``, ``seeds``, ``budgets`` and ``costs`` (each cell's budget and
    the cost it actually used), ``best`` (significantly better than every other optimizer
    on the problem) and ``report`` (medians of the numeric held-out figures).
    ``out_dir/summary.json`` also holds the statistics and every cell, ``statistics.md``
    the tests, ranks and win rates, and ``runs.csv`` one row per cell (see
    :mod:`evoreg.report`). ``trust_checkpoint`` loads cells' pickled checkpoint state that
    another user saved (see ``evoreg.run``).

    ``workers`` > 1 runs that many cells at a time, each in its own process (spawned, so
    no state is inherited); a cell's result depends only on its seed and config, not on
    which process ran it or when. Each process gets ``cpu_count // workers`` torch threads
    (at least 1), so the workers do not oversubscribe the cores.
    """
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise EvoregError(f"workers must be an integer >= 1, got {workers!r}")
    # Everything is checked before anything is written into out_dir: a refused grid leaves
    # no bench.json behind that would make the corrected retry need --resume.
    grid = load_grid(config)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise EvoregError(f"{out} is a file; give a directory for the bench")
    # One bench per directory: a second one (two --resume, say) is refused in one line
    # instead of running the same cells at once.
    with exclusive_lock(out, "bench"):
        _check_out_dir(out, resume)
        write_json(dataclasses.asdict(grid), out / BENCH_FILE)
        cells = list(grid.cells())
        run_all = _run_parallel if workers > 1 and len(cells) > 1 else _run_in_turn
        records = run_all(grid, cells, out, resume, trust_checkpoint, keep_going, progress,
                          workers)
        rows = summarize(records)
        write_summary(out, rows, records)
    return rows


Cell = tuple[Arm, Arm, int]


def _cell_record(
    grid: Grid, cell: Cell, out: Path, resume: bool, trust_checkpoint: bool, keep_going: bool
) -> dict[str, Any]:
    """Run one cell; with ``keep_going`` a failure becomes a failed record (its traceback in
    the cell's error.txt) instead of an exception."""
    problem, optimizer, seed = cell
    try:
        return _run_cell(grid, problem, optimizer, seed, out, resume, trust_checkpoint)
    except Exception as error:
        if not keep_going:
            raise
        return _failed_cell(problem, optimizer, seed, out, error)


def _run_in_turn(
    grid: Grid, cells: list[Cell], out: Path, resume: bool, trust_checkpoint: bool,
    keep_going: bool, progress: Progress | None, workers: int,
) -> list[dict[str, Any]]:
    records = []
    for index, cell in enumerate(cells, 1):
        records.append(_cell_record(grid, cell, out, resume, trust_checkpoint, keep_going))
        if progress is not None:
            progress(index, len(cells), records[-1])
    return records


def _run_parallel(
    grid: Grid, cells: list[Cell], out: Path, resume: bool, trust_checkpoint: bool,
    keep_going: bool, progress: Progress | None, workers: int,
) -> list[dict[str, Any]]:
    """The cells on ``workers`` processes; records in grid order, progress as they end.

    Spawned, not forked: a forked child would inherit torch's thread pool and the parent's
    open files, and spawning is what macOS and Windows do anyway. A failing cell (without
    ``keep_going``) lets the running cells finish (their directories stay resumable),
    cancels the others and raises its error.
    """
    import concurrent.futures
    import multiprocessing

    threads = max(1, (os.cpu_count() or 1) // workers)
    records: dict[int, dict[str, Any]] = {}
    with concurrent.futures.ProcessPoolExecutor(
        max_workers=min(workers, len(cells)),
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_start_worker,
        initargs=(threads,),
    ) as pool:
        futures = {
            pool.submit(_cell_record, grid, cell, out, resume, trust_checkpoint, keep_going):
            index for index, cell in enumerate(cells)
        }
        try:
            for done, future in enumerate(concurrent.futures.as_completed(futures), 1):
                records[futures[future]] = future.result()
                if progress is not None:
                    progress(done, len(cells), records[futures[future]])
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise
    return [records[index] for index in range(len(cells))]


def _start_worker(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def cell_dir(out: Path, problem: Arm, optimizer: Arm, seed: int) -> Path:
    return out / problem.label / optimizer.label / f"seed{seed}"


def _check_out_dir(out: Path, resume: bool) -> None:
    # The lock file does not count: it is left by every bench, even one refused at once.
    if not resume and any(path.name != LOCK_FILE for path in out.iterdir()):
        raise EvoregError(
            f"{out} is not empty; pass --resume (resume=True) to continue the bench it holds, "
            "or choose another directory"
        )


def _run_cell(
    grid: Grid,
    problem: Arm,
    optimizer: Arm,
    seed: int,
    out: Path,
    resume: bool,
    trust_checkpoint: bool = False,
) -> dict[str, Any]:
    where = cell_dir(out, problem, optimizer, seed)
    budget = grid.budget_of(problem)
    try:
        finished = resume and _finished_budget(where) >= budget
    except DamagedFileError as error:
        raise _damaged(where, out, error, "move it away") from None
    if finished:
        status = "skipped"
    else:
        status = "resumed" if resume and (where / CHECKPOINT_FILE).exists() else "ran"
        try:
            run(
                problem.name,
                optimizer.name,
                budget,
                seed=seed,
                out_dir=where,
                checkpoint_every=grid.checkpoint_every,
                resume=resume,
                device=grid.device,
                problem_config=problem.config,
                optimizer_config=optimizer.config,
                progress=False,
                trust_checkpoint=trust_checkpoint,
            )
        except EvoregError as error:
            raise EvoregError(f"cell {where.relative_to(out)}: {error}") from error
        (where / ERROR_FILE).unlink(missing_ok=True)  # from an earlier failed attempt
    try:
        record = read_cell(where, out)
    except DamagedFileError as error:  # run.json of a skipped cell
        # Without run.json a cell with a result.json would be skipped again.
        raise _damaged(where, out, error, f"move it and {RESULT_FILE} away") from None
    record["status"] = status
    return record


def _damaged(where: Path, out: Path, error: DamagedFileError, remedy: str) -> EvoregError:
    # Refused, not run over: the runner would read the file again when it resumes the
    # cell, and the file is the user's to look at.
    return EvoregError(
        f"cell {where.relative_to(out)}: {error}; {remedy} and run the bench with --resume "
        "again (the cell continues from its checkpoint)"
    )


def _failed_cell(
    problem: Arm, optimizer: Arm, seed: int, out: Path, error: Exception
) -> dict[str, Any]:
    where = cell_dir(out, problem, optimizer, seed)
    where.mkdir(parents=True, exist_ok=True)
    (where / ERROR_FILE).write_text(
        "".join(traceback.format_exception(type(error), error, error.__traceback__))
    )
    return {
        "problem": problem.label,
        "optimizer": optimizer.label,
        "problem_name": problem.name,
        "optimizer_name": optimizer.name,
        "seed": seed,
        "dir": str(where),
        "finished": False,
        "status": "failed",
        "error": " ".join(f"{type(error).__name__}: {error}".split()),
        # What the grid gave (the runner's defaults are unknown when it failed to start).
        "problem_config": dict(problem.config),
        "optimizer_config": dict(optimizer.config),
    }


def _finished_budget(where: Path) -> float:
    """The budget a cell's finished run was given (-inf when it has not finished).

    A damaged result.json raises DamagedFileError. Moved away, it is written again at no
    cost: the cell resumes from its last checkpoint, taken at the end of the run.
    """
    if not (where / RESULT_FILE).exists():
        return float("-inf")
    return read_result(where)["budget"]
