"""Ask+tell overhead per candidate: evoreg's batched core against nevergrad's one-at-a-time API.

At d = 92,234 (the LEEA network of Prellberg's thesis, ch. 5) and a population of 1000, each
of ``--processes`` fresh Python processes imports in the README's order (``import torch``,
then ``import evoreg``) and, after warm-up, times ``--generations`` rounds, the steps of a
round interleaved (their order rotates from round to round):

- evoreg ``random-search`` as a user's loop gets it: ``opt.ask()`` (1000 candidates), every
  row read once the way an evaluator reads them (``pop.chunks(out=buffer)``, the buffer kept
  from generation to generation, as ``PopulationForward`` does), ``opt.tell(pop, losses)``.
  The random-search population is lazy (window offsets of the shared noise table), so reading
  its rows is where its values are written: that time is counted, only the trivial loss (each
  row's sum, computed from the rows read) is not;
- nevergrad ``RandomSearch`` and ``OnePlusOne`` used directly (``num_workers=popsize``): ``k``
  asks then ``k`` tells (``k`` below the population: nevergrad takes milliseconds a
  candidate at this size);
- the memory-bandwidth bound: a candidate is ``d * 4`` bytes that must at least be written
  once, so ``d * 4 / copy bandwidth`` bounds any way of producing its values;
- for comparison, not goals: the same plugin's ``pop.values`` (the whole population written
  into one fresh tensor, what ``pop.values`` costs in this import order), and
  ``noise_table=False`` (fresh normals, a dense population).

Figures are per-candidate microseconds per generation (round), pooled over the processes:
medians and 90th percentiles. Writes ``benchmarks/results/ask_tell_overhead.json`` and the
benchmark's line in ``docs/benchmarks.md``.

    .venv/bin/python benchmarks/ask_tell_overhead.py            # the full run
    .venv/bin/python benchmarks/ask_tell_overhead.py --quick    # smoke run, small sizes
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

NAME = "ask_tell_overhead"
GOAL_RATIO = 50.0  # nevergrad RandomSearch / evoreg per candidate, at the median and the p90
GOAL_BOUND_MULTIPLE = 2.0  # evoreg's median at most this many times the copy bound
NEVERGRAD = ("RandomSearch", "OnePlusOne")
STEPS = ("evoreg", "evoreg_values", "evoreg_fresh", *(f"ng:{n}" for n in NEVERGRAD), "bandwidth")


@dataclass
class Args:
    dim: int = 92_234  #: d, the LEEA MLP's number of weights
    popsize: int = 1000  #: evoreg candidates per ask (one generation a round)
    processes: int = 3  #: fresh processes, each with its own warm-up
    generations: int = 24  #: timed rounds per process (after warm-up)
    warmup: int = 3  #: untimed rounds per process
    ng_candidates: int = 200  #: nevergrad asks (then tells) per optimizer per round
    seed: int = 0
    quick: bool = False
    out: str = ""
    doc: bool = True


QUICK = {"dim": 2_000, "popsize": 50, "processes": 1, "generations": 3, "warmup": 1,
         "ng_candidates": 10}


def parse_args(argv: list[str] | None = None) -> Args:
    defaults = Args()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    for key in QUICK:  # the sizes
        parser.add_argument(f"--{key.replace('_', '-')}", type=int,
                            help=f"default {getattr(defaults, key)} ({QUICK[key]} with --quick)")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--quick", action="store_true", help="smoke run, small sizes")
    parser.add_argument("--out", default="", help="folder for the JSON")
    parser.add_argument("--no-doc", dest="doc", action="store_false",
                        help="do not touch docs/benchmarks.md")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parsed = vars(parser.parse_args(argv))
    worker = parsed.pop("worker")
    for key in QUICK:
        if parsed[key] is None:
            parsed[key] = QUICK[key] if parsed["quick"] else getattr(defaults, key)
        if parsed[key] < (0 if key == "warmup" else 1):
            parser.error(f"--{key.replace('_', '-')} is too small")
    args = Args(**parsed)
    args.worker = worker  # type: ignore[attr-defined]
    return args


# --------------------------------------------------------------------------- one process
def worker(args: Args) -> dict:
    """One fresh process's rounds, imports in the README's order."""
    import gc
    import time
    import warnings

    import nevergrad as ng
    import numpy as np
    import torch  # first, as the README's Python example

    import evoreg  # noqa: I001 - second, on purpose

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from common import copy_bandwidth  # noqa: E402

    warnings.simplefilter("ignore", category=ng.errors.NevergradRuntimeWarning)
    space = evoreg.Real(args.dim)
    opt = evoreg.make_optimizer("random-search", space, popsize=args.popsize, seed=args.seed)
    fresh = evoreg.make_optimizer("random-search", space, popsize=args.popsize, seed=args.seed,
                                  noise_table=False)
    buffer: list = [None]  # the reader's chunk buffer, kept between generations

    def read_rows(pop) -> tuple[torch.Tensor, float]:
        """Every row once, chunk by chunk, as an evaluator reads them: (losses, seconds)."""
        losses, seconds = torch.empty(len(pop)), 0.0
        size = pop.default_chunk()
        if buffer[0] is None or buffer[0].shape != (size, args.dim):
            buffer[0] = torch.empty(size, args.dim)
        start_read = time.perf_counter()
        for start, rows in pop.chunks(size, out=buffer[0]):
            seconds += time.perf_counter() - start_read
            losses[start:start + len(rows)] = rows.sum(dim=1)  # the loss: not timed
            start_read = time.perf_counter()
        return losses, seconds

    def evoreg_step(optimizer, mode: str) -> dict:
        start = time.perf_counter()
        pop = optimizer.ask()
        asked = time.perf_counter()
        if mode == "values":
            values = pop.values
            read = time.perf_counter() - asked
            losses = values.sum(dim=1)
        else:
            losses, read = read_rows(pop)
        start_tell = time.perf_counter()
        optimizer.tell(pop, losses)
        told = time.perf_counter() - start_tell
        n = len(pop)
        return {"candidates": n, "ask_s": asked - start, "read_s": read, "tell_s": told,
                "per_candidate_us": (asked - start + read + told) / n * 1e6}

    def nevergrad_step(name: str, seed: int) -> dict:
        parametrization = ng.p.Array(shape=(args.dim,))
        parametrization.random_state = np.random.RandomState(seed)
        k = args.ng_candidates
        optimizer = ng.optimizers.registry[name](
            parametrization=parametrization, budget=max(args.popsize, k),
            num_workers=args.popsize,
        )
        start = time.perf_counter()
        candidates = [optimizer.ask() for _ in range(k)]
        asked = time.perf_counter()
        losses = [float(np.sum(c.value)) for c in candidates]  # not timed
        start_tell = time.perf_counter()
        for candidate, loss in zip(candidates, losses):
            optimizer.tell(candidate, loss)
        end = time.perf_counter()
        return {"candidates": k, "ask_s": asked - start, "tell_s": end - start_tell,
                "per_candidate_us": (asked - start + end - start_tell) / k * 1e6}

    def step(name: str, round_index: int) -> dict:
        if name == "evoreg":
            return evoreg_step(opt, "chunks")
        if name == "evoreg_values":
            return evoreg_step(opt, "values")
        if name == "evoreg_fresh":
            return evoreg_step(fresh, "chunks")
        if name == "bandwidth":
            return copy_bandwidth(args.popsize * args.dim * 4, copies=3)
        return nevergrad_step(name[3:], args.seed + 1000 * (round_index + 1))

    rounds = []
    for index in range(args.warmup + args.generations):
        shift = index % len(STEPS)
        order = STEPS[shift:] + STEPS[:shift]  # rotated: drift hits every step alike
        record: dict = {"order": list(order)}
        for name in order:
            gc.collect()
            record[name] = step(name, index)
        if index >= args.warmup:
            rounds.append(record)
    return {"rounds": rounds, "torch_threads": torch.get_num_threads(),
            "thp": os.environ.get("THP_MEM_ALLOC_ENABLE")}


# --------------------------------------------------------------------------- the run
def run(args: Args) -> dict:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from common import percentile, run_info

    rounds = []
    for process in range(args.processes):
        command = [sys.executable, __file__, "--worker", *_worker_flags(args)]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise SystemExit(f"worker {process} failed:\n{done.stderr[-3000:]}")
        result = json.loads(done.stdout.strip().splitlines()[-1])
        for record in result["rounds"]:
            record["process"] = process
        rounds += result["rounds"]
        print(f"process {process}: {len(result['rounds'])} rounds, evoreg median "
              f"{percentile([r['evoreg']['per_candidate_us'] for r in result['rounds']], .5):.1f}"
              " us/candidate", file=sys.stderr)
    return summarise(args, run_info("cpu"), rounds)


def _worker_flags(args: Args) -> list[str]:
    flags = []
    for key in ("dim", "popsize", "generations", "warmup", "ng_candidates", "seed"):
        flags += [f"--{key.replace('_', '-')}", str(getattr(args, key))]
    return flags + ["--processes", "1"]


def summarise(args: Args, info: dict, rounds: list[dict]) -> dict:
    from common import percentile  # on sys.path once run() has put it there

    bytes_per_candidate = args.dim * 4  # float32 values written per candidate
    per_candidate = {
        name: [r[name]["per_candidate_us"] for r in rounds] for name in STEPS if name != "bandwidth"
    }
    per_candidate["bound"] = [
        bytes_per_candidate / r["bandwidth"]["bytes_per_second"] * 1e6 for r in rounds
    ]
    stats = {name: {"median": percentile(v, 0.5), "p90": percentile(v, 0.9)}
             for name, v in per_candidate.items()}
    parts = {
        part: percentile([r["evoreg"][f"{part}_s"] / r["evoreg"]["candidates"] * 1e6
                          for r in rounds], 0.5)
        for part in ("ask", "read", "tell")
    }
    ours = stats["evoreg"]
    ratios = {
        f"ng:{name}/evoreg": {q: stats[f"ng:{name}"][q] / ours[q] for q in ("median", "p90")}
        for name in NEVERGRAD
    }
    multiple = ours["median"] / stats["bound"]["median"]
    target = ratios["ng:RandomSearch/evoreg"]
    met = (target["median"] >= GOAL_RATIO and target["p90"] >= GOAL_RATIO
           and multiple <= GOAL_BOUND_MULTIPLE)
    return {
        "benchmark": NAME,
        **info,
        "config": asdict(args),
        "import_order": "import torch, then import evoreg (the README's order), fresh processes",
        "units": "per_candidate_us: (ask + read every row + tell seconds) / candidates * 1e6",
        "rounds": rounds,
        "stats_us": stats,
        "evoreg_parts_median_us": parts,
        "ratios": ratios,
        "bound": {"bytes_per_candidate": bytes_per_candidate,
                  "median_us": stats["bound"]["median"], "evoreg_multiple_of_bound": multiple},
        "goal": {
            "text": f"nevergrad RandomSearch / evoreg >= {GOAL_RATIO:g} at the median and the "
                    f"p90; evoreg's median <= {GOAL_BOUND_MULTIPLE:g}x the copy bound",
            "met": met,
        },
    }


def doc_row(result: dict) -> dict:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from common import doc_line

    s, r, c = result["stats_us"], result["ratios"], result["config"]
    nevergrad = ", ".join(
        f"{name} {s[f'ng:{name}']['median']:,.0f} / {s[f'ng:{name}']['p90']:,.0f} "
        f"({r[f'ng:{name}/evoreg']['median']:.0f}x / {r[f'ng:{name}/evoreg']['p90']:.0f}x)"
        for name in NEVERGRAD
    )
    figure = (
        f"d={c['dim']:,}, pop {c['popsize']}, torch imported first, {c['processes']} fresh "
        f"processes x {c['generations']} generations; ask + read every row + tell per candidate "
        f"(median / p90): evoreg random-search {s['evoreg']['median']:.1f} / "
        f"{s['evoreg']['p90']:.1f} µs; nevergrad {nevergrad} µs; copy bound "
        f"{s['bound']['median']:.1f} µs, evoreg = "
        f"{result['bound']['evoreg_multiple_of_bound']:.2f}x bound; for comparison pop.values "
        f"{s['evoreg_values']['median']:.0f} / {s['evoreg_values']['p90']:.0f} µs, fresh "
        f"normals {s['evoreg_fresh']['median']:.0f} / {s['evoreg_fresh']['p90']:.0f} µs"
    )
    target = r["ng:RandomSearch/evoreg"]
    met = (f"{'yes' if result['goal']['met'] else 'no'} ({target['median']:.0f}x / "
           f"{target['p90']:.0f}x, {result['bound']['evoreg_multiple_of_bound']:.2f}x bound)")
    return doc_line(
        NAME, result, figure,
        goal=f">= {GOAL_RATIO:g}x below nevergrad RandomSearch at median and p90; median <= "
             f"{GOAL_BOUND_MULTIPLE:g}x copy bound",
        met=met,
    )


def main(argv: list[str] | None = None) -> dict | None:
    args = parse_args(argv)
    if getattr(args, "worker", False):
        print(json.dumps(worker(args)))
        return None
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from common import RESULTS, update_doc_table, write_result

    result = run(args)
    path = write_result(result, args.out or RESULTS, NAME)
    print(f"wrote {path}")
    if args.doc:
        print(f"updated {update_doc_table(doc_row(result))}")
    s, r = result["stats_us"], result["ratios"]
    for name in ("evoreg", "evoreg_values", "evoreg_fresh", *(f"ng:{n}" for n in NEVERGRAD),
                 "bound"):
        print(f"{name}: median {s[name]['median']:.1f}, p90 {s[name]['p90']:.1f} us/candidate")
    print("evoreg parts (median us/candidate): " + ", ".join(
        f"{k} {v:.2f}" for k, v in result["evoreg_parts_median_us"].items()))
    for name in NEVERGRAD:
        ratio = r[f"ng:{name}/evoreg"]
        print(f"nevergrad {name} / evoreg: {ratio['median']:.1f}x median, {ratio['p90']:.1f}x p90")
    print(f"goal ({result['goal']['text']}): {'met' if result['goal']['met'] else 'NOT met'}")
    return result


if __name__ == "__main__":
    main()
