"""The BBOB noiseless suite of COCO: 24 black-box functions, through ``coco-experiment``.

Hansen, Finck, Ros and Auger (2009), Real-Parameter Black-Box Optimization Benchmarking
2009: Noiseless Functions Definitions, INRIA RR-6829; Hansen et al. (2021), COCO: a
platform for comparing continuous optimizers in a black-box setting, Optimization Methods
and Software 36(1). The functions are COCO's own C code (package ``coco-experiment``,
import name ``cocoex``; ``pip install 'evoreg[bbob]'``), so an evoreg result reads against
the published COCO data of the same function, dimension and instance.

- ``function`` 1-24 (see ``FUNCTIONS``), ``dim`` any dimension >= 2 (COCO's suites use 2, 3,
  5, 10, 20 and 40), ``instance`` >= 1 (which shift, rotation and optimal value; COCO's
  yearly suites draw theirs from 1-15 and 91-110).
- loss = f(x) - f_opt, the precision COCO's targets are set on (its final target is 1e-8),
  computed in float64 from ``cocoex.BareProblem``'s ``best_value()`` (f_opt); the minimum
  is 0 at x_opt, which lies in [-5, 5]^d (in [-4, 4]^d for most functions).
- Start: the origin, COCO's ``initial_solution`` (the centre of the search domain
  [-5, 5]^d); ``sigma`` 2, as COCO's own CMA-ES example uses for this domain. The space is
  unbounded, as the bbob functions are (f5 and some others penalise leaving [-5, 5]^d).
- Budget in evaluations; one ``evaluate`` call scores the whole population in one call of
  COCO's C code on an ``n x d`` float64 array.
- Candidates are float32 vectors (evoreg's ``Real``), so on the ill-conditioned functions
  (f2, f10-f12, f14) a precision near 1e-8 is at float32's resolution of x.

``report``: the recommendation's ``precision`` (f - f_opt; an optimizer may recommend a
point it never evaluated, such as a search distribution's mean) and ``final_target_hit``
(1 when that precision is <= 1e-8, else 0). ``f_opt`` is the problem's attribute.

The noisy suite (``bbob-noisy``) is not offered: cocoex 2.8 gives f_opt only through
``BareProblem``, which knows the noiseless suite alone, and its noisy problems draw noise
from a C random state evoreg can neither seed per run nor checkpoint for ``--resume``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from evoreg import Evaluation, Population, Problem, Real, hookimpl
from evoreg.config import bounded
from evoreg.errors import EvoregError

#: COCO's names of the 24 noiseless functions, by number.
FUNCTIONS = {
    1: "Sphere", 2: "Ellipsoidal separable", 3: "Rastrigin separable",
    4: "Bueche-Rastrigin", 5: "Linear slope", 6: "Attractive sector", 7: "Step ellipsoidal",
    8: "Rosenbrock original", 9: "Rosenbrock rotated", 10: "Ellipsoidal", 11: "Discus",
    12: "Bent cigar", 13: "Sharp ridge", 14: "Different powers", 15: "Rastrigin",
    16: "Weierstrass", 17: "Schaffer F7", 18: "Schaffer F7 ill-conditioned",
    19: "Composite Griewank-Rosenbrock F8F2", 20: "Schwefel x*sin(x)",
    21: "Gallagher 101 peaks", 22: "Gallagher 21 peaks", 23: "Katsuura",
    24: "Lunacek bi-Rastrigin",
}
FINAL_TARGET = 1e-8  #: COCO's final target precision


@dataclass
class Config:
    function: int = bounded(1, ge=1, le=24)  #: BBOB function number (1-24, listed above)
    dim: int = bounded(10, ge=2)  #: number of variables (COCO's suites: 2, 3, 5, 10, 20, 40)
    instance: int = bounded(1, ge=1)  #: COCO instance: which shift, rotation and f_opt
    sigma: float = bounded(2.0, gt=0)  #: initial search scale around the origin


def _cocoex():
    try:
        import cocoex
    except ImportError:
        raise EvoregError(
            "the bbob problem needs COCO's coco-experiment package (import name cocoex): "
            "pip install 'evoreg[bbob]' (or pip install coco-experiment)"
        ) from None
    return cocoex


class Bbob(Problem):
    """A BBOB noiseless function of COCO: loss f(x) - f_opt, minimum 0; budget in
    evaluations; start at the origin with sigma 2.

    Functions: 1 sphere, 2 separable ellipsoid, 3 separable Rastrigin, 4 Bueche-Rastrigin,
    5 linear slope, 6 attractive sector, 7 step ellipsoid, 8 Rosenbrock, 9 rotated
    Rosenbrock, 10 ellipsoid, 11 discus, 12 bent cigar, 13 sharp ridge, 14 different powers,
    15 Rastrigin, 16 Weierstrass, 17 Schaffer F7, 18 ill-conditioned Schaffer F7, 19
    Griewank-Rosenbrock, 20 Schwefel, 21 Gallagher 101 peaks, 22 Gallagher 21 peaks, 23
    Katsuura, 24 Lunacek bi-Rastrigin.
    """

    Config = Config
    citation = (
        "Hansen, Finck, Ros, Auger (2009), Real-Parameter Black-Box Optimization "
        "Benchmarking 2009: Noiseless Functions Definitions, INRIA RR-6829; Hansen et al. "
        "(2021), COCO: a platform for comparing continuous optimizers in a black-box "
        "setting, Optim. Methods Softw. 36(1)"
    )

    def setup(self) -> None:
        cocoex = _cocoex()
        config = self.config
        try:
            self.function = cocoex.BareProblem("bbob", config.function, config.dim,
                                               config.instance)
        except Exception as error:  # cocoex's own exceptions: no such problem
            raise EvoregError(
                f"bbob: COCO has no function {config.function} in dimension {config.dim}, "
                f"instance {config.instance}: {error}"
            ) from None
        self.f_opt = float(self.function.best_value())
        self.space = Real(config.dim, sigma=config.sigma)

    @property
    def label(self) -> str:
        """COCO's problem id, e.g. ``bbob_f001_i01_d10``."""
        return str(self.function)

    def precision(self, x: torch.Tensor) -> np.ndarray:
        """f(x) - f_opt of each row of ``x`` (``[n, d]`` or ``[d]``), in float64."""
        rows = np.ascontiguousarray(torch.as_tensor(x).detach().cpu().double().numpy())
        values = np.asarray(self.function(np.atleast_2d(rows)), dtype=np.float64)
        return values.reshape(-1) - self.f_opt

    def evaluate(self, pop: Population, *, gradients: bool = False) -> Evaluation:
        losses = [torch.from_numpy(self.precision(rows)) for _, rows in pop.chunks()]
        return Evaluation(torch.cat(losses), cost=len(pop))

    def report(self, x: torch.Tensor) -> dict[str, float]:
        precision = float(self.precision(x)[0])
        return {"precision": precision, "final_target_hit": float(precision <= FINAL_TARGET)}


@hookimpl
def evoreg_register_problems(register):
    register("bbob", Bbob, family="reference")
