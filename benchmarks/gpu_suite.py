"""Every GPU item of the benchmarks in one command, sized to fit 8 minutes of one GPU.

The items, each the benchmark script itself run in its own process at its GPU size:

- ``eval_throughput``: the population forward of mlp92k (pop 2000 x batch 1024, LEEA's
  thesis sizes) and convnet9854 against the GPU's own fp32 matmul;
- ``goea_trace``: GO-EA on the full Fashion-MNIST training set (the paper's setting, goal:
  the 800-generation trace under 10 min); capped at its share of the minutes, the time of
  800 generations is projected from the measured rate (every generation scores the same
  54,000 images);
- ``rollout_throughput``: Atari rollouts with the agents' forward on the GPU against the raw
  emulator (goal: >= 70% of its frames/s); needs ale-py and gymnasium;
- ``leea_vs_adam``: LEEA at the thesis' lambda 2000 and minibatch 1024 (sigma 0.001) against
  Adam on the same MLP, 1,500 generations a seed, as many seeds as its share allows;
- ``lws``: learned weight sharing against full and no sharing, a short GPU run.

(A later GPU benchmark joins by one ``Item`` in ``ITEMS``; ``nes_peers`` is not one: it
compares against EvoTorch and evosax on the CPU and has no ``--device``.) Each item gets a share of
``--time-limit`` seconds (default 480: the suite's 8 minutes), never more than what is
left; an item over its share is stopped and recorded as timed out, and the next one runs.
The allowances are estimates for an H100/H200 from FLOP counts, not yet measured: the
suite's JSON records each item's wall time so the next GPU session can resize them.

Writes ``--out``/``gpu_suite_<label>.json`` (per item: the command, status, wall time, its
full result JSON and its docs line; ``label`` is the device type, ``cpu-tiny`` with
``--tiny``) and the items' PNGs as ``<item>_<label>.png``; each item's line goes into
``--doc`` (default ``docs/benchmarks.md``) named ``<item> (<label>)``, beside its CPU line.

    .venv/bin/python benchmarks/gpu_suite.py --data-root DIR      # on a GPU machine
    .venv/bin/python benchmarks/gpu_suite.py --device cpu --tiny  # the same code, seconds
    .venv/bin/python benchmarks/gpu_suite.py --pack-data .data    # copy Fashion-MNIST
    .venv/bin/python benchmarks/gpu_suite.py --record gpu_suite_cuda.json   # file results

A GPU machine without this repository's environment (a lent machine that has torch but no
registry access): copy the Fashion-MNIST files into a folder git ignores (``--pack-data
.data``, and ``echo /.data/ >> .git/info/exclude``), carry that folder, install evoreg there
without its dependencies (``python3 -m pip install -q --no-deps --no-build-isolation -e .``),
and carry ale-py's and gymnasium's wheels for ``rollout_throughput`` (an item whose modules
are missing is skipped and says which). Run with ``--out $OUT --no-doc`` so that everything
comes back in a few files, then file them here with ``--record``.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    DOC,
    DOC_HEADER,
    RESULTS,
    ROOT,
    doc_line,
    merge_doc_line,
    relative_to_root,
    run_info,
    update_doc_table,
    write_result,
)

NAME = "gpu_suite"
TIME_LIMIT_S = 480.0  # 8 minutes of one GPU
BENCHMARKS = Path(__file__).resolve().parent
FASHION_MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                       "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


@dataclasses.dataclass(frozen=True)
class Item:
    """One benchmark script of the suite."""

    name: str  #: the script's NAME: it writes <out>/<name>.json
    gpu: tuple[str, ...]  #: arguments at the GPU size
    seconds: float  #: its share of the GPU minutes (a timeout)
    tiny: tuple[str, ...] = ("--quick",)  #: arguments of the seconds-long CPU run
    data: bool = False  #: reads Fashion-MNIST: takes --data-root
    cap: str = ""  #: an option the script stops itself by, given its share less a margin
    needs: tuple[str, ...] = ()  #: modules it imports beyond evoreg's core

    @property
    def script(self) -> Path:
        return BENCHMARKS / f"{self.name}.py"


ITEMS = (
    Item("eval_throughput", ("--mlp-popsize", "2000", "--mlp-batch", "1024",
                             "--matmul-size", "4096"), seconds=60),
    Item("goea_trace", ("--batch-size", "full", "--report-every", "100"), seconds=180,
         data=True, cap="--max-seconds"),
    Item("rollout_throughput", (), seconds=90, needs=("ale_py", "gymnasium")),
    Item("leea_vs_adam", ("--popsize", "2000", "--batch-size", "1024", "--sigma", "0.001",
                          "--generations", "1500", "--seeds", "5", "--adam-epochs", "5"),
         seconds=120, data=True, cap="--max-seconds"),
    Item("lws", ("--iterations", "500", "--points", "2", "--seeds", "2", "--threads", "4"),
         seconds=60, data=True),
)
#: Seconds a capped item keeps for what follows its cap: start-up, reports, files.
CAP_MARGIN_S = 40.0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda (default), cuda:1, or cpu")
    parser.add_argument("--tiny", action="store_true",
                        help="every item at its smoke size (its --quick): seconds, on a CPU")
    parser.add_argument("--data-root", default="",
                        help="folder with the Fashion-MNIST IDX files (default: the loader's "
                             "own places, /usr/share/datasets/fashion-mnist among them)")
    parser.add_argument("--out", default=str(RESULTS), help="folder for the JSON and PNGs")
    parser.add_argument("--doc", default=None,
                        help=f"Markdown table for the items' lines (default "
                             f"{relative_to_root(DOC)}; none with --tiny)")
    parser.add_argument("--no-doc", dest="no_doc", action="store_true",
                        help="write no docs lines (they are still in the JSON)")
    parser.add_argument("--time-limit", type=float, default=TIME_LIMIT_S,
                        help=f"seconds for the whole suite (default {TIME_LIMIT_S:g})")
    parser.add_argument("--only", default="", help="comma-separated items to run "
                        f"(default all: {', '.join(item.name for item in ITEMS)})")
    parser.add_argument("--record", metavar="JSON", default="",
                        help="file a suite JSON brought back from a GPU machine: each item's "
                             "JSON into --out, its line into --doc; runs nothing")
    parser.add_argument("--pack-data", metavar="DIR", default="",
                        help="copy the Fashion-MNIST files into DIR (to carry them to a GPU "
                             "machine) and exit")
    args = parser.parse_args(argv)
    names = [item.name for item in ITEMS]
    args.items = [item for item in ITEMS if not args.only or item.name in args.only.split(",")]
    unknown = [name for name in args.only.split(",") if name and name not in names]
    if unknown:
        parser.error(f"unknown item(s) {', '.join(unknown)}; the items: {', '.join(names)}")
    if args.time_limit <= 0:
        parser.error("--time-limit must be > 0")
    if args.no_doc:
        args.doc = None
    elif args.doc is None and not args.tiny:
        args.doc = str(DOC)
    return args


def label_of(device: str, tiny: bool) -> str:
    """``cuda``, ``cpu``... (the device type), ``-tiny`` appended for smoke runs."""
    return device.split(":")[0] + ("-tiny" if tiny else "")


# --------------------------------------------------------------------------- running
def command_of(item: Item, args: argparse.Namespace, out: Path, seconds: float) -> list[str]:
    command = [sys.executable, str(item.script), *(item.tiny if args.tiny else item.gpu),
               "--device", args.device, "--out", str(out)]
    if item.data and args.data_root:
        command += ["--data-root", args.data_root]
    if item.cap and not args.tiny:
        command += [item.cap, f"{max(1.0, seconds - CAP_MARGIN_S):.0f}"]
    if args.doc is None:
        command.append("--no-doc")
    return command


def run_item(item: Item, args: argparse.Namespace, seconds: float, work: Path) -> dict:
    """Run one item in its own process with ``seconds`` to finish; its record."""
    out = work / item.name
    out.mkdir(parents=True, exist_ok=True)
    record: dict[str, Any] = {"name": item.name, "timeout_s": seconds, "result": None,
                              "doc_lines": [], "pngs": []}
    if not item.script.exists():  # an item of a newer checkout
        record.update(status=f"skipped: {item.script.name} not present", wall_s=0.0)
        return record
    missing = [module for module in item.needs if importlib.util.find_spec(module) is None]
    if missing:
        record.update(status=f"skipped: {', '.join(missing)} not installed", wall_s=0.0)
        return record
    command = command_of(item, args, out, seconds)
    record["command"] = " ".join(command)
    doc = out / "lines.md"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "EVOREG_BENCH_DOC": str(doc),
           "EVOREG_BENCH_LABEL": label_of(args.device, args.tiny)}
    started = time.perf_counter()
    try:
        done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=seconds)
        status = "ok" if done.returncode == 0 else f"failed (exit {done.returncode})"
        output = done.stdout + done.stderr
    except subprocess.TimeoutExpired as expired:
        status = f"timed out after {seconds:.0f} s"
        output = _text(expired.stdout) + _text(expired.stderr)
    record.update(status=status, wall_s=time.perf_counter() - started, output_tail=output[-3000:])
    result = out / f"{item.name}.json"
    if result.exists():
        record["result"] = json.loads(result.read_text())
    if doc.exists():
        record["doc_lines"] = [line for line in doc.read_text().splitlines()
                               if line.startswith("| ") and line + "\n" not in DOC_HEADER]
    record["pngs"] = sorted(str(path) for path in out.glob("*.png"))
    return record


def _text(value: bytes | str | None) -> str:
    if value is None:
        return ""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def run_suite(args: argparse.Namespace, clock: Callable[[], float] = time.perf_counter) -> dict:
    """Run the items in turn, each within its share and what is left of the limit."""
    label = label_of(args.device, args.tiny)
    deadline = clock() + args.time_limit
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    records = []
    with tempfile.TemporaryDirectory(prefix="gpu-suite-") as temporary:
        for item in args.items:
            left = deadline - clock()
            if left < 5:
                records.append({"name": item.name, "status": "not run: no time left",
                                "wall_s": 0.0, "result": None, "doc_lines": [], "pngs": []})
                continue
            # --tiny: a smoke run on a busy CPU may take what is left, not the GPU share.
            record = run_item(item, args, min(item.seconds, left) if not args.tiny else left,
                              Path(temporary))
            kept = []
            for png in record.pop("pngs"):
                target = out / f"{Path(png).stem}_{label}.png"
                shutil.copyfile(png, target)
                kept.append(target.name)
            record["pngs"] = kept
            records.append(record)
            print(f"{item.name}: {record['status']} ({record['wall_s']:.0f} s)", flush=True)
    info = run_info("cpu" if args.device == "cpu" else args.device)
    total = sum(record["wall_s"] for record in records)
    data = {
        "benchmark": NAME,
        **info,
        "label": label,
        "tiny": args.tiny,
        "time_limit_s": args.time_limit,
        "wall_time_s": total,
        "items": records,
        "goal": {"text": f"every item within {args.time_limit:g} s of one GPU",
                 "met": total <= args.time_limit
                 and all(record["status"] == "ok" for record in records)},
    }
    path = write_result(data, out, f"{NAME}_{label}")
    print(f"wrote {relative_to_root(path)}")
    if args.doc:
        file_doc_lines(data, Path(args.doc))
    return data


# --------------------------------------------------------------------------- filing
def suite_line(data: dict) -> dict:
    parts = [f"{record['name']} {record['status']} ({record['wall_s']:.0f} s)"
             for record in data["items"]]
    return doc_line(
        f"{NAME} ({data['label']})", data,
        f"{'; '.join(parts)}; total {data['wall_time_s']:.0f} s of {data['time_limit_s']:g}",
        goal=data["goal"]["text"] + ", every item ok",
        met="yes" if data["goal"]["met"] else "no",
    )


def file_doc_lines(data: dict, doc: Path) -> None:
    for record in data["items"]:
        for line in record["doc_lines"]:
            merge_doc_line(line, doc)
    update_doc_table(suite_line(data), doc)
    print(f"updated {relative_to_root(doc)}")


def record_suite(path: Path, args: argparse.Namespace) -> None:
    """File a suite JSON made elsewhere: each item's result as ``<item>_<label>.json`` in
    ``--out``, the lines into ``--doc``."""
    data = json.loads(path.read_text())
    out = Path(args.out)
    for record in data["items"]:
        if record.get("result") is not None:
            written = write_result(record["result"], out, f"{record['name']}_{data['label']}")
            print(f"wrote {relative_to_root(written)}")
        for png in record.get("pngs", []):
            if (path.parent / png).exists() and path.parent.resolve() != out.resolve():
                shutil.copyfile(path.parent / png, out / png)
    if path.parent.resolve() != out.resolve():
        write_result(data, out, path.stem)
    if args.doc:
        file_doc_lines(data, Path(args.doc))


def pack_data(target: Path, data_root: str) -> None:
    """Copy the Fashion-MNIST IDX files (wherever evoreg's loader finds them) to ``target``."""
    from evoreg.problems.datasets import _find, candidate_dirs, default_data_root

    root = Path(data_root or default_data_root()).expanduser()
    for directory in candidate_dirs("fashion-mnist", root):
        paths = _find(directory, FASHION_MNIST_FILES)
        if paths:
            target.mkdir(parents=True, exist_ok=True)
            for source in paths:
                shutil.copyfile(source, target / source.name)
            size = sum((target / source.name).stat().st_size for source in paths)
            print(f"copied {len(paths)} files ({size / 1e6:.0f} MB) from {directory} to {target}")
            return
    raise SystemExit("Fashion-MNIST not found: apt-get install dataset-fashion-mnist, or give "
                     "--data-root DIR holding its four IDX files")


def main(argv: list[str] | None = None) -> dict | None:
    args = parse_args(argv)
    if args.pack_data:
        pack_data(Path(args.pack_data), args.data_root)
        return None
    if args.record:
        record_suite(Path(args.record), args)
        return None
    return run_suite(args)


if __name__ == "__main__":
    main()
