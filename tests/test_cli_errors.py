"""Careless and damaged input to `evoreg run`, `bench` and `report`: one line on stderr and
exit status 2 for what cannot be used, a one-line warning for a damaged run that `report`
can leave out; never a traceback."""

from __future__ import annotations

import dataclasses
import math

import pytest

import evoreg
import evoreg.registry
import evoreg.runner
from evoreg.cli import main
from evoreg.config import bounded, make_config

BUILT_INS = "random_search,sphere,rastrigin"


@pytest.fixture(autouse=True)
def registry(monkeypatch: pytest.MonkeyPatch) -> evoreg.registry.Registry:
    """The built-in plugins only, whatever else is installed."""
    registry = evoreg.registry.Registry()
    registry.load_entry_points({"EVOREG_PLUGINS": BUILT_INS})
    monkeypatch.setattr(evoreg.registry, "_default", registry)
    return registry


def error_line(capsys: pytest.CaptureFixture[str]) -> str:
    """The one line a refused command writes on stderr."""
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("evoreg: error: ")
    return lines[0]


# --------------------------------------------------------------------------- non-finite settings
@pytest.mark.parametrize(
    ("assignment", "expected"),
    [
        # optimum has no bounds: inf ran to a best loss of inf, nan to a loss of nan
        ("optimum=inf", "problem 'sphere': optimum=inf is not finite"),
        ("optimum=-inf", "problem 'sphere': optimum=-inf is not finite"),
        ("optimum=nan", "problem 'sphere': optimum=nan is not a number"),
        ("noise=inf", "noise=inf is not finite; give a finite number >= 0"),
        ("noise=nan", "noise=nan is not a number"),
    ],
)
def test_non_finite_problem_setting_is_refused(tmp_path, capsys, assignment, expected):
    args = ["run", "sphere", "random-search", "--budget", "16", "--device", "cpu",
            "--out", str(tmp_path / "run"), "--set", assignment]
    assert main(args) == 2
    assert expected in error_line(capsys)
    assert not (tmp_path / "run").exists()


def test_non_finite_value_from_python_is_refused():
    with pytest.raises(evoreg.EvoregError, match="optimum=inf is not finite"):
        evoreg.make_problem("sphere", optimum=math.inf)


@dataclasses.dataclass
class _Declared:
    threshold: float = math.inf  #: inf as its default: "no threshold"
    ceiling: float = bounded(1.0, gt=0, le=math.inf)  #: a bound that names inf
    missing: float = math.nan  #: a plugin's NaN sentinel
    scale: float = bounded(1.0, gt=0)


def test_non_finite_values_a_field_declares_are_accepted():
    config = make_config(_Declared, "optimizer 'x'",
                         {"threshold": "inf", "ceiling": math.inf, "missing": "nan"})
    assert config.threshold == math.inf and config.ceiling == math.inf
    assert math.isnan(config.missing)
    assert make_config(_Declared, "optimizer 'x'", {}).threshold == math.inf  # defaults pass
    with pytest.raises(evoreg.EvoregError, match="optimizer 'x': scale=inf is not finite"):
        make_config(_Declared, "optimizer 'x'", {"scale": "inf"})
    with pytest.raises(evoreg.EvoregError, match="threshold=-inf is not finite"):
        make_config(_Declared, "optimizer 'x'", {"threshold": -math.inf})  # not its infinity


def test_every_registered_config_accepts_its_defaults_and_refuses_nan():
    registry = evoreg.registry.Registry()
    registry.load_entry_points({})  # every installed plugin, nevergrad's included
    for kind in ("optimizer", "problem"):
        for entry in registry.entries[kind].values():
            if not dataclasses.is_dataclass(entry.config):
                continue
            make_config(entry.config, entry.name, {})
            for field in dataclasses.fields(entry.config):
                if field.type in (float, "float") or "float" in str(field.type):
                    with pytest.raises(evoreg.EvoregError, match="is not a number"):
                        make_config(entry.config, entry.name, {field.name: math.nan})


# --------------------------------------------------------------------------- run
def test_negative_seed_is_refused(tmp_path, capsys):
    args = ["run", "sphere", "random-search", "--budget", "16", "--device", "cpu",
            "--out", str(tmp_path / "run"), "--seed", "-1"]
    assert main(args) == 2  # was numpy's "expected non-negative integer" traceback
    assert "argument --seed: '-1' is not an integer >= 0" in error_line(capsys)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("budget", ["inf", "nan", "1e400"])
def test_non_finite_budget_is_refused_before_the_run(tmp_path, monkeypatch, capsys, budget):
    def never(*args, **kwargs):  # inf ran forever
        raise AssertionError("the run started")

    monkeypatch.setattr(evoreg.runner, "run", never)
    args = ["run", "sphere", "random-search", "--budget", budget, "--out", str(tmp_path / "r")]
    assert main(args) == 2
    assert f"argument --budget: '{budget}' is not a finite number" in error_line(capsys)
