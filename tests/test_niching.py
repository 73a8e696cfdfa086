"""niching does what Prellberg's Algorithm 4 says: strict (1+1) acceptance, niches of k steps
from a worse child, Lamarckian write-back, and runs that resume inside a niche."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch

import evoreg
from evoreg import Evaluation, EvoregError, Genome, Problem, Real
from evoreg.checkpoint import load_checkpoint
from evoreg.cli import main
from evoreg.statecodec import revive


# ------------------------------------------------------------------------ a stub genome
def lineage_space() -> Genome:
    """Genomes are their lineage: a child is its parent plus one fresh random number, so a
    test sees which genome each candidate was mutated from."""
    return Genome(sample=lambda rng: (int(rng.integers(10**9)),),
                  mutate=lambda x, rng: x + (int(rng.integers(10**9)),))


def niching(omega: float = 0.1, niche_steps: int = 5, seed: int = 0):
    return evoreg.make_optimizer("niching", lineage_space(), seed=seed, omega=omega,
                                 niche_steps=niche_steps)


def step(opt, loss: float) -> tuple:
    """Ask one candidate, tell it ``loss``, and return it."""
    pop = opt.ask()
    opt.tell(pop, [loss])
    return pop.values[0]


def mutated_from(child: tuple, parent: tuple) -> bool:
    return child[:-1] == parent


# ------------------------------------------------------------------ the acceptance rule
def test_the_first_ask_is_a_sample_that_becomes_the_parent():
    opt = niching()
    first = step(opt, 3.0)
    assert len(first) == 1  # sampled, not mutated
    assert opt.parent == first and opt.parent_loss == 3.0
    assert opt.recommend() == first


def test_a_strictly_better_child_replaces_the_parent_and_a_tie_does_not():
    opt = niching(omega=0.0)
    parent = step(opt, 3.0)
    tie = step(opt, 3.0)
    assert mutated_from(tie, parent) and opt.parent == parent
    better = step(opt, 2.0)
    assert mutated_from(better, parent)
    assert opt.parent == better and opt.parent_loss == 2.0
    assert mutated_from(opt.ask().values[0], better)


def test_with_omega_zero_a_worse_child_never_opens_a_niche():
    opt = niching(omega=0.0)
    parent = step(opt, 1.0)
    for _ in range(50):
        child = step(opt, 5.0)
        assert mutated_from(child, parent)  # every step mutates the parent
        assert opt.niche_left == 0
    assert opt.parent == parent and opt.parent_loss == 1.0


def test_with_omega_one_a_worse_child_opens_a_niche_of_exactly_k_steps():
    k = 4
    opt = niching(omega=1.0, niche_steps=k)
    parent = step(opt, 1.0)
    founder = step(opt, 5.0)  # worse: opens a niche from it
    assert opt.niche_left == k and opt.niche_best == founder
    # Inside the niche: a worse mutant neither moves the niche nor opens another niche; a
    # strictly better one becomes the niche's best, and the next step mutates it.
    worse = step(opt, 6.0)
    assert mutated_from(worse, founder) and opt.niche_best == founder
    assert opt.niche_left == k - 1
    better = step(opt, 4.0)
    assert mutated_from(better, founder) and opt.niche_best == better
    step(opt, 4.5)
    last = step(opt, 4.2)  # the k-th step: the niche ends, its best (4.0) loses to 1.0
    assert mutated_from(last, better)
    assert opt.niche_left == 0 and opt.niche_best is None
    assert opt.parent == parent and opt.parent_loss == 1.0
    assert mutated_from(opt.ask().values[0], parent)  # back to mutating the parent


def test_a_niche_whose_best_beats_the_parent_replaces_it_only_after_k_steps():
    opt = niching(omega=1.0, niche_steps=3)
    parent = step(opt, 1.0)
    step(opt, 5.0)  # opens the niche
    winner = step(opt, 0.5)  # better than the parent already, yet the niche runs on
    assert opt.parent == parent and opt.niche_left == 2
    step(opt, 0.7)
    step(opt, 0.9)
    assert opt.niche_left == 0
    assert opt.parent == winner and opt.parent_loss == 0.5


def test_a_niche_starts_with_probability_omega():
    opt = niching(omega=0.3, niche_steps=1)
    step(opt, 0.0)
    opened = 0
    for _ in range(2000):
        was_in_niche = opt.niche_left > 0
        step(opt, 1.0)
        opened += not was_in_niche and opt.niche_left > 0
    # 2000 steps: each niche takes 1 step + its founder; rate per non-niche step is omega.
    non_niche_steps = 2000 - opened
    assert abs(opened / non_niche_steps - 0.3) < 0.04


# ---------------------------------------------------------------------------- Lamarckian
class Trained(Problem):
    """A toy Lamarckian problem: a genome is ``{"arch": tuple of ints, "w": tensor}``;
    evaluating one "trains" its weights (halves them) and returns it trained. The loss is
    the architecture's distance to a target plus the weights' size, so trained weights that
    are inherited matter."""

    target = (3, 1, 4, 1, 5, 9)

    def setup(self) -> None:
        n = len(self.target)

        def sample(rng: np.random.Generator) -> dict:
            return {"arch": tuple(int(a) for a in rng.integers(0, 10, n)),
                    "w": torch.ones(2, 3)}

        def mutate(x: dict, rng: np.random.Generator) -> dict:
            arch = list(x["arch"])
            arch[int(rng.integers(n))] = int(rng.integers(10))
            return {"arch": tuple(arch), "w": x["w"].clone()}  # weights inherited

        self.space = Genome(sample, mutate)

    def evaluate(self, pop, *, gradients: bool = False) -> Evaluation:
        trained = [{"arch": g["arch"], "w": g["w"] * 0.5} for g in pop.values]
        losses = [sum(abs(a - t) for a, t in zip(g["arch"], self.target))
                  + float(g["w"].abs().mean()) for g in trained]
        return Evaluation(torch.tensor(losses), cost=1.0, candidates=trained)


def test_the_parent_is_the_candidate_the_problem_returned():
    problem = Trained()
    opt = evoreg.make_optimizer("niching", problem.space, seed=0, omega=1.0, niche_steps=2)
    kept_in_niche = kept_as_parent = 0
    for _ in range(30):
        pop = opt.ask()
        asked = pop.values[0]
        evaluation = problem.evaluate(pop)
        opt.tell(pop, evaluation)
        returned = evaluation.candidates[0]
        if opt.niche_best is not None and opt.niche_best["arch"] == asked["arch"]:
            assert torch.equal(opt.niche_best["w"], returned["w"])
            kept_in_niche += 1
        if opt.parent["arch"] == asked["arch"] and opt.parent_loss == float(evaluation.losses[0]):
            assert torch.equal(opt.parent["w"], returned["w"])
            assert not torch.equal(opt.parent["w"], asked["w"])  # trained, not as asked
            kept_as_parent += 1
    assert kept_in_niche > 0 and kept_as_parent > 0  # both paths were taken
    # Every accepted step halved the weights once more: they were inherited, trained.
    assert float(opt.parent["w"].max()) < 0.5


def test_a_real_space_is_refused_in_one_line():
    with pytest.raises(EvoregError, match="niching works on Genome spaces, not Real"):
        evoreg.make_optimizer("niching", Real(3))


def test_asking_more_than_one_candidate_is_refused():
    with pytest.raises(EvoregError, match=r"\(1\+1\)-EA: ask\(\) one candidate at a time"):
        niching().ask(2)


def test_info_shows_omega_niche_steps_and_the_citation(capsys):
    assert main(["info", "niching"]) == 0
    out = capsys.readouterr().out
    assert "Genome" in out
    for row in (r"omega\s+float\s+0\.1\s+in \[0, 1\]\s+omega, chance",
                r"niche_steps\s+int\s+5\s+>= 1\s+k, mutate-evaluate-select steps"):
        assert re.search(row, out), (row, out)
    assert "Prellberg (2020), Evolving Deep Neural Networks, thesis ch. 7 (Algorithm 4)" in out


# ------------------------------------------------------------------------ resume mid-niche
def _run(out, budget, resume=False):
    return evoreg.run(Trained(), "niching", budget, seed=0, out_dir=out, checkpoint_every=1,
                      resume=resume, optimizer_config={"omega": 0.5, "niche_steps": 5},
                      progress=False, plot=False)


def _saved_optimizer(out) -> dict:
    return revive(load_checkpoint(out / "checkpoint.pt")["optimizer"]["algorithm"])


def _log(out) -> list[dict]:
    return [{k: v for k, v in json.loads(line).items() if k != "seconds"}
            for line in (out / "log.jsonl").read_text().splitlines()]


def test_a_run_stopped_inside_a_niche_resumes_to_the_uninterrupted_result(tmp_path):
    total = 60
    straight = _run(tmp_path / "straight", total)
    # The first budget whose checkpoint is inside a niche (deterministic: seed 0).
    for stop in range(2, total):
        out = tmp_path / f"stopped-{stop}"
        _run(out, stop)
        state = _saved_optimizer(out)
        if 0 < state["niche_left"] < 5:
            break
    else:
        pytest.fail("no run of seed 0 stopped inside a niche")
    assert state["niche_best"] is not None
    resumed = _run(out, total, resume=True)
    assert resumed.best_loss == straight.best_loss
    assert resumed.generations == straight.generations == total
    assert resumed.recommendation["arch"] == straight.recommendation["arch"]
    assert torch.equal(resumed.recommendation["w"], straight.recommendation["w"])
    assert _log(out) == _log(tmp_path / "straight")
