"""`evoreg analyze` on a finished tiny run (mnist-weights on digits)."""

import json

import pytest

from evoreg.cli import main


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "goea"
    status = main(["run", "mnist-weights", "goea", "--budget", "300", "--out", str(out),
                   "--set", "batch_size=full", "--set", "sigma=0.05", "--device", "cpu"])
    assert status == 0
    return out


def _result(path):
    assert path.with_suffix(".png").read_bytes()[:4] == b"\x89PNG"
    return json.loads(path.read_text())


def test_analyze_flatness_updates_angles(run_dir, capsys):
    assert main(["analyze", "flatness", str(run_dir), "--points", "4", "--limit", "200"]) == 0
    flat = _result(run_dir / "analysis" / "flatness.json")
    assert flat["directions"] == 5 and len(flat["loss_mean"]) == 4 and flat["images"] == 200
    assert flat["split"] == "test" and flat["at"] == "recommendation"
    result = json.loads((run_dir / "result.json").read_text())
    # the recommendation read back is the run's: same loss on the same split
    assert main(["analyze", "flatness", str(run_dir), "--points", "2", "--split", "train",
                 "--out", str(run_dir / "a2")]) == 0
    assert _result(run_dir / "a2" / "flatness.json")["loss_mean"][0] == pytest.approx(
        result["report"]["train_loss"], rel=1e-5)

    assert main(["analyze", "updates", str(run_dir), "--distances", "0.01,0.1",
                 "--samples", "8", "--limit", "200", "--at", "start"]) == 0
    sweep = _result(run_dir / "analysis" / "updates.json")
    assert [r["edit_distance"] for r in sweep["whole"]] == [0.01, 0.1]
    assert sweep["at"] == "start"

    assert main(["analyze", "angles", str(run_dir), "--samples", "12", "--limit", "200"]) == 0
    angles = _result(run_dir / "analysis" / "angles.json")
    assert angles["sigma"] == 0.05  # the run's own sigma
    assert angles["angles_all"]["count"] == 66

    assert main(["analyze", "sgd-angles", str(run_dir), "--batch-sizes", "1,32",
                 "--batches", "3", "--limit", "200"]) == 0
    sgd = _result(run_dir / "analysis" / "sgd-angles.json")
    assert [r["batch_size"] for r in sgd["batch_sizes"]] == [1, 32]
    assert "KS p" in capsys.readouterr().out


def test_analyze_cap(tmp_path):
    assert main(["analyze", "cap", "--dimensions", "10,100", "--angles", "45",
                 "--out", str(tmp_path)]) == 0
    cap = _result(tmp_path / "cap.json")
    assert cap["probability"][1][0] < 1e-3 < cap["probability"][0][0]


def test_analyze_refuses_bad_input(tmp_path, capsys):
    assert main(["analyze", "flatness", str(tmp_path)]) == 2
    assert "not a run directory" in capsys.readouterr().err
    assert main(["analyze", "cap", "--dimensions", "1"]) == 2
    assert main(["analyze", "cap", "--angles", "x"]) == 2


def test_analyze_refuses_unfinished_run(run_dir, tmp_path, capsys):
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    (unfinished / "run.json").write_text((run_dir / "run.json").read_text())
    assert main(["analyze", "angles", str(unfinished)]) == 2
    assert "has not finished" in capsys.readouterr().err


def test_analyze_robustness_and_transfer(run_dir, capsys):
    assert main(["analyze", "robustness", str(run_dir), "--rates", "0.1,0.5",
                 "--repeats", "2"]) == 0
    robust = _result(run_dir / "analysis" / "robustness.json")
    assert [r["rate"] for r in robust["corrupted"]] == [0.1, 0.5]
    assert robust["split"] == "test"
    assert main(["analyze", "transfer", str(run_dir), "--pretrain-steps", "20",
                 "--updates", "6", "--record-every", "3", "--continue-with", "goea,adam",
                 "--limit", "300"]) == 0
    transfer = _result(run_dir / "analysis" / "transfer.json")
    assert [r["continue_with"] for r in transfer["runs"]] == ["goea", "adam"]
    assert [t["update"] for t in transfer["runs"][0]["trace"]] == [0, 3, 6]
    assert "revealed classes" in capsys.readouterr().out
    assert main(["analyze", "transfer", str(run_dir), "--continue-with", "lbfgs"]) == 2
    assert main(["analyze", "transfer", str(run_dir), "--occluded", "11"]) == 2
    assert main(["analyze", "robustness", str(run_dir), "--rates", "1.0"]) == 2
