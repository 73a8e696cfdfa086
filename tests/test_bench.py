"""`evoreg bench` and `evoreg report`: the grid, its directories, resume, summary, statistics,
runs.csv, parallel workers and plots."""

from __future__ import annotations

import csv
import json
import shutil
import types
from pathlib import Path

import numpy as np
import pytest

import evoreg
import evoreg.bench
import evoreg.registry
from evoreg import compare
from evoreg.bench import bench, load_grid
from evoreg.cli import main
from evoreg.plugins.random_search import RandomSearch
from evoreg.report import statistics, statistics_markdown, summarize, summary_markdown

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


# --------------------------------------------------------------------------- statistics
def test_a12_mann_whitney_and_holm_against_hand_computed_values():
    assert compare.a12([1, 2], [3, 4]) == 1.0
    assert compare.a12([3, 4], [1, 2]) == 0.0
    assert compare.a12([1, 2], [2, 3]) == pytest.approx((3 + 0.5) / 4)  # one tie of four
    assert compare.effect_label(0.53) == "negligible" and compare.effect_label(0.1) == "large"
    # Exact one-sided U test: [1, 2, 3] all below [4, 5, 6] is 1 of C(6, 3) = 20 orderings.
    assert compare.one_sided_p([1, 2, 3], [4, 5, 6]) == pytest.approx(1 / 20)
    assert compare.one_sided_p([4, 5, 6], [1, 2, 3]) == pytest.approx(1.0)
    assert compare.one_sided_p([2, 2], [2, 2]) == 1.0  # all equal: no evidence
    # Holm: sorted 0.01, 0.03, 0.04 times 3, 2, 1, made monotone.
    assert compare.holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    adjusted = compare.holm([0.5, float("nan"), 0.01])
    assert adjusted[0] == pytest.approx(0.5) and adjusted[2] == pytest.approx(0.02)
    assert adjusted[1] != adjusted[1]  # NaN stays out of the family


def test_the_best_is_named_only_when_significantly_better_than_every_other():
    low, high = [0.1 * i for i in range(8)], [10 + i for i in range(8)]
    tests = compare.problem_tests({"a": low, "b": high, "c": [20 + i for i in range(8)]})
    assert tests["best"] == "a"
    pair = next(p for p in tests["pairs"] if (p["row"], p["column"]) == ("a", "b"))
    assert pair["significant"] and pair["a12"] == 1.0 and pair["effect"] == "large"
    assert len(tests["pairs"]) == 6  # ordered pairs, all in one Holm family
    # a ties b: a beats c, but is not better than every other.
    assert compare.problem_tests({"a": low, "b": low, "c": high})["best"] is None
    # Three seeds cannot reach 5% after Holm over six hypotheses (min raw p = 0.05), and
    # the result says so.
    few = compare.problem_tests({"a": [1, 2, 3], "b": [4, 5, 6], "c": [7, 8, 9]})
    assert few["best"] is None and not few["attainable"]
    assert compare.smallest_p(3, 3) == pytest.approx(1 / 20)
    assert compare.problem_tests({"a": low, "b": high})["attainable"]
    assert compare.problem_tests({"a": low})["best"] is None


def test_average_ranks_and_win_rates():
    ranks = compare.average_ranks({"p": {"a": 1.0, "b": 2.0, "c": 2.0},
                                   "q": {"a": 5.0, "b": 1.0}})
    assert ranks == [
        {"optimizer": "a", "mean_rank": 1.5, "problems": 2},
        {"optimizer": "b", "mean_rank": pytest.approx(1.75), "problems": 2},
        {"optimizer": "c", "mean_rank": 2.5, "problems": 1},
    ]
    cells = [
        {"problem": "p", "seed": 0, "optimizer": "a", "best_loss": 1.0},
        {"problem": "p", "seed": 0, "optimizer": "b", "best_loss": 2.0},
        {"problem": "p", "seed": 1, "optimizer": "a", "best_loss": 3.0},
        {"problem": "p", "seed": 1, "optimizer": "b", "best_loss": 3.0},  # a tie
        {"problem": "q", "seed": 0, "optimizer": "a", "best_loss": 5.0},
        {"problem": "q", "seed": 0, "optimizer": "b", "best_loss": 4.0},
        {"problem": "q", "seed": 1, "optimizer": "a", "best_loss": 0.0},  # b has no seed 1
    ]
    rates = compare.win_rates(cells)
    assert rates["optimizers"] == ["a", "b"]  # a's mean 0.5 ties b's: first seen first
    assert rates["matrix"] == [[None, 0.5], [0.5, None]]
    assert rates["cells"] == [[0, 3], [3, 0]]
    cells[5]["best_loss"] = 6.0  # now a wins on q: 2.5 of 3
    rates = compare.win_rates(cells)
    assert rates["matrix"][0][1] == pytest.approx(2.5 / 3)
    assert rates["matrix"][1][0] == pytest.approx(0.5 / 3)


def test_ecdf_targets_from_the_observed_range_and_hitting_budgets():
    levels = compare.targets(100.0, 0.01, count=5)
    assert levels == pytest.approx([100, 10, 1, 0.1, 0.01])  # log-spaced: both > 0
    assert compare.targets(1.0, -1.0, count=3) == pytest.approx([1, 0, -1])  # linear
    assert compare.targets(2.0, 2.0) == [2.0]  # nobody improved
    cost, loss = np.array([10.0, 20.0, 40.0]), np.array([50.0, 5.0, 0.5])
    assert compare.hitting_fractions(cost, loss, [100, 10, 1, 0.1], budget=40) == [
        0.25, 0.5, 1.0, float("inf")]
    runs = [{"problem": "p", "optimizer": "a", "budget": 40, "curve": (cost, loss)},
            {"problem": "p", "optimizer": "b", "budget": 40,
             "curve": (cost, np.array([100.0, 100.0, 100.0]))}]
    result = compare.ecdf(runs, count=3)
    # targets between the median first loss (75) and the best loss seen (0.5)
    assert result["targets"]["p"] == pytest.approx(np.geomspace(75, 0.5, 3))
    assert result["pairs"] == {"a": 3, "b": 3}
    assert sum(np.isfinite(result["hits"]["a"])) == 3
    assert not np.isfinite(result["hits"]["b"]).any()


def test_summary_marks_the_significant_best_and_shows_cost_used():
    def cell(optimizer, seed, loss, cost):
        return {"problem": "p", "optimizer": optimizer, "seed": seed, "finished": True,
                "best_loss": loss, "wall_time": 1.0, "budget_unit": "evaluations",
                "budget": 500, "cost": cost, "report": {}}

    cells = ([cell("good", s, 0.01 * s, 500) for s in range(6)]
             + [cell("bad", s, 5.0 + s, 512) for s in range(6)])
    cells[-1]["cost"] = 504
    rows = summarize(cells)
    assert [row["best"] for row in rows] == [True, False]
    assert rows[1]["costs"] == [512] * 5 + [504]
    table = summary_markdown(rows).splitlines()
    header = [c.strip() for c in table[0].split("|")[1:-1]]
    good = dict(zip(header, (c.strip() for c in table[2].split("|")[1:-1])))
    bad = dict(zip(header, (c.strip() for c in table[3].split("|")[1:-1])))
    assert good["best"] == "*" and bad["best"] == ""
    assert good["budget"] == "500" and good["cost used"] == "500"
    assert bad["cost used"] == "504-512"  # every cell's actual cost, not the budget
    assert "significantly better than every other" in table[-1]
    stats = statistics(cells)
    assert stats["problems"]["p"]["best"] == "good"
    assert "best: good" in statistics_markdown(stats)


def test_bench_writes_statistics_and_one_csv_row_per_run(finished):
    out, rows = finished
    with open(out / "runs.csv", newline="") as handle:
        records = list(csv.DictReader(handle))
    assert len(records) == 8
    first = records[0]
    assert (first["problem"], first["optimizer"], first["seed"]) == (
        "sphere", "random-search", "0")
    for column in ("best_loss", "cost", "wall_time", "budget", "error", "problem.dim",
                   "problem.noise", "optimizer.popsize", "report.noise_free_loss"):
        assert column in first, column
    rs8 = next(r for r in records if r["optimizer"] == "rs-8" and r["problem"] == "rastrigin")
    assert rs8["problem.dim"] == "2" and rs8["optimizer.popsize"] == "8"
    assert float(rs8["cost"]) == 48 and rs8["status"] == "ran" and rs8["error"] == ""
    result = json.loads((out / Path(rs8["dir"]).relative_to(out) / "result.json").read_text())
    assert float(rs8["best_loss"]) == result["best_loss"]
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["statistics"]["problems"]) == {"sphere", "rastrigin"}
    assert summary["statistics"]["win_rates"]["optimizers"] != []
    text = (out / "statistics.md").read_text()
    assert "## Win rates" in text and "## Average rank" in text and "### rastrigin" in text
    assert [row["costs"] for row in rows] == [[48, 48]] * 4


def test_report_draws_win_rates_and_the_ecdf(finished, tmp_path, capsys):
    out = tmp_path / "out"
    shutil.copytree(finished[0], out)
    assert main(["report", str(out)]) == 0
    printed = capsys.readouterr().out
    for name in ("win_rates.png", "ecdf.png"):
        assert (out / "plots" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"wrote {out / 'plots' / name}" in printed
    assert "## Win rates" in printed
    ecdf = json.loads((out / "summary.json").read_text())["ecdf"]
    assert set(ecdf["targets"]) == {"sphere", "rastrigin"}
    assert ecdf["pairs"] == {"random-search": 4 * 21, "rs-8": 4 * 21}


def test_a_problem_labelled_like_a_comparison_plot_keeps_its_own_plot(tmp_path, capsys):
    grid = {**GRID, "seeds": [0], "problem": [{"name": "sphere", "label": "ecdf", "dim": 2}]}
    bench(grid, tmp_path / "out")
    assert main(["report", str(tmp_path / "out")]) == 0
    plots = sorted(path.name for path in (tmp_path / "out" / "plots").iterdir())
    assert plots == ["ecdf-2.png", "ecdf.png", "win_rates.png"]


def test_report_csv_of_a_failed_cell_holds_its_error(tmp_path, capsys):
    config = {**GRID, "seeds": [0], "problem": [{"name": "sphere", "dim": 3}],
              "optimizer": [{"name": "categorical-only"}, {"name": "random-search"}]}
    bench(config, tmp_path / "out", keep_going=True)
    for path in (tmp_path / "out" / "runs.csv",):
        with open(path, newline="") as handle:
            records = {r["optimizer"]: r for r in csv.DictReader(handle)}
        assert records["categorical-only"]["status"] == "failed"
        assert "works on Categorical" in records["categorical-only"]["error"]
        assert records["random-search"]["error"] == ""


def test_workers_do_not_change_any_cells_result(finished, tmp_path, capsys, monkeypatch):
    serial, _ = finished
    parallel = tmp_path / "parallel"
    done = []

    def in_turn(*args, **kwargs):
        raise AssertionError("workers=2 ran the cells in this process")

    monkeypatch.setattr(evoreg.bench, "_run_in_turn", in_turn)
    rows = bench(GRID, parallel, workers=2,
                 progress=lambda index, total, cell: done.append((index, total)))
    assert sorted(done) == [(i, 8) for i in range(1, 9)]
    assert [(row["problem"], row["optimizer"]) for row in rows][:2] == [
        ("sphere", "random-search"), ("sphere", "rs-8")]  # grid order, not finishing order
    for cell in CELLS:
        one = json.loads((serial / cell / "result.json").read_text())
        two = json.loads((parallel / cell / "result.json").read_text())
        for key in ("best_loss", "cost", "generations", "report", "seed"):
            assert one[key] == two[key], (cell, key)
        logs = [[{k: v for k, v in json.loads(line).items() if k != "seconds"}
                 for line in (root / cell / "log.jsonl").read_text().splitlines()]
                for root in (serial, parallel)]
        assert logs[0] == logs[1], cell
    assert main(["bench", "x.toml", "--out", str(tmp_path / "o"), "--workers", "0"]) == 2
    assert "--workers" in error_line(capsys)
