"""The pluggy registry: discovery, duplicates, broken plugins, the restricting variable."""

import importlib.metadata
import subprocess
import sys
import types

import pytest

import evoreg
import evoreg.registry
from evoreg import EvoregError, UnknownNameError, hookimpl
from evoreg.cli import main
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
    with pytest.warns(UserWarning, match="already provides"):
        registry.add_plugin(_plugin("second", optimizers=["twin", "other"]))
    assert registry.entries["optimizer"]["twin"].plugin == "first"
    assert "other" not in registry.entries["optimizer"]  # the failing plugin is rolled back
    assert ("plugin 'second' registers optimizer 'twin', which plugin 'first' already "
            "provides") in registry.broken["second"]


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


# --------------------------------------------------------------------------- hooks gotten wrong
def _module_with(name: str, **functions) -> types.ModuleType:
    module = types.ModuleType(name)
    for attribute, function in functions.items():
        setattr(module, attribute, function)
    return module


def _register_works(register):
    register("works", RandomSearch)


def test_a_misspelt_hook_marks_its_plugin_broken_naming_the_close_match():
    @hookimpl
    def evoreg_register_optimizer(register):  # the "s" is missing: pluggy would never call it
        register("never", RandomSearch)

    registry = Registry()
    registry.add_plugin(_module_with("good", evoreg_register_optimizers=hookimpl(_register_works)))
    with pytest.warns(UserWarning, match="'typo' failed to load"):
        registry.add_plugin(
            _module_with("typo", evoreg_register_optimizer=evoreg_register_optimizer)
        )
    message = registry.broken["typo"]
    assert message.startswith(
        "EvoregError: plugin 'typo' implements unknown hook 'evoreg_register_optimizer'; "
        "did you mean 'evoreg_register_optimizers'?"
    )
    code = evoreg_register_optimizer.__code__
    assert message.endswith(f"({code.co_filename}:{code.co_firstlineno})")  # its definition
    assert set(registry.entries["optimizer"]) == {"works"}  # the other plugin keeps working
    assert not registry.manager.has_plugin("typo")


def test_an_unknown_hook_without_a_close_match_lists_the_hooks():
    @hookimpl
    def setup_everything(register):
        pass

    registry = Registry()
    with pytest.warns(UserWarning):
        registry.add_plugin(_module_with("odd", setup_everything=setup_everything))
    assert ("unknown hook 'setup_everything'; evoreg's hooks: evoreg_register_optimizers, "
            "evoreg_register_problems") in registry.broken["odd"]


def test_an_optional_hook_of_another_version_is_not_a_mistake():
    # pluggy's own opt-out: a hook the plugin knows may not exist in this version of evoreg
    @hookimpl(optionalhook=True)
    def evoreg_register_losses(register):
        pass

    registry = Registry()
    registry.add_plugin(_module_with("future", evoreg_register_losses=evoreg_register_losses,
                                     evoreg_register_optimizers=hookimpl(_register_works)))
    assert registry.broken == {} and "works" in registry.entries["optimizer"]


def test_a_hook_function_without_the_marker_is_a_mistake():
    def evoreg_register_problems(register):  # no @hookimpl: pluggy ignores it
        register("forgotten", evoreg.problems()["sphere"].factory)

    registry = Registry()
    with pytest.warns(UserWarning, match="'unmarked' failed to load"):
        registry.add_plugin(_module_with("unmarked",
                                         evoreg_register_problems=evoreg_register_problems,
                                         evoreg_register_optimizers=hookimpl(_register_works)))
    assert registry.broken["unmarked"].startswith(
        "EvoregError: plugin 'unmarked' defines evoreg_register_problems() without the "
        "@hookimpl marker, so it is never called; decorate it with @evoreg.hookimpl"
    )
    assert registry.entries["optimizer"] == {} and registry.entries["problem"] == {}


def test_a_misnamed_hook_argument_marks_only_its_plugin_broken():
    @hookimpl
    def evoreg_register_optimizers(reg):  # pluggy passes `register` by name
        reg("never", RandomSearch)

    registry = Registry()
    with pytest.warns(UserWarning, match="'args' failed to load"):
        registry.add_plugin(
            _module_with("args", evoreg_register_optimizers=evoreg_register_optimizers)
        )
    registry.add_plugin(_module_with("good", evoreg_register_optimizers=hookimpl(_register_works)))
    assert "Argument(s) {'reg'} are declared in the hookimpl" in registry.broken["args"]
    assert "\n" not in registry.broken["args"]  # one line, like every other plugin error
    assert set(registry.entries["optimizer"]) == {"works"}


def test_evoreg_list_shows_a_misspelt_hook(tmp_path, monkeypatch, capsys):
    (tmp_path / "evoreg_test_typo.py").write_text(
        "from evoreg import hookimpl\n"
        "@hookimpl\n"
        "def evoreg_register_problem(register):\n"
        "    pass\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    fake = [importlib.metadata.EntryPoint("typo", "evoreg_test_typo", "evoreg"),
            importlib.metadata.EntryPoint("sphere", "evoreg.problems.sphere", "evoreg")]
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda group: fake)
    registry = Registry()
    with pytest.warns(UserWarning, match="'typo' failed to load"):
        registry.load_entry_points(environ={})
    monkeypatch.setattr(evoreg.registry, "_default", registry)
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "sphere" in out
    broken = out[out.index("Broken plugins"):]
    assert "typo" in broken and "did you mean 'evoreg_register_problems'?" in broken
    assert f"({tmp_path / 'evoreg_test_typo.py'}:2)" in broken  # where its definition starts
