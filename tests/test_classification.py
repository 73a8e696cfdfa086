"""evoreg.problems.classification: cross-entropy and correct counts of a population forward."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from evoreg import EvoregError
from evoreg.nets import PopulationForward, flatten_parameters, load_flat_parameters_
from evoreg.problems.classification import check_class_targets, cross_entropy_and_correct
from evoreg.problems.models import build_model, model_spec

SIZES = {"mlp92k": (6, 24), "convnet9854": (4, 12), "mlp-digits": (9, 40)}  # (n, batch)
STRATEGIES = ("batched", "vmap", "loop")


def _population(model: nn.Module, n: int, seed: int = 0, sigma: float = 0.05) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    base = flatten_parameters(model)
    return base + sigma * torch.randn(n, base.numel(), generator=generator)


def _data(shape, batch: int, seed: int = 1, classes: int = 10):
    generator = torch.Generator().manual_seed(seed)
    inputs = torch.randn(batch, *shape, generator=generator)
    targets = torch.randint(0, classes, (batch,), generator=generator)
    return inputs, targets


def _reference(model: nn.Module, rows: torch.Tensor, inputs, targets):
    """Losses and correct counts the plain way: load each row, forward, F.cross_entropy."""
    losses, correct = [], []
    plain = copy.deepcopy(model).eval()
    with torch.no_grad():
        for row in rows:
            load_flat_parameters_(plain, row)
            logits = plain(inputs)
            losses.append(float(F.cross_entropy(logits, targets)))
            correct.append(int((logits.argmax(1) == targets).sum()))
    return torch.tensor(losses), torch.tensor(correct)


def _close(a: torch.Tensor, b: torch.Tensor) -> None:
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", list(SIZES))
def test_every_strategy_agrees_with_the_plain_forward(name):
    model = build_model(name)
    n, batch = SIZES[name]
    rows = _population(model, n)
    inputs, targets = _data(model_spec(name).input_shape, batch)
    expected_losses, expected_correct = _reference(model, rows, inputs, targets)
    for strategy in STRATEGIES:
        forward = PopulationForward(model, device="cpu", strategy=strategy)
        losses, correct = forward(rows, inputs, targets, cross_entropy_and_correct)
        assert forward.last_choice.strategy == strategy
        assert losses.dtype == torch.float32 and losses.device.type == "cpu"
        assert correct.dtype == torch.int64 and correct.shape == (n,)
        _close(losses, expected_losses)
        assert torch.equal(correct, expected_correct), strategy


def test_matches_f_cross_entropy_on_logits_of_any_class_count():
    generator = torch.Generator().manual_seed(3)
    for classes in (2, 3, 10, 17):
        logits = 4 * torch.randn(5, classes, 11, generator=generator)  # [c, classes, B]
        targets = torch.randint(0, classes, (11,), generator=generator)
        losses, correct = cross_entropy_and_correct(logits, targets)
        for j in range(5):
            per_sample = logits[j].t()  # [B, classes]
            _close(losses[j], F.cross_entropy(per_sample, targets))
            assert correct[j] == int((per_sample.argmax(1) == targets).sum())
    # bf16 logits (precision="bf16"): computed in float32
    losses, _ = cross_entropy_and_correct(logits.bfloat16(), targets)
    assert losses.dtype == torch.float32


def test_targets_must_be_integer_class_indices_of_the_batch():
    logits = torch.zeros(2, 3, 4)
    assert check_class_targets(logits, torch.tensor([0, 1, 2, 1], dtype=torch.int32)).dtype == (
        torch.int64
    )
    for wrong in (torch.zeros(4), torch.zeros(3, dtype=torch.int64),
                  torch.zeros(4, 1, dtype=torch.int64)):
        with pytest.raises(EvoregError, match="class indices"):
            cross_entropy_and_correct(logits, wrong)
    with pytest.raises(EvoregError, match=r"\[c, classes, B\]"):
        check_class_targets(torch.zeros(3, 4), torch.zeros(4, dtype=torch.int64))


def test_an_empty_population_gives_empty_losses_and_counts():
    model = build_model("mlp-digits")
    inputs, targets = _data((1, 8, 8), 4)
    losses, correct = PopulationForward(model, device="cpu")(
        torch.zeros(0, 2410), inputs, targets, cross_entropy_and_correct
    )
    assert losses.shape == correct.shape == (0,)
    assert losses.dtype == torch.float32 and correct.dtype == torch.int64


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu_and_low_precision_runs():
    model = build_model("convnet9854")
    rows = _population(model, 4)
    inputs, targets = _data((1, 28, 28), 16)
    cpu = PopulationForward(model, device="cpu", strategy="loop")(
        rows, inputs, targets, cross_entropy_and_correct
    )
    for strategy in STRATEGIES:
        gpu = PopulationForward(model, device="cuda", strategy=strategy)(
            rows, inputs, targets, cross_entropy_and_correct
        )
        assert gpu[0].device.type == "cpu"
        torch.testing.assert_close(gpu[0], cpu[0], rtol=1e-4, atol=1e-5)
    for precision in ("tf32", "bf16"):
        low = PopulationForward(model, device="cuda", precision=precision)(
            rows, inputs, targets, cross_entropy_and_correct
        )
        torch.testing.assert_close(low[0], cpu[0], rtol=0.05, atol=0.05)
