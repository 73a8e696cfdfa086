"""Smoke test of benchmarks/goea_analyses.py: tiny sizes, results in a tmp folder."""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_goea_analyses_quick(tmp_path, run_benchmark):
    command = [sys.executable, str(ROOT / "benchmarks" / "goea_analyses.py"), "--quick",
               "--transfer-updates", "4", "--out", str(tmp_path), "--no-doc"]
    run_benchmark(command)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["goea_analyses.json",
                                                          "goea_analyses.png"]
    result = json.loads((tmp_path / "goea_analyses.json").read_text())
    assert set(result["points"]) == {"start", "transfer", "optimum"}
    for point in result["points"].values():
        assert point["angles"]["samples"] == 30 and len(point["flatness"]["loss"]) == 5
    assert result["config"]["dimensions"] == 2410 and result["config"]["quick"]
    assert result["checks"]["cap_45deg_n100_below_1e-3"] is True
    assert result["figures"]["cap_45deg_n100"] < 1e-3
    assert [r["continue_with"] for r in result["transfer"]] == ["goea", "sgd"]
    assert result["transfer"][0]["trace"][-1]["update"] == 4
    assert isinstance(result["goal"]["met"], bool)
