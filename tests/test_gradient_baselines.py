"""The adam and sgd baselines: the gradient protocol of tell() and of the runner."""

from __future__ import annotations

import pytest
import torch

import evoreg
from evoreg import Evaluation, EvoregError, Problem, Real


class NoGradients(Problem):
    def setup(self) -> None:
        self.space = Real(3)

    def evaluate(self, pop):
        return Evaluation(pop.values.pow(2).sum(dim=1), cost=len(pop))


def test_tell_requires_gradients_of_the_right_shape():
    opt = evoreg.make_optimizer("adam", Real(4))
    pop = opt.ask()
    assert pop.values.shape == (1, 4)
    with pytest.raises(EvoregError, match="gradient method"):
        opt.tell(pop, torch.zeros(1))
    with pytest.raises(EvoregError, match=r"shape \(1, 4\)"):
        opt.tell(pop, torch.zeros(1), gradients=torch.zeros(1, 3))
    with pytest.raises(EvoregError, match="NaN"):
        opt.tell(pop, torch.zeros(1), gradients=torch.full((1, 4), float("nan")))
    with pytest.raises(EvoregError, match="ask\\(1\\)"):
        opt.ask(5)


def test_sgd_step_is_x_minus_lr_times_gradient():
    opt = evoreg.make_optimizer("sgd", Real(3, init=torch.tensor([1.0, 2.0, 3.0])), lr=0.5)
    pop = opt.ask()
    opt.tell(pop, torch.zeros(1), gradients=torch.tensor([[2.0, 0.0, -2.0]]))
    assert torch.equal(opt.recommend(), torch.tensor([0.0, 2.0, 4.0]))


def test_adam_matches_torch_optim_adam():
    x0 = torch.tensor([0.5, -1.0])
    opt = evoreg.make_optimizer("adam", Real(2, init=x0), lr=0.1)
    reference = x0.clone().requires_grad_(True)
    torch_adam = torch.optim.Adam([reference], lr=0.1)
    for _ in range(5):
        pop = opt.ask()
        grad = 2 * pop.values * torch.tensor([1.0, 3.0])
        opt.tell(pop, pop.values.pow(2).sum(dim=1), gradients=grad)
        reference.grad = 2 * reference.detach() * torch.tensor([1.0, 3.0])
        torch_adam.step()
    assert torch.allclose(opt.recommend(), reference.detach())


def test_runner_refuses_a_gradient_method_on_a_problem_without_gradients():
    with pytest.raises(EvoregError, match="provides no gradients.*mnist-weights"):
        evoreg.run(NoGradients(), "sgd", budget=3)


def test_runner_trains_with_gradients_on_the_sphere():
    result = evoreg.run("sphere", "sgd", budget=100, optimizer_config={"lr": 0.1})
    assert result.report["noise_free_loss"] < 1e-6


def test_bad_learning_rates_are_refused():
    with pytest.raises(EvoregError, match="lr must be > 0"):
        evoreg.make_optimizer("adam", Real(2), lr=0)
    with pytest.raises(EvoregError, match="momentum"):
        evoreg.make_optimizer("sgd", Real(2), momentum=1.5)
