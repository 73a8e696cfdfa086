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
    def choices(hint):  # Literal[...] | None: the preset's choice when None
        return {a for arg in typing.get_args(hint) for a in typing.get_args(arg)}

    assert choices(hints["dataset"]) == set(datasets.DATASETS)
    assert choices(hints["model"]) == {"auto", *MODELS}
    with pytest.raises(EvoregError, match="did you mean 'fashion-mnist'"):
        evoreg.make_problem("mnist-weights", dataset="fasion-mnist")


# ------------------------------------------------------------- GO-EA's reference network
def test_reference_convnet_keeps_9854_weights_and_adds_spectral_norm_buffers():
    from evoreg.problems.models import build_model, state_parameter_mask, state_vector

    model = build_model("convnet9854-sn")
    assert sum(p.numel() for p in model.parameters()) == 9854
    state = model.state_dict()
    for layer in ("1", "5", "9", "12", "16"):  # conv1-4 and the 196-24 layer, as the reference
        assert {f"{layer}.weight_orig", f"{layer}.weight_u", f"{layer}.weight_v"} <= set(state)
    assert "18.weight" in state and "18.weight_u" not in state  # the last layer is plain
    assert len(state_vector(model)) == 9854 + 697 and int(state_parameter_mask(model).sum()) == 9854
    dropouts = [m.p for m in build_model("convnet9854-sn", dropout=0.1, input_dropout=0.2)
                if isinstance(m, torch.nn.Dropout)]
    assert dropouts == [0.2, 0.1, 0.1, 0.1, 0.1]


@pytest.fixture
def fake_mnist_root(tmp_path):
    _fake_mnist(tmp_path / "root" / "MNIST" / "raw")
    return str(tmp_path / "root")


def test_spectral_norm_network_is_scored_in_train_mode_and_is_scale_invariant(fake_mnist_root):
    from evoreg.problems.models import build_model, load_state_vector_

    problem = evoreg.make_problem("mnist-weights", dataset="mnist", model="convnet9854-sn",
                                  data_root=fake_mnist_root, batch_size="full", seed=0)
    assert problem.space.dim == 10551 and problem.init == "torch"
    x = problem.space.initial()
    before = x.clone()
    loss = float(problem.evaluate(Population(x[None])).losses[0])
    assert torch.equal(x, before)  # power iteration ran on a copy
    # the reference's forward: the state loaded, train mode, one pass over the batch
    model = load_state_vector_(build_model("convnet9854-sn").train(), x)
    images, labels = problem.splits["train"]
    with torch.no_grad():
        expected = float(F.cross_entropy(model(images), labels))
    assert loss == pytest.approx(expected, rel=1e-5)
    # spectral norm: doubling conv2's weight_orig (buffers unchanged) leaves the loss alone,
    # doubling the plain last layer does not
    state = build_model("convnet9854-sn").state_dict()
    offsets, offset = {}, 0
    for name, tensor in state.items():
        offsets[name] = (offset, offset + tensor.numel())
        offset += tensor.numel()
    scaled, last = x.clone(), x.clone()
    scaled[slice(*offsets["5.weight_orig"])] *= 2
    last[slice(*offsets["18.weight"])] *= 2
    losses = problem.evaluate(Population(torch.stack([x, scaled, last]))).losses
    assert float(losses[1]) == pytest.approx(float(losses[0]), rel=1e-4)
    assert abs(float(losses[2]) - float(losses[0])) > 1e-3


def test_goea_perturbs_every_state_entry_including_the_buffers(fake_mnist_root):
    from evoreg.problems.models import build_model, state_parameter_mask

    problem = evoreg.make_problem("mnist-weights", dataset="mnist", model="convnet9854-sn",
                                  data_root=fake_mnist_root, batch_size="full", seed=0)
    opt = evoreg.make_optimizer("goea", problem.space, popsize=4, seed=0, noise_table=False)
    pop = opt.ask()
    steps = pop.values[1:] - pop.values[0]
    buffers = ~state_parameter_mask(build_model("convnet9854-sn"))
    assert int(buffers.sum()) == 697
    assert (steps[:, buffers] != 0).all() and (steps[:, ~buffers] != 0).all()
    assert steps[:, buffers].std() == pytest.approx(0.01, rel=0.1)
    ev = problem.evaluate(pop)
    assert ev.losses.isfinite().all() and ev.cost == 5


def test_adam_gets_gradients_of_the_parameters_only(fake_mnist_root):
    from evoreg.problems.models import build_model, state_parameter_mask

    problem = evoreg.make_problem("mnist-weights", dataset="mnist", model="convnet9854-sn",
                                  data_root=fake_mnist_root, batch_size="full", seed=0)
    ev = problem.evaluate(Population(problem.space.initial()[None]), gradients=True)
    mask = state_parameter_mask(build_model("convnet9854-sn"))
    assert (ev.gradients[0, ~mask] == 0).all() and ev.gradients[0, mask].abs().sum() > 0


def test_preset_paper_is_the_reference_setting(fake_mnist_root):
    problem = evoreg.make_problem("mnist-weights", preset="paper", data_root=fake_mnist_root,
                                  seed=0)
    c = problem.config
    assert (c.dataset, problem.model_name, c.batch_size, problem.init) == (
        "mnist", "convnet9854-sn", "full", "torch")
    assert (c.dropout, c.input_dropout, c.forward_batch) == (0.1, 0.1, 32)
    assert problem.train_size == 40  # all the training images, validation share included
    explicit = evoreg.make_problem("mnist-weights", preset="paper", data_root=fake_mnist_root,
                                   dropout=0.0, input_dropout=0.0, train_on="train")
    assert explicit.config.dropout == 0.0 and explicit.train_size == 36
    with pytest.raises(EvoregError, match="init='torch' only"):
        evoreg.make_problem("mnist-weights", preset="paper", data_root=fake_mnist_root,
                            init="glorot")
    # goea's defaults are the reference's: the parent and N children every generation
    opt = evoreg.make_optimizer("goea", problem.space, seed=0)
    pop = opt.ask()
    assert len(pop) == 21
    ev = problem.evaluate(pop)
    assert ev.cost == 21 and ev.losses.isfinite().all()
    opt.tell(pop, ev.losses)
