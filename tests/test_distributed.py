"""Distributed evaluation on Ray gives exactly the in-process results.

One local Ray (2 CPUs) serves the whole module. Workers build their problems themselves,
so the toy problem's class is pickled by value (Ray's workers do not import this test
module), and the seed populations are decoded on the workers.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import sys

import numpy as np
import pytest
import torch

import evoreg
from evoreg import Evaluation, EvoregError, LazyPopulation, Population, Problem, Real
from evoreg.population import Decoder

ray = pytest.importorskip(
    "ray", reason="the 'ray' extra is not installed (pip install 'evoreg[ray]')"
)

from evoreg.distributed import RayEvaluator  # noqa: E402

# Workers unpickle the factories below; by value, they need not import this file.
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])


@dataclasses.dataclass
class ToyConfig:
    dim: int = 6
    noise: float = 0.5


class Toy(Problem):
    """A noisy shifted sphere with the draw / evaluate_drawn split: each generation draws
    one shift shared by all candidates."""

    Config = ToyConfig
    info_merge = {"worst": "max"}

    def setup(self) -> None:
        # The initial point depends on the problem's seed, as a network's weights would.
        start = torch.randn(self.config.dim, generator=torch.Generator().manual_seed(self.seed))
        self.space = Real(self.config.dim, init=start, sample_init=self._inits)

    def _inits(self, n: int, generator: torch.Generator) -> torch.Tensor:
        return torch.randn(n, self.config.dim, generator=generator)

    def draw(self) -> dict:
        return {"shift": self.rng.normal(0.0, self.config.noise, self.config.dim)}

    def evaluate_drawn(self, pop: Population, draw: dict) -> Evaluation:
        shift = torch.as_tensor(draw["shift"], dtype=torch.float32)
        rows = torch.as_tensor(pop.rows(0, len(pop)), dtype=torch.float32)
        # Row by row, so a candidate's loss does not depend on how the population is split.
        losses = torch.stack([(row - shift).pow(2).sum() for row in rows]) if len(rows) else (
            torch.empty(0))
        info = {"candidates": len(pop), "mean": float(losses.mean()) if len(pop) else 0.0,
                "worst": float(losses.max()) if len(pop) else 0.0}
        return Evaluation(losses, cost=float(len(pop)), info=info)


def toy(seed: int = 3, **config) -> Toy:
    return Toy(seed=seed, **config)


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    if started:
        ray.shutdown()


def _seed_population(problem: Problem, rng: np.random.Generator, n: int) -> LazyPopulation:
    space = problem.space
    decoder = Decoder(space.dim, space=space, device=problem.device)
    parents = [((int(s), 0.0),) for s in rng.integers(0, 2**31, 2)]
    genomes = [
        parents[i % 2] + tuple((int(s), 0.1) for s in rng.integers(0, 2**31, 1 + i % 3))
        for i in range(n)
    ]
    return LazyPopulation(genomes, decoder)


def _assert_same(ray_eval: Evaluation, local: Evaluation) -> None:
    assert torch.equal(ray_eval.losses, local.losses.cpu())
    assert ray_eval.cost == local.cost
    assert ray_eval.info["candidates"] == local.info["candidates"]
    assert ray_eval.info["worst"] == local.info["worst"]
    assert ray_eval.info["mean"] == pytest.approx(local.info["mean"], rel=1e-6)


@pytest.fixture(scope="module")
def evaluator(local_ray):
    """Two actors building Toy by factory, shared by the tests (actors take seconds to start)."""
    # Their actors claim no CPU, so the other tests' actors still find the local Ray's two.
    evaluator = RayEvaluator.from_factory(toy, num_workers=2, actor_options={"num_cpus": 0})
    yield evaluator
    evaluator.close()
    assert evaluator.workers == []


def test_factory_problem_is_scored_on_the_workers(evaluator: RayEvaluator) -> None:
    assert evaluator.num_workers == 2
    assert evaluator.space.dim == 6 and evaluator.name == "Toy"  # the driver's problem
    evaluation = evaluator.evaluate(Population(torch.randn(5, 6)))
    assert evaluation.losses.shape == (5,)
    assert evaluation.cost == 5.0
    assert evaluation.info["candidates"] == 5  # ints are summed over the shards
    assert evaluation.info["worst"] == float(evaluation.losses.max())  # info_merge: max
    # A single candidate uses one worker; an empty population none.
    assert evaluator.evaluate(Population(torch.randn(1, 6))).losses.shape == (1,)
    assert evaluator.evaluate(Population(torch.empty(0, 6))).losses.shape == (0,)


@pytest.mark.parametrize("kind", ["dense", "seeds"])
def test_ray_gives_the_local_losses_generation_after_generation(
    evaluator: RayEvaluator, kind: str
) -> None:
    local = toy()
    evaluator.load_state_dict(local.state_dict())  # both start from the same random state
    rng = np.random.default_rng(0)
    for n in (7, 4, 1, 9):  # uneven shards, and one worker left idle
        if kind == "dense":
            pop = Population(torch.randn(n, 6, generator=torch.Generator().manual_seed(n)))
        else:
            pop = _seed_population(local, rng, n)
        _assert_same(evaluator.evaluate(pop), local.evaluate(pop))
    # The driver's problem advanced its random state exactly as the local one did.
    assert evaluator.state_dict()["rng"] == local.state_dict()["rng"]


def test_a_problem_without_the_split_is_refused() -> None:
    sphere = evoreg.make_problem("sphere", dim=3)
    assert not sphere.splittable
    with pytest.raises(EvoregError, match=r"'sphere'.*draw\(\) and evaluate_drawn\(\)"):
        RayEvaluator("sphere", {"dim": 3}, seed=0)


def _broken() -> Problem:
    raise RuntimeError("no data on this node")


def test_an_actor_that_cannot_build_its_problem_fails_at_once() -> None:
    with pytest.raises(Exception, match="no data on this node"):
        RayEvaluator.from_factory(_broken, problem=toy(), num_workers=1)


def test_actors_the_cluster_has_no_room_for_time_out_with_a_message() -> None:
    with pytest.raises(EvoregError, match="did not start within 1 s.*fewer workers"):
        RayEvaluator.from_factory(toy, num_workers=3, start_timeout=1)  # 3 CPUs of 2


def test_missing_ray_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now fails
    with pytest.raises(EvoregError, match=r'pip install "evoreg\[ray\]"'):
        RayEvaluator.from_factory(toy)


def test_merge_follows_the_documented_rules() -> None:
    parts = [
        Evaluation(torch.tensor([1.0, 2.0]), 2, {"n": 2, "rate": 0.5, "tag": "a", "t": 4.0}),
        Evaluation(torch.tensor([3.0]), 1, {"n": torch.tensor(1), "rate": 1.0, "tag": "b"}),
    ]
    merged = toy().merge_evaluations(parts)
    assert merged.losses.tolist() == [1.0, 2.0, 3.0] and merged.cost == 3.0
    assert merged.info["n"] == 3  # ints: counts, summed
    assert merged.info["rate"] == pytest.approx(2 / 3)  # floats: weighted by candidates
    assert merged.info["tag"] == "a"  # anything else: the first part's
    assert merged.info["t"] == 4.0  # a key only some parts give is not a number in all


def test_run_on_ray_and_its_resume_end_where_the_local_run_ends(tmp_path) -> None:
    options = {"seed": 1, "optimizer_config": {"popsize": 6}, "progress": False, "plot": False}
    local = evoreg.run(toy(), "random-search", 60, **options)
    # A Ray run killed after 30 evaluations and resumed from its checkpoint: the driver's
    # problem state is what is saved, so the draws go on where they stopped.
    out = tmp_path / "run"
    first = evoreg.run(toy(), "random-search", 30, evaluator="ray", workers=2, out_dir=out,
                       checkpoint_every=1, **options)
    assert [r["loss_min"] for r in first.log] == [r["loss_min"] for r in local.log[:5]]
    resumed = evoreg.run(toy(), "random-search", 60, evaluator="ray", workers=2, out_dir=out,
                         resume=True, **options)
    assert resumed.best_loss == local.best_loss
    assert [r["loss_min"] for r in resumed.log] == [r["loss_min"] for r in local.log]


def test_unknown_evaluator_lists_the_valid_ones() -> None:
    with pytest.raises(EvoregError, match="valid evaluators: local, ray"):
        evoreg.run(toy(), "random-search", 10, evaluator="dask")


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        ([], ("local", None, None)),
        (["--ray"], ("ray", None, None)),
        (["--ray", "auto", "--workers", "3"], ("ray", "auto", 3)),
        (["--ray", "10.0.0.1:6379"], ("ray", "10.0.0.1:6379", None)),
    ],
)
def test_cli_ray_flags_reach_the_runner(monkeypatch, tmp_path, flags, expected) -> None:
    from evoreg import cli, runner

    seen = {}

    def fake_run(*args, **kwargs):
        seen.update(kwargs)
        return runner.RunResult(0.0, None, {}, 1, 1.0, 0.0)

    monkeypatch.setattr(runner, "run", fake_run)
    argv = ["run", "sphere", "random-search", "--budget", "8", "--out", str(tmp_path), *flags]
    assert cli.main(argv) == 0
    assert (seen["evaluator"], seen["ray_address"], seen["workers"]) == expected


def test_cli_workers_without_ray_is_refused(capsys) -> None:
    from evoreg import cli

    assert cli.main(["run", "sphere", "random-search", "--budget", "8", "--workers", "2"]) == 2
    assert "needs --ray" in capsys.readouterr().err


@pytest.mark.skipif(
    importlib.util.find_spec("evoreg.problems.atari") is None or "atari" not in evoreg.problems(),
    reason="the atari problem (problems/atari.py, registered as 'atari') is not there yet",
)
def test_atari_seed_genomes_score_the_same_on_ray() -> None:
    # Breakout, not Pong: in 50 steps every Pong agent scores 0, so equal losses would say
    # nothing; here one of the four agents scores a point.
    config = {"game": "breakout", "max_steps": 50, "num_envs": 2}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small batches on a shared 2-core machine (see test_atari.py)
    try:
        local = evoreg.make_problem("atari", seed=5, **config)
        rng = np.random.default_rng(1)
        genomes = [((int(s), 0.0), (int(s) + 1, 0.005)) for s in rng.integers(0, 2**31, 4)]
        space = local.space
        pop = LazyPopulation(genomes, Decoder(space.dim, space=space, device=local.device))
        with RayEvaluator("atari", config, seed=5, num_workers=2) as evaluator:
            ray_eval = evaluator.evaluate(pop)
        local_eval = local.evaluate(pop)
    finally:
        torch.set_num_threads(threads)
    assert len(set(local_eval.losses.tolist())) > 1  # the agents differ
    assert torch.equal(ray_eval.losses, local_eval.losses.cpu())
    assert ray_eval.cost == local_eval.cost
    for key in ("frames", "episodes", "max_score", "episode_seed"):
        assert ray_eval.info[key] == local_eval.info[key]
    assert ray_eval.info["mean_score"] == pytest.approx(local_eval.info["mean_score"])
