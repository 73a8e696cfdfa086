"""Exact budgets: no run passes its budget on a problem that knows what a candidate costs."""

from __future__ import annotations

import dataclasses
import warnings

import pytest
import torch

import evoreg
from evoreg import Categorical, Evaluation, EvoregError, Optimizer, Real
from evoreg.cli import main
from evoreg.problems.sphere import Sphere
from evoreg.testing import SPACES, ToyProblem

#: The three Hammersley searches raised nevergrad's "Over the budget" when the runner asked a
#: whole last generation; the others are the nevergrad optimizers people use most.
NEVERGRAD = ["ng:HammersleySearch", "ng:ScrHammersleySearch",
             "ng:HammersleySearchPlusMiddlePoint", "ng:CMA", "ng:OnePlusOne", "ng:NGOpt"]
BUDGET, POPSIZE = 300, 8  # 37.5 generations of 8


def _names() -> list[str]:
    own = [name for name in evoreg.optimizers() if not name.startswith("ng:")]
    return sorted(own) + NEVERGRAD


def _problem_for(name: str):
    """sphere for optimizers of Real spaces; the toy Categorical or Genome problem (it counts
    evaluations too) for the others."""
    cls = evoreg.optimizers()[name].factory
    if issubclass(Real, cls.spaces):
        return evoreg.make_problem("sphere", dim=5)
    for make_space in (SPACES["categorical"], SPACES["genome"]):
        space = make_space()
        if isinstance(space, cls.spaces):
            return ToyProblem(space)
    raise AssertionError(f"{name} accepts none of the test spaces")


@pytest.mark.parametrize("name", _names())
def test_no_run_passes_its_budget(name):
    problem = _problem_for(name)
    config = evoreg.optimizers()[name].config
    fields = {f.name for f in dataclasses.fields(config)} if config else set()
    optimizer_config = {"popsize": POPSIZE} if "popsize" in fields else {}
    optimizer = evoreg.make_optimizer(name, problem.space, seed=1, **optimizer_config)
    generation = optimizer.default_popsize
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # nevergrad's own warnings on a tiny problem
        result = evoreg.run(problem, optimizer, BUDGET, progress=False, plot=False)
    assert result.cost <= BUDGET
    if optimizer.smaller_ask:
        assert result.cost == BUDGET  # the last generation asked what was left
    else:
        assert BUDGET - result.cost < generation  # it stopped before an unaffordable one


def test_the_budget_test_covers_evoregs_own_optimizers():
    own = {"nes", "snes", "openai-es", "goea", "leea", "atari-ga", "niching",
           "random-search", "adam", "sgd"}
    assert own <= set(_names())
    assert not evoreg.optimizers()["leea"].factory.smaller_ask
    assert not evoreg.optimizers()["openai-es"].factory.smaller_ask


def test_the_last_generation_asks_only_what_the_budget_leaves():
    result = evoreg.run("sphere", "random-search", BUDGET, progress=False, plot=False,
                        optimizer_config={"popsize": POPSIZE})
    costs = [record["cost"] for record in result.log]
    assert costs[-2:] == [296, 300] and result.generations == 38


def test_hammersley_search_gets_exactly_its_budget():
    # Before: "Over the budget (reinitialize if you want to start over)" at the 38th ask.
    result = evoreg.run("sphere", "ng:HammersleySearch", BUDGET, progress=False, plot=False,
                        optimizer_config={"popsize": POPSIZE})
    assert result.cost == BUDGET


def test_whole_generations_end_short_and_a_resume_knows_the_run_is_finished(tmp_path):
    run = dict(progress=False, plot=False, out_dir=tmp_path,
               optimizer_config={"popsize": POPSIZE})
    first = evoreg.run("sphere", "leea", BUDGET, **run)
    assert first.cost == 296 and first.generations == 37
    again = evoreg.run("sphere", "leea", BUDGET, resume=True, **run)
    assert (again.cost, again.generations) == (296, 37)  # nothing more to afford
    extended = evoreg.run("sphere", "leea", 304, resume=True, **run)
    assert (extended.cost, extended.generations) == (304, 38)


def test_a_budget_below_one_whole_generation_is_refused_before_anything_is_written(tmp_path):
    with pytest.raises(EvoregError, match="generations of 2000 candidates .* does not pay "
                                          "for one: raise the budget to at least 2000"):
        evoreg.run("sphere", "leea", 1000, out_dir=tmp_path, progress=False)
    assert not (tmp_path / "run.json").exists()


class _Frames(Sphere):
    """sphere whose budget counts frames: a candidate's cost is not known before."""

    budget_unit = "frames"


class _Epochs(Sphere):
    """sphere whose candidates each cost 4 epochs, known in advance."""

    budget_unit = "epochs"

    @property
    def candidate_cost(self) -> float:
        return 4.0

    def evaluate(self, pop, *, gradients=False):
        evaluation = super().evaluate(pop, gradients=gradients)
        return dataclasses.replace(evaluation, cost=4.0 * len(pop))


def test_the_runner_goes_by_what_the_problem_declares():
    config = dict(progress=False, plot=False, optimizer_config={"popsize": POPSIZE})
    # Unknown per candidate (frames): whole generations, the last passes the budget.
    assert _Frames().candidate_cost is None
    assert evoreg.run(_Frames(), "random-search", BUDGET, **config).cost == 304
    # Known (4 epochs): 30 epochs pay for 7 candidates, 28 epochs; the 2 left pay for none.
    result = evoreg.run(_Epochs(), "random-search", 30, **config)
    assert result.cost == 28 and result.generations == 1
    assert evoreg.make_problem("architecture", dataset="digits", epochs_per_eval=3,
                               train_size=50, val_size=50).candidate_cost == 3.0


class _Greedy(Optimizer):
    """Hands out one candidate more than asked."""

    spaces = (Real,)

    def _ask(self, n):
        return torch.zeros(n + 1, self.space.dim)

    def _tell(self, pop, losses):
        pass


def test_an_ask_that_hands_out_more_than_asked_is_refused():
    with pytest.raises(EvoregError, match=r"_Greedy.ask\(3\) returned 4 candidates, more "
                                          "than asked"):
        _Greedy(Real(2)).ask(3)


def test_generations_whose_size_varies_shrink_as_asked():
    # goea re-evaluating its parent: a generation is the parent and popsize children.
    goea = evoreg.make_optimizer("goea", Real(3), popsize=4, reevaluate_parent=True)
    assert goea.default_popsize == 5 and len(goea.ask()) == 5
    goea = evoreg.make_optimizer("goea", Real(3), popsize=4, reevaluate_parent=True)
    pop = goea.ask(3)
    assert len(pop) == 3 and torch.equal(pop.values[0], goea.parent)
    # atari-ga: lambda children and the elites due for another episode; a smaller ask keeps
    # the elites due and makes fewer children.
    ga = evoreg.make_optimizer("atari-ga", Real(3), popsize=6, parents=3, elites=2,
                               max_evals=3)
    first = ga.ask()
    ga.tell(first, torch.arange(6.0))
    assert ga.default_popsize == 8
    elite_ids = {agent["id"] for agent in ga.agents[:2]}
    pop = ga.ask(5)
    assert len(pop) == 5 and elite_ids <= set(pop.ids.tolist())


def test_info_says_whether_the_last_generation_shrinks(capsys):
    assert main(["info", "leea"]) == 0
    assert "whole generations only (smaller_ask = False)" in capsys.readouterr().out
    assert main(["info", "random-search"]) == 0
    assert "exact (smaller_ask = True)" in capsys.readouterr().out


def test_categorical_toy_problem_counts_evaluations():
    problem = ToyProblem(Categorical([3] * 6))
    assert problem.budget_unit == "evaluations" and problem.candidate_cost == 1.0
    evaluation = problem.evaluate(evoreg.Population(torch.zeros(2, 6, dtype=torch.int64)))
    assert isinstance(evaluation, Evaluation) and evaluation.losses.tolist() == [6.0, 6.0]


def test_a_budget_below_one_candidate_is_refused():
    with pytest.raises(EvoregError, match="one candidate of _Epochs costs 4 epochs and the "
                                          "budget of 3 epochs does not pay for one"):
        evoreg.run(_Epochs(), "random-search", 3, progress=False)
