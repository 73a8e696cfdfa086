"""kill -9 inside a niche of a Lamarckian architecture search, then --resume: the run ends
exactly like an uninterrupted one (issue 12, section 5).

The unit tests of niching (tests/test_niching.py) stop a toy problem inside a niche; this
one kills a real process on the ``architecture`` problem, whose genomes carry trained
weights and whose state holds the history of evaluated architectures."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import torch

from evoreg.checkpoint import load_checkpoint
from evoreg.statecodec import revive

SCRIPT = Path(__file__).parent / "scripts" / "niching_run.py"
NICHE_STEPS = 3  # as in the script


def _run_script(out_dir: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), str(out_dir), *extra],
                          capture_output=True, text=True, timeout=120)


def _log(out: Path) -> list[dict]:
    """The log without its timings."""
    return [{k: v for k, v in json.loads(line).items() if k != "seconds"}
            for line in (out / "log.jsonl").read_text().splitlines()]


def niche_left_after(losses: list[float]) -> list[int]:
    """niching's ``niche_left`` after each generation, replayed from the children's losses:
    with omega = 1 the niche decisions draw no random number, so the losses decide them."""
    parent = float("inf")
    niche_left, niche_best = 0, float("inf")
    states = []
    for index, loss in enumerate(losses):
        if index == 0:
            parent = loss
        elif niche_left > 0:
            niche_best = min(niche_best, loss)
            niche_left -= 1
            if niche_left == 0:
                parent = min(parent, niche_best)
                niche_best = float("inf")
        elif loss < parent:
            parent = loss
        else:
            niche_left, niche_best = NICHE_STEPS, loss
        states.append(niche_left)
    return states


def test_kill_9_inside_a_niche_and_resume_ends_like_an_uninterrupted_run(tmp_path, kill_mid_run):
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    done = _run_script(straight)
    assert done.returncode == 0, done.stderr[-3000:]
    log = _log(straight)

    # Kill once the log has `lines` lines: the checkpoint then is that generation's or the
    # one before (the log line is written first), or at worst the next one's. Choose
    # `lines` so that all three are inside a niche. (A child's loss is the log's loss_min:
    # one candidate per generation.)
    inside = niche_left_after([line["loss_min"] for line in log])
    lines = next((g for g in range(2, len(inside) - 1)
                  if all(inside[g - 2:g + 1])), None)  # generations g-1, g, g+1 (1-based)
    assert lines is not None, f"no three generations in a row inside a niche: {inside}"
    kill_mid_run([sys.executable, str(SCRIPT), str(killed)], killed / "log.jsonl",
                 lines=lines, timeout=60)
    assert not (killed / "final.json").exists()
    checkpoint = load_checkpoint(killed / "checkpoint.pt")
    generation = checkpoint["generation"]
    assert lines - 1 <= generation <= lines + 1
    state = revive(checkpoint["optimizer"]["algorithm"])
    assert state["niche_left"] == inside[generation - 1] > 0  # the kill left us in a niche
    assert state["niche_best"] is not None

    resumed = _run_script(killed, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    a = json.loads((straight / "final.json").read_text())
    b = json.loads((killed / "final.json").read_text())
    assert a == b  # best loss, the report (test accuracy after final training), blocks
    weights_a = torch.load(straight / "final_weights.pt")
    weights_b = torch.load(killed / "final_weights.pt")
    assert weights_a.keys() == weights_b.keys()
    assert all(torch.equal(weights_a[name], weights_b[name]) for name in weights_a)
    assert _log(killed) == log
