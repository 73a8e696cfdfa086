"""Population evaluators: flat-vector helpers, Glorot init, and every strategy's losses."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

import evoreg
from evoreg import EvoregError, LazyPopulation, Population, UnknownNameError
from evoreg.nets import (
    CHOICES,
    PopulationForward,
    Scores,
    flatten_parameters,
    glorot_uniform_,
    glorot_uniform_population,
    load_flat_parameters_,
    parameter_count,
    unflatten_parameters,
)
from evoreg.nets.batched import BatchedPlan, Unsupported, max_pool
from evoreg.problems.models import build_model, model_spec

MODELS = {"mlp92k": 92_234, "convnet9854": 9_854, "mlp-digits": 2_410}
SIZES = {"mlp92k": (6, 24), "convnet9854": (4, 12), "mlp-digits": (9, 40)}  # (n, batch)


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
    copy = build_like(model)
    with torch.no_grad():
        for row in rows:
            load_flat_parameters_(copy, row)
            logits = copy(inputs)
            losses.append(float(F.cross_entropy(logits, targets)))
            correct.append(int((logits.argmax(1) == targets).sum()))
    return torch.tensor(losses), torch.tensor(correct)


def build_like(model: nn.Module) -> nn.Module:
    import copy

    return copy.deepcopy(model).eval()


def _close(a: torch.Tensor, b: torch.Tensor) -> None:
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------- helpers
@pytest.mark.parametrize("name", list(MODELS))
def test_parameter_counts_of_the_built_in_models(name):
    model = build_model(name)
    assert parameter_count(model) == MODELS[name]
    assert flatten_parameters(model).shape == (MODELS[name],)


def test_flatten_matches_parameters_to_vector_and_round_trips():
    model = build_model("convnet9854")
    flat = flatten_parameters(model)
    assert flat.dtype == torch.float32 and not flat.requires_grad
    assert torch.equal(flat, nn.utils.parameters_to_vector(model.parameters()).detach())
    other = build_model("convnet9854")
    assert not torch.equal(flatten_parameters(other), flat)
    assert load_flat_parameters_(other, flat) is other
    assert torch.equal(flatten_parameters(other), flat)
    for a, b in zip(model.parameters(), other.parameters()):
        assert torch.equal(a, b)


def test_load_flat_parameters_refuses_a_wrong_length():
    model = build_model("mlp-digits")
    with pytest.raises(EvoregError, match="2,410"):
        load_flat_parameters_(model, torch.zeros(2409))
    with pytest.raises(EvoregError):
        load_flat_parameters_(model, torch.zeros(2, 2410))
    with pytest.raises(EvoregError, match="2,410"):
        unflatten_parameters(model, torch.zeros(3, 7))


def test_unflatten_gives_views_usable_with_functional_call_and_autograd():
    model = build_model("mlp-digits")
    flat = flatten_parameters(model).requires_grad_(True)
    params = unflatten_parameters(model, flat)
    assert list(params) == [name for name, _ in model.named_parameters()]
    for (name, p), value in zip(model.named_parameters(), params.values()):
        assert value.shape == p.shape, name
        assert value.data_ptr() >= flat.data_ptr()  # a view into flat, no copy
    inputs, targets = _data((1, 8, 8), 5)
    out = functional_call(model, params, (inputs,))
    torch.testing.assert_close(out, model(inputs))
    F.cross_entropy(out, targets).backward()
    assert flat.grad is not None and flat.grad.shape == flat.shape and flat.grad.abs().sum() > 0

    rows = torch.stack([flat.detach(), 2 * flat.detach()])
    batched = unflatten_parameters(model, rows)
    assert batched["1.weight"].shape == (2, 32, 64)
    assert torch.equal(batched["1.weight"][1], 2 * model[1].weight.detach())


def _glorot_layers(model):
    return [m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]


def test_glorot_uniform_bounds_zero_biases_and_seeding():
    model = build_model("convnet9854")
    glorot_uniform_(model, torch.Generator().manual_seed(3))
    for layer in _glorot_layers(model):
        w = layer.weight.detach()
        receptive = w[0, 0].numel()
        bound = math.sqrt(6 / ((w.shape[0] + w.shape[1]) * receptive))
        assert w.abs().max() <= bound
        assert w.abs().max() > 0.8 * bound  # the draw fills the interval
        assert torch.count_nonzero(layer.bias) == 0
    # the first conv: fan_in = 1 * 25, fan_out = 8 * 25 (Keras/gpuea count the receptive field)
    assert model[0].weight.abs().max() <= math.sqrt(6 / 225)
    big = nn.Linear(400, 600)
    glorot_uniform_(big, torch.Generator().manual_seed(0))
    bound = math.sqrt(6 / 1000)
    assert abs(big.weight.std().item() - bound / math.sqrt(3)) < 0.01 * bound
    again = glorot_uniform_(build_model("convnet9854"), torch.Generator().manual_seed(3))
    assert torch.equal(flatten_parameters(again), flatten_parameters(model))


def test_glorot_uniform_population_rows_are_independent_glorot_draws():
    model = build_model("mlp92k")
    rows = glorot_uniform_population(model, 5, torch.Generator().manual_seed(0))
    assert rows.shape == (5, 92_234) and rows.dtype == torch.float32
    assert not torch.equal(rows[0], rows[1])
    params = unflatten_parameters(model, rows)
    for name, layer in zip(("2", "4", "6", "8"), _glorot_layers(model)):
        bound = math.sqrt(6 / (layer.in_features + layer.out_features))
        w = params[f"{name}.weight"]
        assert w.abs().max() <= bound and w.abs().max() > 0.8 * bound
        assert torch.count_nonzero(params[f"{name}.bias"]) == 0
    again = glorot_uniform_population(model, 5, torch.Generator().manual_seed(0))
    assert torch.equal(rows, again)


def test_glorot_population_keeps_other_parameters():
    model = nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4))
    with torch.no_grad():
        model[1].weight.fill_(2.0)
    rows = glorot_uniform_population(model, 3, torch.Generator().manual_seed(0))
    params = unflatten_parameters(model, rows)
    assert torch.equal(params["1.weight"], torch.full((3, 4), 2.0))


# --------------------------------------------------------------------------- strategies
@pytest.mark.parametrize("name", list(MODELS))
def test_all_strategies_agree_with_the_plain_forward(name):
    model = build_model(name)
    n, batch = SIZES[name]
    rows = _population(model, n)
    inputs, targets = _data(model_spec(name).input_shape, batch)
    expected_losses, expected_correct = _reference(model, rows, inputs, targets)
    evaluators = {s: PopulationForward(model, device="cpu", strategy=s)
                  for s in ("batched", "vmap", "loop")}
    assert PopulationForward(model, device="cpu").strategies() == ["batched", "vmap", "loop"]
    for strategy, evaluator in evaluators.items():
        scores = evaluator(rows, inputs, targets)
        assert isinstance(scores, Scores) and scores.strategy == strategy
        assert scores.losses.dtype == torch.float32 and scores.losses.device.type == "cpu"
        assert scores.correct.dtype == torch.int64 and scores.correct.shape == (n,)
        _close(scores.losses, expected_losses)
        assert torch.equal(scores.correct, expected_correct), strategy


@pytest.mark.parametrize("name", list(MODELS))
def test_lazy_population_and_forced_chunks_give_the_same_scores(name):
    model = build_model(name)
    n, batch = SIZES[name]
    inputs, targets = _data(model_spec(name).input_shape, batch)
    parents = _population(model, 2, seed=5)
    lazy = LazyPopulation(
        parents, parent_index=torch.tensor([i % 2 for i in range(n)]),
        seeds=torch.arange(n) + 100, sigmas=torch.tensor([0.0] + [0.02] * (n - 1)),
    )
    dense = lazy.values
    for strategy in ("batched", "vmap", "loop"):
        whole = PopulationForward(model, device="cpu", strategy=strategy)
        one_chunk = whole(dense, inputs, targets)
        assert whole.last_choice.chunk == n
        from_lazy = whole(lazy, inputs, targets)
        _close(from_lazy.losses, one_chunk.losses)
        assert torch.equal(from_lazy.correct, one_chunk.correct)
        tiny = PopulationForward(model, device="cpu", strategy=strategy, memory_budget=1)
        chunked = tiny(lazy, inputs, targets)
        assert tiny.last_choice.chunk == 1
        _close(chunked.losses, one_chunk.losses)
        assert torch.equal(chunked.correct, one_chunk.correct)
        # a Population holding a dense tensor is read through rows() as well
        _close(whole(Population(dense), inputs, targets).losses, one_chunk.losses)


def test_lazy_population_is_read_only_through_rows():
    model = build_model("mlp-digits")
    inputs, targets = _data((1, 8, 8), 10)

    class RowsOnly(Population):
        def __init__(self, values):
            super().__init__(values=None)
            self._rows = values
            self.calls = []

        def __len__(self):
            return len(self._rows)

        @property
        def values(self):
            raise AssertionError("an evaluator must not read .values")

        def rows(self, start, stop):
            self.calls.append((start, stop))
            return self._rows[start:stop]

    pop = RowsOnly(_population(model, 7))
    evaluator = PopulationForward(model, device="cpu", strategy="batched", memory_budget=1)
    scores = evaluator(pop, inputs, targets)
    assert scores.losses.shape == (7,)
    assert (0, 1) in pop.calls and all(stop - start == 1 for start, stop in pop.calls)


def test_auto_measures_once_per_key_and_exposes_its_choice():
    model = build_model("mlp-digits")
    inputs, targets = _data((1, 8, 8), 30)
    rows = _population(model, 12)
    CHOICES.clear()
    evaluator = PopulationForward(model, device="cpu")
    first = evaluator(rows, inputs, targets)
    choice = evaluator.last_choice
    assert first.strategy == choice.strategy in ("batched", "vmap", "loop")
    assert 1 <= choice.tile <= choice.chunk == 12
    measured = {name.split("/")[0] for name in choice.seconds_per_candidate}
    assert measured == {"batched", "vmap", "loop"}  # every strategy timed, none assumed
    assert all(seconds > 0 for seconds in choice.seconds_per_candidate.values())
    assert list(evaluator.choices.values()) == [choice]
    second = evaluator(rows, inputs, targets)
    assert evaluator.last_choice is choice and len(CHOICES) == 1  # cached: not measured again
    _close(second.losses, first.losses)
    # another evaluator of the same structure reuses the cached choice
    other = PopulationForward(build_model("mlp-digits"), device="cpu")
    other(rows, inputs, targets)
    assert other.last_choice is choice
    # a new batch size is a new key
    evaluator(rows, inputs[:20], targets[:20])
    assert len(CHOICES) == 2 and evaluator.last_choice is not choice


def test_measure_times_every_strategy():
    model = build_model("mlp-digits")
    inputs, targets = _data((1, 8, 8), 16)
    seconds = PopulationForward(model, device="cpu").measure(
        _population(model, 4), inputs, targets, repeats=1
    )
    assert set(seconds) == {"batched", "vmap", "loop"}
    assert all(s > 0 for s in seconds.values())


# --------------------------------------------------------------------------- batched layers
def _check_batched_matches_loop(model, input_shape, n=3, batch=6):
    model.eval()
    rows = _population(model, n, sigma=0.1)
    inputs, targets = _data(input_shape, batch, classes=model_classes(model, input_shape))
    batched = PopulationForward(model, device="cpu", strategy="batched")(rows, inputs, targets)
    loop = PopulationForward(model, device="cpu", strategy="loop")(rows, inputs, targets)
    expected = _reference(model, rows, inputs, targets)
    _close(batched.losses, loop.losses)
    _close(batched.losses, expected[0])
    assert torch.equal(batched.correct, expected[1])


def model_classes(model, input_shape) -> int:
    with torch.no_grad():
        return model(torch.zeros(1, *input_shape)).shape[1]


def test_batched_supports_the_documented_layers():
    conv = nn.Sequential(
        nn.ReLU(inplace=True),  # before the first weights: once, on a copy of the input
        nn.Conv2d(2, 3, 3, stride=2, padding=1, dilation=1),
        nn.Sequential(nn.LeakyReLU(0.1), nn.MaxPool2d(3, stride=1)),  # nested Sequential
        nn.Conv2d(3, 4, 2, padding=1, dilation=2, bias=False),
        nn.Tanh(),
        nn.AvgPool2d(2),
        nn.Dropout(0.5),
        nn.Flatten(),
        nn.Linear(16, 5, bias=False),
        nn.Sigmoid(),
        nn.Linear(5, 3),
    )
    _check_batched_matches_loop(conv, (2, 11, 11))
    padded_pool = nn.Sequential(
        nn.Conv2d(1, 2, 3), nn.ReLU(), nn.MaxPool2d(2, padding=1, ceil_mode=True), nn.GELU(),
        nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(8, 4),
    )
    _check_batched_matches_loop(padded_pool, (1, 9, 9))
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(12, 7), nn.ELU(), nn.Dropout(), nn.Linear(7, 5),
                        nn.ReLU6(), nn.Linear(5, 4))
    _check_batched_matches_loop(mlp, (3, 4))


def test_batched_leaves_the_input_and_training_flags_alone():
    model = nn.Sequential(nn.ReLU(inplace=True), nn.Flatten(), nn.Linear(6, 3), nn.Dropout(0.9))
    model.train()
    rows = _population(model, 4)
    inputs, targets = _data((6,), 5, classes=3)
    before = inputs.clone()
    for strategy in ("batched", "vmap", "loop"):
        evaluator = PopulationForward(model, device="cpu", strategy=strategy)
        a, b = evaluator(rows, inputs, targets), evaluator(rows, inputs, targets)
        assert torch.equal(a.losses, b.losses), strategy  # dropout off: deterministic
    assert torch.equal(inputs, before)
    assert model.training and model[3].training


def test_batched_is_left_out_for_unsupported_models():
    with_norm = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4), nn.Linear(4, 3))
    evaluator = PopulationForward(with_norm, device="cpu")
    assert evaluator.strategies() == ["vmap", "loop"]
    assert "BatchNorm1d" in evaluator.batched_unsupported
    with pytest.raises(EvoregError, match="batched"):
        PopulationForward(with_norm, device="cpu", strategy="batched")(
            torch.zeros(2, parameter_count(with_norm)), torch.zeros(3, 4), torch.zeros(3)
        )

    class Custom(nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(4, 3)

        def forward(self, x):
            return self.linear(x) * 2

    custom = Custom()
    assert PopulationForward(custom, device="cpu").strategies() == ["vmap", "loop"]
    rows = _population(custom, 3)
    inputs, targets = _data((4,), 5, classes=3)
    scores = PopulationForward(custom, device="cpu")(rows, inputs, targets)
    _close(scores.losses, _reference(custom, rows, inputs, targets)[0])
    for model in (nn.Sequential(nn.Conv2d(1, 2, 3, groups=1), nn.ReLU()),  # no logits
                  nn.Sequential(nn.Linear(3, 4), nn.Conv2d(4, 4, 1)),
                  nn.Sequential(nn.Conv2d(2, 2, 3, groups=2), nn.Flatten())):
        with pytest.raises(Unsupported):
            BatchedPlan(model)


def test_max_pool_matches_torch():
    generator = torch.Generator().manual_seed(0)
    h = torch.randn(3, 4, 11, 10, generator=generator)
    h[0, 0, 0, 0] = float("nan")
    for kernel, stride in ((2, None), (3, 2), ((2, 3), (1, 2)), (3, 1)):
        module = nn.MaxPool2d(kernel, stride)
        torch.testing.assert_close(max_pool(h, module), module(h), equal_nan=True)


# --------------------------------------------------------------------------- input checks
def test_bad_arguments_give_clear_errors():
    model = build_model("mlp-digits")
    with pytest.raises(UnknownNameError, match="vmap"):
        PopulationForward(model, device="cpu", strategy="vmapp")
    with pytest.raises(UnknownNameError):
        PopulationForward(model, device="cpu", precision="fp16")
    for precision in ("tf32", "bf16"):
        with pytest.raises(EvoregError, match="CUDA"):
            PopulationForward(model, device="cpu", precision=precision)
    evaluator = PopulationForward(model, device="cpu", strategy="loop")
    inputs, targets = _data((1, 8, 8), 4)
    with pytest.raises(EvoregError, match="2410"):
        evaluator(torch.zeros(3, 100), inputs, targets)
    with pytest.raises(EvoregError, match="targets"):
        evaluator(torch.zeros(3, 2410), inputs, targets[:3])
    empty = evaluator(torch.zeros(0, 2410), inputs, targets)
    assert empty.losses.shape == (0,) and empty.correct.shape == (0,)


def test_exported_from_the_package():
    for name in ("PopulationForward", "parameter_count", "flatten_parameters",
                 "glorot_uniform_"):
        assert getattr(evoreg, name) is getattr(evoreg.nets, name)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu_and_low_precision_runs():
    model = build_model("convnet9854")
    rows = _population(model, 4)
    inputs, targets = _data((1, 28, 28), 16)
    cpu = PopulationForward(model, device="cpu", strategy="loop")(rows, inputs, targets)
    for strategy in ("batched", "vmap", "loop"):
        gpu = PopulationForward(model, device="cuda", strategy=strategy)(rows, inputs, targets)
        assert gpu.losses.device.type == "cpu"
        torch.testing.assert_close(gpu.losses, cpu.losses, rtol=1e-4, atol=1e-5)
    for precision in ("tf32", "bf16"):
        low = PopulationForward(model, device="cuda", precision=precision)(rows, inputs, targets)
        torch.testing.assert_close(low.losses, cpu.losses, rtol=0.05, atol=0.05)


def test_batched_plan_runs_in_bfloat16():
    """What precision='bf16' does on CUDA: rows and shared input cast, buffers follow them."""
    model = build_model("convnet9854")
    rows = _population(model, 3)
    inputs, targets = _data((1, 28, 28), 8)
    plan = BatchedPlan(model)
    with torch.no_grad():
        shared = plan.shared_input(inputs)
        full = plan.logits(rows, shared)
        half = plan.logits(rows.bfloat16(), shared.bfloat16())
    assert half.dtype == torch.bfloat16 and half.shape == full.shape == (3, 10, 8)
    torch.testing.assert_close(half.float(), full, rtol=0.05, atol=0.05)


def test_scores_are_ordinary_tensors_the_caller_may_change():
    model = build_model("mlp-digits")
    inputs, targets = _data((1, 8, 8), 6)
    scores = PopulationForward(model, device="cpu")(_population(model, 3), inputs.double(),
                                                      targets)
    assert not scores.losses.is_inference()
    scores.losses[0] = float("inf")  # as an optimizer treating NaN as worst might
    scores.correct += 1
