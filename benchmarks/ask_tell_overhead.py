"""Ask+tell overhead per candidate: evoreg's batched core against nevergrad's one-at-a-time API.

At d = 92,234 (the LEEA network of Prellberg's thesis, ch. 5) and a population of 1000, it
times, in ONE run with interleaved repeats:

- evoreg ``random-search``: ``opt.ask()`` (1000 candidates) then ``opt.tell(pop, losses)``,
  with its default shared noise table and, for comparison, with fresh normals;
- nevergrad ``RandomSearch`` and ``OnePlusOne`` used directly (``num_workers=popsize``):
  ``k`` asks then ``k`` tells, with ``k`` smaller than the population because nevergrad
  takes milliseconds per candidate at this size;
- the memory-bandwidth bound: a candidate is ``d * 4`` bytes that must at least be written,
  so ``d * 4 / copy bandwidth`` is a lower bound on any ask that returns fresh values;
- a breakdown of evoreg's ask (table gather, fused scale-and-shift, RNG, first touch of
  fresh memory, the base class's share), to say where the time goes.

The loss is the sum of each row, computed from the asked values and not timed. Figures are
per-candidate microseconds, medians over the repeats; ratios are medians of per-repeat
ratios. Writes ``benchmarks/results/ask_tell_overhead.json`` and the benchmark's line in
``docs/benchmarks.md``.

    .venv/bin/python benchmarks/ask_tell_overhead.py            # the full run
    .venv/bin/python benchmarks/ask_tell_overhead.py --quick    # smoke run, small sizes
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import evoreg  # first: it enables torch's huge-page allocations, read at torch's first use

# isort: split
import nevergrad as ng
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    RESULTS,
    copy_bandwidth,
    doc_line,
    median,
    per_candidate_us,
    relative_to_root,
    run_info,
    synchronize,
    update_doc_table,
    write_result,
)

from evoreg.devices import resolve_device  # noqa: E402

NAME = "ask_tell_overhead"
GOAL_RATIO = 50.0  # evoreg's per-candidate time at least this many times below nevergrad's
NEVERGRAD = ("RandomSearch", "OnePlusOne")


@dataclass
class Args:
    dim: int = 92_234  #: d, the LEEA MLP's number of weights
    popsize: int = 1000  #: evoreg candidates per ask (one generation per repeat)
    repeats: int = 7  #: interleaved repeats; figures are medians over them
    ng_candidates: int = 200  #: nevergrad asks (then tells) per optimizer per repeat
    bandwidth_mb: float | None = None  #: bytes copied for the bound; default: one population
    copies: int = 5  #: copies per repeat for the bandwidth (median)
    seed: int = 0
    threads: int | None = None  #: torch.set_num_threads; default: torch's own
    device: str = "cpu"  #: evoreg's device (nevergrad is numpy, on the CPU)
    breakdown: bool = True  #: also time the parts of evoreg's ask
    quick: bool = False
    out: str = str(RESULTS)
    doc: bool = True


QUICK = {"dim": 2_000, "popsize": 50, "repeats": 2, "ng_candidates": 10}


def parse_args(argv: list[str] | None = None) -> Args:
    defaults = Args()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dim", type=int, help=f"vector length d (default {defaults.dim})")
    parser.add_argument("--popsize", type=int, help=f"default {defaults.popsize}")
    parser.add_argument("--repeats", type=int, help=f"default {defaults.repeats}")
    parser.add_argument(
        "--ng-candidates", type=int, help=f"nevergrad candidates per repeat "
        f"(default {defaults.ng_candidates})"
    )
    parser.add_argument("--bandwidth-mb", type=float, help="MB copied (default: one population)")
    parser.add_argument("--copies", type=int, default=defaults.copies)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    parser.add_argument("--device", default=defaults.device, help="evoreg's device")
    parser.add_argument("--no-breakdown", dest="breakdown", action="store_false")
    parser.add_argument(
        "--quick", action="store_true",
        help="smoke run: " + ", ".join(f"{k}={v}" for k, v in QUICK.items()) + " unless given",
    )
    parser.add_argument("--out", default=defaults.out, help="folder for the JSON")
    parser.add_argument(
        "--no-doc", dest="doc", action="store_false", help="do not touch docs/benchmarks.md"
    )
    parsed = vars(parser.parse_args(argv))
    for key, value in (QUICK if parsed["quick"] else {}).items():
        if parsed[key] is None:
            parsed[key] = value
    for key in ("dim", "popsize", "repeats", "ng_candidates"):
        if parsed[key] is None:
            parsed[key] = getattr(defaults, key)
        if parsed[key] < 1:
            parser.error(f"--{key.replace('_', '-')} must be >= 1")
    return Args(**parsed)


# --------------------------------------------------------------------------- the timings
def time_evoreg(opt: evoreg.Optimizer, device: torch.device) -> dict:
    synchronize(device)
    start = time.perf_counter()
    pop = opt.ask()
    synchronize(device)
    asked = time.perf_counter()
    losses = pop.values.sum(dim=1)  # the trivial loss, from the asked values; not timed
    synchronize(device)
    start_tell = time.perf_counter()
    opt.tell(pop, losses)
    synchronize(device)
    end = time.perf_counter()
    n = len(pop)
    del pop, losses
    return {
        "candidates": n,
        "ask_s": asked - start,
        "tell_s": end - start_tell,
        "per_candidate_us": per_candidate_us((asked - start) + (end - start_tell), n),
    }


def make_nevergrad(name: str, dim: int, popsize: int, candidates: int, seed: int):
    parametrization = ng.p.Array(shape=(dim,))
    parametrization.random_state = np.random.RandomState(seed)
    return ng.optimizers.registry[name](
        parametrization=parametrization, budget=max(popsize, candidates), num_workers=popsize
    )


def time_nevergrad(name: str, args: Args, seed: int) -> dict:
    opt = make_nevergrad(name, args.dim, args.popsize, args.ng_candidates, seed)
    k = args.ng_candidates
    start = time.perf_counter()
    candidates = [opt.ask() for _ in range(k)]
    asked = time.perf_counter()
    losses = [float(np.sum(c.value)) for c in candidates]  # from the asked values; not timed
    start_tell = time.perf_counter()
    for candidate, loss in zip(candidates, losses):
        opt.tell(candidate, loss)
    end = time.perf_counter()
    del opt, candidates
    return {
        "candidates": k,
        "ask_s": asked - start,
        "tell_s": end - start_tell,
        "per_candidate_us": per_candidate_us((asked - start) + (end - start_tell), k),
    }


def _timed(fn, device: torch.device) -> float:
    synchronize(device)
    start = time.perf_counter()
    result = fn()
    synchronize(device)
    seconds = time.perf_counter() - start
    del result
    return seconds


def time_breakdown(opt: evoreg.Optimizer, args: Args, device: torch.device) -> dict:
    """Per-candidate µs of the parts of random-search's ask, in the plugin's order."""
    n, d = args.popsize, args.dim
    generator = torch.Generator(device=device).manual_seed(args.seed + 1)
    buffer = torch.zeros(n, d, device=device)  # touched: no page faults below
    center = torch.zeros(d, device=device)
    table = opt.table
    offsets = table.offsets(n, d, generator)
    windows = table.values.unfold(0, d, 1)
    parts = {
        # what RandomSearch._ask does first: gather n windows of the noise table (fresh tensor)
        "table_gather": lambda: torch.index_select(windows, 0, offsets),
        # then center + sigma * window, fused, in place
        "addcmul_inplace": lambda: torch.addcmul(center, buffer, torch.ones(n, 1), out=buffer),
        # the alternative (noise_table=False): fresh normals from the RNG
        "randn_fresh": lambda: torch.randn(n, d, generator=generator, device=device),
        # the RNG alone, into memory already touched
        "randn_inplace": lambda: buffer.normal_(generator=generator),
        # a fresh [n, d] tensor written once: allocation + first-touch page faults + a write
        "alloc_first_touch": lambda: torch.empty(n, d, device=device).fill_(0.0),
        # one write pass over touched memory
        "fill_touched": lambda: buffer.fill_(0.0),
        # the whole plugin, without the base class
        "plugin_ask": lambda: opt._ask(n),
        # the base class's check of the plugin's values (Real.validate)
        "base_validate": lambda: opt.space.validate(buffer, n),
    }
    seconds = {name: _timed(fn, device) for name, fn in parts.items()}
    return {name: per_candidate_us(s, n) for name, s in seconds.items()}


# --------------------------------------------------------------------------- the run
def run(args: Args) -> dict:
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    info = run_info(device)
    bandwidth_bytes = (
        int(args.bandwidth_mb * 1e6) if args.bandwidth_mb is not None
        else args.popsize * args.dim * 4
    )

    opt = evoreg.make_optimizer(
        "random-search", evoreg.Real(args.dim), popsize=args.popsize, seed=args.seed,
        device=device,
    )
    # The same plugin drawing fresh normals instead of windows of its noise table.
    fresh = evoreg.make_optimizer(
        "random-search", evoreg.Real(args.dim), popsize=args.popsize, seed=args.seed,
        device=device, noise_table=False,
    )
    # warm-up, untimed: first calls (lazy imports, allocator, nevergrad's caches)
    time_evoreg(opt, device)
    time_evoreg(fresh, device)
    for name in NEVERGRAD:
        time_nevergrad(name, Args(**{**asdict(args), "ng_candidates": 2}), args.seed)
    copy_bandwidth(min(bandwidth_bytes, 16_000_000), copies=1, device=device)

    steps = ["evoreg", "evoreg_fresh", *(f"ng:{name}" for name in NEVERGRAD), "bandwidth"]
    if args.breakdown:
        steps.append("breakdown")
    repeats = []
    for r in range(args.repeats):
        order = steps[r % len(steps):] + steps[:r % len(steps)]  # rotate: drift hits all alike
        record: dict = {"repeat": r, "order": order}
        for step in order:
            gc.collect()
            if step == "evoreg":
                record[step] = time_evoreg(opt, device)
            elif step == "evoreg_fresh":
                record[step] = time_evoreg(fresh, device)
            elif step.startswith("ng:"):
                record[step] = time_nevergrad(step[3:], args, args.seed + 1000 * (r + 1))
            elif step == "bandwidth":
                record[step] = copy_bandwidth(bandwidth_bytes, copies=args.copies, device=device)
            else:
                record[step] = time_breakdown(opt, args, device)
        repeats.append(record)
        print(_progress(record), file=sys.stderr)

    return summarise(args, info, device, repeats)


def _progress(record: dict) -> str:
    parts = [f"repeat {record['repeat']}:"]
    for step in ("evoreg", "evoreg_fresh", *(f"ng:{name}" for name in NEVERGRAD)):
        parts.append(f"{step} {record[step]['per_candidate_us']:.1f} us/cand")
    parts.append(f"copy {record['bandwidth']['bytes_per_second'] / 1e9:.2f} GB/s")
    return "  ".join(parts)


def summarise(args: Args, info: dict, device: torch.device, repeats: list[dict]) -> dict:
    bytes_per_candidate = args.dim * 4  # float32 values written per candidate
    evoreg_us = [r["evoreg"]["per_candidate_us"] for r in repeats]
    bandwidth = [r["bandwidth"]["bytes_per_second"] for r in repeats]
    bound_us = [per_candidate_us(bytes_per_candidate / b, 1) for b in bandwidth]
    medians: dict = {
        "evoreg_us": median(evoreg_us),
        "evoreg_fresh_us": median([r["evoreg_fresh"]["per_candidate_us"] for r in repeats]),
    }
    ratios = {}
    for name in NEVERGRAD:
        key = f"ng:{name}"
        ng_us = [r[key]["per_candidate_us"] for r in repeats]
        medians[f"{key}_us"] = median(ng_us)
        ratios[f"{key}/evoreg"] = median([a / b for a, b in zip(ng_us, evoreg_us)])
    for key in ("evoreg", "evoreg_fresh", *(f"ng:{name}" for name in NEVERGRAD)):
        for part in ("ask", "tell"):
            medians[f"{key}_{part}_us"] = median(
                [per_candidate_us(r[key][f"{part}_s"], r[key]["candidates"]) for r in repeats]
            )
    medians["copy_bytes_per_second"] = median(bandwidth)
    medians["bound_us"] = median(bound_us)
    multiple = median([a / b for a, b in zip(evoreg_us, bound_us)])
    worst = min(ratios.values())
    breakdown = None
    if args.breakdown:
        breakdown = {
            part: median([r["breakdown"][part] for r in repeats])
            for part in repeats[0]["breakdown"]
        }
        # the base class's tell (check losses, track the best); random-search's _tell is empty
        breakdown["tell"] = medians["evoreg_tell_us"]
    return {
        "benchmark": NAME,
        **info,
        "config": asdict(args) | {
            "out": relative_to_root(args.out),
            "bandwidth_bytes": repeats[0]["bandwidth"]["bytes"],
        },
        "loss": "sum of each row, computed from the asked values; not timed",
        "units": "per_candidate_us: (ask + tell seconds) / candidates * 1e6",
        "repeats": repeats,
        "medians": medians,
        "ratios": ratios | {"ratios_of_medians": {
            f"ng:{name}/evoreg": medians[f"ng:{name}_us"] / medians["evoreg_us"]
            for name in NEVERGRAD
        }},
        "bound": {
            "bytes_per_candidate": bytes_per_candidate,
            "copy_bytes_per_second": medians["copy_bytes_per_second"],
            "per_candidate_us": medians["bound_us"],
            "evoreg_multiple_of_bound": multiple,
        },
        "breakdown_us": breakdown,
        "goal": {
            "text": f"evoreg's per-candidate ask+tell at least {GOAL_RATIO:g}x below nevergrad's",
            "ratio": GOAL_RATIO,
            "worst_ratio": worst,
            "met": worst >= GOAL_RATIO,
        },
    }


def doc_row(result: dict) -> dict:
    m, r, b = result["medians"], result["ratios"], result["bound"]
    c = result["config"]
    nevergrad = ", ".join(
        f"{name} {m[f'ng:{name}_us']:,.0f} ({r[f'ng:{name}/evoreg']:.1f}x)" for name in NEVERGRAD
    )
    figure = (
        f"d={c['dim']:,}, pop {c['popsize']}: ask+tell per candidate, evoreg random-search "
        f"{m['evoreg_us']:,.0f} µs (fresh normals instead of the noise table: "
        f"{m['evoreg_fresh_us']:,.0f}); nevergrad {nevergrad} µs; "
        f"copy bound {b['per_candidate_us']:.0f} µs ({b['copy_bytes_per_second'] / 1e9:.1f} GB/s), "
        f"evoreg = "
        f"{b['evoreg_multiple_of_bound']:.1f}x bound"
    )
    goal = result["goal"]
    return doc_line(
        NAME, result, figure,
        goal=f"evoreg >= {goal['ratio']:g}x below nevergrad per candidate",
        met=f"{'yes' if goal['met'] else 'no'} ({goal['worst_ratio']:.1f}x)",
    )


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=ng.errors.NevergradRuntimeWarning)
        result = run(args)
    path = write_result(result, args.out, NAME)
    print(f"wrote {path}")
    if args.doc:
        print(f"updated {update_doc_table(doc_row(result))}")
    m, b = result["medians"], result["bound"]
    print(f"evoreg random-search: {m['evoreg_us']:.1f} us/candidate "
          f"(ask {m['evoreg_ask_us']:.1f}, tell {m['evoreg_tell_us']:.2f}); "
          f"with fresh normals {m['evoreg_fresh_us']:.1f}")
    for name in NEVERGRAD:
        print(f"nevergrad {name}: {m[f'ng:{name}_us']:.1f} us/candidate, "
              f"{result['ratios'][f'ng:{name}/evoreg']:.1f}x evoreg's")
    print(f"copy bound: {b['per_candidate_us']:.1f} us/candidate "
          f"({b['copy_bytes_per_second'] / 1e9:.2f} GB/s); evoreg = "
          f"{b['evoreg_multiple_of_bound']:.1f}x the bound")
    if result["breakdown_us"]:
        print("breakdown (us/candidate): " + ", ".join(
            f"{k} {v:.1f}" for k, v in result["breakdown_us"].items()))
    print(f"goal ({result['goal']['text']}): {'met' if result['goal']['met'] else 'NOT met'}")
    return result


if __name__ == "__main__":
    main()
