"""Smoke test of benchmarks/rollout_throughput.py: tiny sizes, results in tmp, docs untouched."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS = ROOT / "benchmarks"


def test_rollout_throughput_quick(tmp_path, run_benchmark):
    command = [
        sys.executable, str(BENCHMARKS / "rollout_throughput.py"), "--quick", "--game", "pong",
        "--agents", "2", "--steps", "5", "--naive-steps", "3", "--repeats", "2",
        "--threads", "1", "--out", str(tmp_path), "--no-doc",
    ]
    run_benchmark(command)

    assert [p.name for p in tmp_path.iterdir()] == ["rollout_throughput.json"]
    result = json.loads((tmp_path / "rollout_throughput.json").read_text())
    for key in ("benchmark", "date", "command", "machine", "device", "torch", "versions",
                "config", "repeats", "medians", "ratios", "goal"):
        assert key in result, key
    assert result["benchmark"] == "rollout_throughput" and result["game"] == "pong"
    assert "rollout_throughput.py" in result["command"] and "--quick" in result["command"]
    assert result["parameters_per_agent"] == 1_687_206
    assert len(result["repeats"]) == 2
    for record in result["repeats"]:
        for kind in ("ours", "ours_noop_steps", "raw", "naive"):
            assert record[kind]["frames_per_second"] > 0 and record[kind]["frames"] > 0
        assert record["raw"]["frames"] == 2 * 5 * 4
        assert record["forward"]["bmm_ms_per_step"] > 0
    assert all(value > 0 for value in result["medians"].values())
    assert all(value > 0 for value in result["ratios"].values())
    assert isinstance(result["goal"]["met"], bool)
    limits = result["machine_limits"]  # the CPU's own ceilings on ours/raw
    # Pong's policy: 2 * (400*8192 + 81*32768 + 49*36864 + 3136*512 + 512*6) FLOPs a step
    assert limits["policy_gflop_per_step"] == pytest.approx(2 * 2 * 9_346_048 / 1e9)
    assert limits["weight_mb_per_step"] == pytest.approx(2 * 1_687_206 * 4 / 1e6)
    ceilings = limits["ceilings"]
    for ceiling in ceilings.values():
        assert 0 < ceiling["share_of_raw"] < 1 and ceiling["forward_ms"] > 0
    # slower reads can only lower the ceiling; the arithmetic alone is the highest
    assert (ceilings["weights_from_dram"]["share_of_raw"]
            <= ceilings["compute_only"]["share_of_raw"])
    assert (ceilings["weights_from_cache"]["share_of_raw"]
            <= ceilings["compute_only"]["share_of_raw"])


def test_ga_frostbite_quick(tmp_path, run_benchmark):
    out, runs = tmp_path / "out", tmp_path / "runs"
    command = [sys.executable, str(BENCHMARKS / "ga_frostbite.py"), "--quick",
               "--out", str(out), "--no-doc", "--runs", str(runs)]
    done = run_benchmark(command)
    assert "kept from" not in done.stdout
    first = json.loads((out / "ga_frostbite.json").read_text())["runs"]
    # a rerun with the same --runs keeps every finished run instead of playing it again
    again = run_benchmark(command)
    assert again.stdout.count("kept from") == 2
    assert json.loads((out / "ga_frostbite.json").read_text())["runs"] == first
    assert sorted(p.name for p in out.iterdir()) == ["ga_frostbite.json", "ga_frostbite.png"]
    result = json.loads((out / "ga_frostbite.json").read_text())
    assert set(result["runs"]) == {"atari-ga", "ng:OnePlusOne"}
    for seed_runs in result["runs"].values():
        assert len(seed_runs) == 1 and seed_runs[0]["frames"] >= 800
        assert {"mean_score", "median_score"} <= set(seed_runs[0]["report"])
        assert seed_runs[0]["curve"] and seed_runs[0]["curve"][-1][0] == seed_runs[0]["frames"]
    assert result["random_actions"]["episodes"] == 2
    assert "ga_frostbite.py" in result["command"]
