"""Run directories received from someone else: nothing in them runs code, damage is refused
in one line, one process writes at a time, interrupts save, and nothing is lost."""

from __future__ import annotations

import json
import os
import pickle
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import evoreg
from evoreg import EvoregError
from evoreg.checkpoint import exclusive_lock, load_checkpoint, save_checkpoint
from evoreg.cli import main
from evoreg.statecodec import Pickled, pickled_parts, snapshot
from evoreg.testing import make as toy_optimizer
from evoreg.testing import toy_evaluation

HAS_NEVERGRAD = "ng:OnePlusOne" in evoreg.optimizers()


class _Payload:
    """What a hostile checkpoint would hold: unpickling it creates ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').close()",))


def _run(out: Path, optimizer: str = "random-search", budget: float = 64, **kwargs):
    return evoreg.run("sphere", optimizer, budget, seed=kwargs.pop("seed", 7), out_dir=out,
                      progress=False, plot=False, checkpoint_every=1, **kwargs)


def _cli_resume(out: Path, capsys, *extra: str, budget: str = "128") -> tuple[int, str]:
    status = main(["run", "sphere", "random-search", "--budget", budget, "--seed", "7",
                   "--out", str(out), "--resume", "--device", "cpu", *extra])
    return status, capsys.readouterr().err


def _one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


@pytest.fixture
def other_user(tmp_path, monkeypatch):
    """Switch to another user's key (EVOREG_CONFIG_DIR) inside a with block."""
    import contextlib

    @contextlib.contextmanager
    def as_other():
        before = os.environ["EVOREG_CONFIG_DIR"]
        monkeypatch.setenv("EVOREG_CONFIG_DIR", str(tmp_path / "other-user"))
        try:
            yield
        finally:
            monkeypatch.setenv("EVOREG_CONFIG_DIR", before)

    return as_other


# --------------------------------------------------------------------------- 1. no code
def test_a_torch_save_checkpoint_with_a_payload_is_refused_without_running(tmp_path, capsys):
    out, marker = tmp_path / "run", tmp_path / "ran"
    _run(out)
    torch.save({"optimizer": _Payload(marker)}, out / "checkpoint.pt")
    status, err = _cli_resume(out, capsys)
    assert status == 2
    assert "torch.save" in _one_line(err)
    assert not marker.exists()


def test_a_plain_pickle_checkpoint_is_refused_without_running(tmp_path, capsys):
    out, marker = tmp_path / "run", tmp_path / "ran"
    _run(out)
    (out / "checkpoint.pt").write_bytes(pickle.dumps(_Payload(marker)))
    status, err = _cli_resume(out, capsys)
    assert status == 2
    assert "not an evoreg checkpoint" in _one_line(err)
    assert not marker.exists()


def test_the_old_format_with_a_pickled_algorithm_blob_is_refused(tmp_path, capsys):
    out, marker = tmp_path / "run", tmp_path / "ran"
    _run(out)
    state = load_checkpoint(out / "checkpoint.pt")
    state["optimizer"]["algorithm"] = pickle.dumps(_Payload(marker))
    torch.save(state, out / "checkpoint.pt")  # what evoreg 0.1 wrote, with a payload inside
    status, err = _cli_resume(out, capsys)
    assert status == 2 and not marker.exists()
    _one_line(err)


def _plant_inner_payload(out: Path, marker: Path) -> None:
    """A checkpoint in evoreg's format whose algorithm state is a pickle with a payload."""
    state = load_checkpoint(out / "checkpoint.pt")
    state["optimizer"]["algorithm"] = Pickled(pickle.dumps(_Payload(marker)), trusted=True)
    save_checkpoint(state, out / "checkpoint.pt")


def test_an_inner_pickle_signed_by_another_user_is_refused_naming_the_flag(
    tmp_path, capsys, other_user
):
    out, marker = tmp_path / "run", tmp_path / "ran"
    _run(out)
    with other_user():
        _plant_inner_payload(out, marker)
    status, err = _cli_resume(out, capsys)
    line = _one_line(err)
    assert status == 2 and not marker.exists()
    assert "--trust-checkpoint" in line and "arbitrary code" in line
    # The user may still say they trust it, and then it is theirs to run.
    status, err = _cli_resume(out, capsys, "--trust-checkpoint")
    assert marker.exists()


def test_a_signature_copied_from_a_real_checkpoint_does_not_sign_another(
    tmp_path, capsys, other_user
):
    out, marker = tmp_path / "run", tmp_path / "ran"
    _run(out)
    save_checkpoint({"x": Pickled(pickle.dumps([1, 2]), trusted=True)}, tmp_path / "mine.pt")
    my_signature = (tmp_path / "mine.pt").read_bytes().split(b"\n")[2]
    with other_user():
        _plant_inner_payload(out, marker)
    lines = (out / "checkpoint.pt").read_bytes().split(b"\n", 3)
    lines[2] = my_signature
    (out / "checkpoint.pt").write_bytes(b"\n".join(lines))
    status, err = _cli_resume(out, capsys)
    assert status == 2 and not marker.exists()
    assert "--trust-checkpoint" in _one_line(err)


def test_bench_resume_refuses_a_planted_cell_checkpoint(tmp_path, capsys, other_user):
    config = tmp_path / "grid.toml"
    config.write_text('budget = 32\nseeds = [0]\ndevice = "cpu"\ncheckpoint_every = 1\n'
                      '[[problem]]\nname = "sphere"\n[[optimizer]]\nname = "random-search"\n')
    out, marker = tmp_path / "bench", tmp_path / "ran"
    assert main(["bench", str(config), "--out", str(out)]) == 0
    cell = out / "sphere" / "random-search" / "seed0"
    (cell / "result.json").unlink()  # so that --resume continues the cell
    with other_user():
        _plant_inner_payload(cell, marker)
    capsys.readouterr()
    assert main(["bench", str(config), "--out", str(out), "--resume"]) == 2
    assert "--trust-checkpoint" in _one_line(capsys.readouterr().err)
    assert not marker.exists()


def test_built_in_optimizers_save_data_only():
    """Every built-in but nevergrad's bridge checkpoints without a single pickle."""
    space = evoreg.Real(6)
    names = [n for n in evoreg.optimizers() if not n.startswith("ng:")]
    assert {"random-search", "goea", "leea", "atari-ga", "sgd", "adam"} <= set(names)
    for name in names:
        if not issubclass(evoreg.Real, evoreg.optimizers()[name].factory.spaces):
            # Genome-only optimizers (niching): on the conformance suite's toy genome.
            optimizer, genome = toy_optimizer(name)
            for _ in range(3):
                pop = optimizer.ask()
                optimizer.tell(pop, toy_evaluation(genome, pop.values))
            assert pickled_parts(snapshot(optimizer.state_dict())) == [], name
            continue
        optimizer = evoreg.make_optimizer(name, space, seed=0, popsize=8) if name not in (
            "sgd", "adam") else evoreg.make_optimizer(name, space, seed=0)
        for _ in range(3):
            pop = optimizer.ask()
            values = pop.rows(0, len(pop))
            losses = values.pow(2).sum(dim=1)
            optimizer.tell(pop, losses, gradients=2 * values if optimizer.needs_gradients
                           else None)
        state = optimizer.state_dict()
        assert pickled_parts(snapshot(state)) == [], name


@pytest.mark.skipif(not HAS_NEVERGRAD, reason="needs nevergrad")
def test_a_nevergrad_run_resumes_for_its_user_and_not_for_another(tmp_path, other_user):
    out, planned = tmp_path / "run", {"budget": 200}  # nevergrad's own, fixed for resumes
    _run(out, "ng:OnePlusOne", budget=40, optimizer_config=planned)
    assert pickled_parts(load_checkpoint(out / "checkpoint.pt"))  # signed, not data
    continued = _run(out, "ng:OnePlusOne", budget=80, resume=True, optimizer_config=planned)
    straight = _run(tmp_path / "straight", "ng:OnePlusOne", budget=80, optimizer_config=planned)
    assert continued.best_loss == straight.best_loss
    with other_user(), pytest.raises(EvoregError, match="--trust-checkpoint"):
        _run(out, "ng:OnePlusOne", budget=120, resume=True, optimizer_config=planned)
    with other_user():
        _run(out, "ng:OnePlusOne", budget=120, resume=True, optimizer_config=planned,
             trust_checkpoint=True)


# --------------------------------------------------------------------------- 2. integrity
@pytest.mark.parametrize("where", ["blobs", "manifest"])
def test_garbled_checkpoint_bytes_are_refused(tmp_path, capsys, where):
    out = tmp_path / "run"
    _run(out)
    data = bytearray((out / "checkpoint.pt").read_bytes())
    start = len(data) - 40 if where == "blobs" else data.index(b'"state"') + 12
    for i in range(14):
        data[start + i] ^= 0x5A
    (out / "checkpoint.pt").write_bytes(bytes(data))
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    status, err = _cli_resume(out, capsys)
    assert status == 2
    assert "checksum" in _one_line(err)
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before


@pytest.mark.parametrize("name", ["run.json", "checkpoint.pt", "result.json"])
@pytest.mark.parametrize("damage", ["empty", "truncated", "random"])
def test_damaged_run_files_give_one_line(tmp_path, capsys, name, damage):
    out = tmp_path / "run"
    _run(out)
    path = out / name
    data = path.read_bytes()
    path.write_bytes({"empty": b"", "truncated": data[: len(data) // 2],
                      "random": os.urandom(300)}[damage])
    # result.json is read when the run is already finished (same budget)
    status, err = _cli_resume(out, capsys, budget="64")
    assert status == 2, err
    _one_line(err)


def test_a_second_writer_is_refused(tmp_path, capsys):
    out = tmp_path / "run"
    _run(out)
    with exclusive_lock(out):  # as another process running in it would hold it
        status, err = _cli_resume(out, capsys)
    assert status == 2
    assert "in use by another evoreg" in _one_line(err)
    status, _ = _cli_resume(out, capsys)  # free again
    assert status == 0


def test_two_processes_on_one_directory_only_one_runs(tmp_path):
    out = tmp_path / "run"
    command = [sys.executable, "-m", "evoreg", "run", "sphere", "random-search", "--budget",
               "1e6", "--out", str(out), "--device", "cpu"]
    first = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 60
        while not (out / "log.jsonl").exists() and time.time() < deadline:
            time.sleep(0.05)
        second = subprocess.run([*command, "--resume"], capture_output=True, text=True,
                                timeout=60)
        assert second.returncode == 2
        assert "in use by another evoreg run" in _one_line(second.stderr)
    finally:
        first.kill()
        first.wait()


def test_resume_compares_with_the_checkpoint_even_without_run_json(tmp_path):
    out = tmp_path / "run"
    _run(out, seed=7)
    (out / "run.json").unlink()
    with pytest.raises(EvoregError, match=r"seed 7 -> 99"):
        _run(out, seed=99, budget=128, resume=True)
    with pytest.raises(EvoregError, match=r"optimizer_config .*popsize"):
        _run(out, budget=128, resume=True, optimizer_config={"popsize": 9})


def _strip(records: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "seconds"} for r in records]


def _records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_lines_after_the_checkpoint_are_moved_aside_and_rerun(tmp_path):
    out, straight = tmp_path / "run", tmp_path / "straight"
    _run(out, budget=64)
    early = (out / "checkpoint.pt").read_bytes()  # counts the first 64 / popsize lines
    counted = len((out / "log.jsonl").read_text().splitlines())
    _run(out, budget=128, resume=True)
    later_lines = (out / "log.jsonl").read_text().splitlines()
    (out / "checkpoint.pt").write_bytes(early)  # as if killed before the next checkpoint
    _run(out, budget=128, resume=True)
    _run(straight, budget=128)
    assert _strip(_records(out / "log.jsonl")) == _strip(_records(straight / "log.jsonl"))
    superseded = (out / "log.superseded.jsonl").read_text().splitlines()
    assert superseded == later_lines[counted:]


def test_a_damaged_log_line_before_the_checkpoints_count_is_refused(tmp_path, capsys):
    out = tmp_path / "run"
    _run(out)
    original = (out / "log.jsonl").read_text().splitlines(keepends=True)
    lines = [original[0], '{"generation": 2, "co\n', *original[2:]]
    (out / "log.jsonl").write_text("".join(lines))
    before = (out / "log.jsonl").read_bytes()
    status, err = _cli_resume(out, capsys)
    assert status == 2 and "line 2 of log.jsonl is damaged" in _one_line(err)
    assert (out / "log.jsonl").read_bytes() == before
    (out / "log.jsonl").write_text("".join(original[:1]))  # shorter than the checkpoint says
    status, err = _cli_resume(out, capsys)
    assert status == 2 and "holds 1 whole lines" in _one_line(err)


# --------------------------------------------------------------------------- 3. interrupts
@pytest.mark.parametrize(("signum", "status"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_saves_a_checkpoint_and_resume_ends_like_a_straight_run(
    tmp_path, signum, status
):
    out, budget = tmp_path / "run", "6000"
    command = [sys.executable, "-m", "evoreg", "run", "sphere", "random-search", "--budget",
               budget, "--seed", "3", "--out", str(out), "--device", "cpu"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               text=True)
    deadline = time.time() + 60
    log = out / "log.jsonl"
    while (not log.exists() or len(log.read_text().splitlines()) < 20) and \
            time.time() < deadline:
        time.sleep(0.02)
    process.send_signal(signum)
    _, err = process.communicate(timeout=60)
    assert process.returncode == status, err
    assert "checkpoint saved" in err.strip().splitlines()[-1]
    checkpoint = load_checkpoint(out / "checkpoint.pt")
    assert checkpoint["log_lines"] == len(log.read_text().splitlines())
    assert checkpoint["cost"] < 6000  # it stopped early (no default 30 s checkpoint yet)
    resumed = subprocess.run([*command, "--resume"], capture_output=True, text=True,
                             timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    straight = evoreg.run("sphere", "random-search", 6000, seed=3, progress=False,
                          out_dir=tmp_path / "straight", plot=False)
    result = json.loads((out / "result.json").read_text())
    assert result["best_loss"] == straight.best_loss
    assert _strip(_records(log)) == _strip(straight.log)


@pytest.mark.parametrize("budget", ["inf", "1e999", "nan", "-inf"])
def test_a_non_finite_budget_is_refused(tmp_path, capsys, budget):
    status = main(["run", "sphere", "random-search", "--budget", budget,
                   "--out", str(tmp_path / "run")])
    assert status == 2
    assert "budget" in _one_line(capsys.readouterr().err)
    assert not (tmp_path / "run" / "run.json").exists()


class _FailsOnce(evoreg.Problem):
    """Fails at its first evaluation, as a bad setting found late would."""

    name = "fails-once"
    budget_unit = "evaluations"

    def setup(self) -> None:
        self.space = evoreg.Real(3)

    def evaluate(self, pop, *, gradients: bool = False) -> evoreg.Evaluation:
        raise EvoregError("this setting is wrong")


def test_a_failed_start_leaves_nothing_that_refuses_the_retry(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(EvoregError, match="setting is wrong"):
        evoreg.run(_FailsOnce(), "random-search", 32, out_dir=out, progress=False)
    assert not (out / "run.json").exists()
    evoreg.run("sphere", "random-search", 32, out_dir=out, progress=False, plot=False)


def test_negative_seed_is_one_line(tmp_path, capsys):
    assert main(["run", "sphere", "random-search", "--budget", "8", "--seed", "-1",
                 "--out", str(tmp_path / "run")]) == 2
    assert "seed" in _one_line(capsys.readouterr().err)


# --------------------------------------------------------------------------- 7. sharing
@pytest.mark.parametrize("umask", [0o022, 0o002])
def test_files_honour_the_umask(tmp_path, umask):
    before = os.umask(umask)
    try:
        out = tmp_path / "run"
        _run(out)
    finally:
        os.umask(before)
    for name in ("run.json", "log.jsonl", "checkpoint.pt", "result.json"):
        mode = stat.S_IMODE((out / name).stat().st_mode)
        assert mode == 0o666 & ~umask, (name, oct(mode))


def test_a_checkpoint_of_other_versions_warns_and_continues(tmp_path):
    out = tmp_path / "run"
    _run(out)
    state = load_checkpoint(out / "checkpoint.pt")
    state["identity"]["versions"]["torch"] = "0.0.1"
    save_checkpoint(state, out / "checkpoint.pt")
    with pytest.warns(RuntimeWarning, match=r"torch 0\.0\.1 -> "):
        _run(out, budget=128, resume=True)


def test_run_json_names_the_distribution_that_provided_each_part(tmp_path):
    _run(tmp_path / "run")
    recorded = json.loads((tmp_path / "run" / "run.json").read_text())["provenance"]
    version = evoreg.registry.provenance("optimizer", "random-search")["version"]
    assert recorded["optimizer"] == {"distribution": "evoreg", "version": version,
                                     "plugin": "random_search"}
    assert recorded["problem"]["distribution"] == "evoreg"
    evoreg.run(_Counts(), "random-search", 8, out_dir=tmp_path / "own",
               progress=False, plot=False)
    recorded = json.loads((tmp_path / "own" / "run.json").read_text())["provenance"]
    assert recorded["problem"]["distribution"] is None
    assert recorded["problem"]["class"].endswith("_Counts")


class _Counts(evoreg.Problem):
    name = "counts"
    budget_unit = "evaluations"

    def setup(self) -> None:
        self.space = evoreg.Real(3)

    def evaluate(self, pop, *, gradients: bool = False) -> evoreg.Evaluation:
        return evoreg.Evaluation(pop.values.pow(2).sum(dim=1), cost=float(len(pop)))


def test_without_a_writable_config_dir_pickled_state_warns_and_needs_trust(
    tmp_path, monkeypatch
):
    blocked = tmp_path / "not-a-dir"
    blocked.write_text("a file where the config folder would be")
    monkeypatch.setenv("EVOREG_CONFIG_DIR", str(blocked / "evoreg"))
    state = {"x": Pickled(pickle.dumps([1, 2]), trusted=True)}
    with pytest.warns(RuntimeWarning, match="--trust-checkpoint"):
        save_checkpoint(state, tmp_path / "state.ckpt")
    with pytest.raises(EvoregError, match="--trust-checkpoint"):
        load_checkpoint(tmp_path / "state.ckpt")
    assert load_checkpoint(tmp_path / "state.ckpt", trust=True)["x"].load() == [1, 2]


def test_built_in_problems_save_data_only():
    for name, config in (("sphere", {}), ("rastrigin", {}),
                         ("mnist-weights", {"dataset": "digits", "batch_size": 32}),
                         ("architecture", {"dataset": "digits", "train_size": 100,
                                           "val_size": 50, "epochs_per_eval": 1})):
        problem = evoreg.make_problem(name, seed=0, device="cpu", **config)
        optimizer = evoreg.make_optimizer("random-search", problem.space, seed=0, popsize=4)
        pop = optimizer.ask()
        optimizer.tell(pop, problem.evaluate(pop))
        assert pickled_parts(snapshot(problem.state_dict())) == [], name
        # the best candidate the optimizer keeps (a genome, for architecture) is data too
        assert pickled_parts(snapshot(optimizer.state_dict())) == [], name


def test_loaded_tensors_use_the_files_bytes_in_place_and_stay_writable(tmp_path):
    state = {"a": torch.arange(100, dtype=torch.float32), "b": torch.full((3,), 2.5,
                                                                           dtype=torch.float64)}
    save_checkpoint(state, tmp_path / "state.ckpt")
    loaded = load_checkpoint(tmp_path / "state.ckpt")
    assert torch.equal(loaded["a"], state["a"]) and torch.equal(loaded["b"], state["b"])
    # b's blob starts at the next multiple of 64 bytes after a's 400: no copy was made.
    assert loaded["b"].data_ptr() - loaded["a"].data_ptr() == 448
    loaded["a"].add_(1)  # a writable buffer, not the file
    assert torch.equal(load_checkpoint(tmp_path / "state.ckpt")["a"], state["a"])
