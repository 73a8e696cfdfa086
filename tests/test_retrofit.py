"""Retrofitting (issue 14; Videau et al. 2024, AfterLearnER): ``evoreg.retrofit`` over a
user's model, the ``retrofit`` problem and its built-in scenario, model files, the
command line and a kill -9 + --resume. Tiny models on scikit-learn's digits, one thread;
every built-in scenario lives in a temporary data root (its cached model included)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import OrderedDict
from dataclasses import replace

import pytest
import torch
from torch import nn

import evoreg
from evoreg import EvoregError
from evoreg.cli import main
from evoreg.problems import classifier_losses
from evoreg.problems.aleph import Scenario
from evoreg.problems.retrofit import (
    Config,
    classifier,
    load_model_file,
    make_splits,
    preset_params,
    split_indices,
    trained_classifier,
)

ONE_TORCH_THREAD = True  # conftest.one_torch_thread


@pytest.fixture(scope="module")
def digits() -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    from sklearn.datasets import load_digits

    data = load_digits()
    x = torch.tensor(data.data, dtype=torch.float32) / 16
    y = torch.tensor(data.target)
    return {"train": (x[:900], y[:900]), "val": (x[900:1300], y[900:1300]),
            "test": (x[1300:], y[1300:])}


@pytest.fixture(scope="module")
def trained(digits) -> nn.Module:
    """A small classifier with BatchNorm, trained a little (so biases have room to help)."""
    torch.manual_seed(0)
    model = nn.Sequential(OrderedDict(
        fc=nn.Linear(64, 24), bn=nn.BatchNorm1d(24), relu=nn.ReLU(), head=nn.Linear(24, 10)))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    x, y = digits["train"]
    for _ in range(15):
        loss = nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def same(model: nn.Module, before: dict[str, torch.Tensor]) -> bool:
    now = model.state_dict()
    return now.keys() == before.keys() and all(torch.equal(now[k], v) for k, v in before.items())


# --------------------------------------------------------------------------- the API
def test_retrofit_improves_validation_and_leaves_the_model_unchanged(trained, digits):
    before = snapshot(trained)
    result = evoreg.retrofit(trained, "head.bias", "error", digits["val"], digits["test"],
                             optimizer="ng:OnePlusOne", budget=40, runs=2, device="cpu")
    assert same(trained, before)
    assert result.validation_loss_after < result.validation_loss_before
    assert result.test_loss_before == pytest.approx(
        classifier_losses.error_rate(trained(digits["test"][0]), digits["test"][1]))
    assert set(result.values) == {"head.bias"} and result.values["head.bias"].shape == (10,)
    assert len(result.runs) == 2 and len({run.seed for run in result.runs}) == 2
    assert result.chosen == min(range(2), key=lambda i: result.runs[i].validation_loss)
    curve = result.runs[0].curve
    assert curve[-1][0] == 40 and all(a[1] >= b[1] for a, b in zip(curve, curve[1:]))
    # the retrofitted copy scores what the result says; apply() writes into a model
    copy = result.apply(classifier_copy(trained))
    assert torch.equal(copy.head.bias, result.model.head.bias)
    assert classifier_losses.error_rate(copy(digits["val"][0]), digits["val"][1]) == \
        pytest.approx(result.validation_loss_after)


def classifier_copy(model: nn.Module) -> nn.Module:
    import copy

    return copy.deepcopy(model)


def test_apply_true_writes_only_the_selected_values(trained, digits):
    model = classifier_copy(trained)
    before = snapshot(model)
    result = evoreg.retrofit(model, "head.bias[2:5]", "error", digits["val"], budget=30,
                             optimizer="random-search", device="cpu", apply=True)
    after = model.state_dict()
    assert torch.equal(after["head.bias"][2:5], result.values["head.bias[2:5]"])
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert changed in ([], ["head.bias"])
    assert torch.equal(after["head.bias"][:2], before["head.bias"][:2])
    assert torch.equal(after["head.bias"][5:], before["head.bias"][5:])


def test_the_model_is_unchanged_after_an_exception_in_the_loss(trained, digits):
    before = snapshot(trained)
    calls = []

    def failing(model, batch):
        calls.append(1)
        if len(calls) > 5:  # after the untouched score and a few candidates were written
            raise RuntimeError("the metric service is down")
        return float(model(batch[0]).mean())

    with pytest.raises(RuntimeError, match="metric service"):
        evoreg.retrofit(trained, ["head.bias", "*.running_mean"], failing, digits["val"],
                        optimizer="ng:OnePlusOne", budget=20, device="cpu")
    assert len(calls) == 6 and same(trained, before)
    assert trained.training is False


def test_globs_slices_and_hyperparameters_are_selected_by_name(trained, digits):
    def loss(model, batch, temperature=1.0, threshold=0.5):
        return 0.0

    scenario = Scenario(trained, ["*.running_*", ("fc.weight", slice(3, 5)), "head.bias[0]",
                                  "temperature", "threshold"], loss, digits["val"])
    assert scenario.labels == ["bn.running_mean", "bn.running_var", "fc.weight[3:5]",
                               "head.bias[0]", "temperature", "threshold"]
    assert scenario.dim == 24 + 24 + 2 * 64 + 1 + 2
    assert torch.equal(scenario.init[48:176], trained.fc.weight[3:5].detach().flatten())
    values = scenario.values(scenario.init)
    assert values["fc.weight[3:5]"].shape == (2, 64) and values["temperature"] == 1.0
    # num_batches_tracked (int64) matches the glob but only floating entries are searched
    assert "bn.num_batches_tracked" not in scenario.labels


@pytest.mark.parametrize(("params", "message"), [
    ("head.bais", "did you mean 'head.bias'"),
    ("*.running_man", "no floating-point state_dict entry matches"),
    ("bn.num_batches_tracked", "only floating-point"),
    (["head.bias", "head.*"], "selected twice"),
    ("head.weight[99]", "does not index"),
    ({"head.bias": (0.5, 2.0)}, "lies outside its bounds"),
    ({"head.bias": (1, 0)}, "lower >= upper"),
    ("temperature", "neither a state_dict entry nor a keyword argument of the loss"),
])
def test_bad_selections_are_refused_in_one_line(trained, digits, params, message):
    loss = "error" if params != "temperature" else (lambda model, batch: 0.0)
    with pytest.raises(EvoregError) as error:
        Scenario(trained, params, loss, digits["val"])
    text = str(error.value)
    assert message in text and "\n" not in text


def test_default_bounds_and_given_bounds(trained, digits):
    scenario = Scenario(trained, ["head.bias", "bn.running_var", "temperature"], "ece",
                        digits["val"], radius=1.0)
    bias = trained.head.bias.detach()
    assert torch.allclose(scenario.lower[:10], bias - 1) and torch.allclose(
        scenario.upper[:10], bias + 1)  # RMS below 1: one unit
    var = trained.bn.running_var.detach()
    assert bool((scenario.lower[10:34] >= var / 10 - 1e-7).all())  # variances stay positive
    assert (float(scenario.lower[-1]), float(scenario.upper[-1])) == pytest.approx((0.1, 2.0))
    given = Scenario(trained, {"head.bias": (-3.0, None), "temperature": (0.5, 3.0)}, "ece",
                     digits["val"])
    # the side not given keeps the default, here radius 2 (the default)
    assert bool((given.lower[:10] == -3).all()) and torch.allclose(given.upper[:10], bias + 2)
    assert (float(given.lower[-1]), float(given.upper[-1])) == (0.5, 3.0)


@pytest.mark.parametrize("optimizer", ["ng:OnePlusOne", "random-search"])
def test_every_candidate_stays_within_the_bounds(trained, digits, optimizer):
    seen = []

    def loss(model, batch, temperature=1.0):
        seen.append((model.head.bias.detach().clone(), temperature))
        return float(classifier_losses.expected_calibration_error(model(batch[0]), batch[1],
                                                                  temperature))

    bounds = {"head.bias": (trained.head.bias.detach() - 0.05, trained.head.bias.detach() + 0.1),
              "temperature": (0.8, 1.5)}
    result = evoreg.retrofit(trained, bounds, loss, digits["val"], optimizer=optimizer,
                             budget=40, device="cpu")
    low, high = bounds["head.bias"]
    assert len(seen) >= 41
    for bias, temperature in seen:
        assert bool(((bias >= low) & (bias <= high)).all()) and 0.8 <= temperature <= 1.5
    assert 0.8 <= result.values["temperature"] <= 1.5
    assert result.validation_loss_after <= result.validation_loss_before


def test_a_loss_over_dataloader_batches_is_averaged_by_batch_size(trained, digits):
    x, y = digits["val"]
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=150)

    def error(model, batch):
        return float((model(batch[0]).argmax(1) != batch[1]).float().mean())

    whole = Scenario(trained, "head.bias", error, (x, y)).untouched["validation"]
    batched = Scenario(trained, "head.bias", error, loader).untouched["validation"]
    builtin = Scenario(trained, "head.bias", "error", loader).untouched["validation"]
    assert batched == pytest.approx(whole) and builtin == pytest.approx(whole)


def test_prefix_caching_gives_the_same_losses(trained, digits):
    for params in ("head.bias", "bn.running_mean"):
        cached = Scenario(trained, params, "macro-f1", digits["val"])
        plain = Scenario(trained, params, "macro-f1", digits["val"], cache_prefix=False)
        assert cached.cut > 0 and plain.cut == 0
        x = cached.init + 0.3 * torch.randn(cached.dim, generator=torch.Generator().manual_seed(0))
        assert cached.loss(x) == pytest.approx(plain.loss(x))


# --------------------------------------------------------------------------- losses
def test_builtin_losses_match_their_definitions():
    from sklearn.metrics import f1_score, recall_score

    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(300, 4, generator=generator)
    labels = torch.randint(0, 4, (300,), generator=generator)
    predicted = logits.argmax(1)
    assert classifier_losses.error_rate(logits, labels) == pytest.approx(
        float((predicted != labels).float().mean()))
    assert classifier_losses.macro_f1_loss(logits, labels) == pytest.approx(
        1 - f1_score(labels, predicted, average="macro"))
    assert classifier_losses.worst_recall_loss(logits, labels) == pytest.approx(
        1 - recall_score(labels, predicted, average=None).min())
    costs = torch.rand(4, 4, generator=generator)
    assert classifier_losses.cost_weighted_error(logits, labels, costs) == pytest.approx(
        float(costs[labels, predicted].double().mean()))
    # ECE: confidences 0.95 (right) and 0.55 (wrong) in two bins -> (0.05 + 0.55) / 2
    two = torch.log(torch.tensor([[0.95, 0.05], [0.55, 0.45]]))
    assert classifier_losses.expected_calibration_error(two, torch.tensor([0, 1])) == \
        pytest.approx(0.30)
    assert classifier_losses.expected_calibration_error(two * 0 + 1, torch.tensor([0, 1]),
                                                        temperature=2.0) == pytest.approx(0.0)
    matrix = classifier_losses.default_costs(10)
    assert float(matrix[6, 0]) == 5 and float(matrix[0, 6]) == 1 and float(matrix[6, 6]) == 0


# --------------------------------------------------------------------------- the problem
def test_the_splits_are_disjoint_and_cover_the_pool():
    for pool in ("holdout+test", "test"):
        config = replace(Config(), pool=pool, split_seed=3)
        index = split_indices(600, 200, config)
        parts = [set(index[k].tolist()) for k in ("train", "validation", "test")]
        assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
        assert len(parts[0]) == 500
        pooled = parts[1] | parts[2]
        holdout = set(range(600)) - parts[0] if pool == "holdout+test" else set()
        assert pooled == holdout | set(range(600, 800))
    a = split_indices(600, 200, replace(Config(), split_seed=0))
    b = split_indices(600, 200, replace(Config(), split_seed=1))
    assert torch.equal(a["train"], b["train"]) and not torch.equal(a["validation"],
                                                                    b["validation"])


def test_the_builtin_scenario_improves_its_validation_loss(tmp_path):
    config = {"dataset": "digits", "data_root": str(tmp_path), "loss": "macro-f1"}
    result = evoreg.run("retrofit", "ng:NGOpt", 30, seed=0, problem_config=config,
                        progress=False, plot=False)
    report = result.report
    assert report["validation_loss"] < report["validation_loss_untouched"]
    assert report["test_loss_untouched"] > 0 and "test_gain" in report
    assert len(report["values"]["out.bias"]) == 10
    assert list(tmp_path.glob("retrofit/digits-*.pt"))  # the model is cached as a state dict
    problem = evoreg.make_problem("retrofit", preset="bn-stats", **config)
    assert problem.scenario.labels == ["bn2.running_mean", "bn2.running_var"]
    assert problem.space.dim == 128


def test_model_files_load_weights_only_and_refuse_an_untrusted_pickle(tmp_path):
    model = classifier((1, 8, 8))
    state_file, pickle_file = tmp_path / "state.pt", tmp_path / "module.pt"
    torch.save(model.state_dict(), state_file)
    torch.save(model, pickle_file)
    loaded = load_model_file(state_file, input_shape=(1, 8, 8))
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(),
                                                 model.state_dict().values()))
    with pytest.raises(EvoregError) as error:
        load_model_file(pickle_file, input_shape=(1, 8, 8))
    message = str(error.value)
    assert "trust_model=true" in message and "could run code" in message and "\n" not in message
    assert isinstance(load_model_file(pickle_file, trust=True), nn.Sequential)
    with pytest.raises(EvoregError, match="does not fit arch=mlp-digits"):
        load_model_file(state_file, arch="mlp-digits", input_shape=(1, 8, 8))
    assert preset_params(loaded, "output-bias") == ["out.bias"]


def test_a_safetensors_file_loads_with_its_architecture(tmp_path):
    safetensors = pytest.importorskip("safetensors.torch")
    model = classifier((1, 8, 8))
    path = tmp_path / "model.safetensors"
    safetensors.save_file(model.state_dict(), str(path))
    loaded = load_model_file(path, input_shape=(1, 8, 8))
    assert torch.equal(loaded.out.weight, model.out.weight)


def test_an_untrusted_pickle_is_one_line_from_the_command_line(tmp_path, capsys):
    path = tmp_path / "module.pt"
    torch.save(classifier((1, 8, 8)), path)
    code = main(["run", "retrofit", "random-search", "--budget", "2", "--set", "dataset=digits",
                 "--set", f"data_root={tmp_path}", "--set", f"model={path}",
                 "--out", str(tmp_path / "run")])
    error = capsys.readouterr().err
    assert code == 2 and "--set trust_model=true" in error
    assert not (tmp_path / "run" / "result.json").exists()


def test_a_model_file_from_the_command_line(tmp_path, capsys):
    path = tmp_path / "model.pt"
    model = classifier((1, 8, 8))
    torch.save(model.state_dict(), path)
    out = tmp_path / "run"
    assert main(["run", "retrofit", "ng:OnePlusOne", "--budget", "12", "--set",
                 "dataset=digits", "--set", f"data_root={tmp_path}", "--set", f"model={path}",
                 "--set", "params=fc2.bias,out.bias[0:3]", "--set", "loss=macro-f1",
                 "--out", str(out)]) == 0
    result = json.loads((out / "result.json").read_text())
    assert result["cost"] == 12 and result["problem_config"]["loss"] == "macro-f1"
    assert set(result["report"]["values"]) == {"fc2.bias", "out.bias[0:3]"}
    assert result["report"]["validation_loss"] <= result["report"]["validation_loss_untouched"]
    assert "test_loss=" in capsys.readouterr().out


def test_info_describes_the_options(capsys):
    assert main(["info", "retrofit"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    for word in ("model", "trust_model", "params", "preset", "bn-stats", "worst-recall",
                 "macro-f1", "radius", "split_seed", "AfterLearnER", "budget: counted in "
                 "evaluations"):
        assert word in text, word


def _cli(out, data_root, model, budget: int) -> list[str]:
    return [sys.executable, "-m", "evoreg", "run", "retrofit", "ng:OnePlusOne", "--budget",
            str(budget), "--seed", "4", "--checkpoint-every", "1", "--out", str(out),
            "--set", "dataset=digits", "--set", f"data_root={data_root}",
            "--set", f"model={model}", "--set", "params=out.bias", "--set", "loss=cost"]


def _model_with_headroom(tmp_path) -> str:
    """The built-in digits classifier with class 3's output bias pulled down by 10, so that
    tuning the biases must win the error back (the trained model alone is nearly perfect on
    digits, and how close to perfect differs between machines)."""
    config = Config(dataset="digits", data_root=str(tmp_path))
    model = trained_classifier(config, make_splits(config))
    with torch.no_grad():
        model.out.bias[3] -= 10
    path = tmp_path / "biased.pt"
    torch.save(model.state_dict(), path)
    return str(path)


def _final(out) -> tuple[list[float], dict]:
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    return [r["loss_min"] for r in log], json.loads((out / "result.json").read_text())["report"]


def test_killed_with_sigkill_and_resumed_ends_like_a_straight_run(tmp_path, kill_mid_run):
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    # 150 generations, killed after 5: a margin of seconds (a checkpoint each) on a loaded
    # machine, where the test process may wait long for the CPU between two polls.
    model = _model_with_headroom(tmp_path)
    subprocess.run(_cli(straight, tmp_path, model, 150), check=True, capture_output=True,
                   timeout=300)
    losses, report = _final(straight)
    assert len(losses) == 150 and report["validation_loss"] < report["validation_loss_untouched"]
    kill_mid_run(_cli(killed, tmp_path, model, 150), killed / "log.jsonl", 5, 120)
    assert not (killed / "result.json").exists()
    subprocess.run([*_cli(killed, tmp_path, model, 150), "--resume"], check=True,
                   capture_output=True, timeout=300)
    assert _final(killed) == (losses, report)


def test_resume_gives_the_finished_result_and_refuses_another_model(tmp_path, trained, digits):
    common = dict(budget=5, runs=2, optimizer="random-search", out_dir=tmp_path, device="cpu")
    first = evoreg.retrofit(trained, "head.bias", "error", digits["val"], **common)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run-0", "run-1"]
    again = evoreg.retrofit(trained, "head.bias", "error", digits["val"], resume=True, **common)
    assert torch.equal(again.vector, first.vector) and again.chosen == first.chosen
    assert again.validation_loss_after == first.validation_loss_after
    other = classifier_copy(trained)
    with torch.no_grad():
        other.head.bias += 1
    with pytest.raises(EvoregError, match="another model"):
        evoreg.retrofit(other, "head.bias", "error", digits["val"], budget=10,
                        optimizer="random-search", out_dir=tmp_path, device="cpu", resume=True)
