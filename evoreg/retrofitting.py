"""``evoreg.retrofit``: tune a few parameters of a trained model against a metric, in Python.

A thin entry point: the work is the ``retrofit`` problem's (``evoreg.problems.retrofit`` and
``evoreg.problems.aleph``), run through the same runner as every problem, so logs,
checkpoints, resume and every ``ng:*`` optimizer apply. Nothing of it is in the core.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # torch is imported on first use, not with evoreg
    from torch import nn

    from evoreg.problems.retrofit import RetrofitResult


def retrofit(
    model: nn.Module,
    params: Any,
    loss: str | Callable[..., Any],
    val: Any,
    test: Any = None,
    optimizer: str = "ng:NGOpt",
    budget: int = 100,
    runs: int = 1,
    seed: int = 0,
    out_dir: str | Path | None = None,
    device: str = "auto",
    apply: bool = False,
    **options: Any,
) -> RetrofitResult:
    """Tune the aleph-parameters ``params`` of ``model`` to minimise ``loss`` on ``val``.

    Videau et al. (2024), "Evolutionary Retrofitting" (AfterLearnER): a black-box optimizer
    tunes a few parameters of a fully trained model on a validation split, with dozens to
    hundreds of evaluations; ``runs`` independent runs, the winner chosen on validation; the
    held-out ``test`` split is reported beside the untouched model.

    - ``model``: any ``torch.nn.Module``. It is not modified (the search works on a deep
      copy, also when a run fails midway) unless ``apply=True``, which writes the chosen
      values into it at the end. ``result.model`` is the retrofitted copy.
    - ``params``: state_dict names (``"fc2.bias"``), globs (``"*.bn.running_mean"``),
      indexed names (``"fc.weight[3:5]"`` or ``("fc.weight", slice(3, 5))``) and named
      hyperparameters of ``loss`` (keyword arguments it takes, e.g. ``temperature``): one,
      a list, or a dict to bounds ``(lower, upper)``. Default bounds: each value moves by
      ``radius`` (2) x max(1, RMS of its tensor); see ``evoreg.problems.aleph``.
    - ``loss``: ``"error"``, ``"cost"`` (with ``costs=`` a cost matrix), ``"macro-f1"``,
      ``"worst-recall"``, ``"ece"`` (classifiers; batches of ``(inputs, labels)``; scored
      over the whole split), or ``loss(model, batch, **hyperparameters) -> float``, averaged
      over the batches weighted by their size.
    - ``val``, ``test``: ``(inputs, targets)``, a ``Dataset`` or a ``DataLoader`` (read
      once and kept on ``device``).
    - ``budget``: evaluations of the loss on ``val`` per run.
    - ``out_dir``: run ``i`` writes its log and checkpoints to ``out_dir/run-i``; with
      ``resume=True`` a killed call continues where it stopped.

    Options: ``radius``, ``costs``, ``optimizer_config`` (e.g. ``{"popsize": 4}``),
    ``resume``, ``progress``, ``cache_prefix`` (run the unchanged leading modules of an
    ``nn.Sequential`` once per split; built-in losses only), ``threads`` (torch threads while
    scoring; default: torch's setting; 1 is fastest for small models on a busy CPU).

    Returns a ``RetrofitResult``: ``values`` (the chosen aleph-values by name),
    ``validation_loss_before/after``, ``test_loss_before/after``, ``test_gain``, ``runs``
    (each run's seed, losses and curve), ``chosen``, ``model`` and ``apply(model)``.
    """
    from evoreg.problems.retrofit import retrofit as run_retrofit

    return run_retrofit(model, params, loss, val, test, optimizer, budget, runs, seed, out_dir,
                        device, apply, **options)
