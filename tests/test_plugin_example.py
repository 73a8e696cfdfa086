"""The example third-party plugin: installed like a user would, and its algorithm in-process.

The package is pip-installed into a temporary ``--target`` folder (never into the project's
venv) and put on ``PYTHONPATH`` of subprocesses, which is how entry points of a separately
installed distribution reach evoreg. The algorithm itself is tested in-process on a fresh
``Registry`` so the process-wide one is left alone.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
import torch

import evoreg
from evoreg.registry import Registry
from evoreg.testing import CHECKS

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "evoreg-plugin-example"
MODULE_FILE = EXAMPLE / "evoreg_plugin_example.py"


# ----------------------------------------------------------------- installed, via the CLI
@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Environment of a subprocess that sees the example installed (pip runs once)."""
    root = tmp_path_factory.mktemp("plugin-example")
    # Build from a copy: setuptools writes build/ and *.egg-info next to the sources.
    source = shutil.copytree(EXAMPLE, root / "source")
    target = root / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
         "--target", str(target), str(source)],
        check=True, capture_output=True, text=True, timeout=120,
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(target), *filter(None, [os.environ.get("PYTHONPATH")])]))
    # A developer's own plugin selection must not hide the example from these tests.
    env.pop("EVOREG_PLUGINS", None)
    env.pop("EVOREG_DISABLE_PLUGINS", None)
    return env


def evoreg_command() -> list[str]:
    """The installed ``evoreg`` console script of this interpreter's environment."""
    script = Path(sys.executable).parent / "evoreg"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "import sys; from evoreg.cli import main; sys.exit(main())"]


def test_evoreg_list_shows_the_installed_plugin(installed: dict[str, str]) -> None:
    done = subprocess.run([*evoreg_command(), "list"], env=installed, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "one-fifth-es" in done.stdout
    assert "random-search" in done.stdout  # the built-ins still load beside it


def test_evoreg_run_with_the_installed_plugin_improves_sphere(
    installed: dict[str, str], tmp_path: Path
) -> None:
    out = tmp_path / "run"
    # Selecting entry points by name skips importing nevergrad (seconds) and shows that a
    # third-party plugin is selected like a built-in.
    env = dict(installed, EVOREG_PLUGINS="one_fifth_es,sphere")
    done = subprocess.run(
        [*evoreg_command(), "run", "sphere", "one-fifth-es", "--budget", "400", "--seed", "0",
         "--out", str(out)],
        env=env, capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 0, done.stderr
    [result_file] = out.rglob("result.json")
    result = json.loads(result_file.read_text())
    assert result["optimizer"] == "one-fifth-es"
    assert result["best_loss"] < 0.1 * 10  # sphere (dim 10) starts at loss 10


def test_the_package_s_own_tests_run_evoreg_s_conformance_checks(
    installed: dict[str, str], tmp_path: Path
) -> None:
    # As its author would run them: pytest on the package's tests/, the package installed.
    env = dict(installed, EVOREG_PLUGINS="one_fifth_es")
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir",
         str(tmp_path), str(EXAMPLE / "tests")],
        env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert f"{len(CHECKS)} passed" in done.stdout  # one test per check


# ----------------------------------------------------------------- in-process
@pytest.fixture(scope="module")
def plugin() -> Iterator[ModuleType]:
    """The example module imported from its file, as a plugin author would while writing it."""
    name = "evoreg_plugin_example"
    spec = importlib.util.spec_from_file_location(name, MODULE_FILE)
    module = importlib.util.module_from_spec(spec)
    # dataclasses (and pickling of checkpoints) look the module up by name.
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(name, None)


@pytest.fixture
def registry(plugin: ModuleType) -> Registry:
    registry = Registry()
    registry.add_plugin(plugin)
    assert not registry.broken
    return registry


def make(registry: Registry, space: evoreg.Real, **config) -> evoreg.Optimizer:
    return registry.make_optimizer("one-fifth-es", space, seed=0, **config)


def test_registers_with_family_and_citation(registry: Registry) -> None:
    entry = registry.get("optimizer", "one-fifth-es")
    assert entry.family == "es" and "Kern" in entry.citation
    assert entry.config().popsize == 1  # the paper's (1+1)-ES
    with pytest.raises(evoreg.EvoregError, match="works on Real"):
        make(registry, evoreg.Categorical([2, 3]))
    with pytest.raises(evoreg.EvoregError, match="target_success"):
        make(registry, evoreg.Real(3), target_success=1.0)


@pytest.mark.parametrize("popsize", [1, 8])
def test_improves_sphere_within_a_fixed_budget(registry: Registry, popsize: int) -> None:
    problem = evoreg.make_problem("sphere", dim=10, seed=0)
    optimizer = make(registry, problem.space, popsize=popsize)
    result = evoreg.run(problem, optimizer, budget=800, progress=False)
    assert result.best_loss < 1e-3  # from 10; random search stays above 1 on this budget
    assert float(problem.function(result.recommendation)) == pytest.approx(result.best_loss)


def test_sigma_follows_kern_constants(registry: Registry) -> None:
    optimizer = make(registry, evoreg.Real(2), popsize=1, sigma0=0.5)

    def step(loss: float) -> None:
        optimizer.tell(optimizer.ask(), [loss])

    step(0.0)  # the first generation evaluates the starting point: sigma unchanged
    assert optimizer.sigma == pytest.approx(0.5)
    step(-1.0)  # a success
    assert optimizer.sigma == pytest.approx(0.5 * math.exp(1 / 3))
    step(0.0)  # a failure
    assert optimizer.sigma == pytest.approx(0.5 * math.exp(1 / 3 - 1 / 12))
    for _ in range(3):
        step(0.0)
    assert optimizer.sigma == pytest.approx(0.5)  # one success in five: back where it was


def test_sigma_grows_on_a_linear_slope(registry: Registry) -> None:
    optimizer = make(registry, evoreg.Real(10), popsize=10, sigma0=1e-3)
    for _ in range(20):
        pop = optimizer.ask()
        optimizer.tell(pop, pop.values.sum(dim=1))  # about half the children succeed
    # Expected factor exp(20 * (1/3) * (0.5 - 0.2) / 0.8) = exp(2.5), about 12.
    assert optimizer.sigma > 4 * 1e-3


def test_sigma_shrinks_at_the_optimum(registry: Registry) -> None:
    space = evoreg.Real(5, init=torch.ones(5))  # start at the sphere's minimiser
    optimizer = make(registry, space, popsize=4, sigma0=1.0)
    for _ in range(12):  # no child is ever as good as the parent: each time exp(-1/12)
        pop = optimizer.ask()
        optimizer.tell(pop, (pop.values - 1).pow(2).sum(dim=1))
    assert optimizer.sigma == pytest.approx(math.exp(-12 / 12), rel=1e-5)
    assert torch.equal(optimizer.recommend(), torch.ones(5))


def test_state_dict_continues_exactly(registry: Registry) -> None:
    problem = evoreg.make_problem("sphere", dim=6, seed=0)
    first = make(registry, problem.space, popsize=3)
    for _ in range(5):
        pop = first.ask()
        first.tell(pop, problem.evaluate(pop).losses)
    second = make(registry, problem.space, popsize=3)
    second.load_state_dict(first.state_dict())
    for _ in range(5):
        a, b = first.ask(), second.ask()
        assert torch.equal(a.values, b.values) and torch.equal(a.ids, b.ids)
        first.tell(a, problem.function(a.values))
        second.tell(b, problem.function(b.values))
    assert first.sigma == second.sigma
    assert torch.equal(first.recommend(), second.recommend())
