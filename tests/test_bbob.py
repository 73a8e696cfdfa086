"""The bbob problem: COCO's 24 noiseless functions through cocoex, loss f - f_opt."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import evoreg
from evoreg.bench import load_grid
from evoreg.cli import main

ROOT = Path(__file__).resolve().parent.parent


def _cocoex():
    return pytest.importorskip("cocoex", reason="coco-experiment is not installed")


@pytest.mark.parametrize("dim", [2, 10])
def test_every_function_is_cocos_value_minus_f_opt_batched(dim):
    cocoex = _cocoex()
    x = torch.empty(7, dim).uniform_(-5, 5, generator=torch.Generator().manual_seed(dim))
    for function in range(1, 25):
        problem = evoreg.make_problem("bbob", function=function, dim=dim, instance=3)
        reference = cocoex.BareProblem("bbob", function, dim, 3)
        expected = np.array([reference(row) for row in x.double().numpy()])
        expected -= reference.best_value()
        losses = problem.evaluate(evoreg.Population(x)).losses
        assert losses.dtype == torch.float64  # COCO's precision, not float32's
        np.testing.assert_allclose(losses.numpy(), expected, rtol=1e-12, atol=1e-9)
        assert problem.label == f"bbob_f{function:03d}_i03_d{dim:02d}"


def test_the_loss_is_zero_at_cocos_optimum_and_positive_elsewhere():
    cocoex = _cocoex()
    for function in range(1, 25):
        problem = evoreg.make_problem("bbob", function=function, dim=5)
        optimum = np.asarray(cocoex.BareProblem("bbob", function, 5, 1).best_parameter())
        at_optimum = problem.precision(torch.from_numpy(optimum))
        assert abs(at_optimum[0]) < 1e-9, function
        assert problem.precision(torch.from_numpy(optimum + 0.5))[0] > 0, function


def test_instances_dimensions_and_the_start():
    _cocoex()
    one = evoreg.make_problem("bbob", function=3, dim=10, instance=1)
    two = evoreg.make_problem("bbob", function=3, dim=10, instance=2)
    assert one.f_opt != two.f_opt  # an instance moves the optimum and its value
    assert one.space.dim == 10 and one.space.sigma == 2.0
    assert torch.equal(one.space.initial(), torch.zeros(10))  # COCO's initial_solution
    assert evoreg.make_problem("bbob", function=1, dim=40).space.dim == 40
    assert one.budget_unit == "evaluations"
    report = one.report(torch.zeros(10))
    assert report["precision"] == pytest.approx(one.precision(torch.zeros(10))[0])
    assert report["precision"] > 0
    assert report["final_target_hit"] == 0.0


@pytest.mark.parametrize(
    ("config", "expected"),
    [({"function": 25}, "function must be in [1, 24]"), ({"dim": 1}, "dim must be >= 2"),
     ({"instance": 0}, "instance must be >= 1"), ({"sigma": 0}, "sigma must be > 0")],
)
def test_bad_configs_are_refused(config, expected):
    _cocoex()
    with pytest.raises(evoreg.EvoregError, match=expected.replace("[", r"\[")):
        evoreg.make_problem("bbob", **config)


def test_without_cocoex_the_error_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "cocoex", None)  # import cocoex raises ImportError
    with pytest.raises(evoreg.EvoregError, match=r"pip install 'evoreg\[bbob\]'"):
        evoreg.make_problem("bbob")


def test_optimizers_improve_within_an_evaluation_budget(tmp_path):
    _cocoex()
    start = evoreg.make_problem("bbob", function=1, dim=5).report(torch.zeros(5))["precision"]
    for optimizer in ("random-search", "ng:CMA"):
        result = evoreg.run("bbob", optimizer, 300, seed=0, device="cpu", progress=False,
                            problem_config={"function": 1, "dim": 5},
                            out_dir=tmp_path / optimizer)
        assert result.cost >= 300 and result.best_loss < start / 2, optimizer
        assert result.report["precision"] >= 0
    # CMA on the sphere gets close to COCO's final target quickly.
    assert result.best_loss < 1e-2


def test_cli_run_and_the_example_grid(tmp_path, capsys):
    _cocoex()
    out = tmp_path / "run"
    assert main(["run", "bbob", "ng:OnePlusOne", "--budget", "100", "--set", "function=21",
                 "--set", "dim=3", "--out", str(out)]) == 0
    result = json.loads((out / "result.json").read_text())
    assert result["problem_config"] == {"function": 21, "dim": 3, "instance": 1, "sigma": 2.0}
    assert result["cost"] == 100 and result["best_loss"] >= 0
    grid = load_grid(ROOT / "examples" / "bbob.toml")
    assert {arm.config["function"] for arm in grid.problems} == {1, 8, 10, 12, 15, 21}
    assert {arm.name for arm in grid.optimizers} == {
        "random-search", "ng:CMA", "ng:OnePlusOne", "ng:NGOpt", "snes", "openai-es"}


def test_a_small_bbob_bench_has_statistics(tmp_path):
    _cocoex()
    from evoreg.bench import bench

    grid = {"budget": 60, "seeds": 3, "device": "cpu",
            "problem": [{"name": "bbob", "function": f, "dim": 2, "label": f"f{f}"}
                        for f in (1, 15)],
            "optimizer": [{"name": "random-search", "popsize": 10}, {"name": "ng:OnePlusOne"}]}
    rows = bench(grid, tmp_path / "out")
    assert [row["problem"] for row in rows] == ["f1", "f1", "f15", "f15"]
    stats = json.loads((tmp_path / "out" / "summary.json").read_text())["statistics"]
    assert set(stats["problems"]) == {"f1", "f15"}
    assert all(row["costs"] == [60, 60, 60] for row in rows)


def test_the_bbob_grid_benchmark_quick(tmp_path):
    _cocoex()
    import subprocess

    doc = ROOT / "docs" / "benchmarks.md"
    before = doc.read_text() if doc.exists() else None
    command = [sys.executable, str(ROOT / "benchmarks" / "bbob_grid.py"), "--quick",
               "--workers", "1", "--out", str(tmp_path), "--no-doc"]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((tmp_path / "bbob_grid.json").read_text())
    assert set(result["figures"]["optimizers"]) == {"random-search", "ng:OnePlusOne"}
    for figures in result["figures"]["optimizers"].values():
        assert 1 <= figures["mean_rank"] <= 2 and 0 <= figures["ecdf_reached"] <= 1
    assert len(result["summary"]) == 4 and result["config"]["problem"][0]["dim"] == 2
    assert (tmp_path / "bbob_grid_ecdf.png").is_file()
    assert (doc.read_text() if doc.exists() else None) == before  # --no-doc
