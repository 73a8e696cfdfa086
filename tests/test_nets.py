"""evoreg.nets: flat-vector helpers, Glorot init, and every strategy's forward, scored.

The scores here are regression ones (mean squared error against real targets [B, features]):
nothing in evoreg.nets knows about classes; classification is tests/test_classification.py.
"""

from __future__ import annotations

import copy
import importlib
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
    flatten_parameters,
    glorot_uniform_,
    glorot_uniform_population,
    load_flat_parameters_,
    parameter_count,
    population_size,
    read_rows,
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


def _data(shape, batch: int, features: int, seed: int = 1):
    """Random inputs [B, *shape] and real regression targets [B, features]."""
    generator = torch.Generator().manual_seed(seed)
    inputs = torch.randn(batch, *shape, generator=generator)
    targets = torch.randn(batch, features, generator=generator)
    return inputs, targets


def mean_squared_error(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Regression score: outputs [c, features, B] against targets [B, features]."""
    return (outputs - targets.t()).square().mean(dim=(1, 2))


def error_and_peak(outputs: torch.Tensor, targets: torch.Tensor):
    """Two figures per candidate: mean squared error and the largest output."""
    return mean_squared_error(outputs, targets), outputs.amax(dim=(1, 2))


def _reference(model: nn.Module, rows: torch.Tensor, inputs, targets):
    """Mean squared errors and largest outputs the plain way: load each row, forward."""
    errors, peaks = [], []
    plain = copy.deepcopy(model).eval()
    with torch.no_grad():
        for row in rows:
            load_flat_parameters_(plain, row)
            outputs = plain(inputs)
            errors.append(float(F.mse_loss(outputs, targets)))
            peaks.append(float(outputs.max()))
    return torch.tensor(errors), torch.tensor(peaks)


def _features(model: nn.Module, input_shape) -> int:
    with torch.no_grad():
        return copy.deepcopy(model).eval()(torch.zeros(1, *input_shape)).shape[1]


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
    inputs, targets = _data((1, 8, 8), 5, features=10)
    out = functional_call(model, params, (inputs,))
    torch.testing.assert_close(out, model(inputs))
    F.mse_loss(out, targets).backward()
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
STRATEGIES = ("batched", "vmap", "loop")


def _small_models() -> dict[str, tuple[nn.Module, tuple[int, ...], int, int]]:
    """Regression models of output widths other than 10: (model, input shape, n, batch)."""
    torch.manual_seed(0)
    return {
        "mlp-width-3": (nn.Sequential(nn.Linear(5, 16), nn.Tanh(), nn.Linear(16, 3)), (5,), 7, 11),
        "conv-width-7": (
            nn.Sequential(nn.Conv2d(1, 3, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                          nn.Linear(27, 7)),
            (1, 8, 8), 5, 9,
        ),
        "linear-width-1": (nn.Sequential(nn.Linear(4, 1)), (4,), 6, 13),
    }


def _case(name: str):
    """(model, input shape, n, batch) of a small regression model or a built-in one."""
    if name in MODELS:
        return build_model(name), model_spec(name).input_shape, *SIZES[name]
    return _small_models()[name]


CASES = [*_small_models(), *MODELS]


@pytest.mark.parametrize("name", CASES)
def test_every_strategy_matches_a_plain_per_candidate_forward(name):
    model, input_shape, n, batch = _case(name)
    rows = _population(model, n)
    inputs, targets = _data(input_shape, batch, _features(model, input_shape))
    expected_errors, expected_peaks = _reference(model, rows, inputs, targets)
    assert PopulationForward(model, device="cpu").strategies() == list(STRATEGIES)
    for strategy in STRATEGIES:
        forward = PopulationForward(model, device="cpu", strategy=strategy)
        errors, peaks = forward(rows, inputs, targets, error_and_peak)
        assert forward.last_choice.strategy == strategy
        for figures in (errors, peaks):
            assert figures.dtype == torch.float32 and figures.device.type == "cpu"
            assert figures.shape == (n,)
        _close(errors, expected_errors)
        _close(peaks, expected_peaks)
        (alone,) = forward(rows, inputs, targets, mean_squared_error)  # one Tensor: a 1-tuple
        _close(alone, expected_errors)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_the_score_sees_feature_major_outputs_of_each_tile(strategy):
    model, input_shape, n, batch = _case("mlp-width-3")
    inputs, targets = _data(input_shape, batch, 3)
    seen = []

    def recording(outputs, targets):
        seen.append((tuple(outputs.shape), outputs.dtype))
        return mean_squared_error(outputs, targets)

    forward = PopulationForward(model, device="cpu", strategy=strategy, memory_budget=1)
    forward(_population(model, n), inputs, targets, recording)
    assert {shape[1:] for shape, _ in seen} == {(3, batch)}
    assert {dtype for _, dtype in seen} == {torch.float32}
    assert forward.last_choice.chunk == 1 and sum(shape[0] for shape, _ in seen) >= n


@pytest.mark.parametrize("name", ["conv-width-7", *MODELS])
def test_lazy_population_and_forced_chunks_give_the_same_scores(name):
    model, input_shape, n, batch = _case(name)
    inputs, targets = _data(input_shape, batch, _features(model, input_shape))
    parents = _population(model, 2, seed=5)
    lazy = LazyPopulation.around(
        parents, parent_index=torch.tensor([i % 2 for i in range(n)]),
        seeds=torch.arange(n) + 100, sigmas=torch.tensor([0.0] + [0.02] * (n - 1)),
    )
    dense = lazy.values
    for strategy in STRATEGIES:
        whole = PopulationForward(model, device="cpu", strategy=strategy)
        one_chunk = whole(dense, inputs, targets, error_and_peak)
        assert whole.last_choice.chunk == n
        from_lazy = whole(lazy, inputs, targets, error_and_peak)
        tiny = PopulationForward(model, device="cpu", strategy=strategy, memory_budget=1)
        chunked = tiny(lazy, inputs, targets, error_and_peak)
        assert tiny.last_choice.chunk == 1
        # a Population holding a dense tensor is read through rows() as well
        wrapped = whole(Population(dense), inputs, targets, error_and_peak)
        for scores in (from_lazy, chunked, wrapped):
            assert len(scores) == 2
            _close(scores[0], one_chunk[0])
            _close(scores[1], one_chunk[1])


class RowsOnly(Population):
    """A population that can only be read through rows(); it records the ranges read."""

    def __init__(self, values):
        super().__init__(values=None)
        self._rows = values
        self.calls = []

    def __len__(self):
        return len(self._rows)

    @property
    def values(self):
        raise AssertionError("the population forward must not read .values")

    def rows(self, start, stop, out=None):
        self.calls.append((start, stop))
        return self._rows[start:stop]


def test_lazy_population_is_read_only_through_rows():
    model = build_model("mlp-digits")
    inputs, targets = _data((1, 8, 8), 10, 10)
    pop = RowsOnly(_population(model, 7))
    forward = PopulationForward(model, device="cpu", strategy="batched", memory_budget=1)
    (errors,) = forward(pop, inputs, targets, mean_squared_error)
    assert errors.shape == (7,)
    assert (0, 1) in pop.calls and all(stop - start == 1 for start, stop in pop.calls)


def test_read_rows_reads_populations_and_tensors():
    values = torch.arange(12.0).reshape(4, 3)
    pop = RowsOnly(values)
    assert torch.equal(read_rows(pop, 1, 3), values[1:3]) and pop.calls == [(1, 3)]
    assert torch.equal(read_rows(values, 2, 4), values[2:4])
    assert population_size(pop) == 4 and population_size(values) == 4
    with pytest.raises(EvoregError, match=r"\[n, d\]"):
        population_size(torch.zeros(3))
    with pytest.raises(EvoregError, match="Population or a Tensor"):
        population_size([[0.0, 1.0]])


def test_auto_measures_once_per_key_and_exposes_its_choice():
    model = build_model("mlp-digits")
    inputs, targets = _data((1, 8, 8), 30, 10)
    rows = _population(model, 12)
    CHOICES.clear()
    forward = PopulationForward(model, device="cpu")
    first = forward(rows, inputs, targets, mean_squared_error)
    choice = forward.last_choice
    assert choice.strategy in STRATEGIES
    assert 1 <= choice.tile <= choice.chunk == 12
    measured = {name.split("/")[0] for name in choice.seconds_per_candidate}
    assert measured == set(STRATEGIES)  # every strategy timed, none assumed
    assert all(seconds > 0 for seconds in choice.seconds_per_candidate.values())
    assert list(forward.choices.values()) == [choice]
    second = forward(rows, inputs, targets, mean_squared_error)
    assert forward.last_choice is choice and len(CHOICES) == 1  # cached: not measured again
    _close(second[0], first[0])
    # another forward of the same structure reuses the cached choice
    other = PopulationForward(build_model("mlp-digits"), device="cpu")
    other(rows, inputs, targets, mean_squared_error)
    assert other.last_choice is choice
    # a new batch size is a new key
    forward(rows, inputs[:20], targets[:20], mean_squared_error)
    assert len(CHOICES) == 2 and forward.last_choice is not choice


def test_the_score_is_part_of_the_key_by_name():
    model = build_model("mlp-digits")
    inputs, targets = _data((1, 8, 8), 8, 10)
    rows = _population(model, 4)
    CHOICES.clear()
    forward = PopulationForward(model, device="cpu")
    forward(rows, inputs, targets, mean_squared_error)
    forward(rows, inputs, targets, error_and_peak)  # another score: measured on its own
    assert len(CHOICES) == 2
    for _ in range(2):  # a fresh closure per call, the same function: measured once
        forward(rows, inputs, targets, lambda outputs, targets: outputs.sum(dim=(1, 2)))
    assert len(CHOICES) == 3


def test_measure_times_every_strategy():
    model = build_model("mlp-digits")
    inputs, targets = _data((1, 8, 8), 16, 10)
    seconds = PopulationForward(model, device="cpu").measure(
        _population(model, 4), inputs, targets, mean_squared_error, repeats=1
    )
    assert set(seconds) == set(STRATEGIES)
    assert all(s > 0 for s in seconds.values())


# --------------------------------------------------------------------------- batched layers
def _check_batched_matches_loop(model, input_shape, n=3, batch=6):
    model.eval()
    rows = _population(model, n, sigma=0.1)
    inputs, targets = _data(input_shape, batch, _features(model, input_shape))
    batched = PopulationForward(model, device="cpu", strategy="batched")(
        rows, inputs, targets, error_and_peak
    )
    loop = PopulationForward(model, device="cpu", strategy="loop")(
        rows, inputs, targets, error_and_peak
    )
    expected = _reference(model, rows, inputs, targets)
    for got, plain, reference in zip(batched, loop, expected):
        _close(got, plain)
        _close(got, reference)


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
    inputs, targets = _data((6,), 5, 3)
    before = inputs.clone()
    for strategy in STRATEGIES:
        forward = PopulationForward(model, device="cpu", strategy=strategy)
        a = forward(rows, inputs, targets, mean_squared_error)
        b = forward(rows, inputs, targets, mean_squared_error)
        assert torch.equal(a[0], b[0]), strategy  # dropout off: deterministic
    assert torch.equal(inputs, before)
    assert model.training and model[3].training


def test_batched_is_left_out_for_unsupported_models():
    with_norm = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4), nn.Linear(4, 3))
    forward = PopulationForward(with_norm, device="cpu")
    assert forward.strategies() == ["vmap", "loop"]
    assert "BatchNorm1d" in forward.batched_unsupported
    with pytest.raises(EvoregError, match="batched"):
        PopulationForward(with_norm, device="cpu", strategy="batched")(
            torch.zeros(2, parameter_count(with_norm)), torch.zeros(3, 4), torch.zeros(3, 3),
            mean_squared_error,
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
    inputs, targets = _data((4,), 5, 3)
    errors, peaks = PopulationForward(custom, device="cpu")(rows, inputs, targets, error_and_peak)
    expected = _reference(custom, rows, inputs, targets)
    _close(errors, expected[0])
    _close(peaks, expected[1])
    for model in (nn.Sequential(nn.Conv2d(1, 2, 3, groups=1), nn.ReLU()),  # no [B, features]
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
    forward = PopulationForward(model, device="cpu", strategy="loop")
    inputs, targets = _data((1, 8, 8), 4, 10)
    with pytest.raises(EvoregError, match="2410"):
        forward(torch.zeros(3, 100), inputs, targets, mean_squared_error)
    with pytest.raises(EvoregError, match="targets"):
        forward(torch.zeros(3, 2410), inputs, targets[:3], mean_squared_error)
    vector_model = nn.Sequential(nn.Flatten(0))  # no [B, features] outputs
    with pytest.raises(EvoregError, match=r"outputs \[B, features\]"):
        PopulationForward(vector_model, device="cpu", strategy="loop")(
            torch.zeros(2, 0), inputs, targets, mean_squared_error
        )


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_a_score_must_return_one_figure_per_candidate(strategy):
    model = build_model("mlp-digits")
    inputs, targets = _data((1, 8, 8), 4, 10)
    rows = _population(model, 3)
    forward = PopulationForward(model, device="cpu", strategy=strategy)
    for wrong in (lambda outputs, targets: outputs.mean(dim=1),  # [c, B]
                  lambda outputs, targets: [outputs.sum(dim=(1, 2))],  # a list, not a tuple
                  lambda outputs, targets: ()):
        with pytest.raises(EvoregError, match=r"Tensor\[c\]"):
            forward(rows, inputs, targets, wrong)

    calls = []

    def changing(outputs, targets):  # one figure, then two, then one...
        calls.append(1)
        sums = outputs.sum(dim=(1, 2))
        return sums if len(calls) % 2 else (sums, sums)

    loop = PopulationForward(model, device="cpu", strategy="loop")
    with pytest.raises(EvoregError, match="returned"):
        loop(rows, inputs, targets, changing)


def test_an_empty_population_gives_empty_scores_of_the_score_s_kinds():
    model = build_model("mlp-digits")
    inputs, targets = _data((1, 8, 8), 4, 10)

    def error_and_count(outputs, targets):
        return mean_squared_error(outputs, targets), (outputs > 0).sum(dim=(1, 2))

    errors, counts = PopulationForward(model, device="cpu")(
        torch.zeros(0, 2410), inputs, targets, error_and_count
    )
    assert errors.shape == counts.shape == (0,)
    assert errors.dtype == torch.float32 and counts.dtype == torch.int64


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_a_score_that_returns_a_view_of_the_outputs_gets_a_copy(strategy):
    """The batched strategy reuses its output buffers from one chunk to the next."""
    model, input_shape, n, batch = _case("mlp-width-3")
    rows = _population(model, n)
    inputs, targets = _data(input_shape, batch, 3)
    forward = PopulationForward(model, device="cpu", strategy=strategy, memory_budget=1)
    (first,) = forward(rows, inputs, targets, lambda outputs, targets: outputs[:, 0, 0])
    plain = copy.deepcopy(model)
    expected = []
    with torch.no_grad():
        for row in rows:
            load_flat_parameters_(plain, row)
            expected.append(float(plain(inputs[:1])[0, 0]))
    _close(first, torch.tensor(expected))


def test_exported_from_the_package_under_the_new_names_only():
    for name in ("PopulationForward", "parameter_count", "flatten_parameters",
                 "glorot_uniform_"):
        assert getattr(evoreg, name) is getattr(evoreg.nets, name)
    assert not hasattr(evoreg, "PopulationEvaluator")
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("evoreg.evaluate")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name", ["conv-width-7", "convnet9854"])
def test_cuda_matches_cpu_and_low_precision_runs(name):
    model, input_shape, n, batch = _case(name)
    rows = _population(model, n)
    inputs, targets = _data(input_shape, batch, _features(model, input_shape))
    cpu = PopulationForward(model, device="cpu", strategy="loop")(
        rows, inputs, targets, error_and_peak
    )
    for strategy in STRATEGIES:
        gpu = PopulationForward(model, device="cuda", strategy=strategy)(
            rows, inputs, targets, error_and_peak
        )
        for on_gpu, on_cpu in zip(gpu, cpu):
            assert on_gpu.device.type == "cpu"
            torch.testing.assert_close(on_gpu, on_cpu, rtol=1e-4, atol=1e-5)
    for precision in ("tf32", "bf16"):
        low = PopulationForward(model, device="cuda", precision=precision)(
            rows, inputs, targets, mean_squared_error
        )
        torch.testing.assert_close(low[0], cpu[0], rtol=0.05, atol=0.05)


def test_batched_plan_runs_in_bfloat16():
    """What precision='bf16' does on CUDA: rows and shared input cast, buffers follow them."""
    model = build_model("convnet9854")
    rows = _population(model, 3)
    inputs, _ = _data((1, 28, 28), 8, 10)
    plan = BatchedPlan(model)
    with torch.no_grad():
        shared = plan.shared_input(inputs)
        full = plan.outputs(rows, shared)
        half = plan.outputs(rows.bfloat16(), shared.bfloat16())
    assert half.dtype == torch.bfloat16 and half.shape == full.shape == (3, 10, 8)
    torch.testing.assert_close(half.float(), full, rtol=0.05, atol=0.05)


def test_scores_are_ordinary_tensors_the_caller_may_change():
    model = build_model("mlp-digits")
    inputs, targets = _data((1, 8, 8), 6, 10)
    errors, peaks = PopulationForward(model, device="cpu")(
        _population(model, 3), inputs.double(), targets, error_and_peak
    )
    assert not errors.is_inference()
    errors[0] = float("inf")  # as an optimizer treating NaN as worst might
    peaks += 1
