"""`evoreg bench` and `evoreg report`: the grid, its directories, resume, summary and plots."""

from __future__ import annotations

import json
import shutil
import types
from pathlib import Path

import pytest

import evoreg
import evoreg.registry
from evoreg.bench import bench, load_grid
from evoreg.cli import main
from evoreg.plugins.random_search import RandomSearch

BUILT_INS = "random_search,sphere,rastrigin"

# 2 problems x 2 optimizers (one optimizer twice, told apart by labels) x 2 seeds.
GRID = {
    "budget": 48,
    "seeds": [0, 1],
    "device": "cpu",
    "checkpoint_every": 1,
    "problem": [{"name": "sphere", "dim": 3}, {"name": "rastrigin", "dim": 2}],
    "optimizer": [
        {"name": "random-search"},
        {"name": "random-search", "label": "rs-8", "popsize": 8},
    ],
}
CELLS = [
    Path(problem, optimizer, f"seed{seed}")
    for problem in ("sphere", "rastrigin")
    for optimizer in ("random-search", "rs-8")
    for seed in (0, 1)
]

TOML = """\
budget = 32
seeds = 2            # a count: seeds 0 and 1
device = "cpu"

[[problem]]
name = "sphere"
dim = 3

[[problem]]
name = "rastrigin"
label = "rastrigin-2d"
dim = 2
budget = 16          # its own budget

[[optimizer]]
name = "random-search"
popsize = 8
"""


class CategoricalOnly(RandomSearch):
    """An optimizer that refuses the Real spaces of sphere and rastrigin: its cells fail."""

    spaces = (evoreg.Categorical,)


def _test_plugin() -> types.ModuleType:
    plugin = types.ModuleType("bench_test_plugin")

    @evoreg.hookimpl
    def evoreg_register_optimizers(register):
        register("categorical-only", CategoricalOnly, family="test")

    plugin.evoreg_register_optimizers = evoreg_register_optimizers
    return plugin


@pytest.fixture(scope="module", autouse=True)
def registry():
    """The built-in plugins and a test plugin, whatever else is installed."""
    registry = evoreg.registry.Registry()
    registry.load_entry_points({"EVOREG_PLUGINS": BUILT_INS})
    registry.add_plugin(_test_plugin(), "bench_test_plugin")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(evoreg.registry, "_default", registry)
        yield registry


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> tuple[Path, list[dict]]:
    """A bench of GRID run once; tests that change it work on a copy."""
    out = tmp_path_factory.mktemp("bench") / "out"
    return out, bench(GRID, out)


def error_line(capsys: pytest.CaptureFixture[str]) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("evoreg: error: ")
    return lines[0]


# --------------------------------------------------------------------------- the grid
def test_bench_runs_every_cell_into_its_directory(finished):
    out, rows = finished
    for cell in CELLS:
        for name in ("run.json", "log.jsonl", "result.json", "convergence.png"):
            assert (out / cell / name).is_file(), cell / name
    result = json.loads((out / "sphere" / "rs-8" / "seed1" / "result.json").read_text())
    assert result["optimizer"] == "random-search" and result["optimizer_config"]["popsize"] == 8
    assert result["problem_config"]["dim"] == 3 and result["seed"] == 1
    assert result["cost"] == 48 and result["generations"] == 6


def test_bench_summary_rows_table_and_json(finished):
    out, rows = finished
    assert [(row["problem"], row["optimizer"]) for row in rows] == [
        ("sphere", "random-search"), ("sphere", "rs-8"),
        ("rastrigin", "random-search"), ("rastrigin", "rs-8"),
    ]
    cells = json.loads((out / "summary.json").read_text())["cells"]
    assert len(cells) == 8
    for row in rows:
        losses = sorted(c["best_loss"] for c in cells
                        if (c["problem"], c["optimizer"]) == (row["problem"], row["optimizer"]))
        assert row["n"] == 2 and row["seeds"] == [0, 1]
        assert row["median"] == pytest.approx(sum(losses) / 2)  # the median of two
        assert losses[0] <= row["q1"] <= row["median"] <= row["q3"] <= losses[1]
        assert row["median_wall_time"] > 0
    table = (out / "summary.md").read_text().splitlines()
    header = [cell.strip() for cell in table[0].split("|")[1:-1]]
    assert header[:7] == [
        "problem", "optimizer", "n", "median best loss", "q1", "q3", "median wall s",
    ]
    assert "median noise_free_loss" in header[7:]  # sphere's and rastrigin's report
    assert set(table[1]) <= {"|", "-"}
    first = [cell.strip() for cell in table[2].split("|")[1:-1]]
    assert first[:3] == ["sphere", "random-search", "2"]
    assert float(first[3]) == pytest.approx(rows[0]["median"], rel=1e-3)
    assert len(table) == 2 + 4


def test_bench_refuses_a_non_empty_directory_without_resume(finished):
    out, _ = finished
    with pytest.raises(evoreg.EvoregError, match="not empty; pass --resume"):
        bench(GRID, out)


def test_resume_skips_finished_cells_and_finishes_an_unfinished_one(finished, tmp_path):
    original, rows = finished
    out = tmp_path / "out"
    shutil.copytree(original, out)
    # Make one cell look killed after its first checkpoint: a shorter run, no result.json.
    unfinished = out / "rastrigin" / "rs-8" / "seed1"
    uninterrupted = json.loads((unfinished / "result.json").read_text())
    shutil.rmtree(unfinished)
    evoreg.run("rastrigin", "random-search", 16, seed=1, out_dir=unfinished, device="cpu",
               checkpoint_every=1, problem_config={"dim": 2}, optimizer_config={"popsize": 8},
               progress=False)
    (unfinished / "result.json").unlink()
    mtimes = {cell: (out / cell / "result.json").stat().st_mtime_ns
              for cell in CELLS if out / cell != unfinished}

    statuses = {}
    bench(GRID, out, resume=True,
          progress=lambda index, total, cell: statuses.update({cell["dir"]: cell["status"]}))

    assert statuses.pop(str(unfinished)) == "resumed"
    assert set(statuses.values()) == {"skipped"}
    assert mtimes == {cell: (out / cell / "result.json").stat().st_mtime_ns for cell in mtimes}
    resumed = json.loads((unfinished / "result.json").read_text())
    assert resumed["cost"] == 48
    # On CPU a resumed run ends exactly where the uninterrupted one ended.
    assert resumed["best_loss"] == uninterrupted["best_loss"]
    assert resumed["generations"] == uninterrupted["generations"]


def test_bench_from_toml_through_the_cli(tmp_path, capsys):
    config = tmp_path / "bench.toml"
    config.write_text(TOML)
    out = tmp_path / "out"
    assert main(["bench", str(config), "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "[4/4] rastrigin-2d/random-search/seed1" in captured.err
    assert "| sphere" in captured.out and "| rastrigin-2d" in captured.out
    result = json.loads((out / "rastrigin-2d/random-search/seed1/result.json").read_text())
    assert result["problem"] == "rastrigin" and result["cost"] == 16  # the problem's budget
    assert json.loads((out / "sphere/random-search/seed0/result.json").read_text())["cost"] == 32
    assert (out / "summary.md").read_text().count("| sphere ") == 1
    # Again without --resume: refused; with it: every cell skipped.
    assert main(["bench", str(config), "--out", str(out)]) == 2
    assert "--resume" in error_line(capsys)
    assert main(["bench", str(config), "--out", str(out), "--resume"]) == 0
    assert capsys.readouterr().err.count("(skipped)") == 4


def test_a_failing_cell_stops_the_bench_unless_keep_going(tmp_path, capsys):
    config = {**GRID, "optimizer": [{"name": "categorical-only"}, {"name": "random-search"}]}
    with pytest.raises(evoreg.EvoregError, match="cell sphere/categorical-only/seed0: .*Real"):
        bench(config, tmp_path / "stopped")

    rows = bench(config, tmp_path / "out", keep_going=True)
    assert [(row["problem"], row["optimizer"], row["n"]) for row in rows] == [
        ("sphere", "random-search", 2), ("rastrigin", "random-search", 2),
    ]
    cells = json.loads((tmp_path / "out" / "summary.json").read_text())["cells"]
    failed = [cell for cell in cells if cell["status"] == "failed"]
    assert len(failed) == 4 and all("works on Categorical" in cell["error"] for cell in failed)
    assert "Traceback" in (tmp_path / "out/sphere/categorical-only/seed1/error.txt").read_text()


def test_keep_going_through_the_cli_exits_1(tmp_path, capsys):
    config = tmp_path / "bench.toml"
    config.write_text(TOML.replace('"random-search"', '"categorical-only"'))
    args = ["bench", str(config), "--out", str(tmp_path / "out")]
    assert main(args) == 2  # stopped at the first cell: bad input, one line
    assert "cell sphere/categorical-only/seed0" in error_line(capsys)
    assert main([*args, "--resume", "--keep-going"]) == 1
    err = capsys.readouterr().err
    assert err.count("FAILED") == 4 and "4 cell(s) failed" in err


# --------------------------------------------------------------------------- bad configs
@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"seed": 3}, "unknown bench setting 'seed'; did you mean 'seeds'?"),
        ({"seeds": []}, "seeds must be a list of distinct integers"),
        ({"seeds": [1, 1]}, "seeds must be a list of distinct integers"),
        ({"budget": -1}, "budget must be a finite number > 0"),
        ({"budget": None}, "budget must be a finite number > 0"),
        ({"checkpoint_every": 0}, "checkpoint_every must be an integer >= 1"),
        ({"problem": []}, "no [[problem]] tables"),
        ({"problem": [{"dim": 3}]}, "needs name ="),
        ({"problem": [{"name": "spere"}]}, "did you mean 'sphere'"),
        ({"problem": [{"name": "sphere", "dimm": 3}]}, "did you mean 'dim'"),
        ({"problem": [{"name": "sphere", "dim": 0}]}, "dim must be >= 1"),
        ({"optimizer": [{"name": "random-search"}, {"name": "random-search", "popsize": 2}]},
         "two [[optimizer]] tables are labelled 'random-search'"),
        ({"optimizer": [{"name": "random-search", "label": "a/b"}]}, "directory name"),
    ],
)
def test_bad_grid_is_refused_before_any_cell_runs(tmp_path, change, expected):
    config = {**GRID, **change}
    config = {key: value for key, value in config.items() if value is not None}
    with pytest.raises(evoreg.EvoregError) as error:
        bench(config, tmp_path / "out")
    assert expected in str(error.value)
    assert not (tmp_path / "out").exists()


def test_bad_toml_exits_2_with_one_line(tmp_path, capsys):
    config = tmp_path / "bad.toml"
    config.write_text("budget = 10\n[[problem]\nname = 'sphere'\n")
    assert main(["bench", str(config), "--out", str(tmp_path / "out")]) == 2
    assert "is not valid TOML" in error_line(capsys)
    config.write_text(TOML.replace('name = "random-search"', 'name = "random-serch"'))
    assert main(["bench", str(config), "--out", str(tmp_path / "out")]) == 2
    assert "did you mean 'random-search'" in error_line(capsys)


def test_load_grid_seed_count_and_defaults(tmp_path):
    config = tmp_path / "bench.toml"
    config.write_text(TOML)
    grid = load_grid(config)
    assert grid.seeds == [0, 1] and grid.checkpoint_every is None
    assert [arm.label for arm in grid.problems] == ["sphere", "rastrigin-2d"]
    assert grid.budget_of(grid.problems[1]) == 16


# --------------------------------------------------------------------------- report
def test_report_of_a_bench_prints_the_table_and_writes_plots(finished, tmp_path, capsys):
    out = tmp_path / "out"
    shutil.copytree(finished[0], out)
    (out / "summary.md").unlink()
    shutil.rmtree(out / "sphere" / "rs-8" / "seed0")  # a missing cell: n=1 for that pair
    (out / "rastrigin" / "rs-8" / "seed0" / "result.json").unlink()  # an unfinished one
    assert main(["report", str(out)]) == 0
    printed = capsys.readouterr().out
    for problem in ("sphere", "rastrigin"):
        plot = out / "plots" / f"{problem}.png"
        assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"wrote {plot}" in printed
    assert "1 unfinished run(s)" in printed
    rows = json.loads((out / "summary.json").read_text())["summary"]
    counts = {(row["problem"], row["optimizer"]): row["n"] for row in rows}
    assert counts == {("sphere", "random-search"): 2, ("sphere", "rs-8"): 1,
                      ("rastrigin", "random-search"): 2, ("rastrigin", "rs-8"): 1}
    assert (out / "summary.md").read_text().strip() in printed


def test_report_of_a_single_run(finished, tmp_path, capsys):
    run_dir = tmp_path / "one"
    shutil.copytree(finished[0] / "sphere" / "random-search" / "seed0", run_dir)
    assert main(["report", str(run_dir)]) == 0
    assert "| sphere  | random-search | 1 " in capsys.readouterr().out
    assert (run_dir / "plots" / "sphere.png").is_file()


def test_report_of_a_directory_without_runs(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    assert "no runs under" in error_line(capsys)
