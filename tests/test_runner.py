"""The runner: files it writes, resume after kill -9, atomic checkpoints."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import evoreg
from evoreg import EvoregError
from evoreg.checkpoint import load_checkpoint

SCRIPTS = Path(__file__).parent / "scripts"


def test_run_writes_log_checkpoint_result_and_plot(tmp_path):
    result = evoreg.run(
        "sphere", "random-search", budget=160, seed=1, out_dir=tmp_path,
        checkpoint_every=3, progress=False, problem_config={"dim": 4},
    )
    assert result.generations == 10 and result.cost == 160
    lines = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [line["generation"] for line in lines] == list(range(1, 11))
    assert {"generation", "cost", "best_loss", "loss_median", "seconds"} <= set(lines[0])
    best = [line["best_loss"] for line in lines]
    assert best == sorted(best, reverse=True) and best[-1] == result.best_loss
    saved = json.loads((tmp_path / "result.json").read_text())
    assert saved["best_loss"] == result.best_loss
    assert saved["report"]["noise_free_loss"] == pytest.approx(result.best_loss)
    assert "torch" in saved["versions"] and saved["budget_unit"] == "evaluations"
    assert (tmp_path / "convergence.png").stat().st_size > 1000
    assert load_checkpoint(tmp_path / "checkpoint.pt")["generation"] == 10


def test_same_seed_same_result_and_seeds_matter():
    runs = [
        evoreg.run("rastrigin", "random-search", budget=64, seed=s, progress=False).best_loss
        for s in (7, 7, 8)
    ]
    assert runs[0] == runs[1] and runs[0] != runs[2]


def test_existing_run_needs_resume_and_the_same_configuration(tmp_path):
    evoreg.run("sphere", "random-search", budget=32, out_dir=tmp_path, progress=False)
    with pytest.raises(EvoregError, match="already holds a run"):
        evoreg.run("sphere", "random-search", budget=32, out_dir=tmp_path, progress=False)
    with pytest.raises(EvoregError, match=r'differs from .*problem_config \{"dim": 10'):
        evoreg.run("sphere", "random-search", budget=32, out_dir=tmp_path, resume=True,
                   problem_config={"dim": 3}, progress=False)


def test_resume_of_a_finished_run_returns_it_and_a_larger_budget_continues(tmp_path):
    first = evoreg.run("sphere", "random-search", budget=64, out_dir=tmp_path, progress=False)
    again = evoreg.run("sphere", "random-search", budget=64, out_dir=tmp_path, resume=True,
                       progress=False)
    assert again.best_loss == first.best_loss and again.generations == first.generations
    longer = evoreg.run("sphere", "random-search", budget=128, out_dir=tmp_path, resume=True,
                        progress=False)
    straight = evoreg.run("sphere", "random-search", budget=128, progress=False)
    assert longer.generations == 8 and longer.best_loss == straight.best_loss


def test_bad_budget_and_checkpoint_interval():
    with pytest.raises(EvoregError, match="budget must be > 0 and finite"):
        evoreg.run("sphere", "random-search", budget=0)
    with pytest.raises(EvoregError, match="checkpoint_every"):
        evoreg.run("sphere", "random-search", budget=10, checkpoint_every=0)


def _run_script(out_dir: Path, optimizer: str, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPTS / "slow_run.py"), str(out_dir), optimizer, *extra],
        capture_output=True, text=True, timeout=120,
    )


OPTIMIZERS_TO_KILL = ["random-search"] + (
    ["ng:OnePlusOne"] if "ng:OnePlusOne" in evoreg.optimizers() else []
)


@pytest.mark.parametrize("optimizer", OPTIMIZERS_TO_KILL)
def test_kill_9_and_resume_ends_like_an_uninterrupted_run(tmp_path, optimizer, kill_mid_run):
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    done = _run_script(straight, optimizer)
    assert done.returncode == 0, done.stderr

    kill_mid_run([sys.executable, str(SCRIPTS / "slow_run.py"), str(killed), optimizer],
                 killed / "log.jsonl", lines=23, timeout=60)
    assert not (killed / "final.json").exists()
    checkpoint = load_checkpoint(killed / "checkpoint.pt")
    assert 0 < checkpoint["generation"] < 60

    resumed = _run_script(killed, optimizer, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    a = json.loads((straight / "final.json").read_text())
    b = json.loads((killed / "final.json").read_text())
    assert a == b
    log_a = [json.loads(x) for x in (straight / "log.jsonl").read_text().splitlines()]
    log_b = [json.loads(x) for x in (killed / "log.jsonl").read_text().splitlines()]
    strip = [{k: v for k, v in line.items() if k != "seconds"} for line in log_a]
    assert strip == [{k: v for k, v in line.items() if k != "seconds"} for line in log_b]


def test_kill_9_during_checkpoint_writes_never_corrupts_it(tmp_path):
    path = tmp_path / "checkpoint.pt"
    for attempt in range(4):
        process = subprocess.Popen(
            [sys.executable, str(SCRIPTS / "checkpoint_writer.py"), str(path)],
            stdout=subprocess.PIPE, text=True,
        )
        process.stdout.readline()  # at least one complete checkpoint exists
        time.sleep(0.05 + 0.07 * attempt)  # land at different points of a write
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        state = load_checkpoint(path)
        assert torch.equal(state["weights"], torch.full((4_000_000,), float(state["step"])))
    leftovers = [p.name for p in tmp_path.iterdir() if p.name != "checkpoint.pt"]
    assert all(name.endswith(".tmp") for name in leftovers)  # only abandoned temporaries


class _TrainsHalfway(evoreg.Problem):
    """A Lamarckian toy: scoring 'trains' each candidate halfway to the optimum (1, ..., 1)
    and returns the trained candidates with their losses."""

    def setup(self) -> None:
        self.space = evoreg.Real(4)

    def evaluate(self, pop, *, gradients: bool = False) -> evoreg.Evaluation:
        trained = (pop.rows(0, len(pop)) + 1.0) / 2
        losses = (trained - 1.0).pow(2).sum(dim=1)
        return evoreg.Evaluation(losses, cost=float(len(pop)), candidates=trained)


class _Memetic(evoreg.Optimizer):
    """Asks for its parent again and again; the parent is the best trained candidate
    (Lamarckian write-back)."""

    spaces = (evoreg.Real,)
    generational = True

    def setup(self) -> None:
        self.parent = self.space.initial()

    def _ask(self, n):
        return self.parent.expand(n, -1).clone()

    def _tell(self, pop, losses):
        self.parent = pop.evaluation.candidates[int(losses.argmin())].clone()


def test_the_whole_evaluation_reaches_tell_so_trained_weights_are_written_back():
    problem = _TrainsHalfway(seed=0)
    result = evoreg.run(problem, _Memetic(problem.space), budget=30, progress=False)
    # each generation halves the distance to the optimum: 2^-30 of it after 30
    assert result.best_loss < 1e-12
    kept = evoreg.run(_TrainsHalfway(seed=0), "random-search", budget=30, progress=False)
    # best_x is the trained candidate, whose loss is the best loss
    assert float((kept.recommendation - 1).pow(2).sum()) == pytest.approx(kept.best_loss)
    assert kept.best_loss > 1e-3  # no write-back: no compounding
