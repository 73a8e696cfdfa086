"""atari-ga's operators (DESIGN.md: Such et al. 2017, thesis ch. 6) and its seed genomes."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import evoreg
from evoreg import EvoregError, LazyPopulation, Real, noise
from evoreg.checkpoint import dumps, load_checkpoint, loads
from evoreg.population import Decoder


def _space(dim: int = 6) -> Real:
    """Fresh initialisations around 7 (so a draw is told apart from the noise of a seed)."""
    return Real(dim, sample_init=lambda n, generator: 7 + torch.randn(n, dim, generator=generator))


def _ga(space=None, **config):
    return evoreg.make_optimizer("atari-ga", space or _space(), seed=0, **config)


def test_presets_fill_unset_values_and_explicit_values_win():
    thesis = _ga().config
    assert (thesis.elites, thesis.parents, thesis.popsize, thesis.max_evals) == (10, 40, 2000, 20)
    assert thesis.sigma == 0.005
    such = _ga(preset="such2017").config
    assert (such.elites, such.parents, such.popsize, such.max_evals) == (1, 10, 5000, 1)
    mixed = _ga(preset="such2017", popsize=30).config
    assert (mixed.popsize, mixed.parents) == (30, 10)


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"preset": "uber"}, "thesis"),
        ({"sigma": 0.0}, "sigma"),
        ({"popsize": 0}, "popsize"),
        ({"parents": 4, "elites": 5}, "must be < parents"),
        ({"parents": 4, "elites": 4}, "elites"),
        ({"max_evals": 0}, "max_evals"),
    ],
)
def test_bad_hyperparameters_are_refused_with_the_range(bad, message):
    with pytest.raises(EvoregError, match=message):
        _ga(**bad)


def _run_generation(opt, losses_of):
    pop = opt.ask()
    losses = torch.tensor([losses_of(g) for g in pop.genomes], dtype=torch.float32)
    opt.tell(pop, losses)
    return pop, losses


def test_first_generation_is_popsize_fresh_initialisations():
    opt = _ga(popsize=12, parents=4, elites=1, max_evals=3)
    pop = opt.ask()
    assert isinstance(pop, LazyPopulation) and len(pop) == 12
    assert all(len(g) == 1 for g in pop.genomes)
    assert len({g[0][0] for g in pop.genomes}) == 12
    space = opt.space
    for genome, row in zip(pop.genomes, pop.values):
        generator = torch.Generator().manual_seed(genome[0][0])
        assert torch.equal(row, space.sample_init(1, generator)[0])
        assert torch.equal(row, space.seeded_initial(genome[0][0]))


def test_children_are_a_parent_plus_sigma_noise_and_elites_are_reevaluated():
    opt = _ga(popsize=10, parents=4, elites=2, max_evals=3, sigma=0.1)
    first, losses = _run_generation(opt, lambda g: float(g[0][0] % 97))
    parents = [a["genome"] for a in opt.agents]
    assert len(parents) == 4
    # The best mu of the first generation become the parents, best first.
    order = torch.argsort(losses, stable=True)[:4].tolist()
    assert parents == [first.genomes[i] for i in order]

    second = opt.ask()
    children, elites = second.genomes[:10], second.genomes[10:]
    assert elites == parents[:2]  # kappa elites come back unchanged, with their ids
    assert second.ids[10:].tolist() == [a["id"] for a in opt.agents[:2]]
    decoder = Decoder(6, space=opt.space)
    for child, row in zip(children, second.rows(0, 10)):
        assert child[:-1] in parents and child[-1][1] == 0.1
        expected = decoder.decode(child[:-1]) + 0.1 * noise(child[-1][0], 6)
        assert torch.allclose(row, expected)


def test_elite_fitness_is_the_mean_of_its_episodes_until_max_evals():
    opt = _ga(popsize=6, parents=3, elites=1, max_evals=3)
    episode = {"n": 0}

    def losses_of(genome):
        episode["n"] += 1
        return 0.0 if len(genome) == 1 else 100.0  # the initial agents are best at first

    _run_generation(opt, losses_of)
    elite = opt.agents[0]
    # The elite's next episodes are worse; children stay worse than its mean.
    losses_by_generation = [6.0, 9.0]
    for loss in losses_by_generation:
        pop = opt.ask()
        assert pop.genomes[-1] == elite["genome"]
        values = torch.full((len(pop),), 100.0)
        values[-1] = loss
        opt.tell(pop, values)
        assert opt.agents[0]["id"] == elite["id"]
    assert opt.agents[0]["losses"] == [0.0, 6.0, 9.0]
    # max_evals reached: the elite is no longer asked for, and keeps its mean (5.0).
    pop = opt.ask()
    assert elite["genome"] not in pop.genomes and len(pop) == 6
    opt.tell(pop, torch.full((6,), 4.0))
    # The elite stays, unchanged, behind the two children that beat its mean.
    assert [a["losses"] for a in opt.agents] == [[4.0], [4.0], [0.0, 6.0, 9.0]]
    assert opt.agents[2]["id"] == elite["id"]


def test_next_parents_are_elites_plus_best_children():
    opt = _ga(popsize=8, parents=4, elites=1, max_evals=1)
    _run_generation(opt, lambda g: float(g[0][0] % 1000))
    elite = opt.agents[0]
    pop = opt.ask()
    assert len(pop) == 8  # max_evals 1: the elite is not evaluated again
    losses = torch.arange(8, 0, -1, dtype=torch.float32) - 1000.0  # all children beat it
    opt.tell(pop, losses)
    kept = [a["genome"] for a in opt.agents]
    assert elite["genome"] in kept and len(kept) == 4
    best_children = [pop.genomes[i] for i in (7, 6, 5)]
    assert all(child in kept for child in best_children)


def test_a_checkpoint_holds_seeds_not_weights():
    dim = 1_700_000  # a Nature-DQN agent's size
    opt = _ga(_space(dim), popsize=6, parents=3, elites=1, max_evals=2)
    for _ in range(3):
        pop = opt.ask()
        opt.tell(pop, torch.rand(len(pop)))
    saved = dumps(opt.state_dict())
    assert len(saved) < 20_000, f"checkpoint is {len(saved)} bytes"
    restored = _ga(_space(dim), popsize=6, parents=3, elites=1, max_evals=2)
    restored.load_state_dict(loads(saved))
    assert torch.equal(restored.recommend(), opt.recommend())
    assert restored.recommend().shape == (dim,)


def test_two_generations_on_pong_with_a_tiny_population(tmp_path):
    settings = {
        "seed": 0, "out_dir": tmp_path, "progress": False, "plot": False,
        "problem_config": {"game": "pong", "max_steps": 30, "num_envs": 4, "report_episodes": 2},
        "optimizer_config": {"popsize": 4, "parents": 2, "elites": 1, "max_evals": 2},
    }
    result = evoreg.run("atari", "atari-ga", budget=1, **settings)
    assert result.generations == 1 and result.cost == 4 * 30 * 4  # frames: 4 x agent steps
    more = evoreg.run("atari", "atari-ga", budget=result.cost + 1, resume=True, **settings)
    assert more.generations == 2
    log = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [r["episodes"] for r in log] == [4, 5]  # generation 2: 4 children + 1 elite again
    assert {"mean_score", "median_score"} <= set(more.report)
    assert more.recommendation.shape == (1_687_206,)  # Nature-DQN, Pong: 6 actions


def test_kill_9_and_resume_an_atari_run_from_its_seed_checkpoint(tmp_path, kill_mid_run):
    script = Path(__file__).parent / "scripts" / "atari_run.py"
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    done = subprocess.run([sys.executable, str(script), str(straight)], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    kill_mid_run([sys.executable, str(script), str(killed)], killed / "log.jsonl", lines=2,
                 timeout=120)
    checkpoint = killed / "checkpoint.pt"
    # 1.7M weights per agent, yet the checkpoint holds seeds: kilobytes.
    assert checkpoint.stat().st_size < 50_000, checkpoint.stat().st_size
    assert 0 < load_checkpoint(checkpoint)["generation"]

    resumed = subprocess.run([sys.executable, str(script), str(killed), "--resume"],
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    a = json.loads((straight / "final.json").read_text())
    b = json.loads((killed / "final.json").read_text())
    assert a == b
    strip = [{k: v for k, v in json.loads(x).items() if k != "seconds"}
             for x in (straight / "log.jsonl").read_text().splitlines()]
    assert strip == [{k: v for k, v in json.loads(x).items() if k != "seconds"}
                     for x in (killed / "log.jsonl").read_text().splitlines()]
