"""The architecture problem's categorical encoding (issue 12, section 3): decode/encode,
absent slots, the stride-2 repair, fresh reproducible weights, and searches by ng:* and
random-search from the command line. Digits only, tiny splits, one epoch."""

from __future__ import annotations

import json

import pytest
import torch

import evoreg
from evoreg import Categorical, EvoregError, Population, checkpoint, statecodec
from evoreg.cli import main
from evoreg.problems.architecture import SLOT, decode, encode

TINY = {"dataset": "digits", "train_size": 300, "val_size": 200, "epochs_per_eval": 1,
        "final_epochs": 1, "encoding": "categorical", "max_blocks": 3}
CHANNELS = (16, 32, 64, 96, 128, 192, 256)


@pytest.fixture(scope="module")
def problem():
    return evoreg.make_problem("architecture", **TINY)


def test_the_space_is_max_blocks_slots_of_present_channels_kernel_stride(problem):
    assert isinstance(problem.space, Categorical)
    assert SLOT == ("present", "channels", "kernel", "stride")
    assert problem.space.sizes == (2, 7, 3, 2) * 3


@pytest.mark.parametrize("blocks", [
    ((16, 1, 1),),
    ((32, 3, 1), (64, 5, 2)),
    ((256, 5, 2), (16, 3, 2), (96, 1, 1)),
])
def test_encode_decode_round_trip(problem, blocks):
    row = problem.encode(blocks)
    assert row.shape == (12,) and row.dtype == torch.int64
    problem.space.validate(row[None], 1)  # a valid candidate of the space
    assert problem.decode(row) == blocks
    assert decode(encode(blocks, CHANNELS, 8), CHANNELS, 3) == blocks


def test_absent_slots_are_skipped_whatever_their_other_choices():
    row = [0, 6, 2, 1,   1, 1, 1, 0,   0, 3, 0, 1,   1, 2, 2, 1,   0, 0, 0, 0]
    assert decode(row, CHANNELS, 3) == ((32, 3, 1), (64, 5, 2))
    assert decode([0, 6, 2, 1] * 5, CHANNELS, 3) == ()


def test_stride2_blocks_beyond_max_stride2_become_stride_1():
    strided = [1, 0, 1, 1] * 5  # five c16k3s2 blocks
    assert decode(strided, CHANNELS, 3) == ((16, 3, 2),) * 3 + ((16, 3, 1),) * 2
    assert decode(strided, CHANNELS, 0) == ((16, 3, 1),) * 5


def test_encode_refuses_what_the_space_cannot_hold():
    with pytest.raises(EvoregError, match="max_blocks=1"):
        encode(((16, 3, 1), (32, 3, 1)), CHANNELS, 1)
    with pytest.raises(EvoregError, match="outside"):
        encode(((17, 3, 1),), CHANNELS, 2)


def test_fresh_weights_are_reproducible_and_history_is_recorded():
    def losses(seed):
        problem = evoreg.make_problem("architecture", **TINY, seed=seed)
        rows = torch.stack([problem.encode(((32, 3, 1), (64, 3, 2))),
                            problem.encode(((16, 5, 1),)),
                            torch.zeros(12, dtype=torch.long)])  # all absent
        evaluation = problem.evaluate(Population(rows))
        assert evaluation.cost == 3 and evaluation.candidates is None
        assert evaluation.info["architectures_seen"] == 2
        assert problem.history == {((32, 3, 1), (64, 3, 2)), ((16, 5, 1),)}
        return evaluation.losses

    a, b = losses(0), losses(0)
    assert torch.equal(a, b)  # fresh problems, same seed: same init, same minibatches
    assert a[2] == 0.0  # no blocks: the worst loss
    assert ((a <= 0) & (a >= -1)).all()


def test_report_takes_a_categorical_vector(problem):
    report = problem.report(problem.encode(((16, 3, 1), (32, 1, 2))))
    assert report["architecture"] == "c16k3s1-c32k1s2 | gap | fc10"
    assert report["trained_epochs"] == 2 and report["final_epochs"] == 1
    assert 0 <= report["test_accuracy"] <= 1
    with pytest.raises(EvoregError, match="all-absent"):
        problem.report(torch.zeros(12, dtype=torch.long))


@pytest.mark.parametrize(("optimizer", "popsize", "generations"),
                         [("ng:OnePlusOne", 1, 4), ("random-search", 2, 2)])
def test_searched_from_the_command_line(tmp_path, optimizer, popsize, generations):
    out = tmp_path / "run"
    sets = [a for k, v in TINY.items() for a in ("--set", f"{k}={v}")]
    assert main(["run", "architecture", optimizer, "--budget", "4", "--set",
                 f"popsize={popsize}", "--out", str(out), *sets]) == 0
    result = json.loads((out / "result.json").read_text())
    assert result["cost"] == 4 and result["generations"] == generations
    assert result["report"]["architecture"].endswith("| gap | fc10")


def test_info_says_the_categorical_encoding_does_not_inherit_weights(capsys):
    assert main(["info", "architecture"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "encoding=categorical" in text
    assert "Weights are NOT inherited in this encoding" in text


def test_a_resumed_problem_draws_the_same_fresh_weights():
    first = evoreg.make_problem("architecture", **TINY)
    rows = [first.encode(((32, 3, 1),))[None], first.encode(((16, 1, 2), (16, 3, 1)))[None]]
    first.evaluate(Population(rows[0]))
    state = checkpoint.loads(checkpoint.dumps(first.state_dict()))
    assert statecodec.pickled_parts(statecodec.snapshot(state)) == []
    resumed = evoreg.make_problem("architecture", **TINY)
    resumed.load_state_dict(state)
    assert resumed.history == {((32, 3, 1),)}
    # the init seed and minibatches continue from the saved random state, not from the start
    assert torch.equal(resumed.evaluate(Population(rows[1])).losses,
                       first.evaluate(Population(rows[1])).losses)
