"""Careless and damaged input to `evoreg run`, `bench` and `report`: one line on stderr and
exit status 2 for what cannot be used, a one-line warning for a damaged run that `report`
can leave out; never a traceback."""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
from pathlib import Path

import pytest

import evoreg
import evoreg.registry
import evoreg.runner
from evoreg.bench import bench
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


# --------------------------------------------------------------------------- bench and report
GRID = {
    "budget": 16,
    "seeds": [0, 1],
    "device": "cpu",
    "checkpoint_every": 1,
    "problem": [{"name": "sphere", "dim": 2}, {"name": "rastrigin", "dim": 2}],
    "optimizer": [{"name": "random-search", "popsize": 8}],
}

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
    assert plots == ["cmd.png", "hidden.png", "x-2.png", "x.png"]  # "$x^$" and "x": x.png
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
