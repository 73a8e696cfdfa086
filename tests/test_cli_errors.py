"""Careless and damaged input to `evoreg run`, `bench` and `report`: one line on stderr and
exit status 2 for what cannot be used, a one-line warning for a damaged run that `report`
can leave out; never a traceback."""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import sys
from pathlib import Path

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

import evoreg
import evoreg.bench
import evoreg.registry
import evoreg.runner
from evoreg.bench import bench
from evoreg.checkpoint import exclusive_lock
from evoreg.cli import main
from evoreg.config import bounded, make_config

BUILT_INS = "random_search,sphere,rastrigin"


@pytest.fixture(autouse=True)
def registry(monkeypatch: pytest.MonkeyPatch) -> evoreg.registry.Registry:
    """The built-in plugins only, whatever else is installed."""
    registry = evoreg.registry.Registry()
    registry.load_entry_points({"EVOREG_PLUGINS": BUILT_INS})
    monkeypatch.setattr(evoreg.registry, "_default", registry)
    return registry


def error_line(capsys: pytest.CaptureFixture[str]) -> str:
    """The one line a refused command writes on stderr."""
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("evoreg: error: ")
    return lines[0]


# --------------------------------------------------------------------------- non-finite settings
@pytest.mark.parametrize(
    ("assignment", "expected"),
    [
        # optimum has no bounds: inf ran to a best loss of inf, nan to a loss of nan
        ("optimum=inf", "problem 'sphere': optimum=inf is not finite"),
        ("optimum=-inf", "problem 'sphere': optimum=-inf is not finite"),
        ("optimum=nan", "problem 'sphere': optimum=nan is not a number"),
        ("noise=inf", "noise=inf is not finite; give a finite number >= 0"),
        ("noise=nan", "noise=nan is not a number"),
    ],
)
def test_non_finite_problem_setting_is_refused(tmp_path, capsys, assignment, expected):
    args = ["run", "sphere", "random-search", "--budget", "16", "--device", "cpu",
            "--out", str(tmp_path / "run"), "--set", assignment]
    assert main(args) == 2
    assert expected in error_line(capsys)
    assert not (tmp_path / "run").exists()


def test_non_finite_value_from_python_is_refused():
    with pytest.raises(evoreg.EvoregError, match="optimum=inf is not finite"):
        evoreg.make_problem("sphere", optimum=math.inf)


@dataclasses.dataclass
class _Declared:
    threshold: float = math.inf  #: inf as its default: "no threshold"
    ceiling: float = bounded(1.0, gt=0, le=math.inf)  #: a bound that names inf
    missing: float = math.nan  #: a plugin's NaN sentinel
    scale: float = bounded(1.0, gt=0)


def test_non_finite_values_a_field_declares_are_accepted():
    config = make_config(_Declared, "optimizer 'x'",
                         {"threshold": "inf", "ceiling": math.inf, "missing": "nan"})
    assert config.threshold == math.inf and config.ceiling == math.inf
    assert math.isnan(config.missing)
    assert make_config(_Declared, "optimizer 'x'", {}).threshold == math.inf  # defaults pass
    with pytest.raises(evoreg.EvoregError, match="optimizer 'x': scale=inf is not finite"):
        make_config(_Declared, "optimizer 'x'", {"scale": "inf"})
    with pytest.raises(evoreg.EvoregError, match="threshold=-inf is not finite"):
        make_config(_Declared, "optimizer 'x'", {"threshold": -math.inf})  # not its infinity


def test_every_registered_config_accepts_its_defaults_and_refuses_nan():
    registry = evoreg.registry.Registry()
    registry.load_entry_points({})  # every installed plugin, nevergrad's included
    for kind in ("optimizer", "problem"):
        for entry in registry.entries[kind].values():
            if not dataclasses.is_dataclass(entry.config):
                continue
            make_config(entry.config, entry.name, {})
            for field in dataclasses.fields(entry.config):
                if field.type in (float, "float") or "float" in str(field.type):
                    with pytest.raises(evoreg.EvoregError, match="is not a number"):
                        make_config(entry.config, entry.name, {field.name: math.nan})


# --------------------------------------------------------------------------- run
def test_negative_seed_is_refused(tmp_path, capsys):
    args = ["run", "sphere", "random-search", "--budget", "16", "--device", "cpu",
            "--out", str(tmp_path / "run"), "--seed", "-1"]
    assert main(args) == 2  # was numpy's "expected non-negative integer" traceback
    assert "argument --seed: '-1' is not an integer >= 0" in error_line(capsys)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("budget", ["inf", "nan", "1e400"])
def test_non_finite_budget_is_refused_before_the_run(tmp_path, monkeypatch, capsys, budget):
    def never(*args, **kwargs):  # inf ran forever
        raise AssertionError("the run started")

    monkeypatch.setattr(evoreg.runner, "run", never)
    args = ["run", "sphere", "random-search", "--budget", budget, "--out", str(tmp_path / "r")]
    assert main(args) == 2
    assert f"argument --budget: '{budget}' is not a finite number" in error_line(capsys)


def test_integer_beyond_64_bits_is_refused(tmp_path, capsys):
    args = ["run", "sphere", "random-search", "--budget", "16", "--device", "cpu",
            "--out", str(tmp_path / "run"), "--set", f"dim={10**26}"]
    assert main(args) == 2  # was torch's "Overflow when unpacking long long" traceback
    assert f"problem 'sphere': dim={10**26} is beyond a 64-bit integer" in error_line(capsys)


@pytest.mark.parametrize(
    "error",
    [
        # what torch's CPU allocator raised for --set dim=99999999999
        RuntimeError("[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't "
                     "allocate memory: you tried to allocate 399999999996 bytes. Error code 12 "
                     "(Cannot allocate memory)"),
        MemoryError(),
    ],
)
def test_out_of_memory_is_one_line(tmp_path, monkeypatch, capsys, error):
    # Raised in place of a real allocation: with overcommit, a real one may get the test
    # killed instead of refused.
    def allocate(*args, **kwargs):
        raise error

    monkeypatch.setattr(evoreg.runner, "run", allocate)
    args = ["run", "sphere", "random-search", "--budget", "16", "--out", str(tmp_path / "r")]
    assert main(args) == 2
    line = error_line(capsys)
    assert line.startswith("evoreg: error: out of memory (")
    assert "ask for less" in line and "enforce fail" not in line


# --------------------------------------------------------------------------- bench and report
GRID_TOML = """\
budget = 16
seeds = [0, 1]
device = "cpu"
checkpoint_every = 1

[[problem]]
name = "sphere"
dim = 2

[[problem]]
name = "rastrigin"
dim = 2

[[optimizer]]
name = "random-search"
popsize = 8
"""
GRID = tomllib.loads(GRID_TOML)

TOML = """\
budget = 16
seeds = [0]
device = "cpu"

[[problem]]
name = "sphere"
dim = 2

[[optimizer]]
name = "random-search"
popsize = 8
"""


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """A small finished bench; tests work on copies."""
    out = tmp_path_factory.mktemp("bench") / "out"
    with pytest.MonkeyPatch.context() as patch:
        registry = evoreg.registry.Registry()
        registry.load_entry_points({"EVOREG_PLUGINS": BUILT_INS})
        patch.setattr(evoreg.registry, "_default", registry)
        bench(GRID, out)
    return out


def copy_of(finished: Path, tmp_path: Path) -> Path:
    out = tmp_path / "out"
    shutil.copytree(finished, out)
    return out


def _truncated(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])


def _edit(path: Path, **changes: object) -> None:
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))  # json writes NaN and Infinity as Python reads them


def _as_directory(path: Path) -> None:
    path.unlink()
    path.mkdir()


#: (file of the run, how it is damaged): each one crashed `evoreg report` before.
DAMAGES = {
    "run-empty": ("run.json", lambda p: p.write_text("")),
    "run-truncated": ("run.json", _truncated),
    "run-random-bytes": ("run.json", lambda p: p.write_bytes(bytes(range(256)) * 2)),
    "run-a-list": ("run.json", lambda p: p.write_text("[1, 2]")),
    "run-seed-a-string": ("run.json", lambda p: _edit(p, seed="0")),
    "run-a-directory": ("run.json", _as_directory),
    "result-truncated": ("result.json", _truncated),
    "result-loss-a-string": ("result.json", lambda p: _edit(p, best_loss="abc")),
    "result-loss-nan": ("result.json", lambda p: _edit(p, best_loss=math.nan)),
    "result-huge-wall-time": ("result.json", lambda p: _edit(p, wall_time=10**400)),
    "result-no-cost": ("result.json", lambda p: p.write_text('{"budget": 16}')),
    "result-report-a-list": ("result.json", lambda p: _edit(p, report=[1])),
    "log-random-bytes": ("log.jsonl", lambda p: p.write_bytes(b"\xff\xfe\x00garbage\n")),
    "log-record-a-list": ("log.jsonl", lambda p: p.write_text("[1]\n")),
    "log-cost-a-string": ("log.jsonl", lambda p: p.write_text('{"cost": "x", "best_loss": 1}\n')),
    "log-not-json": ("log.jsonl", lambda p: p.write_text("not json\n{}\n")),
}


def test_report_leaves_out_damaged_runs_with_a_warning_each(finished, tmp_path, capsys):
    out = copy_of(finished, tmp_path)
    good = out / "sphere" / "random-search" / "seed0"
    damaged = {}
    for index, (name, (file, damage)) in enumerate(DAMAGES.items(), start=10):
        run_dir = good.with_name(f"seed{index}")
        shutil.copytree(good, run_dir)
        damage(run_dir / file)
        damaged[name] = run_dir / file
    # Readable, though odd: a held-out figure too large for a float, a log cut by a kill.
    odd = good.with_name("seed2")
    shutil.copytree(good, odd)
    _edit(odd / "result.json", report={"noise_free_loss": 10**400})
    with open(odd / "log.jsonl", "a") as log:
        log.write('{"cost": 24, "best_lo')

    assert main(["report", str(out)]) == 0
    captured = capsys.readouterr()
    warnings = captured.err.strip().splitlines()
    assert "Traceback" not in captured.err
    assert len(warnings) == len(DAMAGES), warnings
    assert all(line.startswith("evoreg: warning: ") for line in warnings)
    for name, path in damaged.items():
        assert sum(str(path) in line for line in warnings) == 1, name
    assert all(line.endswith("that run is left out") for line in warnings)
    rows = json.loads((out / "summary.json").read_text())["summary"]
    counts = {(row["problem"], row["optimizer"]): row["n"] for row in rows}
    assert counts == {("sphere", "random-search"): 3, ("rastrigin", "random-search"): 2}
    for problem in ("sphere", "rastrigin"):
        assert (out / "plots" / f"{problem}.png").read_bytes()[:4] == b"\x89PNG"
    assert (out / "summary.md").read_text().strip() in captured.out


def test_report_reads_the_runs_despite_a_damaged_bench_json(finished, tmp_path, capsys):
    out = copy_of(finished, tmp_path)
    for content in (b"", b'{"problems": "sph', b"\xff\xfe", b"[1]", b'{"problems": [1]}'):
        (out / "bench.json").write_bytes(content)
        assert main(["report", str(out)]) == 0
        captured = capsys.readouterr()
        (warning,) = captured.err.strip().splitlines()
        assert warning.startswith(f"evoreg: warning: {out / 'bench.json'} is damaged")
        assert warning.endswith("runs are listed in path order")
        assert "| sphere " in captured.out and "| rastrigin " in captured.out


def test_names_in_plots_are_plain_text(tmp_path, capsys):
    # Mathtext in a name made savefig raise: "$x^$" a ValueError, "$\cmd$" an unknown symbol.
    grid = {**GRID, "seeds": [0],
            "problem": [{"name": "sphere", "label": "$x^$", "dim": 2},
                        {"name": "sphere", "label": "x", "dim": 3},  # also x.png
                        {"name": "rastrigin", "label": "_hidden", "dim": 2}],
            "optimizer": [{"name": "random-search", "label": "$y_{$", "popsize": 8}]}
    out = tmp_path / "out"
    bench(grid, out)
    # A run outside the bench's layout is grouped by the names in its run.json.
    other = out / "other" / "run"
    shutil.copytree(out / "x" / "$y_{$" / "seed0", other)
    _edit(other / "run.json", problem=r"$\cmd$", optimizer=r"$\alpha$")
    assert main(["report", str(out)]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    plots = sorted(path.name for path in (out / "plots").iterdir())
    # "$x^$" and "x": x.png; beside them the comparison plots of the two optimizers
    assert plots == ["cmd.png", "ecdf.png", "hidden.png", "win_rates.png", "x-2.png", "x.png"]
    assert all(f"wrote {out / 'plots' / name}" in captured.out for name in plots)


def test_plot_text_is_never_parsed_as_math(monkeypatch, tmp_path):
    import matplotlib.axes
    import numpy as np

    from evoreg.plots import plot_median_curves

    texts = []
    original = matplotlib.axes.Axes.legend

    def legend(self, *args, **kwargs):
        made = original(self, *args, **kwargs)
        texts.extend(made.get_texts())
        return made

    monkeypatch.setattr(matplotlib.axes.Axes, "legend", legend)
    curve = (np.array([1.0, 2.0]), np.array([3.0, 2.0]))
    plot_median_curves({"_$a$": [curve]}, tmp_path / "p.png", "$b$", "$c$")
    assert [text.get_text() for text in texts] == ["_$a$ (n=1)"]  # kept, not hidden by "_"
    assert not texts[0].get_parse_math()


# --------------------------------------------------------------------------- bench
def _bench_args(tmp_path: Path, toml: str, *extra: str) -> list[str]:
    config = tmp_path / "bench.toml"
    config.write_text(toml)
    return ["bench", str(config), "--out", str(tmp_path / "out"), *extra]


def test_negative_seed_in_a_bench_is_refused_and_leaves_nothing(tmp_path, capsys):
    args = _bench_args(tmp_path, TOML.replace("seeds = [0]", "seeds = [0, -1]"))
    assert main(args) == 2  # was numpy's traceback, after bench.json had been written
    assert "seeds must be a list of distinct integers >= 0" in error_line(capsys)
    assert not (tmp_path / "out").exists()
    assert main(_bench_args(tmp_path, TOML)) == 0  # the corrected retry needs no --resume


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (("budget = 16", "budget = inf"), "budget must be a finite number > 0"),  # ran forever
        (("budget = 16", "budget = nan"), "budget must be a finite number > 0"),
        (('device = "cpu"', 'device = "gpu"'), "unknown device 'gpu'"),
        (("dim = 2", "dim = 2\nnoise = nan"), "problem 'sphere': noise=nan is not a number"),
        # a NUL (TOML's "\u0000") made mkdir raise ValueError: embedded null byte
        (("dim = 2", 'dim = 2\nlabel = "a\\u0000b"'), "must be usable as a directory name"),
        (("dim = 2", f"dim = 2\nlabel = '{'x' * 256}'"), "must be usable as a directory name"),
    ],
)
def test_bad_grid_is_refused_before_anything_is_written(tmp_path, monkeypatch, capsys, change,
                                                        expected):
    def never(*args, **kwargs):
        raise AssertionError("a cell ran")

    monkeypatch.setattr(evoreg.bench, "run", never)
    assert main(_bench_args(tmp_path, TOML.replace(*change))) == 2
    assert expected in error_line(capsys)
    assert not (tmp_path / "out").exists()


def test_bench_config_that_is_not_utf8_or_not_a_file(tmp_path, capsys):
    config = tmp_path / "bench.toml"
    config.write_bytes(TOML.encode("utf-16"))
    assert main(["bench", str(config), "--out", str(tmp_path / "out")]) == 2
    assert "bench.toml is not UTF-8 text, so not TOML" in error_line(capsys)
    assert main(["bench", str(tmp_path), "--out", str(tmp_path / "out")]) == 2
    assert "is a directory; give a TOML file" in error_line(capsys)


def test_second_bench_on_a_directory_in_use_is_refused(tmp_path, capsys):
    args = _bench_args(tmp_path, TOML, "--resume")
    # Held as `evoreg bench` holds it: flock on DIR/.lock, which a second open file of
    # the same lock cannot take, in this process or another.
    with exclusive_lock(tmp_path / "out", "bench"):
        assert main(args) == 2
    assert "in use by another evoreg bench" in error_line(capsys)
    assert not (tmp_path / "out" / "bench.json").exists()
    assert main(args) == 0  # once the first is done
    # The lock file left behind is no result: a new bench there needs no --resume.
    shutil.rmtree(tmp_path / "out" / "sphere")
    for name in ("bench.json", "summary.md", "summary.json", "statistics.md", "runs.csv"):
        (tmp_path / "out" / name).unlink()
    assert [path.name for path in (tmp_path / "out").iterdir()] == [".lock"]
    assert main(args[:-1]) == 0


RESULT = Path("sphere", "random-search", "seed0", "result.json")


def _resume_args(tmp_path: Path, out: Path) -> list[str]:
    """`bench --resume` of the grid that made `finished`."""
    (tmp_path / "grid.toml").write_text(GRID_TOML)
    return ["bench", str(tmp_path / "grid.toml"), "--out", str(out), "--resume"]


@pytest.mark.parametrize(
    "content",
    [b"", b'{"budget": 16, "best_lo', bytes(range(256)), b"[16]", b'{"budget": "16"}',
     b'{"budget": 16}', b'{"budget": NaN}'],
)
def test_damaged_result_json_on_resume_is_refused_and_kept(finished, tmp_path, capsys,
                                                           content):
    out = copy_of(finished, tmp_path)
    (out / RESULT).write_bytes(content)
    args = _resume_args(tmp_path, out)
    assert main(args) == 2
    line = error_line(capsys)  # the first cell: nothing printed before it
    assert f"cell sphere/random-search/seed0: {out / RESULT} is damaged: " in line
    assert "; move it away and run the bench with --resume again" in line
    assert (out / RESULT).read_bytes() == content  # the user's file, untouched
    # As the line says: moved away, the cell writes it again from its last checkpoint.
    (out / RESULT).rename(tmp_path / "damaged.json")
    assert main(args) == 0
    rewritten = json.loads((out / RESULT).read_text())
    assert rewritten["best_loss"] == json.loads((finished / RESULT).read_text())["best_loss"]


def test_damaged_result_json_with_keep_going_fails_that_cell_only(finished, tmp_path, capsys):
    out = copy_of(finished, tmp_path)
    (out / RESULT).write_text("{")
    assert main([*_resume_args(tmp_path, out), "--keep-going"]) == 1
    err = capsys.readouterr().err
    assert err.count("(skipped)") == 3 and err.count("FAILED") == 1
    assert (out / RESULT).read_text() == "{"


def test_damaged_run_json_of_a_finished_cell_on_resume(finished, tmp_path, capsys):
    out = copy_of(finished, tmp_path)
    run_json = out / "rastrigin" / "random-search" / "seed1" / "run.json"
    run_json.write_text("[]")
    args = _resume_args(tmp_path, out)
    assert main(args) == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]  # after the cells before it
    assert line.startswith(f"evoreg: error: cell rastrigin/random-search/seed1: {run_json} is "
                           "damaged: a JSON array, not an object; move it and result.json away")
    assert run_json.read_text() == "[]"
    # As the line says: the cell's checkpoint gives both files again.
    run_json.rename(tmp_path / "run.json")
    run_json.with_name("result.json").rename(tmp_path / "result.json")
    assert main(args) == 0
    assert json.loads(run_json.read_text())["seed"] == 1
    assert (json.loads(run_json.with_name("result.json").read_text())["best_loss"]
            == json.loads((tmp_path / "result.json").read_text())["best_loss"])


def test_damaged_bench_json_on_resume_is_replaced_by_the_grid(finished, tmp_path, capsys):
    # bench.json records the grid; --resume does not read it, so damage does not matter.
    out = copy_of(finished, tmp_path)
    (out / "bench.json").write_bytes(b"\xff{")
    assert main(_resume_args(tmp_path, out)) == 0
    assert capsys.readouterr().err.count("(skipped)") == 4
    assert json.loads((out / "bench.json").read_text())["seeds"] == [0, 1]
