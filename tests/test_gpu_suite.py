"""benchmarks/gpu_suite.py: every GPU item in one command; ``--device cpu --tiny`` runs the
same code in seconds, and the GPU plan never exceeds the suite's time limit."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS = ROOT / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import gpu_suite  # noqa: E402

DOC = ROOT / "docs" / "benchmarks.md"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> tuple[Path, dict]:
    """The suite at --tiny on the CPU, its lines into a scratch table."""
    out = tmp_path_factory.mktemp("suite")
    before = DOC.read_text() if DOC.exists() else None
    command = [sys.executable, str(BENCHMARKS / "gpu_suite.py"), "--device", "cpu", "--tiny",
               "--out", str(out), "--doc", str(out / "doc.md")]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert (DOC.read_text() if DOC.exists() else None) == before  # the real table untouched
    return out, json.loads((out / "gpu_suite_cpu-tiny.json").read_text())


def test_tiny_runs_every_item_and_records_it(tiny):
    out, data = tiny
    assert [record["name"] for record in data["items"]] == [item.name for item in
                                                            gpu_suite.ITEMS]
    for record in data["items"]:
        needs = next(item.needs for item in gpu_suite.ITEMS if item.name == record["name"])
        if any(importlib.util.find_spec(module) is None for module in needs):
            assert record["status"].startswith("skipped"), record["status"]
            continue
        assert record["status"] == "ok", (record["name"], record.get("output_tail"))
        assert record["result"]["device"]["type"] == "cpu", record["name"]
        assert "--quick" in record["command"] and "--device cpu" in record["command"]
        assert record["wall_s"] > 0
    for png in ("goea_trace_cpu-tiny.png", "leea_vs_adam_cpu-tiny.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG"
    assert data["label"] == "cpu-tiny" and data["tiny"] is True


def test_tiny_lines_carry_the_label_and_the_suite_line(tiny):
    out, data = tiny
    text = (out / "doc.md").read_text()
    assert "| eval_throughput (cpu-tiny) |" in text and "| goea_trace (cpu-tiny) |" in text
    assert "| gpu_suite (cpu-tiny) |" in text
    lines = next(r for r in data["items"] if r["name"] == "eval_throughput")["doc_lines"]
    assert len(lines) == 1 and lines[0].startswith("| eval_throughput (cpu-tiny) |")


def test_record_files_a_suite_brought_back(tiny, tmp_path):
    out, data = tiny
    gpu_suite.main(["--record", str(out / "gpu_suite_cpu-tiny.json"), "--out",
                    str(tmp_path), "--doc", str(tmp_path / "doc.md")])
    for record in data["items"]:
        if record["result"] is not None:
            filed = json.loads((tmp_path / f"{record['name']}_cpu-tiny.json").read_text())
            assert filed == record["result"]
    assert (tmp_path / "goea_trace_cpu-tiny.png").is_file()
    assert "| leea_vs_adam (cpu-tiny) |" in (tmp_path / "doc.md").read_text()


def test_the_gpu_commands_are_the_issues_sizes():
    args = gpu_suite.parse_args(["--data-root", "/data/fmnist", "--no-doc"])
    commands = {item.name: gpu_suite.command_of(item, args, Path("/o"), item.seconds)
                for item in gpu_suite.ITEMS}
    goea = " ".join(commands["goea_trace"])
    assert "--batch-size full" in goea and "--device cuda" in goea
    assert "--data-root /data/fmnist" in goea and "--max-seconds 140" in goea
    leea = " ".join(commands["leea_vs_adam"])
    assert "--popsize 2000 --batch-size 1024" in leea and "--sigma 0.001" in leea
    assert "--device cuda" in " ".join(commands["rollout_throughput"])
    assert all("--no-doc" in command for command in commands.values())
    assert args.doc is None
    assert gpu_suite.parse_args([]).doc == str(gpu_suite.DOC)  # GPU runs file their lines
    assert gpu_suite.parse_args(["--tiny"]).doc is None  # smoke runs do not


def test_the_suite_never_gives_its_items_more_than_the_limit(tmp_path, monkeypatch):
    """Every item takes all of its share (a slow GPU): the shares must still add up to no
    more than --time-limit, and an item with no time left is not started."""
    clock = [0.0]
    given = []

    def slow_item(item, args, seconds, work):
        given.append(seconds)
        clock[0] += seconds
        return {"name": item.name, "status": "timed out", "wall_s": seconds, "result": None,
                "doc_lines": [], "pngs": []}

    monkeypatch.setattr(gpu_suite, "run_item", slow_item)
    monkeypatch.setattr(gpu_suite, "run_info", lambda device: {"date": "d", "machine": {}})
    data = gpu_suite.run_suite(gpu_suite.parse_args(["--out", str(tmp_path), "--no-doc"]),
                               clock=lambda: clock[0])
    assert sum(given) <= gpu_suite.TIME_LIMIT_S
    assert given[0] == gpu_suite.ITEMS[0].seconds  # shares as planned while time is left
    assert data["goal"]["met"] is False
    assert sum(item.seconds for item in gpu_suite.ITEMS[:-1]) < gpu_suite.TIME_LIMIT_S


def test_goea_trace_projects_the_trace_from_its_rate_when_capped(tmp_path):
    command = [sys.executable, str(BENCHMARKS / "goea_trace.py"), "--quick", "--device", "cpu",
               "--max-seconds", "0.001", "--out", str(tmp_path), "--no-doc"]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((tmp_path / "goea_trace.json").read_text())
    assert result["generations_done"] == 1 and result["config"]["generations"] == 6
    assert result["projected_wall_time_s"] == pytest.approx(6 * result["wall_time_s"])
    assert result["trace"][-1]["generation"] == 1  # the report at the cap


@pytest.mark.skipif(not Path("/usr/share/datasets/fashion-mnist").is_dir(),
                    reason="Debian's dataset-fashion-mnist is not installed")
def test_pack_data_copies_the_fashion_mnist_files(tmp_path):
    gpu_suite.main(["--pack-data", str(tmp_path / "data")])
    names = sorted(path.name for path in (tmp_path / "data").iterdir())
    assert names == sorted(f"{stem}.gz" for stem in gpu_suite.FASHION_MNIST_FILES)
    from evoreg.problems.datasets import load

    data = load("fashion-mnist", data_root=str(tmp_path / "data"))
    assert data.source == str(tmp_path / "data") and len(data.train_labels) == 60_000
