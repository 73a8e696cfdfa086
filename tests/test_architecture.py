"""The architecture problem (thesis ch. 7): mutations, weight inheritance, history, budget,
Lamarckian write-back and state as data. Digits only, tiny splits, one epoch."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import evoreg
from evoreg import EvoregError, checkpoint, statecodec
from evoreg.cli import main
from evoreg.problems.architecture import OPERATORS, flops_per_image

TINY = {"dataset": "digits", "train_size": 300, "val_size": 200, "epochs_per_eval": 1,
        "final_epochs": 1}


@pytest.fixture(scope="module")
def problem():
    return evoreg.make_problem("architecture", **TINY)


def parent_of(problem, blocks) -> dict:
    """A genome with ``blocks`` and distinct random weights (including BatchNorm statistics,
    so that copied running stats are told apart from fresh ones)."""
    net = problem.build(blocks)
    with torch.no_grad():
        for tensor in net.state_dict().values():
            if tensor.is_floating_point():
                tensor.copy_(torch.rand(tensor.shape, generator=torch.Generator().manual_seed(
                    tensor.numel())) + 2.0)
    return problem.genome(blocks, net)


def mutated(problem, parent, operator, want, seed=0):
    """The child of ``parent`` by ``operator`` whose blocks are ``want`` (positions are
    drawn, so seeds are tried until the wanted one comes up)."""
    for s in range(seed, seed + 200):
        child = problem.mutate(parent, np.random.default_rng(s), operator)
        if child["blocks"] == want:
            return child
    raise AssertionError(f"{operator} never gave {want}")


def same(child, parent, child_name, parent_name=None) -> bool:
    a, b = child["weights"][child_name], parent["weights"][parent_name or child_name]
    return a.shape == b.shape and torch.equal(a, b)


BLOCK_TENSORS = ["conv.weight", "bn.weight", "bn.bias", "bn.running_mean", "bn.running_var"]


def test_sample_is_one_stride_1_block_of_plain_data(problem):
    x = problem.space.sample(np.random.default_rng(3))
    assert len(x["blocks"]) == 1 and x["blocks"][0][2] == 1
    assert x["blocks"][0][0] in problem.config.channels and x["blocks"][0][1] in (1, 3, 5)
    assert statecodec.pickled_parts(statecodec.snapshot(x)) == []
    assert problem.describe(x).endswith(" | gap | fc10")


def test_change_kernel_reinitialises_only_that_kernel(problem):
    parent = parent_of(problem, ((32, 3, 1), (64, 3, 1)))
    child = mutated(problem, parent, "change_kernel", ((32, 3, 1), (64, 5, 1)))
    assert not same(child, parent, "blocks.1.conv.weight")
    for name in [f"blocks.0.{t}" for t in BLOCK_TENSORS] + [f"blocks.1.{t}" for t in
                                                            BLOCK_TENSORS[1:]]:
        assert same(child, parent, name), name
    assert same(child, parent, "fc.weight") and same(child, parent, "fc.bias")


def test_change_channels_reinitialises_the_block_and_the_next_kernel(problem):
    parent = parent_of(problem, ((32, 3, 1), (64, 3, 1), (64, 1, 1)))
    child = mutated(problem, parent, "add_channels", ((32, 3, 1), (96, 3, 1), (64, 1, 1)))
    for t in BLOCK_TENSORS:
        assert not same(child, parent, f"blocks.1.{t}")
        assert same(child, parent, f"blocks.0.{t}")
    assert not same(child, parent, "blocks.2.conv.weight")
    for t in BLOCK_TENSORS[1:]:
        assert same(child, parent, f"blocks.2.{t}")
    assert same(child, parent, "fc.weight")
    # Removing channels of the last block: the dense layer changes shape, so it is fresh.
    child = mutated(problem, parent, "remove_channels", ((32, 3, 1), (64, 3, 1), (32, 1, 1)))
    assert not same(child, parent, "blocks.2.conv.weight")
    assert child["weights"]["fc.weight"].shape == (10, 32)
    assert same(child, parent, "blocks.1.conv.weight") and same(child, parent, "fc.bias")


def test_add_block_shifts_the_later_blocks_and_reinitialises_the_next_kernel(problem):
    parent = parent_of(problem, ((32, 3, 1), (64, 3, 1)))
    for seed in range(400):
        child = problem.mutate(parent, np.random.default_rng(seed), "add_block")
        if child["blocks"][0] == (32, 3, 1) and child["blocks"][1][0] == 32:
            break  # new block at 1 keeps 32 channels: the next kernel's shape is unchanged
    else:
        raise AssertionError("no add_block at position 1 with 32 channels")
    assert child["blocks"][2] == (64, 3, 1) and child["blocks"][1][2] == 1
    for t in BLOCK_TENSORS:
        assert same(child, parent, f"blocks.0.{t}")
        assert not same(child, parent, f"blocks.1.{t}", f"blocks.0.{t}")
    # old block 1 is new block 2: its kernel has the same shape but the rule refreshes it
    assert child["weights"]["blocks.2.conv.weight"].shape == (
        parent["weights"]["blocks.1.conv.weight"].shape)
    assert not same(child, parent, "blocks.2.conv.weight", "blocks.1.conv.weight")
    for t in BLOCK_TENSORS[1:]:
        assert same(child, parent, f"blocks.2.{t}", f"blocks.1.{t}")
    assert same(child, parent, "fc.weight")


def test_remove_block_shifts_and_reinitialises_the_next_kernel(problem):
    parent = parent_of(problem, ((32, 3, 1), (32, 5, 2), (64, 3, 1)))
    child = mutated(problem, parent, "remove_block", ((32, 3, 1), (64, 3, 1)))
    for t in BLOCK_TENSORS:
        assert same(child, parent, f"blocks.0.{t}")
    assert not same(child, parent, "blocks.1.conv.weight", "blocks.2.conv.weight")
    for t in BLOCK_TENSORS[1:]:
        assert same(child, parent, f"blocks.1.{t}", f"blocks.2.{t}")
    assert same(child, parent, "fc.weight") and same(child, parent, "fc.bias")


def test_change_stride_keeps_every_tensor(problem):
    parent = parent_of(problem, ((32, 3, 1), (64, 3, 1)))
    child = mutated(problem, parent, "change_stride", ((32, 3, 2), (64, 3, 1)))
    for name in parent["weights"]:
        assert same(child, parent, name), name


def test_without_inheritance_every_tensor_is_fresh():
    problem = evoreg.make_problem("architecture", **TINY, inherit=False)
    parent = parent_of(problem, ((32, 3, 1), (64, 3, 1)))
    child = mutated(problem, parent, "change_stride", ((32, 3, 2), (64, 3, 1)))
    for name, tensor in parent["weights"].items():
        if tensor.is_floating_point() and name.endswith("weight"):
            assert not same(child, parent, name), name


def test_at_most_max_stride2_blocks(problem):
    full = parent_of(problem, ((16, 3, 2),) * 3 + ((16, 3, 1),))
    for seed in range(30):
        child = problem.mutate(full, np.random.default_rng(seed), "change_stride")
        assert child["blocks"][3] == (16, 3, 1)  # a 4th stride-2 block is redrawn
        assert sum(b[2] == 2 for b in child["blocks"]) == 2
    rng = np.random.default_rng(0)
    for _ in range(30):
        child = problem.mutate(full, rng)
        assert sum(b[2] == 2 for b in child["blocks"]) <= 3
    none = evoreg.make_problem("architecture", **TINY, max_stride2=0)
    with pytest.raises(EvoregError, match="no unseen valid mutation"):
        none.mutate(parent_of(none, ((16, 3, 1),)), rng, "change_stride")


def test_invalid_mutations_are_redrawn(problem):
    rng = np.random.default_rng(0)
    alone = parent_of(problem, ((16, 3, 1),))
    with pytest.raises(EvoregError, match="no unseen valid mutation"):
        problem.mutate(alone, rng, "remove_block")  # the only block stays
    with pytest.raises(EvoregError, match="no unseen valid mutation"):
        problem.mutate(alone, rng, "remove_channels")  # 16 is the smallest
    with pytest.raises(EvoregError, match="no unseen valid mutation"):
        problem.mutate(parent_of(problem, ((256, 3, 1),)), rng, "add_channels")
    for _ in range(30):  # drawn operators: an invalid one is redrawn, never returned
        child = problem.mutate(alone, rng)
        assert 1 <= len(child["blocks"]) <= 2 and child["blocks"] != alone["blocks"]


def test_mutation_frequencies_follow_the_thesis(problem):
    assert OPERATORS == {"add_block": 3, "remove_block": 3, "add_channels": 2,
                         "remove_channels": 2, "change_kernel": 2, "change_stride": 1}


def test_no_architecture_is_evaluated_twice():
    problem = evoreg.make_problem("architecture", **TINY)
    parent = parent_of(problem, ((32, 3, 1),))
    # Every kernel variant of the parent evaluated: change_kernel has nothing left to offer.
    problem.history |= {((32, 1, 1),), ((32, 5, 1),)}
    with pytest.raises(EvoregError, match="no unseen"):
        problem.mutate(parent, np.random.default_rng(0), "change_kernel")
    rng = np.random.default_rng(1)
    for _ in range(30):
        child = problem.mutate(parent, rng)
        assert child["blocks"] not in problem.history
        problem.history.add(child["blocks"])


def test_evaluate_costs_epochs_records_history_and_returns_trained_weights():
    problem = evoreg.make_problem("architecture", **{**TINY, "epochs_per_eval": 2})
    opt = evoreg.make_optimizer("random-search", problem.space, popsize=3, seed=0)
    pop = opt.ask()
    evaluation = problem.evaluate(pop)
    assert evaluation.cost == 3 * 2
    assert problem.budget_unit == "epochs"
    assert ((evaluation.losses <= 0) & (evaluation.losses >= -1)).all()
    asked = pop.rows(0, len(pop))
    for before, after in zip(asked, evaluation.candidates):
        assert after["blocks"] == before["blocks"]
        assert before["blocks"] in problem.history
        assert not torch.equal(after["weights"]["fc.weight"], before["weights"]["fc.weight"])
        assert after["weights"]["blocks.0.bn.num_batches_tracked"] > 0
    opt.tell(pop, evaluation)
    best = opt.recommend()  # the trained genome, not the asked one (Lamarckian)
    assert any(torch.equal(best["weights"]["fc.weight"], c["weights"]["fc.weight"])
               for c in evaluation.candidates)


def test_state_round_trips_as_data(problem):
    problem.history |= {((32, 3, 1), (64, 5, 2)), ((16, 1, 1),)}
    state = problem.state_dict()
    assert statecodec.pickled_parts(statecodec.snapshot(state)) == []
    back = checkpoint.loads(checkpoint.dumps(state))
    other = evoreg.make_problem("architecture", **TINY)
    other.load_state_dict(back)
    assert other.history == problem.history
    # a genome read back from a checkpoint is mutated and trained like the original
    genome = checkpoint.loads(checkpoint.dumps(parent_of(problem, ((32, 3, 1),))))
    assert statecodec.pickled_parts(statecodec.snapshot(genome)) == []
    child = other.mutate(genome, np.random.default_rng(0), "change_stride")
    assert child["blocks"] == ((32, 3, 2),)
    assert torch.equal(child["weights"]["fc.weight"], genome["weights"]["fc.weight"])


def test_report_and_flops(problem):
    x = parent_of(problem, ((16, 3, 1), (32, 1, 2)))
    report = problem.report(x)
    assert report["architecture"] == "c16k3s1-c32k1s2 | gap | fc10"
    # 8x8 grey: 64*16*9 + 16*32*16 (4x4 after stride 2) + 32*10
    assert report["flops_per_image"] == flops_per_image(((16, 3, 1), (32, 1, 2)), (1, 8, 8), 10)
    assert report["flops_per_image"] == 64 * 16 * 9 + 16 * 32 * 16 + 32 * 10
    assert report["parameters"] == 16 * 9 + 2 * 16 + 16 * 32 + 2 * 32 + 32 * 10 + 10
    assert 0 <= report["test_accuracy"] <= 1


def test_two_generations_on_the_command_line(tmp_path, capsys):
    out = tmp_path / "run"
    sets = [a for k, v in TINY.items() for a in ("--set", f"{k}={v}")]
    args = ["run", "architecture", "random-search", "--budget", "8", "--set", "popsize=4",
            "--out", str(out), *sets]
    assert main(args) == 0
    result = json.loads((out / "result.json").read_text())
    assert result["generations"] == 2 and result["cost"] == 8
    assert result["report"]["architecture"].endswith("| gap | fc10")


def test_sample_and_mutate_are_reproducible_from_the_rng(problem):
    def draw(seed):
        rng = np.random.default_rng(seed)
        return problem.space.mutate(problem.space.sample(rng), rng)

    a, b, c = draw(5), draw(5), draw(6)
    assert a["blocks"] == b["blocks"]
    assert all(torch.equal(a["weights"][k], b["weights"][k]) for k in a["weights"])
    assert not torch.equal(a["weights"]["fc.bias"], c["weights"]["fc.bias"])


def test_an_exhausted_neighbourhood_is_left_through_a_chain_of_mutations():
    """With two channel counts and one stride-2 block, every one-step neighbour of a parent
    can have been evaluated; the child is then two or more mutations away, still unseen."""
    from evoreg.problems.architecture import OPERATORS, mutate_blocks

    problem = evoreg.make_problem("architecture", dataset="digits", train_size=100,
                                  val_size=50, channels=(16, 32), max_stride2=1)
    rng = np.random.default_rng(0)
    parent = problem.space.sample(rng)
    blocks = tuple(parent["blocks"])
    problem.history.add(blocks)
    for operator in OPERATORS:
        for _ in range(200):
            drawn = mutate_blocks(blocks, operator, rng, (16, 32), 1)
            if drawn is not None:
                problem.history.add(drawn[0])
    child = problem.space.mutate(parent, rng)
    assert tuple(child["blocks"]) not in problem.history
