"""The ``evoreg`` command line: list, info, run, bench, report, analyze.

Bad input (an unknown name, a bad ``--set``, a bad TOML file, a missing file, any
``EvoregError`` from the core, a size the machine has no memory for) exits with status 2 and
one line on stderr saying what is wrong and what is accepted. Anything else is a bug: its
traceback is printed and the status is 1. ``report`` leaves out a damaged run with a
one-line warning and exits 0.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import gc
import inspect
import json
import math
import os
import re
import sys
import traceback
import typing
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

# Only light modules here: `evoreg --version`, `list` and `info` must not import torch,
# numpy or nevergrad; the commands that need them import them inside their handler.
from . import registry as registry_module
from . import registry_index
from .config import (
    config_fields,
    describe_bounds,
    field_default,
    make_config,
    parse_assignment,
    type_name,
)
from .errors import EvoregError, RunInterrupted, close_matches, unknown_name
from .registry import KINDS, Entry, Registry, get_registry
from .registry_index import IndexedEntry, RegistryIndex

#: A family with more members than this is listed as one line (``ng:*``) unless asked for.
COLLAPSE_ABOVE = 20


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is an EvoregError: one line, exit status 2."""

    def error(self, message: str) -> NoReturn:
        usage = " ".join(self.format_usage().split()).removeprefix("usage: ")
        raise EvoregError(f"{message}; usage: {usage}")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    try:
        status = _main(argv)
    except Exception:  # a bug: keep its traceback
        traceback.print_exc()
        status = 1
    if status != 0:
        # Outside the except clauses the failed frames are released; collect them now.
        # Some optimizers (nevergrad's scipy-based ones) stop a worker thread only when
        # collected, and that thread, kept alive, would hang the interpreter's exit.
        gc.collect()
    return status


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    try:
        try:
            args = parser.parse_args(argv)
        except SystemExit as exit_:  # --help, --version
            return exit_.code if isinstance(exit_.code, int) else 0
        return args.handler(args)
    except EvoregError as error:
        _fail(str(error))
    except BrokenPipeError:
        # `evoreg list | head`: the reader left early; silence the flush at exit too.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except OSError as error:
        if error.filename is None:
            raise  # not about a path the user gave: a bug
        _fail(f"cannot use {error.filename}: {error.strerror}")
    except RunInterrupted as stopped:  # SIGINT/SIGTERM: a checkpoint was written
        print(f"evoreg: {stopped.message}", file=sys.stderr)
        return 128 + stopped.signum
    except KeyboardInterrupt:  # a second Ctrl-C, or one outside a run's generations
        print("evoreg: interrupted before a checkpoint could be written; --resume continues "
              "from the last one saved, if any", file=sys.stderr)
        return 130
    except (MemoryError, RuntimeError) as error:
        if not _out_of_memory(error):
            raise
        # A size the machine cannot hold (--set dim=99999999999, a huge popsize): input
        # too large, not a bug in evoreg.
        _fail(f"out of memory ({_first_line(error)}); ask for less: a smaller population, "
              "dimension or batch")
    return 2


def _out_of_memory(error: BaseException) -> bool:
    # torch's CPU allocator raises a plain RuntimeError; CUDA's, torch.OutOfMemoryError.
    return (
        isinstance(error, MemoryError)
        or type(error).__name__ == "OutOfMemoryError"
        or "can't allocate memory" in str(error)
    )


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    text = text.split("DefaultCPUAllocator: ", 1)[-1]  # past torch's "[enforce fail at ...]"
    return text.splitlines()[0] if text else type(error).__name__


def _fail(message: str) -> None:
    print("evoreg: error: " + " ".join(message.split()), file=sys.stderr)


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = _Parser(prog="evoreg", description="Gradient-free optimizers as plugins.")
    parser.add_argument("--version", action="version", version=f"evoreg {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                     parser_class=_Parser)

    listing = commands.add_parser("list", help="registered optimizers and problems")
    listing.add_argument("kind", nargs="?", choices=["optimizers", "problems"])
    listing.add_argument("--family", metavar="NAME", help="list this family in full")
    listing.set_defaults(handler=cmd_list)

    info = commands.add_parser("info", help="an optimizer's or problem's doc and config")
    info.add_argument("name")
    info.set_defaults(handler=cmd_info)

    runner = commands.add_parser("run", help="minimise PROBLEM with OPTIMIZER")
    runner.add_argument("problem")
    runner.add_argument("optimizer")
    runner.add_argument("--budget", type=number, required=True, metavar="N",
                        help="in the problem's unit (evaluations, frames, epochs)")
    runner.add_argument("--seed", type=seed_number, default=0, help="an integer >= 0")
    runner.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    runner.add_argument("--set", dest="assignments", action="append", default=[],
                        metavar="KEY=VALUE",
                        help="a hyperparameter; prefix problem. or optimizer. when both have it")
    runner.add_argument("--out", type=Path, help="default: runs/<problem>-<optimizer>-seed<S>")
    runner.add_argument("--resume", action="store_true", help="continue the run in --out")
    runner.add_argument("--trust-checkpoint", action="store_true",
                        help="load pickled checkpoint state (nevergrad's) that another user saved; "
                             "unpickling can run code: only for files from someone you trust")
    runner.add_argument("--checkpoint-every", type=int, default=None, metavar="K",
                        help="generations between checkpoints (default: every 30 s)")
    runner.add_argument("--ray", nargs="?", const="local", default=None, metavar="ADDRESS",
                        help="score generations on Ray actors: alone, a local Ray; 'auto' or "
                             "HOST:PORT, a running cluster (needs evoreg[ray])")
    runner.add_argument("--workers", type=int, default=None, metavar="N",
                        help="Ray actors (default: one per CPU of the cluster)")
    runner.set_defaults(handler=cmd_run)

    bench = commands.add_parser("bench", help="a problems x optimizers x seeds grid (TOML)")
    bench.add_argument("config", type=Path, metavar="CONFIG.toml")
    bench.add_argument("--out", type=Path, required=True, metavar="DIR")
    bench.add_argument("--resume", action="store_true",
                       help="skip finished cells, continue unfinished ones")
    bench.add_argument("--trust-checkpoint", action="store_true",
                       help="load pickled checkpoint state (nevergrad's) that another user saved; "
                            "unpickling can run code: only for files from someone you trust")
    bench.add_argument("--keep-going", action="store_true",
                       help="record a failing cell (its traceback in error.txt) and go on")
    bench.add_argument("--workers", type=positive_int, default=1, metavar="N",
                       help="cells run at a time, each in its own process (default: 1); a "
                            "cell's result does not depend on it")
    bench.set_defaults(handler=cmd_bench)

    report = commands.add_parser("report", help="summary table and plots of a bench or run")
    report.add_argument("dir", type=Path)
    report.set_defaults(handler=cmd_report)

    from .analysis.command import add_parser as add_analyze  # argparse only: no torch

    add_analyze(commands, _Parser)
    return parser


def number(text: str) -> int | float:
    """An int when the text is one (keeps run.json tidy), else a finite float: a budget of
    inf would run forever, one of nan would never start."""
    try:
        return int(text)
    except ValueError:
        value = float(text)  # argparse words a ValueError as "invalid number value"
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def seed_number(text: str) -> int:
    """A run seed: an integer >= 0 (numpy's SeedSequence, which derives the problem's and
    the optimizer's seeds from it, refuses negative ones)."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer >= 0")
    return value


def positive_int(text: str) -> int:
    """An integer >= 1 (a number of worker processes)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer >= 1")
    return value


def _registry(show_broken: bool = True) -> Registry:
    """The registry; plugins that fail to load are reported in one line each."""
    with warnings.catch_warnings(record=True):  # the registry's warnings span two lines
        warnings.simplefilter("always")
        registry = get_registry()
    if show_broken:
        _warn_broken(registry.broken)
    return registry


def _warn_broken(broken: dict[str, str]) -> None:
    for name, error in broken.items():
        print(f"evoreg: warning: plugin {name!r} failed to load: {error}", file=sys.stderr)


def _listing(show_broken: bool = True) -> RegistryIndex:
    """What `list` and `info` show, from the registry index while it is valid (no plugin is
    imported); otherwise the registry is loaded and the index written again."""
    if registry_module.is_loaded():  # this process holds it already (a test, a program)
        index = RegistryIndex.from_registry(_registry(show_broken=False), describe)
    else:
        current = registry_index.fingerprint()
        index = registry_index.read_index(current)
        if index is None:
            registry = _registry(show_broken=False)
            index = RegistryIndex.from_registry(registry, describe)
            if not registry.timed_out:  # a hang now may not be one next time: check again
                registry_index.write_index(index, current)
    if show_broken:
        _warn_broken(index.broken)
    return index


# --------------------------------------------------------------------------- list
def cmd_list(args: argparse.Namespace) -> int:
    listing = _listing(show_broken=False)  # listed at the end instead
    kinds = [args.kind[:-1]] if args.kind else list(KINDS)
    if args.family is not None:
        families = {e.family for kind in KINDS for e in listing.entries[kind].values()}
        if args.family not in families:
            raise unknown_name("family", args.family, families)
    sections = []
    for kind in kinds:
        entries = sorted(listing.entries[kind].values(), key=lambda e: e.name)
        if args.family is not None:
            entries = [e for e in entries if e.family == args.family]
        if entries or args.family is None:
            rows = _list_rows(kind, entries, expand=args.family is not None)
            sections.append(f"{kind.capitalize()}s ({len(entries)}):\n"
                            + _plain_table(["name", "family", "summary"], rows))
    if listing.broken:
        rows = [[name, error] for name, error in sorted(listing.broken.items())]
        sections.append("Broken plugins (not loaded):\n" + _plain_table(["plugin", "error"], rows))
    print("\n\n".join(sections))
    return 0


def _list_rows(kind: str, entries: list[IndexedEntry], expand: bool) -> list[list[str]]:
    """Name, family, summary per entry; a large family becomes one line with its count."""
    by_family: dict[str, list[IndexedEntry]] = {}
    for entry in entries:
        by_family.setdefault(entry.family, []).append(entry)
    rows = []
    collapsed: set[str] = set()
    for entry in entries:
        members = by_family[entry.family]
        if expand or not entry.family or len(members) <= COLLAPSE_ABOVE:
            rows.append([entry.name, entry.family or "-", entry.summary])
        elif entry.family not in collapsed:
            collapsed.add(entry.family)
            rows.append([
                _family_pattern(members),
                entry.family,
                f"{len(members)} {entry.family} {kind}s "
                f"(evoreg list {kind}s --family {entry.family})",
            ])
    return rows


def _family_pattern(members: list[IndexedEntry]) -> str:
    prefixes = {m.name.split(":", 1)[0] for m in members if ":" in m.name}
    if len(prefixes) == 1 and all(":" in m.name for m in members):
        return f"{prefixes.pop()}:*"
    return f"({members[0].family})"


def _plain_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows)]
    lines = [headers, *rows]
    return "\n".join(
        "  " + "  ".join(str(c).ljust(w) for c, w in zip(line, widths)).rstrip()
        for line in lines
    )


# --------------------------------------------------------------------------- info
def cmd_info(args: argparse.Namespace) -> int:
    listing = _listing()
    found = [listing.entries[kind][args.name] for kind in KINDS
             if args.name in listing.entries[kind]]
    if not found:
        known = [name for kind in KINDS for name in listing.entries[kind]]
        raise unknown_name("optimizer or problem", args.name, known)
    if any(entry.description is None for entry in found):
        # Rendering failed when the index was built: render again, to show why.
        registry = _registry(show_broken=False)
        print("\n\n".join(describe(registry.get(entry.kind, entry.name)) for entry in found))
    else:
        print("\n\n".join(entry.description for entry in found))
    return 0


def describe(entry: Entry) -> str:
    """What ``evoreg info`` prints for one entry."""
    origin = entry.origin
    distribution = f" ({origin.distribution} {origin.version})" if origin.distribution else ""
    lines = [
        f"{entry.name} ({entry.kind})",
        f"  plugin:  {entry.plugin}{distribution}",
        f"  family:  {entry.family or '-'}",
    ]
    unit = getattr(entry.factory, "budget_unit", None)
    if entry.kind == "problem" and isinstance(unit, str):
        lines.append(f"  budget:  counted in {unit}")
    spaces = getattr(entry.factory, "spaces", None)
    if entry.kind == "optimizer" and isinstance(spaces, tuple):
        lines.append("  spaces:  " + ", ".join(getattr(s, "__name__", str(s)) for s in spaces))
    smaller_ask = getattr(entry.factory, "smaller_ask", None)
    if entry.kind == "optimizer" and isinstance(smaller_ask, bool):
        lines.append("  budget:  " + (
            "exact (smaller_ask = True): the last generation asks only what the budget "
            "leaves" if smaller_ask else
            "whole generations only (smaller_ask = False): a run stops before a generation "
            "its budget cannot pay for, so it may end below the budget"))
    if entry.doc:
        lines += ["", entry.doc]
    lines += ["", hyperparameter_table(entry)]
    if entry.citation:
        lines += ["", f"Citation: {entry.citation}"]
    return "\n".join(lines)


def hyperparameter_table(entry: Entry) -> str:
    config = entry.config
    if not dataclasses.is_dataclass(config) or not config_fields(config):
        return "Hyperparameters: none"
    try:
        hints = typing.get_type_hints(config)
    except Exception:  # noqa: BLE001 - an unresolvable annotation: show it as written
        hints = {}
    comments = field_comments(config)
    rows = []
    for field in config_fields(config):
        default = field_default(field)
        rows.append([
            field.name,
            type_name(hints.get(field.name, field.type)),
            "(required)" if default is dataclasses.MISSING else repr(default),
            describe_bounds(field) or "-",
            comments.get(field.name, ""),
        ])
    header = f"Hyperparameters (--set {entry.kind}.NAME=VALUE):"
    return header + "\n" + _plain_table(["name", "type", "default", "range", "description"],
                                         rows)


_FIELD_LINE = re.compile(r"^\s+(\w+)\s*:[^#]*?(?:#:?\s*(.*?))?\s*$")


def field_comments(config: type) -> dict[str, str]:
    """Each field's comment in the source: trailing (``x: int = 1  #: what``) or ``#:`` above.

    Read from the source of the Config class and its dataclass bases; empty when the source
    is not available (a class built at run time, a frozen application).
    """
    return dict(_field_comments(config))


# Cached: inspect.getsource parses the class's whole module, and the registry index renders
# ~550 entries that share a few Config classes (all ng:* share one): 1.1 s -> 0.1 s.
@functools.lru_cache(maxsize=256)
def _field_comments(config: type) -> dict[str, str]:
    names = {field.name for field in config_fields(config)}
    comments: dict[str, str] = {}
    for cls in reversed(config.__mro__):  # a subclass's comment wins over its base's
        if cls is object or not dataclasses.is_dataclass(cls):
            continue
        try:
            source = inspect.getsource(cls)
        except (OSError, TypeError):
            continue
        above: list[str] = []
        for line in source.splitlines():
            stripped = line.strip()
            if stripped.startswith("#:"):
                above.append(stripped[2:].strip())
                continue
            match = _FIELD_LINE.match(line)
            if match and match.group(1) in names:
                text = match.group(2) or " ".join(above)
                if text and not text.startswith(("noqa", "type:")):
                    comments[match.group(1)] = text
            above = []
    return comments


# --------------------------------------------------------------------------- run
def cmd_run(args: argparse.Namespace) -> int:
    from .report import safe_filename
    from .runner import run

    registry = _registry()
    problem = registry.get("problem", args.problem)
    optimizer = registry.get("optimizer", args.optimizer)
    problem_config, optimizer_config = route_assignments(args.assignments, problem, optimizer)
    out = args.out or Path("runs") / safe_filename(
        f"{args.problem}-{args.optimizer}-seed{args.seed}"
    )
    if args.workers is not None and args.ray is None:
        raise EvoregError("--workers N is the number of Ray actors; it needs --ray [ADDRESS]")
    result = run(
        args.problem,
        args.optimizer,
        args.budget,
        seed=args.seed,
        out_dir=out,
        checkpoint_every=args.checkpoint_every,
        resume=args.resume,
        trust_checkpoint=args.trust_checkpoint,
        device=args.device,
        problem_config=problem_config,
        optimizer_config=optimizer_config,
        evaluator="local" if args.ray is None else "ray",
        ray_address=None if args.ray in (None, "local") else args.ray,
        workers=args.workers,
    )
    unit = getattr(problem.factory, "budget_unit", "")
    try:  # a problem's config may choose its unit (atari's budget_unit=steps)
        unit = json.loads((Path(out) / "run.json").read_text()).get("budget_unit", unit)
    except (OSError, ValueError, TypeError):
        pass
    report = ", ".join(f"{key}={_short(value)}" for key, value in result.report.items())
    rows = [
        ["best loss", _short(result.best_loss)],
        ["report", report or "-"],
        ["generations", str(result.generations)],
        ["cost", f"{_short(result.cost)} {unit}".strip()],
        ["wall time", f"{result.wall_time:.2f} s"],
        ["out dir", str(out)],
    ]
    print(f"{args.problem} / {args.optimizer} (seed {args.seed})")
    print("\n".join(f"  {name:<12} {value}" for name, value in rows))
    return 0


def _short(value: Any) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def route_assignments(
    assignments: Sequence[str], problem: Entry, optimizer: Entry
) -> tuple[dict[str, str], dict[str, str]]:
    """Split ``--set`` items into the problem's and the optimizer's config (values stay
    strings; ``make_config`` converts each by its field's type).

    ``problem.KEY`` and ``optimizer.KEY`` go where they say; a bare ``KEY`` goes to the one
    whose Config has that field, and is refused when both or neither have it.
    """
    owners = {"problem": problem, "optimizer": optimizer}
    fields = {kind: _field_names(entry) for kind, entry in owners.items()}
    routed: dict[str, dict[str, str]] = {"problem": {}, "optimizer": {}}
    for text in assignments:
        key, value = parse_assignment(text)
        kind, _, name = key.rpartition(".")
        if kind:
            if kind not in owners:
                raise EvoregError(
                    f"--set {text}: prefix {kind!r} is neither 'problem' nor 'optimizer'"
                )
            known = fields[kind]
            if known is not None and name not in known:
                raise unknown_name(f"hyperparameter of {kind} {owners[kind].name!r}", name,
                                   known)
        else:
            kind = _owner_of(text, name, owners, fields)
        routed[kind][name] = value
    for kind, entry in owners.items():
        _check_config(kind, entry, routed[kind])
    return routed["problem"], routed["optimizer"]


def _check_config(kind: str, entry: Entry, values: dict[str, str]) -> None:
    """Build the config once now, so a bad value is refused naming its owner."""
    if not dataclasses.is_dataclass(entry.config):
        return
    owner = f"{kind} {entry.name!r}"
    try:
        make_config(entry.config, owner, values)
    except EvoregError as error:
        message = str(error)
        raise EvoregError(message if message.startswith(owner) else f"{owner}: {message}") from None


def _owner_of(
    text: str, name: str, owners: dict[str, Entry], fields: dict[str, list[str] | None]
) -> str:
    having = [kind for kind, known in fields.items() if known is not None and name in known]
    if len(having) == 1:
        return having[0]
    problem, optimizer = owners["problem"].name, owners["optimizer"].name
    if len(having) == 2:
        raise EvoregError(
            f"--set {text}: both problem {problem!r} and optimizer {optimizer!r} have {name!r}; "
            f"write problem.{text} or optimizer.{text}"
        )
    if name in ("seed", "device", "budget"):
        raise EvoregError(f"--set {text}: use --{name} instead")
    qualified = [f"{kind}.{field}" for kind, known in fields.items() for field in known or []]
    bare = {q.split(".", 1)[1]: q for q in qualified}
    matches = [bare[match] for match in close_matches(name, bare)] or close_matches(name, qualified)
    hint = ("did you mean " + ", ".join(matches) + "?") if matches else (
        "hyperparameters: " + (", ".join(qualified) or "none")
    )
    raise EvoregError(
        f"--set {text}: neither problem {problem!r} nor optimizer {optimizer!r} has {name!r}; "
        f"{hint} (evoreg info NAME lists them)"
    )


def _field_names(entry: Entry) -> list[str] | None:
    """The Config's fields, or None when the entry declares no dataclass (cannot check)."""
    if not dataclasses.is_dataclass(entry.config):
        return None
    return [field.name for field in config_fields(entry.config)]


# --------------------------------------------------------------------------- bench, report
def cmd_bench(args: argparse.Namespace) -> int:
    from .bench import bench
    from .report import RUNS_CSV, STATISTICS_MD, summary_markdown

    _registry()

    failed: list[str] = []

    def progress(index: int, total: int, cell: dict[str, Any]) -> None:
        where = f"{cell['problem']}/{cell['optimizer']}/seed{cell['seed']}"
        if cell["status"] == "failed":
            failed.append(where)
            outcome = f"FAILED: {cell['error']}"
        else:
            outcome = f"best loss {_short(cell['best_loss'])} in {cell['wall_time']:.2f} s"
        print(f"[{index}/{total}] {where}: {outcome} ({cell['status']})", file=sys.stderr)

    rows = bench(args.config, args.out, resume=args.resume, progress=progress,
                 keep_going=args.keep_going, trust_checkpoint=args.trust_checkpoint,
                 workers=args.workers)
    print(summary_markdown(rows) if rows else "no cell finished")
    print(f"\nwrote {args.out / 'summary.md'}, {args.out / STATISTICS_MD} (tests, ranks, win "
          f"rates), {args.out / 'summary.json'} and {args.out / RUNS_CSV} (one row per run); "
          f"plots: evoreg report {args.out}")
    if failed:
        print(f"{len(failed)} cell(s) failed (tracebacks in their error.txt): "
              + ", ".join(failed), file=sys.stderr)
        return 1
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from .report import report

    summary = report(args.dir)
    for warning in summary["warnings"]:  # a damaged run, left out: the others are reported
        print("evoreg: warning: " + " ".join(warning.split()), file=sys.stderr)
    if summary["table"]:
        print(summary["table"])
        print("\n" + summary["statistics_table"])
    else:
        print(f"no finished runs under {args.dir}")
    if summary["unfinished"]:
        print(f"\n{summary['unfinished']} unfinished run(s) left out "
              "(continue them with --resume)")
    for path in summary["plots"]:
        print(f"wrote {path}")
    return 0
