"""Each GO-EA analysis on a tiny network: mnist-weights' 2,410-weight MLP on digits."""

import pytest
import torch

import evoreg
from evoreg.analysis.angles import sgd_angles, update_angles
from evoreg.analysis.flatness import flatness_profile, random_direction
from evoreg.analysis.network import Subject, angles_degrees, pairwise_angles
from evoreg.analysis.updates import update_sweep


@pytest.fixture(scope="module")
def problem():
    return evoreg.make_problem("mnist-weights", seed=0, device="cpu", dataset="digits")


@pytest.fixture(scope="module")
def subject(problem):
    return Subject.from_problem(problem, "train", limit=400)


@pytest.fixture(scope="module")
def trained(problem, subject):
    """Weights after 150 full-batch gradient steps (Adam): near an optimum of this subset."""
    x = torch.nn.Parameter(problem.space.initial().clone())
    adam = torch.optim.Adam([x], lr=0.02)
    for _ in range(150):
        adam.zero_grad()
        x.grad = subject.gradient(x.detach())
        adam.step()
    return x.detach()


def test_subject_scores_match_problem_report(problem):
    x = problem.space.initial()
    subject = Subject.from_problem(problem, "test")
    loss, accuracy = subject.scores(x)
    report = problem.report(x)
    assert float(loss[0]) == pytest.approx(report["test_loss"], rel=1e-5)
    assert float(accuracy[0]) == pytest.approx(report["test_accuracy"])


def test_gradient_matches_finite_difference(subject, problem):
    x = problem.space.initial()
    g = subject.gradient(x)
    direction = torch.zeros_like(x)
    direction[int(g.abs().argmax())] = 1e-2
    up, _ = subject.scores(x + direction)
    down, _ = subject.scores(x - direction)
    assert float((up - down)[0] / 2e-2) == pytest.approx(float(g[int(g.abs().argmax())]),
                                                          rel=0.05)


def test_angle_helpers():
    a = torch.tensor([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    assert angles_degrees(a[0], a[1]).item() == pytest.approx(90.0)
    assert pairwise_angles(a).tolist() == pytest.approx([90.0, 45.0, 45.0])


def test_update_angles_start_and_optimum(subject, problem, trained):
    start = update_angles(subject, problem.space.initial(), samples=40, sigma=0.05, seed=1)
    optimum = update_angles(subject, trained, samples=40, sigma=0.05, seed=1)
    assert optimum["base_loss"] < start["base_loss"] - 0.5
    for result in (start, optimum):
        assert result["angles_all"]["count"] == 40 * 39 // 2
        # 2,410 dimensions: random directions are nearly orthogonal
        assert 80 < result["angles_all"]["mean"] < 100
        assert sum(result["histogram_all"]) == 40 * 39 // 2
        if result["improving"] >= 2:
            assert 0 <= result["ks"]["p_value"] <= 1
        # to first order, an improving update lies within 90 degrees of -gradient
        if result["improving"]:
            assert result["angle_to_negative_gradient_improving"]["mean"] < 90
    # at a random start, many more random updates improve than at an optimum
    assert start["improving_share"] > optimum["improving_share"]


def test_sgd_angles_shrink_with_batch_size(subject, trained):
    result = sgd_angles(subject, trained, batch_sizes=[1, 16, 400], batches=6, seed=0)
    means = [row["mean"] for row in result["batch_sizes"]]
    assert means[0] > means[1] > means[2]
    assert means[2] == pytest.approx(0.0, abs=1e-2)  # the whole subset is the full batch


def test_update_sweep_probabilities_and_layers(subject, problem, trained):
    start = update_sweep(subject, problem.space.initial(), distances=[0.001, 0.1], samples=30,
                         layers="each", seed=2)
    optimum = update_sweep(subject, trained, distances=[0.0001, 0.1], samples=30, seed=2)
    for result in (start, optimum):
        for row in result["whole"]:
            total = row["p_beneficial"] + row["p_neutral"] + row["p_deleterious"]
            assert total == pytest.approx(1.0)
        assert "layers" not in result or len(result["layers"]) == 4  # 2 weights, 2 biases
    assert set(start["layers"]) == {"1.weight", "1.bias", "3.weight", "3.bias"}
    # tiny updates are mostly neutral; large ones at an optimum are mostly harmful
    assert optimum["whole"][0]["p_neutral"] > 0.5
    assert optimum["whole"][1]["p_deleterious"] > 0.8
    assert optimum["whole"][1]["loss_change_deleterious"]["mean"] > 0
    assert start["whole"][1]["p_beneficial"] > optimum["whole"][1]["p_beneficial"]


def test_flatness_profile(subject, trained):
    result = flatness_profile(subject, trained, max_step=1.0, points=5, directions=5, seed=0)
    losses = result["loss_mean"]
    assert len(result["loss"]) == 5 and len(losses) == 5
    assert losses[0] == pytest.approx(subject.scores(trained)[0].item(), rel=1e-5)
    assert result["loss_sem"][0] == pytest.approx(0.0, abs=1e-6)  # step 0: the same point
    assert losses[-1] > losses[0]  # a whole filter norm away, the loss is worse
    assert result["accuracy_mean"][-1] < result["accuracy_mean"][0]
    with pytest.raises(ValueError):
        flatness_profile(subject, trained, directions=4)


def test_filter_normalised_direction(subject, trained):
    direction = random_direction(subject, trained, torch.Generator().manual_seed(0))
    params = dict(subject.model.named_parameters())
    for name, start, stop in subject.layers():
        d = direction[start:stop].reshape(params[name].shape)
        w = trained[start:stop].reshape(params[name].shape)
        if d.dim() == 1:
            assert (d == 0).all()  # biases are left out
        else:
            assert torch.allclose(d.norm(dim=1), w.norm(dim=1), rtol=1e-4)


def test_plots_write_pngs(tmp_path, subject, trained):
    from evoreg.analysis.angles import plot_update_angles
    from evoreg.analysis.flatness import plot_flatness
    from evoreg.analysis.updates import plot_update_sweep

    plot_flatness(flatness_profile(subject, trained, points=3, directions=5), tmp_path / "f.png")
    plot_update_sweep(update_sweep(subject, trained, distances=[0.01, 0.1], samples=5),
                      tmp_path / "u.png")
    plot_update_angles(update_angles(subject, trained, samples=10), tmp_path / "a.png")
    for name in ("f", "u", "a"):
        assert (tmp_path / f"{name}.png").read_bytes()[:4] == b"\x89PNG"


def test_class_occlusion_transfer(problem, subject, trained, tmp_path):
    from evoreg.analysis.transfer import (
        class_occlusion_transfer,
        corruption_robustness,
        only,
        plot_transfer,
    )

    test = Subject.from_problem(problem, "test")
    results = [class_occlusion_transfer(subject, test, problem.space.initial(), occluded=[8, 9],
                                        pretrain_steps=60, continue_with=method, updates=30,
                                        record_every=10, sigma=0.02, learning_rate=0.05,
                                        seed=0)
               for method in ("goea", "sgd")]
    for result in results:
        trace = result["trace"]
        assert [t["update"] for t in trace] == [0, 10, 20, 30]
        # never trained on 8 and 9: the pretrained network gets them (nearly) all wrong
        assert trace[0]["revealed_accuracy"] < 0.1
        assert trace[0]["other_accuracy"] > 0.6
        assert trace[-1]["revealed_accuracy"] > trace[0]["revealed_accuracy"]
        rates = [row["rate"] for row in result["robustness_final"]["corrupted"]]
        assert rates == [0.1, 0.25, 0.5]
    assert results[0]["trace"][0] == results[1]["trace"][0]  # the same pretrained start
    # corruption hurts more as more pixels are dropped
    robustness = corruption_robustness(test, trained, rates=[0.0, 0.9])
    assert robustness["corrupted"][0]["accuracy"] == pytest.approx(robustness["clean_accuracy"])
    assert robustness["corrupted"][1]["accuracy"] < robustness["clean_accuracy"] - 0.1
    assert len(only(test, [8, 9]).labels) < len(test.labels)
    plot_transfer(results, tmp_path / "t.png")
    assert (tmp_path / "t.png").read_bytes()[:4] == b"\x89PNG"
