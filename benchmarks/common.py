"""Shared helpers for the benchmark scripts in this folder.

A benchmark script measures, then calls

- ``run_info(device)``: what the figures were measured with (date, exact command, machine,
  device, torch version, package versions), to put in its JSON;
- ``write_result(data, out_dir, name)``: writes ``out_dir/name.json`` atomically;
- ``update_doc_table(row)``: adds or replaces the script's one line in ``docs/benchmarks.md``.

and may use ``median``, ``per_candidate_us`` and ``copy_bandwidth`` (the machine's
memory-bandwidth bound, measured in the same run as the figure it bounds).
Scripts import it as ``from common import ...`` (their own folder is on ``sys.path``).

Two environment variables let a driver such as ``gpu_suite.py`` collect the lines of the
scripts it runs: ``EVOREG_BENCH_DOC`` is the Markdown file the lines go to (default
``docs/benchmarks.md``) and ``EVOREG_BENCH_LABEL`` is appended to each benchmark's name in
parentheses (``eval_throughput (cuda)``), so a GPU figure gets its own line beside the CPU
one instead of replacing it.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import os
import shlex
import shutil
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from evoreg.checkpoint import atomic_path, write_json
from evoreg.environment import machine, versions

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
DOC = Path(os.environ.get("EVOREG_BENCH_DOC") or ROOT / "docs" / "benchmarks.md")
LABEL = os.environ.get("EVOREG_BENCH_LABEL", "")

DOC_INTRO = """# Benchmarks

Figures measured by the scripts in `benchmarks/`. Each figure is the median of several
repeats, and a comparison is measured as a ratio within ONE run, with the repeats of the
things compared interleaved, so that the noise of a shared machine hits them alike. The
raw timings of every repeat, the machine, the device, the package versions and the exact
command are in the JSON under `benchmarks/results/`; run the command from the repository
root to measure again. Each benchmark has one line below, replaced when it is run again.
"""

DOC_HEADER = (
    "| benchmark | date | machine | figure | goal | met? | command |\n"
    "|---|---|---|---|---|---|---|\n"
)


# --------------------------------------------------------------------------- measuring
def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``values``, interpolated linearly between the two
    nearest ranks (numpy's default method, and ``statistics.quantiles``' inclusive one)."""
    ordered = sorted(values)
    position = (len(ordered) - 1) * q
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return float(ordered[low] + (ordered[high] - ordered[low]) * (position - low))


def per_candidate_us(seconds: float, candidates: int) -> float:
    """Seconds for ``candidates`` candidates, as microseconds per candidate."""
    return seconds / candidates * 1e6


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def copy_bandwidth(
    nbytes: int, copies: int = 5, device: torch.device | str = "cpu"
) -> dict[str, Any]:
    """Memory bandwidth as ``dst.copy_(src)`` of ``nbytes`` float32 between touched buffers.

    Bandwidth is bytes copied (= bytes written) per second, the median of ``copies`` copies;
    both buffers are written once before timing, so page faults are not counted. The
    buffers are freed on return.
    """
    device = torch.device(device)
    numel = max(1, nbytes // 4)
    src = torch.ones(numel, device=device)
    dst = torch.zeros(numel, device=device)
    seconds = []
    for _ in range(copies):
        synchronize(device)
        start = time.perf_counter()
        dst.copy_(src)
        synchronize(device)
        seconds.append(time.perf_counter() - start)
    del src, dst
    return {
        "bytes": numel * 4,
        "seconds": seconds,
        "bytes_per_second": numel * 4 / median(seconds),
    }


def time_matmul(size: int, count: int, device: torch.device, generator: torch.Generator) -> dict:
    """The machine's own float32 matmul rate: ``count`` timed ``size x size`` products."""
    a = torch.randn(size, size, generator=generator).to(device)
    b = torch.randn(size, size, generator=generator).to(device)
    out = torch.empty(size, size, device=device)
    torch.mm(a, b, out=out)  # touch the output
    seconds = []
    for _ in range(count):
        synchronize(device)
        start = time.perf_counter()
        torch.mm(a, b, out=out)
        synchronize(device)
        seconds.append(time.perf_counter() - start)
    return {"size": size, "seconds": seconds, "gflops": 2 * size**3 / median(seconds) / 1e9}


# --------------------------------------------------------------------------- recording
def evoreg_script() -> str:
    """The console script of this interpreter's environment (what a user types)."""
    script = Path(sys.executable).with_name("evoreg")
    found = str(script) if script.exists() else shutil.which("evoreg")
    if not found:
        raise SystemExit("the evoreg console script is not installed (pip install -e .)")
    return found


def command_line(argv: Sequence[str] | None = None) -> str:
    """The command that ran this script, as typed from the repository root."""
    argv = list(sys.argv if argv is None else argv)
    python = relative_to_root(sys.executable)
    script = relative_to_root(argv[0]) if argv else "?"
    return shlex.join([python, script, *argv[1:]])


def relative_to_root(path: str | os.PathLike) -> str:
    """``path`` relative to the repository root when it lies inside it."""
    absolute = Path(path).absolute()
    try:
        return str(absolute.relative_to(ROOT))
    except ValueError:
        return str(path)


def device_info(device: torch.device) -> dict[str, Any]:
    info: dict[str, Any] = {"type": device.type, "name": str(device)}
    if device.type == "cuda":
        info["model"] = torch.cuda.get_device_name(device)
    else:
        info["model"] = machine()["processor"]
    return info


def run_info(device: torch.device | str = "cpu") -> dict[str, Any]:
    """Date, exact command, machine, device, torch version and package versions."""
    device = torch.device(device)
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": command_line(),
        "argv": list(sys.argv),
        "machine": machine(),
        "device": device_info(device),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "versions": versions(),
    }


def machine_summary(info: dict[str, Any]) -> str:
    """A short machine description for the Markdown table."""
    m = info["machine"]
    text = f"{m['processor']}, {m['cpu_count']} CPUs, torch {m['torch_threads']} threads"
    if info["device"]["type"] != "cpu":
        text += f"; {info['device']['model']}"
    return text


def doc_line(name: str, info: dict[str, Any], figure: str, goal: str, met: str) -> dict[str, Any]:
    """The benchmark's line for ``docs/benchmarks.md`` (``info``: ``run_info``'s fields);
    ``EVOREG_BENCH_LABEL``, when set, is appended to the name."""
    if LABEL:
        name = f"{name} ({LABEL})"
    return {
        "benchmark": name, "date": info["date"][:10], "machine": machine_summary(info),
        "figure": figure, "goal": goal, "met": met, "command": info["command"],
    }


def add_output_options(parser: Any, out: str, quick: dict[str, Any]) -> None:
    """``--quick`` (a smoke run with the ``quick`` sizes), ``--out`` and ``--no-doc``."""
    parser.add_argument(
        "--quick", action="store_true",
        help="smoke run: " + ", ".join(f"{k}={v}" for k, v in quick.items()) + " unless given",
    )
    parser.add_argument("--out", default=out, help="folder for the JSON")
    parser.add_argument(
        "--no-doc", dest="doc", action="store_false", help="do not touch docs/benchmarks.md"
    )


def fill_sizes(parser: Any, parsed: dict[str, Any], quick: dict[str, int], defaults: Any) -> None:
    """Sizes not given on the command line: ``quick``'s with ``--quick``, else ``defaults``';
    each must be >= 1."""
    for key in quick:
        if parsed[key] is None:
            parsed[key] = quick[key] if parsed["quick"] else getattr(defaults, key)
        if parsed[key] < 1:
            parser.error(f"--{key.replace('_', '-')} must be >= 1")


def write_result(data: dict[str, Any], out_dir: str | os.PathLike, name: str) -> Path:
    path = Path(out_dir) / f"{name}.json"
    write_json(data, path)
    return path


def _cell(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def table_row(row: dict[str, Any]) -> str:
    keys = ("benchmark", "date", "machine", "figure", "goal", "met", "command")
    cells = [_cell(row[key]) if key != "command" else f"`{_cell(row[key])}`" for key in keys]
    return "| " + " | ".join(cells) + " |"


def update_doc_table(row: dict[str, Any], doc: str | os.PathLike = DOC) -> Path:
    """Add ``row`` to the table in ``doc``, replacing the line of the same benchmark.

    ``row`` has the keys benchmark, date, machine, figure, goal, met, command. The file is
    created with the intro and the table header when missing. The read-modify-write holds
    an flock on the folder, so scripts run side by side do not drop each other's lines.
    """
    return merge_doc_line(table_row(row), doc)


def merge_doc_line(line: str, doc: str | os.PathLike = DOC) -> Path:
    """Put the table ``line`` (as ``table_row`` writes it) into ``doc``, replacing the line
    of the same benchmark (its first cell); see ``update_doc_table``."""
    doc = Path(doc)
    doc.parent.mkdir(parents=True, exist_ok=True)
    prefix = line[: line.index(" |", 2) + 2]  # "| name |": "|" inside a name is escaped
    with _locked(doc.parent):
        text = doc.read_text() if doc.exists() else DOC_INTRO + "\n" + DOC_HEADER
        if DOC_HEADER not in text:
            text = text.rstrip("\n") + "\n\n" + DOC_HEADER
        lines = text.splitlines()
        replaced = False
        for index, existing in enumerate(lines):
            if existing.startswith(prefix):
                lines[index] = line
                replaced = True
        if replaced:
            # keep only the first line of this benchmark
            seen = False
            kept = []
            for existing in lines:
                if existing.startswith(prefix):
                    if seen:
                        continue
                    seen = True
                kept.append(existing)
            lines = kept
        else:
            header_end = _table_end(lines)
            lines.insert(header_end, line)
        with atomic_path(doc) as temporary:
            temporary.write_text("\n".join(lines) + "\n")
    return doc


def _table_end(lines: list[str]) -> int:
    """Index just after the last line of the benchmarks table."""
    header = DOC_HEADER.splitlines()[0]
    start = lines.index(header)
    end = start + 2
    while end < len(lines) and lines[end].startswith("|"):
        end += 1
    return end


@contextlib.contextmanager
def _locked(directory: Path):
    handle = os.open(directory, os.O_RDONLY)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(handle, fcntl.LOCK_UN)
        os.close(handle)
