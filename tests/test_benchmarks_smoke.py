"""Smoke tests of the benchmark scripts: tiny sizes, results in a tmp folder, docs untouched."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS = ROOT / "benchmarks"


def _load_common():
    spec = importlib.util.spec_from_file_location("benchmarks_common", BENCHMARKS / "common.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_ask_tell_overhead_quick(tmp_path, run_benchmark):
    command = [
        sys.executable, str(BENCHMARKS / "ask_tell_overhead.py"), "--quick",
        "--dim", "64", "--popsize", "8", "--processes", "2", "--generations", "2",
        "--ng-candidates", "3", "--out", str(tmp_path), "--no-doc",
    ]
    run_benchmark(command, timeout=180)

    assert [p.name for p in tmp_path.iterdir()] == ["ask_tell_overhead.json"]
    result = json.loads((tmp_path / "ask_tell_overhead.json").read_text())
    for key in ("benchmark", "date", "command", "machine", "device", "torch", "versions",
                "config", "rounds", "stats_us", "ratios", "bound", "goal", "import_order"):
        assert key in result, key
    assert result["benchmark"] == "ask_tell_overhead"
    assert "ask_tell_overhead.py" in result["command"] and "--quick" in result["command"]
    assert result["config"]["dim"] == 64 and result["config"]["popsize"] == 8
    assert "torch" in result["versions"] and "nevergrad" in result["versions"]
    assert len(result["rounds"]) == 4  # 2 processes x 2 generations, warm-up left out
    assert {r["process"] for r in result["rounds"]} == {0, 1}
    for record in result["rounds"]:
        for step in ("evoreg", "evoreg_values", "evoreg_fresh", "ng:RandomSearch",
                     "ng:OnePlusOne"):
            assert record[step]["per_candidate_us"] > 0
            assert record[step]["ask_s"] > 0 and record[step]["tell_s"] > 0
        assert record["evoreg"]["candidates"] == 8 and record["evoreg"]["read_s"] > 0
        assert record["ng:RandomSearch"]["candidates"] == 3
        assert all(s > 0 for s in record["bandwidth"]["seconds"])
    for name, stats in result["stats_us"].items():
        assert 0 < stats["median"] <= stats["p90"], name
    assert result["bound"]["bytes_per_candidate"] == 64 * 4
    assert result["bound"]["evoreg_multiple_of_bound"] > 0
    assert all(v > 0 for ratio in result["ratios"].values() for v in ratio.values())
    assert isinstance(result["goal"]["met"], bool)


def test_doc_table_adds_then_replaces_one_line(tmp_path):
    common = _load_common()
    doc = tmp_path / "docs" / "benchmarks.md"
    row = {"benchmark": "demo", "date": "2026-01-01", "machine": "m", "figure": "1 µs",
           "goal": "< 2 µs", "met": "yes", "command": "python benchmarks/demo.py --a|b"}
    common.update_doc_table(row, doc)
    common.update_doc_table({**row, "benchmark": "other"}, doc)
    common.update_doc_table({**row, "figure": "3 µs", "met": "no"}, doc)
    text = doc.read_text()
    assert text.startswith("# Benchmarks")
    assert "| benchmark | date | machine | figure | goal | met? | command |" in text
    lines = [line for line in text.splitlines() if line.startswith("| demo |")]
    assert len(lines) == 1 and "3 µs" in lines[0] and "| no |" in lines[0]
    assert "--a\\|b" in lines[0]  # a pipe inside a cell is escaped
    table = [line for line in text.splitlines() if line.startswith("|")]
    assert [line.split("|")[1].strip() for line in table[2:]] == ["demo", "other"]


def test_eval_throughput_quick(tmp_path, run_benchmark):
    command = [
        sys.executable, str(BENCHMARKS / "eval_throughput.py"), "--quick", "--device", "cpu",
        "--mlp-popsize", "3", "--mlp-batch", "4", "--conv-popsize", "2", "--conv-batch", "3",
        "--repeats", "2", "--matmul-size", "64", "--out", str(tmp_path), "--no-doc",
    ]
    run_benchmark(command)

    assert [p.name for p in tmp_path.iterdir()] == ["eval_throughput.json"]
    result = json.loads((tmp_path / "eval_throughput.json").read_text())
    for key in ("benchmark", "date", "command", "machine", "device", "torch", "versions",
                "config", "repeats", "choices", "matmul", "models", "goal"):
        assert key in result, key
    assert result["benchmark"] == "eval_throughput" and result["device"]["type"] == "cpu"
    assert "eval_throughput.py" in result["command"] and "--quick" in result["command"]
    assert len(result["repeats"]) == 2 and result["matmul"]["gflops"] > 0
    # 2 x multiply-adds per candidate-sample of the Linear and Conv2d layers
    assert result["models"]["mlp92k"]["flops_per_candidate_sample"] == 2 * 91_776
    assert result["models"]["convnet9854"]["popsize"] == 2
    for model in result["models"].values():
        assert model["auto_strategy"] in ("batched", "vmap", "loop")
        for strategy in ("auto", "batched", "vmap", "loop"):
            figures = model["strategies"][strategy]
            assert figures["seconds"] > 0 and figures["gflops"] > 0
            assert figures["candidate_samples_per_second"] > 0
            assert figures["share_of_matmul"] > 0 and figures["speedup_over_loop"] > 0
    assert isinstance(result["goal"]["met"], bool)


def test_cli_startup_quick(tmp_path, run_benchmark):
    command = [sys.executable, str(BENCHMARKS / "cli_startup.py"), "--quick",
               "--out", str(tmp_path), "--no-doc"]
    run_benchmark(command)

    assert [p.name for p in tmp_path.iterdir()] == ["cli_startup.json"]
    result = json.loads((tmp_path / "cli_startup.json").read_text())
    for key in ("benchmark", "date", "command", "machine", "versions", "config", "repeats",
                "figures", "index_bytes", "goal"):
        assert key in result, key
    assert result["benchmark"] == "cli_startup" and "--quick" in result["command"]
    assert len(result["repeats"]) == 1 and result["index_bytes"] > 0
    timed = {"python -c pass", "evoreg --version"} | {
        f"evoreg {command} ({index} index)" for index in ("warm", "cold")
        for command in ("list", "info random-search", "info ng:NGOpt")
    }
    assert set(result["figures"]) == timed
    for figures in result["figures"].values():
        assert 0 < figures["median_s"] <= figures["p90_s"]
    assert set(result["goal"]["checks"]) == {
        "evoreg --version", "evoreg list (warm index)", "evoreg info random-search (warm index)",
        "evoreg info ng:NGOpt (warm index)",
    }
    assert isinstance(result["goal"]["met"], bool)


def test_checkpoint_io_quick(tmp_path, run_benchmark):
    command = [sys.executable, str(BENCHMARKS / "checkpoint_io.py"), "--quick",
               "--optimizers", "leea,atari-ga", "--out", str(tmp_path), "--no-doc"]
    run_benchmark(command, timeout=180)
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint_io.json"]  # no temporaries
    result = json.loads((tmp_path / "checkpoint_io.json").read_text())
    assert [case["optimizer"] for case in result["cases"]] == ["leea", "atari-ga"]
    for case in result["cases"]:
        assert len(case["seconds"]["ours_save"]) == result["repeats"] == 2
        assert case["bytes_ours"] > 0 and case["bytes_pickle"] > 0
        assert all(v > 0 for v in case["ratio_median"].values())
    assert "torch" in result["versions"] and "checkpoint_io.py" in result["command"]


def test_nas_inheritance_quick(tmp_path, run_benchmark):
    command = [sys.executable, str(BENCHMARKS / "nas_inheritance.py"), "--quick",
               "--out", str(tmp_path), "--no-doc"]
    run_benchmark(command, timeout=180)

    # the run folders went to a temporary folder, not next to the results
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nas_inheritance.json",
                                                          "nas_inheritance.png"]
    result = json.loads((tmp_path / "nas_inheritance.json").read_text())
    for key in ("benchmark", "date", "command", "machine", "device", "torch", "versions",
                "config", "runs", "table", "comparison", "wall_time_s", "thesis", "goal"):
        assert key in result, key
    assert result["benchmark"] == "nas_inheritance" and "--quick" in result["command"]
    config = result["config"]
    assert config["dataset"] == "digits" and config["seeds"] == [0, 1]
    assert config["checkpoints"] == [config["budget"] // 4, config["budget"]]
    assert config["channels_scaled_down"] is True
    settings = ["inheritance", "baseline I", "baseline II"]
    assert list(config["settings"]) == settings
    assert [config["settings"][s]["inherit"] for s in settings] == [True, False, False]
    assert [config["settings"][s]["epochs_per_eval"] for s in settings] == [1, 1, 4]
    assert sorted((r["setting"], r["seed"]) for r in result["runs"]) == sorted(
        (s, seed) for s in settings for seed in (0, 1))
    for run in result["runs"]:
        quarter, full = run["checkpoints"]
        assert quarter["budget"] == config["budget"] // 4 and full["budget"] == config["budget"]
        # a resume continues: never fewer epochs nor a worse best validation accuracy; and no
        # run passes its budget (children of 1 or 4 epochs fill 4 and 16 exactly)
        assert quarter["epochs_used"] == config["budget"] // 4
        assert full["epochs_used"] == config["budget"]
        assert full["best_validation_accuracy"] >= quarter["best_validation_accuracy"]
        for checkpoint in run["checkpoints"]:
            assert 0 <= checkpoint["report"]["test_accuracy"] <= 1
            assert checkpoint["report"]["final_epochs"] == config["final_epochs"]
        costs = [cost for cost, _ in run["trace"]]
        assert costs == sorted(costs) and costs[-1] == full["epochs_used"]
        assert run["trace"][-1][1] == full["best_validation_accuracy"]
    for setting in settings:
        for label in ("B/4", "B"):
            accuracy = result["table"][setting][label]["test_accuracy"]
            assert accuracy["min"] <= accuracy["mean"] <= accuracy["max"]
    comparison = result["comparison"]
    assert len(comparison["a_values"]) == len(comparison["b_values"]) == 2
    assert 0 < comparison["p_value"] <= 1 and comparison["alternative"] == "greater"
    assert isinstance(result["goal"]["met"], bool)
    assert (tmp_path / "nas_inheritance.png").stat().st_size > 1000


def test_lws_quick(tmp_path, run_benchmark):
    command = [sys.executable, str(BENCHMARKS / "lws.py"), "--quick", "--iterations", "4",
               "--train-size", "30", "--out", str(tmp_path), "--no-doc"]
    run_benchmark(command, timeout=180)

    assert sorted(p.name for p in tmp_path.iterdir()) == ["lws.json", "lws.png"]
    result = json.loads((tmp_path / "lws.json").read_text())
    config = result["config"]
    assert config["tasks"] == "digits,digits-inverted" and config["seeds"] == [0, 1]
    assert config["report_at"] == [2, 4] and config["threads"] == 1
    # without the nes plugin, --quick falls back to random-search and says so
    assert config["optimizer"] in ("nes", "random-search")
    assert (config["optimizer_fallback_for"] == "nes") == (config["optimizer"] != "nes")
    assert [config["settings"][s]["sharing"] for s in ("learned", "full", "none")] == [
        "learned", "full", "none"]
    for run in result["runs"]:
        assert [p["iterations"] for p in run["trace"]] == [2, 4]
        assert all(0 <= p["test_error"] <= 1 for p in run["trace"])
        distinct = run["final_report"]["distinct_weights"]
        assert distinct == {"full": 4, "none": 8}.get(run["setting"], distinct)
    for setting in ("learned", "full", "none"):
        assert len(result["table"][setting]["test_error_values"]) == 2
    comparison = result["comparison"]
    assert comparison["a"] == "learned" and comparison["b"] in ("full", "none")
    assert 0 < comparison["p_value"] <= 1 and comparison["alternative"] == "less"
    assert isinstance(result["goal"]["met"], bool)
    assert (tmp_path / "lws.png").stat().st_size > 1000


def test_nes_peers_quick(tmp_path, run_benchmark):
    pytest.importorskip("evotorch")
    command = [sys.executable, str(BENCHMARKS / "nes_peers.py"), "--quick",
               "--out", str(tmp_path), "--no-doc"]
    done = run_benchmark(command)

    assert sorted(p.name for p in tmp_path.iterdir()) == ["nes_peers.json", "nes_peers.png"]
    result = json.loads((tmp_path / "nes_peers.json").read_text())
    for key in ("benchmark", "date", "command", "machine", "device", "torch", "versions",
                "libraries", "config", "overhead", "runs", "table", "wall_time_s", "goal"):
        assert key in result, key
    assert result["benchmark"] == "nes_peers" and "--quick" in result["command"]
    config = result["config"]
    labels = ["evoreg snes", "EvoTorch SNES", "evoreg openai-es", "EvoTorch PGPE"]
    if config["evosax"]:
        labels += ["evosax SNES", "evosax Open_ES"]
    else:  # the script says so instead of failing
        assert "evosax: not installed" in done.stdout
    overhead = result["overhead"]
    assert sorted(overhead["stats"]) == sorted(labels)
    for label in labels:
        repeats = overhead["seconds"][label]
        assert len(repeats) == config["overhead"]["repeats"] == 2
        assert all(len(r) == config["overhead"]["generations_per_repeat"] for r in repeats)
        assert 0 < overhead["stats"][label]["median_ms"] <= overhead["stats"][label]["p90_ms"]
    for ratio in ("EvoTorch SNES / evoreg snes", "EvoTorch PGPE / evoreg openai-es"):
        assert overhead["ratios"][ratio]["median_ms"] > 0
    # every optimizer, problem and seed ran the same number of evaluations
    runs = result["runs"]
    assert len(runs) == len(labels) * 2 * 2
    for name in ("rastrigin", "mnist-weights"):
        same = {r["evaluations"] for r in runs if r["problem"] == name}
        assert len(same) == 1
        pairs = result["table"][name]["pairs"]
        for pair in ("evoreg snes vs EvoTorch SNES", "evoreg openai-es vs EvoTorch PGPE"):
            assert pairs[pair]["verdict"] in ("better", "worse", "tie")
            assert 0 < pairs[pair]["p_two_sided"] <= 1
    assert all(0 <= r["report"]["test_accuracy"] <= 1
               for r in runs if r["problem"] == "mnist-weights")
    assert isinstance(result["goal"]["met"], bool)
    assert (tmp_path / "nes_peers.png").stat().st_size > 1000
