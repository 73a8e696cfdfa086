"""The mnist-weights problem on scikit-learn's digits (real images, shipped with the package),
and its data loading on tiny IDX files written here (no download, no system data)."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import evoreg
from evoreg import EvoregError, Population
from evoreg.problems import datasets
from evoreg.problems.datasets import FILES


@pytest.fixture(scope="module")
def digits():
    return evoreg.make_problem("mnist-weights", seed=0, batch_size=256)


def _write_idx(path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim])
    header += b"".join(int(s).to_bytes(4, "big") for s in array.shape)
    with gzip.open(path, "wb") as file:
        file.write(header + array.astype(np.uint8).tobytes())


def _fake_mnist(folder, train=40, test=10):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    sizes = {"train": train, "t10k": test}
    for name in FILES:
        split = name.split("-")[0]
        n = sizes[split]
        if "images" in name:
            array = rng.integers(0, 256, (n, 28, 28))
        else:
            array = np.arange(n) % 10
        _write_idx(folder / f"{name}.gz", array)


def test_digits_split_space_and_default_model(digits):
    assert digits.model_name == "mlp-digits"
    assert digits.space.dim == 2410
    sizes = {name: len(labels) for name, (_, labels) in digits.splits.items()}
    assert sizes["test"] == 359 and sizes["train"] + sizes["validation"] == 1797 - 359
    assert sizes["validation"] == 1438 - int(1438 * 0.9)


def test_one_minibatch_shared_by_the_population(digits):
    x = digits.space.initial()
    other = x + 0.05 * torch.randn(x.shape, generator=torch.Generator().manual_seed(1))
    evaluation = digits.evaluate(Population(torch.stack([x, other, x])))
    losses = evaluation.losses
    assert losses.shape == (3,) and evaluation.cost == 3
    assert losses[0] == losses[2] and losses[0] != losses[1]  # same batch for all candidates
    assert evaluation.info["samples"] >= 3 * 256


def test_losses_match_a_plain_forward_pass():
    problem = evoreg.make_problem("mnist-weights", seed=2, batch_size="full")
    x = problem.space.initial()
    loss = float(problem.evaluate(Population(x.unsqueeze(0))).losses[0])
    evoreg.nets.load_flat_parameters_(problem.model, x.to(problem.device))
    images, labels = problem.splits["train"]
    with torch.no_grad():
        expected = float(F.cross_entropy(problem.model(images), labels))
    assert loss == pytest.approx(expected, rel=1e-5)


def test_error_rate_loss_and_report():
    problem = evoreg.make_problem("mnist-weights", seed=0, loss="error-rate", batch_size=100)
    losses = problem.evaluate(Population(problem.space.initial_population(
        4, torch.Generator().manual_seed(0)))).losses
    assert ((losses >= 0) & (losses <= 1)).all()
    assert torch.allclose(losses * 100, (losses * 100).round(), atol=1e-4)  # k wrong of 100
    report = problem.report(problem.space.initial())
    for split in ("train", "validation", "test"):
        assert 0 <= report[f"{split}_accuracy"] <= 1 and report[f"{split}_loss"] > 0
    with pytest.raises(EvoregError, match="no gradient"):
        problem.evaluate(Population(problem.space.initial().unsqueeze(0)), gradients=True)


def test_gradients_match_finite_differences(digits):
    x = digits.space.initial().double()
    problem = evoreg.make_problem("mnist-weights", seed=0, batch_size="full")
    evaluation = problem.evaluate(Population(x.float().unsqueeze(0)), gradients=True)
    grad = evaluation.gradients[0]
    assert grad.shape == (problem.space.dim,)
    direction = grad / grad.norm()
    step = 1e-2
    plus = problem.evaluate(Population((x + step * direction).float().unsqueeze(0))).losses
    minus = problem.evaluate(Population((x - step * direction).float().unsqueeze(0))).losses
    slope = float(plus[0] - minus[0]) / (2 * step)
    assert slope == pytest.approx(float(grad.norm()), rel=0.05)


def test_adam_trains_the_network_and_beats_the_start():
    result = evoreg.run(
        "mnist-weights", "adam", budget=150, seed=0, problem_config={"batch_size": 64},
        optimizer_config={"lr": 0.01},
    )
    start = evoreg.make_problem("mnist-weights", seed=evoreg.runner.derive_seeds(0)[0])
    before = start.report(start.space.initial())["test_accuracy"]
    assert result.report["test_accuracy"] > 0.85 > before
    assert result.log[-1]["samples"] == 150 * 64


def test_resume_continues_the_minibatch_sequence(tmp_path):
    common = dict(problem_config={"batch_size": 100}, optimizer_config={"popsize": 8}, seed=4,
                  progress=False, plot=False, checkpoint_every=1)
    straight = evoreg.run("mnist-weights", "random-search", budget=80, **common)
    evoreg.run("mnist-weights", "random-search", budget=40, out_dir=tmp_path, **common)
    resumed = evoreg.run("mnist-weights", "random-search", budget=80, out_dir=tmp_path,
                         resume=True, **common)
    assert [r["loss_min"] for r in resumed.log] == [r["loss_min"] for r in straight.log]
    assert resumed.report == straight.report
    assert json.loads((tmp_path / "result.json").read_text())["cost"] == 80


def test_bad_config_is_refused_with_the_choices():
    with pytest.raises(EvoregError, match="fashion-mnist"):
        evoreg.make_problem("mnist-weights", dataset="fashion_mnist")
    with pytest.raises(EvoregError, match="error-rate"):
        evoreg.make_problem("mnist-weights", loss="errors")
    with pytest.raises(EvoregError, match="batch_size"):
        evoreg.make_problem("mnist-weights", batch_size=0)
    with pytest.raises(EvoregError, match="mlp-digits"):
        evoreg.make_problem("mnist-weights", model="mlp92k")  # 28x28 model on 8x8 digits


def test_batch_size_from_the_command_line_is_an_int_or_full():
    config = evoreg.config.make_config(
        evoreg.problems.mnist_weights.Config, "mnist-weights", {"batch_size": "64"}
    )
    assert config.batch_size == 64
    config = evoreg.config.make_config(
        evoreg.problems.mnist_weights.Config, "mnist-weights", {"batch_size": "full"}
    )
    assert config.batch_size == "full"


def test_missing_files_name_the_four_files_and_the_folder(tmp_path):
    with pytest.raises(EvoregError) as error:
        evoreg.make_problem("mnist-weights", dataset="kmnist", data_root=str(tmp_path))
    message = str(error.value)
    for name in FILES:
        assert f"{name}.gz" in message
    assert str(tmp_path / "KMNIST" / "raw") in message and "download=True" in message


def test_fashion_mnist_message_points_at_the_debian_package(tmp_path, monkeypatch):
    monkeypatch.setitem(datasets.SYSTEM_DIRS, "fashion-mnist", [tmp_path / "nowhere"])
    with pytest.raises(EvoregError, match="apt-get install dataset-fashion-mnist"):
        datasets.load("fashion-mnist", str(tmp_path / "root"))


def test_idx_files_read_from_torchvision_layout_and_system_folder(tmp_path, monkeypatch):
    _fake_mnist(tmp_path / "root" / "MNIST" / "raw")
    problem = evoreg.make_problem("mnist-weights", dataset="mnist",
                                  data_root=str(tmp_path / "root"), batch_size=8)
    assert problem.model_name == "mlp92k" and problem.space.dim == 92234
    assert len(problem.splits["train"][1]) == 36 and len(problem.splits["test"][1]) == 10
    start = Population(problem.space.initial().unsqueeze(0))
    assert problem.evaluate(start).losses.isfinite().all()

    system = tmp_path / "usr-share-datasets-fashion-mnist"
    _fake_mnist(system)
    monkeypatch.setitem(datasets.SYSTEM_DIRS, "fashion-mnist", [system])
    data = datasets.load("fashion-mnist", str(tmp_path / "empty-root"))
    assert data.source == str(system)  # read in place, nothing copied
    assert not (tmp_path / "empty-root").exists()
    assert data.train_images.shape == (40, 1, 28, 28) and data.train_images.max() <= 1.0


@pytest.mark.parametrize("optimizer, budget, config", [
    ("leea", 4000, {"popsize": 100, "sigma": 0.01}),
    ("goea", 1050, {"reevaluate_parent": True}),
])
def test_evolution_improves_the_network_on_digits(optimizer, budget, config):
    result = evoreg.run("mnist-weights", optimizer, budget=budget, seed=0,
                        problem_config={"batch_size": 128}, optimizer_config=config,
                        progress=False, plot=False)
    problem = evoreg.make_problem("mnist-weights", seed=evoreg.runner.derive_seeds(0)[0])
    before = problem.report(problem.space.initial())
    assert result.report["test_loss"] < 0.8 * before["test_loss"]
    assert result.report["test_accuracy"] > before["test_accuracy"] + 0.1


def test_config_choices_are_the_registered_data_sets_and_models():
    import typing

    from evoreg.problems import datasets, mnist_weights
    from evoreg.problems.models import MODELS

    hints = typing.get_type_hints(mnist_weights.Config)
    assert set(typing.get_args(hints["dataset"])) == set(datasets.DATASETS)
    assert set(typing.get_args(hints["model"])) == {"auto", *MODELS}
    with pytest.raises(EvoregError, match="did you mean 'fashion-mnist'"):
        evoreg.make_problem("mnist-weights", dataset="fasion-mnist")
