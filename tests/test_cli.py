"""The `evoreg` command line: list, info, run and its --set routing, errors as one line."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import types
from dataclasses import dataclass
from pathlib import Path

import pytest

import evoreg
import evoreg.registry
import evoreg.runner
from evoreg.cli import main
from evoreg.plugins.random_search import RandomSearch

BUILT_INS = "random_search,sphere,rastrigin"


@dataclass
class NoisyConfig(RandomSearch.Config):
    noise: float = 0.0  #: a field that the sphere problem's Config also has


class NoisySearch(RandomSearch):
    """Random search with a `noise` hyperparameter, to make `--set noise=...` ambiguous."""

    Config = NoisyConfig


def _test_plugin() -> types.ModuleType:
    plugin = types.ModuleType("cli_test_plugin")

    @evoreg.hookimpl
    def evoreg_register_optimizers(register):
        register("noisy-search", NoisySearch, family="test")
        for index in range(25):  # a large namespaced family, listed as one line
            register(f"fake:Opt{index}", RandomSearch, family="fakes", summary=f"fake {index}")

    plugin.evoreg_register_optimizers = evoreg_register_optimizers
    return plugin


@pytest.fixture(autouse=True)
def registry(monkeypatch: pytest.MonkeyPatch) -> evoreg.registry.Registry:
    """The built-in plugins plus a test plugin, whatever else is installed."""
    registry = evoreg.registry.Registry()
    registry.load_entry_points({"EVOREG_PLUGINS": BUILT_INS})
    registry.add_plugin(_test_plugin(), "cli_test_plugin")
    monkeypatch.setattr(evoreg.registry, "_default", registry)
    return registry


def error_line(capsys: pytest.CaptureFixture[str]) -> str:
    """The one line a refused command writes on stderr."""
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("evoreg: error: ")
    return lines[0]


# --------------------------------------------------------------------------- list, info
def test_list_collapses_a_large_family_and_shows_broken_plugins(registry, capsys):
    registry.broken["broken_plugin"] = "ImportError: No module named 'missing_dependency'"
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in ("random-search", "noisy-search", "sphere", "rastrigin"):
        assert name in out
    assert "fake:*" in out and "25 fakes optimizers" in out
    assert "--family fakes" in out and "fake:Opt3" not in out
    assert out.index("Broken plugins") > out.index("rastrigin")
    assert "broken_plugin" in out and "missing_dependency" in out


def test_list_one_family_in_full(capsys):
    assert main(["list", "optimizers", "--family", "fakes"]) == 0
    out = capsys.readouterr().out
    assert all(f"fake:Opt{index}" in out for index in range(25))
    assert "random-search" not in out and "sphere" not in out


def test_list_problems_only(capsys):
    assert main(["list", "problems"]) == 0
    out = capsys.readouterr().out
    assert "sphere" in out and "reference" in out and "random-search" not in out


def test_list_unknown_family(capsys):
    assert main(["list", "--family", "fake"]) == 2
    assert "did you mean 'fakes'" in error_line(capsys)


def test_info_optimizer(capsys):
    assert main(["info", "random-search"]) == 0
    out = capsys.readouterr().out
    assert "random-search (optimizer)" in out and "family:  baseline" in out
    assert "Independent random candidates" in out  # the docstring
    popsize_row = next(line for line in out.splitlines() if line.strip().startswith("popsize"))
    assert popsize_row.split()[:3] == ["popsize", "int", "16"]
    assert "candidates per ask" in popsize_row  # the field's `#:` comment
    assert "Citation: Brooks (1958)" in out


def test_info_problem_shows_inherited_fields_with_comments(capsys):
    assert main(["info", "rastrigin"]) == 0
    out = capsys.readouterr().out
    assert "rastrigin (problem)" in out and "counted in evaluations" in out
    assert "number of variables" in out  # the comment sits in sphere's Config, its base
    assert "Rastrigin (1974)" in out


def test_info_unknown_name_suggests(capsys):
    assert main(["info", "spher"]) == 2
    assert "did you mean 'sphere'" in error_line(capsys)


# --------------------------------------------------------------------------- run
def run_args(tmp_path: Path, *extra: str) -> list[str]:
    return ["run", "sphere", "random-search", "--budget", "48", "--device", "cpu",
            "--out", str(tmp_path / "run"), *extra]


def test_run_writes_the_runners_files_and_prints_a_summary(tmp_path, capsys):
    args = run_args(tmp_path, "--seed", "3", "--set", "dim=4", "--set", "optimizer.popsize=8")
    assert main(args) == 0
    out_dir = tmp_path / "run"
    for name in ("run.json", "log.jsonl", "checkpoint.pt", "result.json", "convergence.png"):
        assert (out_dir / name).is_file(), name
    result = json.loads((out_dir / "result.json").read_text())
    assert result["problem_config"]["dim"] == 4  # the string "4" became the field's int
    assert result["optimizer_config"]["popsize"] == 8
    assert result["seed"] == 3 and result["generations"] == 6
    assert len((out_dir / "log.jsonl").read_text().splitlines()) == 6
    out = capsys.readouterr().out
    assert f"best loss    {result['best_loss']:.6g}" in out
    assert "cost         48 evaluations" in out and str(out_dir) in out


def test_run_default_out_dir_and_resume_of_a_finished_run(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    args = ["run", "sphere", "random-search", "--budget", "32", "--seed", "2", "--device", "cpu"]
    assert main(args) == 0
    out_dir = tmp_path / "runs" / "sphere-random-search-seed2"
    assert (out_dir / "result.json").is_file()
    first = capsys.readouterr().out
    assert main(args) == 2  # the directory holds a run
    assert "--resume" in error_line(capsys)
    assert main([*args, "--resume"]) == 0
    assert capsys.readouterr().out.splitlines()[1] == first.splitlines()[1]  # same best loss


def test_set_routing_explicit_prefix_wins(tmp_path):
    args = ["run", "sphere", "noisy-search", "--budget", "16", "--device", "cpu",
            "--out", str(tmp_path / "run"),
            "--set", "problem.noise=0.5", "--set", "optimizer.noise=0.25", "--set", "popsize=4"]
    assert main(args) == 0
    result = json.loads((tmp_path / "run" / "result.json").read_text())
    assert result["problem_config"]["noise"] == 0.5
    assert result["optimizer_config"]["popsize"] == 4
    assert result["optimizer_config"]["noise"] == 0.25


@pytest.mark.parametrize(
    ("assignment", "expected"),
    [
        ("noise=0.1", "write problem.noise=0.1 or optimizer.noise=0.1"),  # both have it
        ("popsiz=3", "did you mean optimizer.popsize?"),  # neither: close matches of both
        ("optimum2=3", "did you mean problem.optimum?"),
        # prefixed, but not that owner's field
        ("optimizer.dim=3", "known: noise, noise_table, popsize"),
        ("solver.dim=3", "neither 'problem' nor 'optimizer'"),
        ("seed=3", "use --seed instead"),
        ("dim", "expected key=value"),
        ("dim=abc", "problem 'sphere': dim='abc' is not a int"),
        ("dim=0", "dim must be >= 1"),
    ],
)
def test_bad_set_is_one_line(tmp_path, capsys, assignment, expected):
    args = ["run", "sphere", "noisy-search", "--budget", "16", "--device", "cpu",
            "--out", str(tmp_path / "run"), "--set", assignment]
    assert main(args) == 2
    assert expected in error_line(capsys)
    assert not (tmp_path / "run").exists()  # refused before anything was written


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["run", "sphere", "random-serch", "--budget", "8"], "did you mean 'random-search'"),
        (["run", "sphere", "random-search"], "required: --budget"),
        (["run", "sphere", "random-search", "--budget", "0"], "budget must be > 0"),
        (["run", "sphere", "random-search", "--budget", "x"], "invalid number value"),
        (["frobnicate"], "choose from 'list', 'info', 'run', 'bench', 'report'"),
        (["report", "no/such/dir"], "is not a directory"),
        (["bench", "no-such.toml", "--out", "x"], "not found"),
    ],
)
def test_bad_input_exits_2_with_one_line(tmp_path, monkeypatch, capsys, args, expected):
    monkeypatch.chdir(tmp_path)
    assert main(args) == 2
    assert expected in error_line(capsys)


def test_a_bug_keeps_its_traceback_and_exits_1(tmp_path, monkeypatch, capsys):
    def crash(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(evoreg.runner, "run", crash)
    assert main(run_args(tmp_path)) == 1
    err = capsys.readouterr().err
    assert err.startswith("Traceback (most recent call last):")
    assert err.strip().endswith("RuntimeError: boom")


def test_help_exits_0(capsys):
    assert main(["run", "--help"]) == 0
    assert "--set KEY=VALUE" in capsys.readouterr().out


# --------------------------------------------------------------------------- the installed script
def _script_env() -> dict[str, str]:
    # Only the built-ins: the subprocess need not import heavy third-party plugins.
    return {**os.environ, "EVOREG_PLUGINS": BUILT_INS}


def test_installed_script_refuses_bad_input_in_one_line():
    script = Path(sys.executable).with_name("evoreg")
    script = str(script) if script.exists() else shutil.which("evoreg")
    assert script, "the evoreg console script is not installed"
    done = subprocess.run([script, "info", "spher"], capture_output=True, text=True,
                          env=_script_env(), timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "evoreg: error: unknown optimizer or problem 'spher'; did you mean 'sphere'?"
    ]


def test_python_dash_m_runs(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "evoreg", "run", "rastrigin", "random-search", "--budget", "32",
         "--device", "cpu", "--set", "dim=2", "--out", str(tmp_path / "run")],
        capture_output=True, text=True, env=_script_env(), timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "rastrigin / random-search (seed 0)" in done.stdout
    assert (tmp_path / "run" / "convergence.png").is_file()
