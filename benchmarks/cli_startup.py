"""Command-line start-up: whole fresh processes of ``evoreg``, with and without its registry index.

Times, in ONE run with interleaved repeats, each a new process of the installed ``evoreg``
console script, from start to exit:

- ``evoreg --version`` (reads no registry);
- ``evoreg list``, ``evoreg info random-search`` and ``evoreg info ng:NGOpt``, first with the
  registry index warm (written by an untimed call before the repeats), then as the first
  call after the index file is removed (cold: the call imports every plugin, torch and
  nevergrad included, and writes the index again);
- ``python -c pass``: the machine's floor for any Python process.

All installed plugins are loaded (``EVOREG_PLUGINS`` / ``EVOREG_DISABLE_PLUGINS`` are
removed from the processes' environment) and the index lives in a temporary folder
(``EVOREG_CACHE_DIR``), so the user's own index is not touched. Figures are the median and
the 90th percentile of each command's repeats. Goals (warm index): ``--version`` under
0.3 s, ``list`` and ``info`` under 1.5 s. Writes ``benchmarks/results/cli_startup.json`` and
the benchmark's line in ``docs/benchmarks.md``.

    .venv/bin/python benchmarks/cli_startup.py            # the full run
    .venv/bin/python benchmarks/cli_startup.py --quick    # smoke run, one repeat
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    RESULTS,
    add_output_options,
    doc_line,
    evoreg_script,
    fill_sizes,
    median,
    percentile,
    relative_to_root,
    run_info,
    update_doc_table,
    write_result,
)

from evoreg import registry_index  # noqa: E402  (light: imports no plugin)

NAME = "cli_startup"
GOAL_VERSION_S = 0.3  #: median seconds of `evoreg --version`
GOAL_REGISTRY_S = 1.5  #: median seconds of `evoreg list` / `info` with the index warm
VERSION = ("--version",)
#: The commands that read the registry index, timed warm and cold.
INDEXED = (("list",), ("info", "random-search"), ("info", "ng:NGOpt"))


@dataclass
class Args:
    repeats: int = 7  #: interleaved repeats of every timed command; figures over them
    quick: bool = False
    out: str = str(RESULTS)
    doc: bool = True


QUICK = {"repeats": 1}


def parse_args(argv: list[str] | None = None) -> Args:
    defaults = Args()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, help=f"default {defaults.repeats}")
    add_output_options(parser, defaults.out, QUICK)
    parsed = vars(parser.parse_args(argv))
    fill_sizes(parser, parsed, QUICK, defaults)
    return Args(**parsed)


# --------------------------------------------------------------------------- the timings
def timed(command: Sequence[str], env: dict[str, str]) -> float:
    """Seconds from start to exit of a fresh process running ``command``."""
    start = time.perf_counter()
    done = subprocess.run(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                          text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({done.returncode}): {done.stderr[-2000:]}")
    return seconds


def label(args: Sequence[str]) -> str:
    return "evoreg " + " ".join(args)


def run(args: Args) -> dict:
    script = evoreg_script()
    cache = Path(tempfile.mkdtemp(prefix="evoreg-cli-startup-"))
    env = {key: value for key, value in os.environ.items()
           if key not in ("EVOREG_PLUGINS", "EVOREG_DISABLE_PLUGINS")}
    env["EVOREG_CACHE_DIR"] = str(cache)
    index = registry_index.index_path(env)
    try:
        timed([script, "list"], env)  # untimed: writes the index
        index_bytes = index.stat().st_size
        repeats = []
        for repeat in range(args.repeats):
            record = {
                "python -c pass": timed([sys.executable, "-c", "pass"], env),
                label(VERSION): timed([script, *VERSION], env),
            }
            for command in INDEXED:
                record[label(command) + " (warm index)"] = timed([script, *command], env)
            for command in INDEXED:
                index.unlink()
                record[label(command) + " (cold index)"] = timed([script, *command], env)
            repeats.append(record)
            print(f"repeat {repeat + 1}/{args.repeats}: "
                  + ", ".join(f"{name} {seconds:.2f} s" for name, seconds in record.items()),
                  flush=True)
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    return {"script": script, "index_bytes": index_bytes, "repeats": repeats}


# --------------------------------------------------------------------------- the summary
def summarise(args: Args, info: dict, measured: dict) -> dict:
    repeats = measured["repeats"]
    figures = {
        name: {"median_s": median([r[name] for r in repeats]),
               "p90_s": percentile([r[name] for r in repeats], 0.9)}
        for name in repeats[0]
    }
    goals = {label(VERSION): GOAL_VERSION_S} | {
        label(command) + " (warm index)": GOAL_REGISTRY_S for command in INDEXED
    }
    checks = {name: {"goal_s": goal, "median_s": figures[name]["median_s"],
                     "met": figures[name]["median_s"] < goal} for name, goal in goals.items()}
    return {
        "benchmark": NAME,
        **info,
        "config": asdict(args) | {"out": relative_to_root(args.out)},
        "evoreg_script": measured["script"],
        "index_bytes": measured["index_bytes"],
        "units": "seconds of a whole process, start to exit; median and 90th percentile",
        "repeats": repeats,
        "figures": figures,
        "goal": {
            "text": f"median of evoreg --version < {GOAL_VERSION_S:g} s; of evoreg list and "
                    f"info with the index warm < {GOAL_REGISTRY_S:g} s",
            "checks": checks,
            "met": all(check["met"] for check in checks.values()),
        },
    }


def doc_row(result: dict) -> dict:
    f = result["figures"]

    def figure(name: str) -> str:
        return f"{f[name]['median_s']:.2f} ({f[name]['p90_s']:.2f})"

    warm = ", ".join(f"{' '.join(c)} {figure(label(c) + ' (warm index)')}" for c in INDEXED)
    cold = ", ".join(f"{' '.join(c)} {figure(label(c) + ' (cold index)')}" for c in INDEXED)
    text = (
        f"whole process, median (p90) s of {result['config']['repeats']}: "
        f"--version {figure(label(VERSION))}; index warm: {warm}; "
        f"first call after the index is removed: {cold}; "
        f"python -c pass {figure('python -c pass')}; "
        f"index {result['index_bytes'] / 1e6:.1f} MB"
    )
    goal = result["goal"]
    slowest_warm = max(f[label(c) + " (warm index)"]["median_s"] for c in INDEXED)
    return doc_line(
        NAME, result, text,
        goal=f"--version < {GOAL_VERSION_S:g} s; list, info < {GOAL_REGISTRY_S:g} s (warm index)",
        met=f"{'yes' if goal['met'] else 'no'} ({f[label(VERSION)]['median_s']:.2f} s; "
            f"{slowest_warm:.2f} s)",
    )


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    info = run_info("cpu")
    result = summarise(args, info, run(args))
    path = write_result(result, args.out, NAME)
    print(f"wrote {path}")
    if args.doc:
        print(f"updated {update_doc_table(doc_row(result))}")
    for name, figures in result["figures"].items():
        print(f"{name}: median {figures['median_s']:.3f} s, p90 {figures['p90_s']:.3f} s")
    print(f"goal ({result['goal']['text']}): {'met' if result['goal']['met'] else 'NOT met'}")
    return result


if __name__ == "__main__":
    main()
