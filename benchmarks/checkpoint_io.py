"""What the safe checkpoint costs: evoreg's data format against the pickle it replaced.

For the states of real optimizers (leea over 92k-weight networks, the largest a run
checkpoints; atari-ga's seed genomes; ng:CMA, the pickled and signed case), time writing
the checkpoint file and reading it back into a fresh optimizer, with evoreg's format
(checksummed data; signature for pickles) and with what evoreg 0.1 did (``torch.save`` of
a pickled state, ``torch.load(weights_only=False)``), both through the same atomic, fsynced
write. The two are interleaved in each repeat; the figure is ours / pickle, median and 90th
percentile over repeats.

    python benchmarks/checkpoint_io.py            # --repeats 5 --leea-popsize 1000
    python benchmarks/checkpoint_io.py --quick    # a smoke run
"""

from __future__ import annotations

import argparse
import pickle
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from common import (
    add_output_options,
    doc_line,
    relative_to_root,
    run_info,
    update_doc_table,
    write_result,
)

import evoreg
from evoreg.checkpoint import atomic_path, load_checkpoint, save_checkpoint

NAME = "checkpoint_io"
MLP92K = 92_234


def _optimizer(kind: str, popsize: int) -> tuple[evoreg.Optimizer, dict[str, Any]]:
    if kind == "leea":
        space, config = evoreg.Real(MLP92K), {"popsize": popsize}
    elif kind == "atari-ga":
        space, config = evoreg.Real(MLP92K), {"popsize": 64, "parents": 8, "elites": 2}
    else:
        space, config = evoreg.Real(1000), {"popsize": 16, "budget": 10_000}
    optimizer = evoreg.make_optimizer(kind, space, seed=0, **config)
    for _ in range(3):
        pop = optimizer.ask()
        optimizer.tell(pop, _losses(pop))
    return optimizer, {"dim": space.dim, **config}


def _losses(pop: evoreg.Population) -> torch.Tensor:
    parts = [rows.pow(2).sum(dim=1) for _, rows in pop.chunks(128)]
    return torch.cat(parts)


def _pickle_save(state: dict, path: Path) -> None:
    """evoreg 0.1's checkpoint: the algorithm pickled inside torch.save."""
    with atomic_path(path) as temporary:
        torch.save(state, temporary, pickle_protocol=4)


def _pickle_load(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=False)


def _old_state(optimizer: evoreg.Optimizer) -> dict:
    state = optimizer.state_dict()
    skip = optimizer._base_attributes | set(optimizer.transient)
    algorithm = {k: v for k, v in vars(optimizer).items() if k not in skip}
    state["algorithm"] = pickle.dumps(algorithm, protocol=pickle.HIGHEST_PROTOCOL)
    return state


def measure(kind: str, popsize: int, repeats: int, folder: Path) -> dict[str, Any]:
    optimizer, config = _optimizer(kind, popsize)
    fresh, _ = _optimizer(kind, popsize)
    times: dict[str, list[float]] = {k: [] for k in ("ours_save", "ours_load", "pickle_save",
                                                      "pickle_load")}
    ours, old = folder / f"{kind}.ckpt", folder / f"{kind}.pt"
    for _ in range(repeats):
        start = time.perf_counter()
        save_checkpoint(optimizer.state_dict(), ours)
        times["ours_save"].append(time.perf_counter() - start)
        start = time.perf_counter()
        _pickle_save(_old_state(optimizer), old)
        times["pickle_save"].append(time.perf_counter() - start)
        start = time.perf_counter()
        fresh.load_state_dict(load_checkpoint(ours))
        times["ours_load"].append(time.perf_counter() - start)
        start = time.perf_counter()
        state = _pickle_load(old)
        for key, value in pickle.loads(state["algorithm"]).items():  # noqa: S301 - our own
            setattr(fresh, key, value)
        times["pickle_load"].append(time.perf_counter() - start)
    ratios = {
        step: [a / b for a, b in zip(times[f"ours_{step}"], times[f"pickle_{step}"])]
        for step in ("save", "load")
    }
    return {
        "optimizer": kind, "config": config, "bytes_ours": ours.stat().st_size,
        "bytes_pickle": old.stat().st_size, "seconds": times,
        "ratio_median": {k: statistics.median(v) for k, v in ratios.items()},
        "ratio_p90": {k: sorted(v)[max(0, int(round(0.9 * len(v))) - 1)]
                      for k, v in ratios.items()},
        "ours_median_s": {k: statistics.median(times[f"ours_{k}"]) for k in ("save", "load")},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--leea-popsize", type=int, default=1000)
    parser.add_argument("--optimizers", default="leea,atari-ga,ng:CMA")
    add_output_options(parser, out="benchmarks/results",
                       quick={"repeats": 2, "leea_popsize": 50})
    args = parser.parse_args()
    if args.quick:
        args.repeats, args.leea_popsize = 2, 50
    info = run_info("cpu")
    Path(args.out).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=args.out) as folder:  # a real disk, not /tmp's tmpfs
        cases = [measure(kind, args.leea_popsize, args.repeats, Path(folder))
                 for kind in args.optimizers.split(",")]
    for case in cases:
        median, p90, seconds = case["ratio_median"], case["ratio_p90"], case["ours_median_s"]
        print(f"{case['optimizer']}: {case['bytes_ours'] / 1e6:.1f} MB (pickle "
              f"{case['bytes_pickle'] / 1e6:.1f} MB); save {seconds['save']:.3f} s = "
              f"{median['save']:.2f}x pickle (p90 {p90['save']:.2f}x); load "
              f"{seconds['load']:.3f} s = {median['load']:.2f}x (p90 {p90['load']:.2f}x)")
    path = write_result({**info, "repeats": args.repeats, "cases": cases}, args.out, NAME)
    print(f"wrote {relative_to_root(path)}")
    if args.doc and not args.quick:
        figure = "; ".join(
            f"{c['optimizer']} ({c['bytes_ours'] / 1e6:.0f} MB): save "
            f"{c['ratio_median']['save']:.2f}x / load {c['ratio_median']['load']:.2f}x the "
            f"pickle format (p90 {c['ratio_p90']['save']:.2f}x / {c['ratio_p90']['load']:.2f}x)"
            for c in cases
        )
        worst = max(max(c["ratio_median"].values()) for c in cases)
        update_doc_table(doc_line(NAME, info, figure, goal="safe format within 1.5x of pickle",
                                  met="yes" if worst <= 1.5 else "no"))


if __name__ == "__main__":
    main()
