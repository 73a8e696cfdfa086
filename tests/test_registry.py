"""The pluggy registry: discovery, duplicates, broken plugins, the restricting variable."""

import importlib.metadata
import subprocess
import sys
import types

import pytest

import evoreg
from evoreg import EvoregError, UnknownNameError, hookimpl
from evoreg.registry import Registry

RandomSearch = evoreg.optimizers()["random-search"].factory


def _plugin(name: str, optimizers=(), problems=(), fail: Exception | None = None):
    module = types.ModuleType(name)

    @hookimpl
    def evoreg_register_optimizers(register):
        for entry in optimizers:
            register(entry, RandomSearch, summary=f"{entry} test")
        if fail is not None:
            raise fail

    module.evoreg_register_optimizers = evoreg_register_optimizers
    if problems:

        @hookimpl
        def evoreg_register_problems(register):
            for entry in problems:
                register(entry, evoreg.problems()["sphere"].factory)

        module.evoreg_register_problems = evoreg_register_problems
    return module


def test_builtins_come_from_entry_points():
    registry = evoreg.get_registry()
    assert registry.broken == {}
    assert "random-search" in evoreg.optimizers()
    assert {"sphere", "rastrigin"} <= set(evoreg.problems())
    entry = evoreg.optimizers()["random-search"]
    assert entry.plugin == "random_search" and entry.config is not None
    assert entry.summary.startswith("Independent random candidates")
    names = {ep.name for ep in importlib.metadata.entry_points(group="evoreg")}
    assert {"random_search", "sphere", "rastrigin"} <= names


def test_duplicate_names_are_rejected_and_the_first_kept():
    registry = Registry()
    registry.add_plugin(_plugin("first", optimizers=["twin"]))
    with pytest.warns(UserWarning, match="already registered"):
        registry.add_plugin(_plugin("second", optimizers=["twin", "other"]))
    assert registry.entries["optimizer"]["twin"].plugin == "first"
    assert "other" not in registry.entries["optimizer"]  # the failing plugin is rolled back
    assert "already registered by plugin 'first'" in registry.broken["second"]


def test_a_plugin_whose_hook_raises_is_broken_and_the_others_work():
    registry = Registry()
    registry.add_plugin(_plugin("good", optimizers=["works"]))
    with pytest.warns(UserWarning, match="failed to load"):
        registry.add_plugin(_plugin("bad", optimizers=["half"], fail=RuntimeError("boom")))
    assert "RuntimeError: boom" in registry.broken["bad"]
    assert set(registry.entries["optimizer"]) == {"works"}
    assert registry.make_optimizer("works", evoreg.Real(2)).ask(2).values.shape == (2, 2)


def test_a_plugin_that_raises_on_import_is_listed_as_broken(tmp_path, monkeypatch):
    (tmp_path / "evoreg_test_broken.py").write_text("raise ImportError('needs libfoo')\n")
    (tmp_path / "evoreg_test_fine.py").write_text(
        "from evoreg import hookimpl\n"
        "from evoreg.plugins.random_search import RandomSearch\n"
        "@hookimpl\n"
        "def evoreg_register_optimizers(register):\n"
        "    register('fine-search', RandomSearch)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    fake = [
        importlib.metadata.EntryPoint("broken", "evoreg_test_broken", "evoreg"),
        importlib.metadata.EntryPoint("fine", "evoreg_test_fine", "evoreg"),
    ]
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda group: fake)
    registry = Registry()
    with pytest.warns(UserWarning, match="'broken' failed to load"):
        registry.load_entry_points(environ={})
    assert "ImportError: needs libfoo" in registry.broken["broken"]
    assert "fine-search" in registry.entries["optimizer"]


def test_environment_variable_restricts_entry_points():
    registry = Registry()
    registry.load_entry_points(environ={"EVOREG_PLUGINS": "sphere, random_search"})
    assert set(registry.entries["problem"]) == {"sphere"}
    assert set(registry.entries["optimizer"]) == {"random-search"}
    registry = Registry()
    registry.load_entry_points(environ={"EVOREG_DISABLE_PLUGINS": "rastrigin"})
    assert "rastrigin" not in registry.entries["problem"]
    assert "sphere" in registry.entries["problem"]


def test_environment_variable_in_a_fresh_process():
    code = "import evoreg; print(sorted(evoreg.problems()))"
    out = subprocess.run(
        [sys.executable, "-c", code],
        env={"EVOREG_PLUGINS": "rastrigin", "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, check=True,
    ).stdout
    assert out.strip() == "['rastrigin']"


def test_unknown_names_and_keys_list_close_matches():
    with pytest.raises(UnknownNameError, match="did you mean 'random-search'"):
        evoreg.make_optimizer("random-serach", evoreg.Real(2))
    with pytest.raises(UnknownNameError, match="'sphere'"):
        evoreg.make_problem("spher")
    with pytest.raises(EvoregError, match="did you mean 'popsize'"):
        evoreg.make_optimizer("random-search", evoreg.Real(2), pop_size=4)
    with pytest.raises(EvoregError, match="did you mean 'noise'"):
        evoreg.make_problem("sphere", nois=0.1)


def test_optimizer_refuses_a_space_it_cannot_search():
    class RealOnly(RandomSearch):
        spaces = (evoreg.Real,)

    with pytest.raises(EvoregError, match="works on Real spaces, not Categorical"):
        RealOnly(evoreg.Categorical([2, 2]))


def test_plugins_and_problems_are_not_top_level_modules(tmp_path):
    for module in ("plugins", "problems"):
        result = subprocess.run(
            [sys.executable, "-c", f"import {module}"], cwd=tmp_path, capture_output=True
        )
        assert result.returncode != 0, f"`import {module}` must fail after install"
    result = subprocess.run(
        [sys.executable, "-c", "import evoreg.plugins.random_search, evoreg.problems.sphere"],
        cwd=tmp_path,
    )
    assert result.returncode == 0


def test_problems_package_is_also_the_listing_function():
    import evoreg.problems.sphere  # noqa: F401 - the import makes evoreg.problems the package

    assert "sphere" in evoreg.problems()
    assert evoreg.problems.sphere.Sphere is evoreg.problems()["sphere"].factory
