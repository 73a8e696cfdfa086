"""Smoke tests of benchmarks/crash_resume.py: real `evoreg run` processes killed with SIGKILL
and resumed must end exactly like the uninterrupted run, and the benchmark must notice when
one does not."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "crash_resume.py"


def _crash_resume(tmp_path: Path, *extra: str, env: dict[str, str] | None = None) -> dict:
    command = [sys.executable, str(SCRIPT), "--quick", "--out", str(tmp_path / "out"),
               "--work-dir", str(tmp_path / "runs"), "--no-doc", *extra]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return json.loads((tmp_path / "out" / "crash_resume.json").read_text())


def test_killed_and_resumed_runs_end_like_the_uninterrupted_one(tmp_path):
    doc = ROOT / "docs" / "benchmarks.md"
    doc_before = doc.read_text() if doc.exists() else None
    result = _crash_resume(tmp_path)

    for key in ("benchmark", "date", "command", "machine", "versions", "config", "references",
                "summary", "total", "trials", "goal"):
        assert key in result, key
    assert result["benchmark"] == "crash_resume" and "--quick" in result["command"]
    summary = result["summary"]["goea-sphere"]
    assert summary["trials"] == 2 and summary["kills"] >= 1
    diverged = [t["differences"] or t["unusable"] for t in result["trials"] if not t["identical"]]
    assert summary["identical"] == 2 and summary["unusable"] == 0, diverged
    assert result["goal"]["met"] is True
    # passing trials' directories are removed, and then the whole work folder
    assert result["kept_run_dirs"] == [] and not (tmp_path / "runs").exists()
    assert (doc.read_text() if doc.exists() else None) == doc_before  # --no-doc


SABOTAGE = '''
import sys
# Resumed runs forget the optimizer's checkpointed state and go on from a fresh one.
if "run" in sys.argv and "--resume" in sys.argv:
    import evoreg.optimizer
    evoreg.optimizer.Optimizer.load_state_dict = lambda self, state: None
'''


def test_a_resume_that_diverges_is_reported(tmp_path):
    sabotage = tmp_path / "sabotage"
    sabotage.mkdir()
    (sabotage / "sitecustomize.py").write_text(SABOTAGE)
    env = {**os.environ, "PYTHONPATH": str(sabotage)}
    # One kill at 42% of the loop (the schedule's first draw), a loop long enough for
    # checkpoints to exist by then even on a loaded machine, then the broken resume.
    result = _crash_resume(tmp_path, "--trials", "1", "--aimed-share", "0",
                           "--anywhere-share", "0", "--budget-scale", "0.5", env=env)

    total = result["total"]
    assert total["kills"] == 1 and total["unusable"] == 0
    assert result["trials"][0]["kills"][0]["log_lines"] >= 2, "killed before a checkpoint"
    assert total["identical"] == 0 and total["diverged"] == 1
    assert result["goal"]["met"] is False
    (trial,) = result["trials"]
    assert any(d.startswith("log:") for d in trial["differences"]), trial["differences"]
    assert result["kept_run_dirs"] == [trial["run_dir"]] and Path(trial["run_dir"]).is_dir()
