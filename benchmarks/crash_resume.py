"""Crash and resume: runs killed with SIGKILL at random moments, resumed, and compared.

For each configuration (``goea`` on ``sphere``, ``leea`` on scikit-learn's ``digits`` through
``mnist-weights``, ``ng:CMA`` on ``sphere``), one uninterrupted reference run of
``evoreg run ... --checkpoint-every K`` in a fresh process; then trials, each in a new
directory: the same command in a fresh process, SIGKILLed at a random moment, started again
with ``--resume``, killed again, ... (1 to ``--max-kills`` kills), and the last resume left to
finish. A trial is *identical* when its ``result.json`` has the reference's ``best_loss``,
``generations``, ``cost`` and ``report``, and its ``log.jsonl`` the reference's records
(timing fields left out); a directory is *unusable* when a process that was not killed exits
non-zero, prints a traceback or a refusal, or hangs, or when no ``result.json`` is left.
``--controls`` uninterrupted reruns per configuration check that the reference itself is
reproducible, without which a divergence would say nothing about resume (``leea-digits``
pins ``problem.strategy=batched`` for that reason; ``--configs leea-digits-auto`` runs the
default, timing-chosen strategy).

Only public behaviour is used (the command line, the files of a run directory), so the
benchmark judges whatever checkpoint format the runner writes. Kills are of three kinds,
drawn by a seeded ``random.Random`` (``--seed``), so the schedule is reproducible while the
moments themselves move with the machine's load:

- ``loop``: at a uniform moment of the optimisation loop (after the runner has opened the
  directory, measured from the reference run's timing);
- ``aimed``: as ``loop``, then at the first temporary checkpoint file seen in the directory,
  so that a share of the kills lands inside a checkpoint write;
- ``anywhere``: at a uniform moment of the whole process, start-up and the final writes
  included.

A kill counts as *during a checkpoint write* when a temporary file of the checkpoint
(a name with ``checkpoint`` ending in ``.tmp``) is left in the directory after the process
died: the write had begun and its rename had not happened. Other ``.tmp`` files left behind
(``run.json``, ``result.json``) are counted as *during another write*. Writes
``benchmarks/results/crash_resume.json`` and the benchmark's line in ``docs/benchmarks.md``.

    .venv/bin/python benchmarks/crash_resume.py                  # 51 trials, 3 configurations
    .venv/bin/python benchmarks/crash_resume.py --trials 6 --no-doc
    .venv/bin/python benchmarks/crash_resume.py --quick          # smoke: goea/sphere, 2 trials
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    RESULTS,
    add_output_options,
    doc_line,
    evoreg_script,
    fill_sizes,
    relative_to_root,
    run_info,
    update_doc_table,
    write_result,
)

NAME = "crash_resume"
#: Fields of a log record that measure wall time and so differ between any two runs.
TIMING_FIELDS = frozenset({"seconds", "wall_time", "elapsed"})
#: What result.json must repeat exactly.
RESULT_FIELDS = ("best_loss", "generations", "cost", "report")
KINDS = ("loop", "aimed", "anywhere")
#: Seconds a process may run beyond 10x the reference before it counts as hung.
HANG_SLACK_S = 60.0


@dataclass(frozen=True)
class Setup:
    """One configuration: ``evoreg run PROBLEM OPTIMIZER --budget B --set ...``."""

    problem: str
    optimizer: str
    budget: int
    sets: tuple[str, ...] = ()


#: Budgets give loops of about 2-4 s on a 2-core CPU with a checkpoint every generation, so
#: that 50+ trials (each 2-4 processes of about 4 s start-up) fit in about 15 minutes.
CONFIGS: dict[str, Setup] = {
    "goea-sphere": Setup("sphere", "goea", 20_000),
    # digits is mnist-weights' default (scikit-learn's 8x8 set, offline); said explicitly.
    # The forward strategy is pinned: "auto" picks batched, vmap or loop by timing them in
    # each process, and they round differently, so two uninterrupted runs of the same command
    # can differ in the last bits of a loss on a loaded machine. That is not resume's doing;
    # leea-digits-auto (not in the default list) measures it.
    "leea-digits": Setup("mnist-weights", "leea", 3_000, (
        "problem.dataset=digits", "problem.batch_size=128", "problem.strategy=batched",
        "optimizer.popsize=100")),
    # nevergrad's pickled state grows with its archive: a checkpoint that gets slower.
    "cma-sphere": Setup("sphere", "ng:CMA", 800, ("optimizer.popsize=4",)),
    "leea-digits-auto": Setup("mnist-weights", "leea", 3_000, (
        "problem.dataset=digits", "problem.batch_size=128", "optimizer.popsize=100")),
}
DEFAULT_CONFIGS = "goea-sphere,leea-digits,cma-sphere"


@dataclass
class Args:
    trials: int = 51  #: trials over all configurations, dealt round-robin
    max_kills: int = 3  #: kills per trial, drawn uniformly from 1..max_kills
    configs: str = DEFAULT_CONFIGS
    seed: int = 0  #: seed of the kill schedule (kinds, moments, kills per trial)
    run_seed: int = 1  #: --seed of every evoreg run
    checkpoint_every: int = 1  #: --checkpoint-every of every run (1: kills hit writes often)
    budget_scale: float = 1.0  #: multiplies every configuration's budget
    #: uninterrupted reruns per configuration, compared with the reference: a trial's
    #: divergence is resume's only if these reproduce the reference
    controls: int = 1
    aimed_share: float = 0.4  #: share of kills aimed at a checkpoint write
    anywhere_share: float = 0.15  #: share of kills at any moment of the process
    work_dir: str = ""  #: where the run directories go ("": a new temporary folder)
    keep: bool = False  #: keep every run directory (failing trials' are always kept)
    quick: bool = False
    out: str = str(RESULTS)
    doc: bool = True


QUICK = {"trials": 2, "max_kills": 1}
QUICK_CONFIGS = "goea-sphere"
QUICK_BUDGET_SCALE = 0.2
QUICK_CONTROLS = 0


def parse_args(argv: list[str] | None = None) -> Args:
    defaults = Args()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, help=f"default {defaults.trials}")
    parser.add_argument("--max-kills", type=int, help=f"default {defaults.max_kills}")
    parser.add_argument("--configs", help=f"comma-separated, of {', '.join(CONFIGS)} "
                        f"(default {DEFAULT_CONFIGS}; --quick: {QUICK_CONFIGS})")
    parser.add_argument("--seed", type=int, default=defaults.seed, help="kill schedule seed")
    parser.add_argument("--run-seed", type=int, default=defaults.run_seed)
    parser.add_argument("--checkpoint-every", type=int, default=defaults.checkpoint_every)
    parser.add_argument("--budget-scale", type=float,
                        help=f"default {defaults.budget_scale} (--quick: {QUICK_BUDGET_SCALE})")
    parser.add_argument("--controls", type=int,
                        help=f"default {defaults.controls} (--quick: {QUICK_CONTROLS})")
    parser.add_argument("--aimed-share", type=float, default=defaults.aimed_share)
    parser.add_argument("--anywhere-share", type=float, default=defaults.anywhere_share)
    parser.add_argument("--work-dir", default=defaults.work_dir,
                        help="folder for the run directories (default: a temporary one)")
    parser.add_argument("--keep", action="store_true", help="keep every run directory")
    add_output_options(parser, defaults.out, QUICK)
    parsed = vars(parser.parse_args(argv))
    fill_sizes(parser, parsed, QUICK, defaults)
    if parsed["configs"] is None:
        parsed["configs"] = QUICK_CONFIGS if parsed["quick"] else defaults.configs
    if parsed["budget_scale"] is None:
        parsed["budget_scale"] = QUICK_BUDGET_SCALE if parsed["quick"] else defaults.budget_scale
    if parsed["controls"] is None:
        parsed["controls"] = QUICK_CONTROLS if parsed["quick"] else defaults.controls
    unknown = [name for name in parsed["configs"].split(",") if name not in CONFIGS]
    if unknown:
        parser.error(f"unknown configuration {', '.join(unknown)}; known: {', '.join(CONFIGS)}")
    if parsed["budget_scale"] <= 0 or parsed["checkpoint_every"] < 1 or parsed["controls"] < 0:
        parser.error("--budget-scale must be > 0, --checkpoint-every >= 1, --controls >= 0")
    if not (0 <= parsed["aimed_share"] and 0 <= parsed["anywhere_share"]
            and parsed["aimed_share"] + parsed["anywhere_share"] <= 1):
        parser.error("--aimed-share and --anywhere-share must be >= 0 and add up to <= 1")
    return Args(**parsed)


# --------------------------------------------------------------------------- processes
@dataclass
class Process:
    """One ``evoreg run`` process: its handle, launch time and captured output."""

    popen: subprocess.Popen
    launched: float  #: time.perf_counter() just before the launch
    launched_ns: int  #: time.time_ns() just before the launch (compared with file mtimes)
    stderr_path: Path


def command(setup: Setup, args: Args, run_dir: Path, resume: bool) -> list[str]:
    budget = max(1, round(setup.budget * args.budget_scale))
    line = [evoreg_script(), "run", setup.problem, setup.optimizer, "--budget", str(budget),
            "--seed", str(args.run_seed), "--device", "cpu", "--out", str(run_dir),
            "--checkpoint-every", str(args.checkpoint_every)]
    for assignment in setup.sets:
        line += ["--set", assignment]
    return line + (["--resume"] if resume else [])


def launch(line: list[str], output: Path) -> Process:
    """Start ``line`` in a fresh process of its own session, so that a kill takes its whole
    process group (nothing it started survives to touch the directory afterwards)."""
    output.mkdir(parents=True, exist_ok=True)
    index = len(list(output.glob("process-*.stderr")))
    stderr_path = output / f"process-{index}.stderr"
    launched, launched_ns = time.perf_counter(), time.time_ns()
    with open(output / f"process-{index}.stdout", "wb") as out, open(stderr_path, "wb") as err:
        popen = subprocess.Popen(line, stdout=out, stderr=err, start_new_session=True)
    return Process(popen, launched, launched_ns, stderr_path)


def kill(process: Process) -> None:
    try:
        os.killpg(process.popen.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass  # it exited (and was reaped) just before


def failure(process: Process, returncode: int | None) -> str | None:
    """Why a process that was not killed left the directory unusable, or None."""
    stderr = process.stderr_path.read_text(errors="replace")
    if returncode is None:
        return "hung (killed after the time limit)"
    if returncode != 0:
        return f"exit status {returncode}: {stderr.strip()[-2000:]}"
    if "Traceback" in stderr or "evoreg: error" in stderr:
        return f"exit status 0 with an error: {stderr.strip()[-2000:]}"
    return None


def finish(process: Process, limit: float) -> int | None:
    """Wait for ``process`` to exit by itself; None (and killed) if it runs past ``limit``."""
    left = limit - (time.perf_counter() - process.launched)
    try:
        return process.popen.wait(timeout=max(0.0, left))
    except subprocess.TimeoutExpired:
        kill(process)
        process.popen.wait()
        return None


# --------------------------------------------------------------------------- the run directory
def read_log(run_dir: Path) -> list[dict[str, Any]]:
    """log.jsonl's records, up to a line cut by a kill."""
    records = []
    path = run_dir / "log.jsonl"
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                break
    return records


def without_timing(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in record.items() if k not in TIMING_FIELDS} for record in records]


def log_lines(run_dir: Path) -> int:
    try:
        return (run_dir / "log.jsonl").read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def temporaries(run_dir: Path) -> set[str]:
    """Temporary files of writes in progress (or cut short by a kill)."""
    try:
        return {name for name in os.listdir(run_dir) if name.endswith(".tmp")}
    except FileNotFoundError:
        return set()


def is_checkpoint_temporary(name: str) -> bool:
    return "checkpoint" in name


def result_fields(run_dir: Path) -> dict[str, Any] | None:
    path = run_dir / "result.json"
    if not path.exists():
        return None
    result = json.loads(path.read_text())
    return {key: result.get(key) for key in RESULT_FIELDS}


# --------------------------------------------------------------------------- reference runs
@dataclass
class Reference:
    result: dict[str, Any]
    log: list[dict[str, Any]]  #: without timing fields
    total_s: float  #: launch to exit of the process
    loop_s: float  #: the loop's own wall time (the last record's "seconds")


def reference_run(name: str, setup: Setup, args: Args, work: Path, label: str) -> Reference:
    """An uninterrupted run in a fresh process (``label``: reference, control-N)."""
    run_dir = work / name / label
    process = launch(command(setup, args, run_dir, resume=False), work / name / f"{label}-out")
    returncode = finish(process, limit=600.0)
    total_s = time.perf_counter() - process.launched
    problem = failure(process, returncode)
    result = result_fields(run_dir)
    if problem or result is None:
        raise SystemExit(f"{name}: the {label} run failed: {problem or 'no result.json'}")
    log = read_log(run_dir)
    return Reference(result, without_timing(log), total_s, float(log[-1].get("seconds", 0.0)))


# --------------------------------------------------------------------------- trials
@dataclass
class Kill:
    kind: str
    u: float  #: the schedule's uniform draw that places the kill
    sent_at_s: float | None = None  #: seconds after the process's launch; None: not sent
    killed: bool = False  #: the process was still running and died of the SIGKILL
    log_lines: int = 0  #: lines in log.jsonl just after the kill
    during_checkpoint_write: bool = False
    during_other_write: bool = False
    temporaries: list[str] = field(default_factory=list)


@dataclass
class Trial:
    index: int
    config: str
    kills: list[Kill]
    processes: int = 0
    identical: bool = False
    unusable: str | None = None
    differences: list[str] = field(default_factory=list)
    seconds: float = 0.0
    run_dir: str = ""


def schedule(args: Args, configs: list[str]) -> list[Trial]:
    """Every trial's configuration and kills, drawn before anything runs: the same
    ``--seed`` gives the same schedule whatever happens during the trials."""
    rng = random.Random(args.seed)
    trials = []
    for index in range(args.trials):
        kills = []
        for _ in range(rng.randint(1, args.max_kills)):
            draw = rng.random()
            kind = ("aimed" if draw < args.aimed_share else
                    "anywhere" if draw < args.aimed_share + args.anywhere_share else "loop")
            kills.append(Kill(kind, rng.random()))
        trials.append(Trial(index, configs[index % len(configs)], kills))
    return trials


def wait_until(process: Process, moment: float) -> bool:
    """Sleep until ``moment`` (perf_counter); False if the process exited first."""
    while time.perf_counter() < moment:
        if process.popen.poll() is not None:
            return False
        time.sleep(min(0.005, max(0.0, moment - time.perf_counter())))
    return process.popen.poll() is None


def opened(process: Process, run_dir: Path, limit: float) -> bool:
    """Wait until the runner has opened the directory (log.jsonl written since the launch:
    rewritten on resume or grown by a generation); False if the process exited first."""
    deadline = process.launched + limit
    while time.perf_counter() < deadline:
        try:
            if (run_dir / "log.jsonl").stat().st_mtime_ns > process.launched_ns:
                return True
        except FileNotFoundError:
            pass
        if process.popen.poll() is not None:
            return False
        time.sleep(0.005)
    return process.popen.poll() is None


def aim(process: Process, run_dir: Path, seen: set[str], deadline: float) -> None:
    """Spin until a new temporary checkpoint file appears (a write in progress) or the
    deadline passes. No sleep: a checkpoint write of a small state lasts about a
    millisecond, and a generation not much longer."""
    while time.perf_counter() < deadline and process.popen.poll() is None:
        if any(is_checkpoint_temporary(name) for name in temporaries(run_dir) - seen):
            return


def place_kill(kill_plan: Kill, process: Process, run_dir: Path, reference: Reference,
               seen: set[str], limit: float) -> bool:
    """Wait for the kill's moment; False if the process exited before it."""
    if kill_plan.kind == "anywhere":
        return wait_until(process, process.launched + kill_plan.u * reference.total_s)
    if not opened(process, run_dir, limit):
        return False
    # A resumed run has only the rest of the loop to do: spread the kill over that.
    done = min(1.0, log_lines(run_dir) / max(1, len(reference.log)))
    remaining = reference.loop_s * max(0.1, 1.0 - done)
    if not wait_until(process, time.perf_counter() + kill_plan.u * remaining):
        return False
    if kill_plan.kind == "aimed":
        aim(process, run_dir, seen, time.perf_counter() + remaining + 5.0)
    return process.popen.poll() is None


def run_trial(trial: Trial, setup: Setup, reference: Reference, args: Args, work: Path) -> None:
    started = time.perf_counter()
    trial_dir = work / trial.config / f"trial-{trial.index:03d}"
    run_dir = trial_dir / "run"
    trial.run_dir = str(run_dir)
    limit = 10 * reference.total_s + HANG_SLACK_S
    seen: set[str] = set()  # temporaries already counted (a resume may not clear them)
    for number, kill_plan in enumerate(trial.kills):
        process = launch(command(setup, args, run_dir, resume=number > 0), trial_dir)
        trial.processes += 1
        if place_kill(kill_plan, process, run_dir, reference, seen, limit):
            kill_plan.sent_at_s = time.perf_counter() - process.launched
            kill(process)
        returncode = finish(process, limit)
        kill_plan.killed = returncode == -signal.SIGKILL and kill_plan.sent_at_s is not None
        if kill_plan.killed:
            left = temporaries(run_dir) - seen
            seen |= left
            kill_plan.temporaries = sorted(left)
            kill_plan.during_checkpoint_write = any(map(is_checkpoint_temporary, left))
            kill_plan.during_other_write = any(not is_checkpoint_temporary(n) for n in left)
            kill_plan.log_lines = log_lines(run_dir)
            continue
        trial.unusable = failure(process, returncode)
        if trial.unusable:
            break
        # It finished before the kill: nothing left to resume, the trial is over.
        trial.kills = trial.kills[: number + 1]
        break
    else:
        process = launch(command(setup, args, run_dir, resume=True), trial_dir)
        trial.processes += 1
        trial.unusable = failure(process, finish(process, limit))
    trial.seconds = time.perf_counter() - started
    if trial.unusable:
        return
    result = result_fields(run_dir)
    if result is None:
        trial.unusable = "no result.json after the last resume"
        return
    trial.differences = compare(reference, result, without_timing(read_log(run_dir)))
    trial.identical = not trial.differences


def compare(reference: Reference, result: dict[str, Any], log: list[dict[str, Any]]) -> list[str]:
    """What differs from the reference run (empty: identical)."""
    differences = [f"{key}: {result[key]!r} != {reference.result[key]!r}"
                   for key in RESULT_FIELDS if result[key] != reference.result[key]]
    if log != reference.log:
        first = next((i for i, (a, b) in enumerate(zip(log, reference.log)) if a != b),
                     min(len(log), len(reference.log)))
        differences.append(
            f"log: {len(log)} records vs {len(reference.log)}, first difference at record "
            f"{first}: {log[first] if first < len(log) else None} != "
            f"{reference.log[first] if first < len(reference.log) else None}"
        )
    return differences


# --------------------------------------------------------------------------- the summary
def summarise(trials: list[Trial]) -> dict[str, Any]:
    kills = [k for t in trials for k in t.kills if k.killed]
    return {
        "trials": len(trials),
        "kills": len(kills),
        "kills_by_kind": {kind: sum(k.kind == kind for k in kills) for kind in KINDS},
        "kills_during_checkpoint_write": sum(k.during_checkpoint_write for k in kills),
        "kills_during_other_write": sum(k.during_other_write for k in kills),
        "missed": sum(not k.killed for t in trials for k in t.kills),  # exited before the kill
        "processes": sum(t.processes for t in trials),
        "identical": sum(t.identical for t in trials),
        "diverged": sum(not t.identical and not t.unusable for t in trials),
        "unusable": sum(bool(t.unusable) for t in trials),
    }


def progress_line(trial: Trial, total: int) -> str:
    kills = [k for k in trial.kills if k.killed]
    mid = sum(k.during_checkpoint_write for k in kills)
    state = ("identical" if trial.identical else
             f"UNUSABLE: {trial.unusable.splitlines()[0][:200]}" if trial.unusable else
             "DIVERGED: " + "; ".join(trial.differences)[:300])
    kinds = ", ".join(k.kind + ("" if k.killed else " (missed)") for k in trial.kills)
    return (f"[{trial.index + 1}/{total}] {trial.config}: {len(kills)} kills ({kinds}), "
            f"{mid} mid checkpoint write, {trial.processes} processes, {trial.seconds:.1f} s: "
            f"{state}")


def _controls_text(summary: dict[str, Any]) -> str:
    if summary["controls_identical"] is None:
        return ""
    return f", uninterrupted reruns identical {summary['controls_identical']}/{summary['controls']}"


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    configs = args.configs.split(",")
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="evoreg-crash-resume-"))
    work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    references, controls = {}, {}
    for name in configs:
        references[name] = ref = reference_run(name, CONFIGS[name], args, work, "reference")
        print(f"reference {name}: {ref.result['generations']} generations, best loss "
              f"{ref.result['best_loss']:.6g}, loop {ref.loop_s:.2f} s, process "
              f"{ref.total_s:.2f} s", flush=True)
        controls[name] = []
        for number in range(args.controls):
            control = reference_run(name, CONFIGS[name], args, work, f"control-{number}")
            controls[name].append(compare(ref, control.result, control.log))
            print(f"control {name} #{number}: " + ("identical to the reference" if not
                  controls[name][-1] else "DIFFERS: " + "; ".join(controls[name][-1])[:300]),
                  flush=True)
    trials = schedule(args, configs)
    for trial in trials:
        run_trial(trial, CONFIGS[trial.config], references[trial.config], args, work)
        print(progress_line(trial, len(trials)), flush=True)
        if trial.identical and not args.keep:
            shutil.rmtree(Path(trial.run_dir).parent, ignore_errors=True)
    reproducible = all(not d for differences in controls.values() for d in differences)
    if not args.keep and reproducible and all(t.identical for t in trials):
        shutil.rmtree(work, ignore_errors=True)

    summary = {name: summarise([t for t in trials if t.config == name]) for name in configs}
    for name in configs:  # None: no control run
        summary[name]["controls"] = len(controls[name])
        summary[name]["controls_identical"] = (
            sum(not d for d in controls[name]) if controls[name] else None)
    total = summarise(trials)
    met = total["identical"] == total["trials"] and total["unusable"] == 0
    info = run_info("cpu")
    data = {
        "benchmark": NAME,
        **info,
        "config": {**asdict(args), "configurations": {
            name: {**asdict(CONFIGS[name]),
                   "budget": max(1, round(CONFIGS[name].budget * args.budget_scale))}
            for name in configs}},
        "references": {name: {"result": ref.result, "log_records": len(ref.log),
                              "loop_s": ref.loop_s, "process_s": ref.total_s,
                              "controls": controls[name]}
                       for name, ref in references.items()},
        "summary": summary,
        "total": total,
        "trials": [asdict(t) for t in trials],
        "kept_run_dirs": [t.run_dir for t in trials if not t.identical or args.keep],
        "wall_time_s": time.perf_counter() - started,
        "goal": {"all_identical_and_none_unusable": True, "met": met},
    }
    path = write_result(data, args.out, NAME)
    figure = "; ".join(
        f"{name}: {s['trials']} trials, {s['kills']} kills ({s['kills_during_checkpoint_write']}"
        f" during a checkpoint write), {s['identical']}/{s['trials']} identical, "
        f"{s['unusable']} unusable" + _controls_text(s) for name, s in summary.items()
    ) + f" (checkpoint every {args.checkpoint_every} generation(s), schedule seed {args.seed})"
    print(figure)
    kept = data["kept_run_dirs"]
    if kept:
        print("run directories kept: " + ", ".join(kept))
    print(f"wrote {relative_to_root(path)}")
    if args.doc:
        update_doc_table(doc_line(
            NAME, info, figure,
            goal="every killed-and-resumed run identical to the uninterrupted one "
                 "(result and log); no unusable directory",
            met=f"yes ({total['identical']}/{total['trials']})" if met else
            f"no ({total['identical']}/{total['trials']} identical, "
            f"{total['unusable']} unusable)",
        ))


if __name__ == "__main__":
    main()
