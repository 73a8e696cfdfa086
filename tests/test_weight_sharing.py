"""The weight-sharing problem (issue 13, section 2): the three sharing modes, the theta step
and which weights it moves, state round trips and resumed runs, random-search from Python and
the command line, the missing-data error. Two tasks built from scikit-learn's digits, tiny
training subsets and batches, single-threaded (small ops on a loaded 2-core CPU are 20x
slower with two threads)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

import evoreg
from evoreg import Categorical, EvoregError, Population, checkpoint, statecodec
from evoreg.cli import main
from evoreg.problems.weight_sharing import LAYERS

TINY = {"tasks": "digits,digits-inverted", "train_size": 30, "batch_size": 4,
        "theta_samples": 2}
N = 2 * len(LAYERS)  # T x L slots


ONE_TORCH_THREAD = True  # conftest.one_torch_thread


def make(**config):
    return evoreg.make_problem("weight-sharing", **{**TINY, **config})


def assignment(*per_task):
    """A row from each task's versions, layer by layer (slot t * L + l)."""
    return torch.tensor([v for route in per_task for v in route])


def test_the_space_has_t_times_l_slots_of_k_versions_or_size_1_in_the_baselines():
    assert make(versions=3).space == Categorical((3,) * N)
    assert make(sharing="full").space == Categorical((1,) * N)
    assert make(sharing="none").space == Categorical((1,) * N)


@pytest.mark.parametrize(("sharing", "groups"), [
    ("full", [[["digits", "digits-inverted"]]] * 4),
    ("none", [[["digits"], ["digits-inverted"]]] * 4),
])
def test_baselines_give_the_expected_sharing_structure(sharing, groups):
    problem = make(sharing=sharing)
    report = problem.report(torch.zeros(N, dtype=torch.long))
    assert list(report["sharing"].values()) == groups
    assert report["distinct_weights"] == 4 * len(groups[0])
    assert set(report["test_error_per_task"]) == {"digits", "digits-inverted"}
    assert 0 <= report["test_error"] <= 1
    assert report["test_accuracy"] == pytest.approx(1 - report["test_error"])


def test_learned_sharing_follows_the_assignment():
    problem = make()
    x = assignment((0, 1, 2, 0), (0, 2, 2, 1))
    report = problem.report(x)
    assert report["sharing"] == {
        "conv1": [["digits", "digits-inverted"]],
        "conv2": [["digits"], ["digits-inverted"]],
        "conv3": [["digits", "digits-inverted"]],
        "dense": [["digits"], ["digits-inverted"]],
    }
    assert report["distinct_weights_per_layer"] == {"conv1": 1, "conv2": 2, "conv3": 1,
                                                    "dense": 2}
    a, b = problem.network(x, 0), problem.network(x, 1)
    assert a["conv1.weight"].data_ptr() == b["conv1.weight"].data_ptr()
    assert not torch.equal(a["conv2.weight"], b["conv2.weight"])


def test_full_sharing_shares_one_tensor_and_no_sharing_keeps_distinct_ones():
    x = torch.zeros(N, dtype=torch.long)
    full, none = make(sharing="full"), make(sharing="none")
    for problem in (full, none):
        problem.evaluate(Population(x.repeat(3, 1)))
    for key in ("conv1.weight", "conv2.bn_bias", "dense.weight", "dense.bias"):
        a, b = full.network(x, 0)[key], full.network(x, 1)[key]
        assert a.data_ptr() == b.data_ptr() and torch.equal(a, b)
        assert not torch.equal(none.network(x, 0)[key], none.network(x, 1)[key])
    assert full.params["conv1.weight"].shape[0] == 1
    assert none.params["conv1.weight"].shape[0] == 2
    # heads are never shared
    assert full.network(x, 0)["head.weight"].data_ptr() != \
        full.network(x, 1)["head.weight"].data_ptr()


def test_losses_are_one_per_assignment_finite_and_cost_one_iteration():
    problem = make()
    rows = torch.randint(0, 3, (5, N), generator=torch.Generator().manual_seed(0))
    evaluation = problem.evaluate(Population(rows))
    assert evaluation.losses.shape == (5,)
    assert torch.isfinite(evaluation.losses).all() and evaluation.cost == 1
    assert evaluation.info["theta_loss"] > 0 and problem.iterations == 1
    # the same assignment twice scores the same (one batch for the whole population)
    twice = problem.evaluate(Population(torch.stack([rows[0], rows[0]]))).losses
    assert twice[0] == twice[1]


def test_scoring_alone_changes_no_weight_or_statistic():
    problem = make()
    before = problem.state_dict()
    rows = torch.randint(0, 3, (4, N), generator=torch.Generator().manual_seed(1))
    problem.score(problem.routes(rows), problem._next_batch())
    for name, tensor in problem.params.items():
        assert torch.equal(tensor, before["theta"][name])
    for name, tensor in problem.buffers.items():
        assert torch.equal(tensor, before["buffers"][name])


def test_the_theta_step_moves_only_what_the_first_theta_samples_rows_use():
    problem = make(theta_samples=2)
    before = {k: v.detach().clone() for k, v in problem.params.items()}
    used = assignment((0,) * 4, (1,) * 4)  # digits on version 0, inverted on version 1
    unused = assignment((2,) * 4, (2,) * 4)
    problem.evaluate(Population(torch.stack([used, used, unused, unused])))
    for name in ("conv1.weight", "conv3.bn_weight", "dense.weight", "dense.bias"):
        now = problem.params[name]
        assert not torch.equal(now[0], before[name][0]), name
        assert not torch.equal(now[1], before[name][1]), name
        assert torch.equal(now[2], before[name][2]), name  # only rows 2 and 3 use it
    assert not torch.equal(problem.params["head0.weight"], before["head0.weight"])
    means = problem.buffers["conv1.running_mean"]
    assert means[0].abs().sum() > 0 and means[2].abs().sum() == 0


def test_state_round_trip_resumes_identically():
    rows = torch.randint(0, 3, (3, 3, N), generator=torch.Generator().manual_seed(2))
    first = make(seed=5)
    first.evaluate(Population(rows[0]))
    state = checkpoint.loads(checkpoint.dumps(first.state_dict()))
    assert statecodec.pickled_parts(statecodec.snapshot(state)) == []
    resumed = make(seed=9)  # another seed: everything must come from the state
    resumed.load_state_dict(state)
    for pop in rows[1:]:
        assert torch.equal(resumed.evaluate(Population(pop)).losses,
                           first.evaluate(Population(pop)).losses)
    for name, tensor in first.params.items():
        assert torch.equal(resumed.params[name], tensor)
    assert resumed.report(rows[0, 0]) == first.report(rows[0, 0])


def test_random_search_runs_and_a_resumed_run_matches_a_straight_one(tmp_path):
    common = dict(problem_config=TINY, optimizer_config={"popsize": 3}, seed=1,
                  progress=False, plot=False, checkpoint_every=1)
    straight = evoreg.run("weight-sharing", "random-search", budget=4, **common)
    assert straight.cost == 4 and len(straight.log) == 4
    assert set(straight.report["sharing"]) == set(LAYERS)
    evoreg.run("weight-sharing", "random-search", budget=2, out_dir=tmp_path, **common)
    resumed = evoreg.run("weight-sharing", "random-search", budget=4, out_dir=tmp_path,
                         resume=True, **common)
    assert [r["loss_min"] for r in resumed.log] == [r["loss_min"] for r in straight.log]
    assert resumed.report == straight.report


def test_random_search_from_the_command_line(tmp_path):
    out = tmp_path / "run"
    sets = [a for k, v in TINY.items() for a in ("--set", f"{k}={v}")]
    assert main(["run", "weight-sharing", "random-search", "--budget", "2", "--set",
                 "popsize=2", "--set", "sharing=learned", "--out", str(out), *sets]) == 0
    result = json.loads((out / "result.json").read_text())
    assert result["cost"] == 2 and result["budget_unit"] == "iterations"
    assert 0 <= result["report"]["test_error"] <= 1


@pytest.mark.parametrize(("task", "files"), [
    ("kmnist", "train-images-idx3-ubyte.gz"),
    ("emnist-letters", "emnist-letters-train-images-idx3-ubyte"),
])
def test_missing_data_is_one_line_naming_files_and_the_download_flag(tmp_path, task, files):
    with pytest.raises(EvoregError) as error:
        make(tasks=f"digits,{task}", data_root=str(tmp_path))
    message = str(error.value)
    assert "\n" not in message and files in message and "download=True" in message
    assert str(tmp_path) in message


def test_config_refuses_unknown_or_repeated_tasks():
    with pytest.raises(EvoregError, match="emnist-letters"):
        make(tasks="digits,emnist_letters")
    with pytest.raises(EvoregError, match="distinct"):
        make(tasks="digits,digits")


def test_info_states_the_offline_default_and_the_thesis_tasks(capsys):
    assert main(["info", "weight-sharing"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "digits,fashion-mnist" in text and "emnist-digits,emnist-letters,kmnist" in text
    assert "iterations" in text


def _cli(out, budget: int) -> list[str]:
    sets = [a for k, v in TINY.items() for a in ("--set", f"{k}={v}")]
    return [sys.executable, "-m", "evoreg", "run", "weight-sharing", "nes", "--budget",
            str(budget), "--seed", "3", "--checkpoint-every", "1", "--out",
            str(out), *sets]


def _final(out) -> tuple[list[float], dict]:
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    result = json.loads((out / "result.json").read_text())
    return [r["loss_min"] for r in log], result["report"]


def test_nes_from_the_command_line_killed_and_resumed_ends_like_a_straight_run(
        tmp_path, kill_mid_run):
    """The learned sharing run as a user types it; theta and Adam's moments live in the
    problem's state, so kill -9 and --resume must give the straight run's log and report."""
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    subprocess.run(_cli(straight, 60), check=True, capture_output=True, timeout=300)
    losses, report = _final(straight)
    assert len(losses) == 60 and 0 <= report["test_error"] <= 1
    assert report["distinct_weights"] >= len(LAYERS)
    kill_mid_run(_cli(killed, 60), killed / "log.jsonl", 5, 120)
    assert not (killed / "result.json").exists()
    subprocess.run([*_cli(killed, 60), "--resume"], check=True, capture_output=True,
                   timeout=300)
    assert _final(killed) == (losses, report)
