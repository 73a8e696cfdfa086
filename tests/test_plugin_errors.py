"""What a plugin author sees when a plugin is incomplete: one line naming the plugin and the fix."""

import threading
from dataclasses import dataclass

import pytest
import torch

import evoreg
from evoreg import EvoregError, Optimizer, Real, hookimpl
from evoreg.registry import Registry


class _NoTell(Optimizer):
    spaces = (Real,)

    def _ask(self, n):
        return torch.zeros(n, self.space.dim)


def test_a_missing_tell_names_the_class_and_what_to_write():
    with pytest.raises(EvoregError, match=r"test_plugin_errors\._NoTell\) does not implement "
                                          r"_tell: a plugin writes .*_tell\(self, pop, losses\)"):
        _NoTell(Real(3))


class _PlainConfig:
    popsize = 4


class _NotADataclass(Optimizer):
    Config = _PlainConfig

    def _ask(self, n):
        return torch.zeros(n, self.space.dim)

    def _tell(self, pop, losses):
        pass


def test_a_config_that_is_not_a_dataclass_is_refused_with_the_fix():
    with pytest.raises(EvoregError, match="_NotADataclass: its Config .* must be a class "
                                          "decorated with @dataclasses.dataclass"):
        _NotADataclass(Real(3))


class _KeepsALock(Optimizer):
    spaces = (Real,)

    def setup(self):
        self.lock = threading.Lock()  # cannot be pickled
        self.center = torch.zeros(self.space.dim)

    def _ask(self, n):
        return self.center + torch.randn(n, self.space.dim, generator=self.generator)

    def _tell(self, pop, losses):
        pass


def test_an_unpicklable_attribute_is_named_with_the_transient_fix():
    optimizer = _KeepsALock(Real(3))
    with pytest.raises(EvoregError, match=r"attribute 'lock' \(lock\) cannot be saved in a "
                                          r"checkpoint .* transient = \('lock',\)"):
        optimizer.state_dict()

    class Fixed(_KeepsALock):
        transient = ("lock",)

    assert "lock" not in Fixed(Real(3)).state_dict()["algorithm"]


@dataclass
class _NoPopsizeConfig:
    sigma: float = 0.5


class _NoPopsize(Optimizer):
    """A (1+1)-ES without a popsize field: asks one candidate at a time."""

    Config = _NoPopsizeConfig
    spaces = (Real,)

    def setup(self):
        self.center = self.space.initial()

    def _ask(self, n):
        noise = torch.randn(n, self.space.dim, generator=self.generator)
        return self.center + self.config.sigma * noise

    def _tell(self, pop, losses):
        if float(losses.min()) <= self.best_loss:
            self.center = pop.values[int(losses.argmin())].clone()


class _Plugin:
    @hookimpl
    def evoreg_register_optimizers(self, register):
        register("no-popsize", _NoPopsize)


def test_a_config_without_popsize_asks_one_candidate_and_runs_from_the_runner():
    assert len(_NoPopsize(Real(2)).ask()) == 1
    registry = Registry()
    registry.add_plugin(_Plugin(), "no-popsize-plugin")
    optimizer = registry.make_optimizer("no-popsize", evoreg.make_problem("sphere").space)
    result = evoreg.run("sphere", optimizer, budget=40, progress=False)
    assert result.generations == 40 and result.best_loss < 10.0
