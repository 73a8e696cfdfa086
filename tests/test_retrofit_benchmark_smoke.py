"""Smoke test of benchmarks/retrofit.py: --quick on digits, the cached model and the results
in a tmp folder, docs untouched."""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_retrofit_benchmark_quick(tmp_path, run_benchmark):
    out = tmp_path / "out"
    command = [sys.executable, str(ROOT / "benchmarks" / "retrofit.py"), "--quick",
               "--seeds", "2", "--budgets", "6,12", "--out", str(out), "--data-root",
               str(tmp_path / "data"), "--no-doc"]
    run_benchmark(command)

    assert sorted(p.name for p in out.iterdir()) == ["retrofit.json", "retrofit.png"]
    result = json.loads((out / "retrofit.json").read_text())
    for key in ("benchmark", "date", "command", "machine", "versions", "config", "cells",
                "rows", "best_cell_at_budget", "wall_time_s", "goal"):
        assert key in result, key
    config = result["config"]
    assert config["dataset"] == "digits" and config["budgets"] == [6, 12]
    assert config["runs"] == [1, 2] and config["seeds"] == [0, 1]
    # every cell (loss x optimizer x budget x runs) with its gap and test
    assert len(result["cells"]) == 1 * 2 * 2 * 2
    for cell in result["cells"]:
        assert cell["seeds"] == 2 and 0 < cell["p_value"] <= 1
        for key in ("test_untouched_mean", "test_mean", "relative_gain_mean", "gap_mean",
                    "gap_untouched_mean", "overfitting_mean"):
            assert isinstance(cell[key], float), key
    # runs=1 is the first of the runs made for runs=2: same run, same figures
    rows = {(r["optimizer"], r["budget"], r["seed"], r["runs"]): r for r in result["rows"]}
    for (optimizer, budget, seed, runs), row in rows.items():
        assert len(row["validation_of_each_run"]) == runs
        if runs == 2:
            one = rows[(optimizer, budget, seed, 1)]
            assert one["validation"] == row["validation_of_each_run"][0]
            assert row["validation"] == min(row["validation_of_each_run"])
    assert isinstance(result["goal"]["met"], bool)
    assert (out / "retrofit.png").stat().st_size > 1000
    assert list((tmp_path / "data" / "retrofit").glob("digits-*.pt"))
