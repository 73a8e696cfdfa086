"""One suite that every registered optimizer must pass (plus a sample of ng: names).

The checks are ``evoreg.testing``'s, the same that a third-party plugin runs in its own tests.
A new plugin is picked up here automatically: register it and run pytest.
"""

import pytest
import torch

import evoreg
from evoreg import Optimizer, Real
from evoreg.testing import check_optimizer, conformance

NEVERGRAD_SAMPLE = ["ng:OnePlusOne", "ng:CMA", "ng:NGOpt", "ng:TwoPointsDE", "ng:RandomSearch"]
#: evoreg's own optimizers: a built-in whose plugin failed to load must fail here, not drop out.
BUILT_INS = {"nes", "snes", "openai-es", "goea", "leea", "atari-ga", "niching",
             "random-search", "adam", "sgd"}


def _names() -> list[str]:
    names = [name for name in evoreg.optimizers() if not name.startswith("ng:")]
    names += [name for name in NEVERGRAD_SAMPLE if name in evoreg.optimizers()]
    return sorted(names)


@conformance(_names())
def test_conformance(name, check):
    check(name)


def test_conformance_covers_every_built_in():
    assert BUILT_INS <= set(_names()), sorted(BUILT_INS - set(_names()))


class _Forgetful(Optimizer):
    """A random search that forgets where it is: its state does not survive a checkpoint."""

    spaces = (Real,)
    transient = ("center",)

    def setup(self) -> None:
        self.center = torch.zeros(self.space.dim)

    def _ask(self, n):
        return self.center + torch.randn(n, self.space.dim, generator=self.generator)

    def _tell(self, pop, losses):
        self.center = pop.values[int(losses.argmin())].clone()


class _Lazy(Optimizer):
    """Never moves: it does not improve."""

    spaces = (Real,)

    def _ask(self, n):
        return torch.zeros(n, self.space.dim)

    def _tell(self, pop, losses):
        pass


def test_the_checks_fail_a_broken_optimizer():
    with pytest.raises(AssertionError, match="check_state_round_trip failed for _Forgetful"):
        check_optimizer(_Forgetful)
    with pytest.raises(AssertionError, match="check_improves failed for _Lazy: best loss 5.0"):
        check_optimizer(_Lazy)
