"""Plugins cannot take the registry down or pass for another package (issue 11, section 4).

Third-party plugins are "installed" as a distribution folder (``NAME-VERSION.dist-info``
with ``METADATA`` and ``entry_points.txt``) beside their modules in a temporary folder,
which is how a ``pip install --target`` looks to ``importlib.metadata``: on ``sys.path``
for tests in this process, on ``PYTHONPATH`` for the ``evoreg`` command in a subprocess.
A plugin that hangs is only ever imported in a subprocess, so that its thread cannot slow
this one down.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import re
import subprocess
import sys
import time
import types
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import evoreg
import evoreg.registry
from evoreg import EvoregError, UnknownNameError, hookimpl, registry_index
from evoreg.cli import main
from evoreg.registry import Registry, import_timeout, provenance

#: A plugin registering optimizers ``{names}`` whose factory fails loudly: if a test's
#: optimizer is this one rather than the built-in, making it raises.
IMPOSTOR = """
from evoreg import hookimpl

def impostor(space, **config):
    raise RuntimeError("the impostor from {module} ran")

@hookimpl
def evoreg_register_optimizers(register):
    for name in {names!r}:
        register(name, impostor, summary="not what it seems")
"""

BUILTIN_CLASH = ("plugin 'shadow' (distribution evoreg-shadow 1.2) registers optimizer "
                 "'random-search', which evoreg {version} already provides")


class Site:
    """A folder of "installed" distributions and their plugin modules."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.modules: list[str] = []
        folder.mkdir(parents=True, exist_ok=True)

    def install(self, distribution: str, version: str, entry_points: dict[str, str],
                modules: dict[str, str]) -> None:
        """``distribution`` declaring ``entry_points`` (name -> module) in the evoreg group,
        with ``modules`` (name -> source)."""
        info = self.folder / f"{distribution.replace('-', '_')}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: {distribution}\nVersion: {version}\n"
        )
        if entry_points:
            (info / "entry_points.txt").write_text(
                "[evoreg]\n" + "".join(f"{n} = {m}\n" for n, m in entry_points.items())
            )
        for module, source in modules.items():
            (self.folder / f"{module}.py").write_text(source)
            self.modules.append(module)
        importlib.invalidate_caches()  # the folder may have been listed before

    def shadow(self) -> None:
        """Distribution evoreg-shadow, whose plugin registers the built-in 'random-search'."""
        self.install("evoreg-shadow", "1.2", {"shadow": "evoreg_test_shadow"},
                     {"evoreg_test_shadow": IMPOSTOR.format(module="evoreg-shadow",
                                                            names=["random-search"])})

    def environment(self, **variables: str) -> dict[str, str]:
        """A subprocess's environment that sees this folder's distributions installed."""
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(
            [str(self.folder), *filter(None, [os.environ.get("PYTHONPATH")])]))
        env.pop("EVOREG_DISABLE_PLUGINS", None)
        env.pop(evoreg.registry.TIMEOUT_VARIABLE, None)
        env.update(variables)
        return env


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Site]:
    """A Site, on sys.path of this process too (the process-wide registry is restored)."""
    monkeypatch.setattr(evoreg.registry, "_default", None)
    monkeypatch.setenv("EVOREG_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("EVOREG_DISABLE_PLUGINS", raising=False)
    monkeypatch.delenv(evoreg.registry.TIMEOUT_VARIABLE, raising=False)
    site = Site(tmp_path / "site")
    monkeypatch.syspath_prepend(str(site.folder))
    yield site
    for module in site.modules:
        sys.modules.pop(module, None)


def load(environ: dict[str, str],
         order: Callable[[list[importlib.metadata.EntryPoint]], list] = list) -> Registry:
    """A registry of the entry points that importlib finds, seen in ``order``."""
    found = list(importlib.metadata.entry_points(group="evoreg"))
    registry = Registry()
    with pytest.MonkeyPatch.context() as patch, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # broken plugins are checked in registry.broken
        patch.setattr(importlib.metadata, "entry_points", lambda group: order(found))
        registry.load_entry_points(environ)
    return registry


def third_party_first(entry_points: list) -> list:
    return sorted(entry_points, key=lambda ep: ep.dist.metadata["Name"] == "evoreg")


def third_party_last(entry_points: list) -> list:
    return sorted(entry_points, key=lambda ep: ep.dist.metadata["Name"] != "evoreg")


def evoreg_command(*args: str, env: dict[str, str], timeout: float = 60
                   ) -> subprocess.CompletedProcess[str]:
    code = "import sys; from evoreg.cli import main; sys.exit(main())"
    # Run away from the checkout: `python -c` puts the working directory first on sys.path,
    # where a stray evoreg.egg-info from a build would stand for the evoreg distribution.
    return subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True,
                          text=True, timeout=timeout, cwd=env["PYTHONPATH"].split(os.pathsep)[0])


def broken_plugins(listing: str) -> dict[str, str]:
    """The "Broken plugins" table of `evoreg list`'s output: plugin -> error."""
    lines = listing[listing.index("Broken plugins (not loaded):"):].splitlines()[2:]
    return dict(re.split(r"\s{2,}", line.strip(), maxsplit=1) for line in lines)


# --------------------------------------------------------------------------- impersonation
@pytest.mark.parametrize("order", [third_party_first, third_party_last])
def test_a_builtin_name_stays_the_builtins_and_the_clash_names_both_distributions(
    site: Site, order: Callable[[list], list]
) -> None:
    site.shadow()
    registry = load({"EVOREG_PLUGINS": "random_search,shadow"}, order)
    entry = registry.entries["optimizer"]["random-search"]
    assert entry.plugin == "random_search" and entry.origin.builtin
    assert registry.make_optimizer("random-search", evoreg.Real(2)).ask(3).values.shape == (3, 2)
    assert "random_search" not in registry.broken
    message = registry.broken["shadow"]
    assert BUILTIN_CLASH.format(version=evoreg.__version__) in message
    assert message.endswith(f"({site.folder / 'evoreg_test_shadow.py'}:10)")  # its register()


def test_evoreg_run_runs_the_builtin_and_warns_about_the_shadowing_plugin(
    site: Site, tmp_path: Path
) -> None:
    site.shadow()
    env = site.environment(EVOREG_PLUGINS="random_search,sphere,shadow")
    done = evoreg_command("run", "sphere", "random-search", "--budget", "40",
                          "--out", str(tmp_path / "run"), env=env)
    assert done.returncode == 0, done.stderr
    assert "the impostor" not in done.stderr
    warning = f"evoreg: warning: plugin 'shadow' failed to load: EvoregError: {BUILTIN_CLASH}"
    assert warning.format(version=evoreg.__version__) in done.stderr


@pytest.mark.parametrize("order", [list, lambda eps: list(reversed(eps))])
def test_between_two_third_party_plugins_the_first_distribution_keeps_a_name(
    site: Site, order: Callable[[list], list]
) -> None:
    site.install("alpha-dist", "1.0", {"alpha": "evoreg_test_alpha"},
                 {"evoreg_test_alpha": IMPOSTOR.format(module="alpha", names=["twin", "a1"])})
    site.install("beta-dist", "2.0", {"beta": "evoreg_test_beta"},
                 {"evoreg_test_beta": IMPOSTOR.format(module="beta", names=["twin", "b1"])})
    # and an entry point with the name of alpha's: pluggy would have had two plugins 'alpha'
    site.install("gamma-dist", "3.0", {"alpha": "evoreg_test_gamma"},
                 {"evoreg_test_gamma": IMPOSTOR.format(module="gamma", names=["g1"])})
    registry = load({"EVOREG_PLUGINS": "alpha,beta"}, order)
    assert {name: entry.plugin for name, entry in registry.entries["optimizer"].items()} == {
        "twin": "alpha", "a1": "alpha"}  # beta is rolled back whole, gamma never imported
    assert ("plugin 'beta' (distribution beta-dist 2.0) registers optimizer 'twin', which "
            "plugin 'alpha' (distribution alpha-dist 1.0) already provides; the plugin is not "
            "loaded") in registry.broken["beta"]
    assert registry.broken["alpha (gamma-dist)"] == (
        "EvoregError: plugin 'alpha' (distribution gamma-dist 3.0) has the entry-point name "
        "of plugin 'alpha' (distribution alpha-dist 1.0); it is not loaded (rename its entry "
        "point)"
    )
    assert "evoreg_test_gamma" not in sys.modules


def test_an_index_written_before_a_clashing_plugin_was_installed_is_not_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(evoreg.registry, "_default", None)
    monkeypatch.setenv("EVOREG_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("EVOREG_PLUGINS", "random_search")
    site = Site(tmp_path / "site")
    # Installed before the index is written, with no entry point yet (an editable install
    # whose entry_points.txt is edited later keeps its name and version).
    site.install("evoreg-copycat", "0.1", {}, {})
    monkeypatch.syspath_prepend(str(site.folder))
    assert main(["list"]) == 0
    assert "Broken plugins" not in capsys.readouterr().out
    assert registry_index.index_path().is_file()

    # Now it declares the built-in's entry point, same name and same target: no installed
    # distribution, version, entry point name or target, or source file changed.
    info = next(site.folder.glob("*.dist-info"))
    (info / "entry_points.txt").write_text(
        "[evoreg]\nrandom_search = evoreg.plugins.random_search\n")
    monkeypatch.setattr(evoreg.registry, "_default", None)
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "random-search" in out
    assert broken_plugins(out) == {"random_search (evoreg-copycat)": (
        "EvoregError: plugin 'random_search' (distribution evoreg-copycat 0.1) has the "
        f"entry-point name of plugin 'random_search' of evoreg {evoreg.__version__}; it is not "
        "loaded (rename its entry point)")}
    assert main(["info", "random-search"]) == 0
    assert f"plugin:  random_search (evoreg {evoreg.__version__})" in capsys.readouterr().out


# --------------------------------------------------------------------------- exits and hangs
def test_a_plugin_that_calls_sys_exit_on_import_is_listed_as_broken(site: Site) -> None:
    site.install("evoreg-exit", "0.1", {"exiter": "evoreg_test_exit"},
                 {"evoreg_test_exit": "import sys\nsys.exit(3)\n"})
    done = evoreg_command("list", env=site.environment(EVOREG_PLUGINS="random_search,exiter"))
    assert done.returncode == 0, done.stderr
    assert broken_plugins(done.stdout) == {
        "exiter": f"SystemExit: 3 ({site.folder / 'evoreg_test_exit.py'}:2)"}
    assert "random-search" in done.stdout


def test_a_hook_that_exits_is_broken_but_ctrl_c_still_stops_loading() -> None:
    def plugin(name: str, error: BaseException) -> types.ModuleType:
        module = types.ModuleType(name)

        @hookimpl
        def evoreg_register_problems(register):
            raise error

        module.evoreg_register_problems = evoreg_register_problems
        return module

    registry = Registry()
    with pytest.warns(UserWarning, match="'exits' failed to load: SystemExit: 4"):
        registry.add_plugin(plugin("exits", SystemExit(4)))
    assert registry.broken["exits"].startswith("SystemExit: 4 (")
    with pytest.raises(KeyboardInterrupt):
        registry.add_plugin(plugin("interrupted", KeyboardInterrupt()))


HANGS = {
    "evoreg_test_spin": "while True:\n    pass\n",  # holds the GIL as much as it can
    "evoreg_test_sleep": "import time\ntime.sleep(1e9)\n",  # blocked in C
}


def test_a_plugin_that_hangs_on_import_is_given_up_on_and_not_indexed(
    site: Site, tmp_path: Path
) -> None:
    site.install("evoreg-hang", "0.3", {"spin": "evoreg_test_spin", "sleep": "evoreg_test_sleep"},
                 HANGS)
    cache = tmp_path / "hang-cache"
    env = site.environment(EVOREG_PLUGINS="random_search,spin,sleep", EVOREG_CACHE_DIR=str(cache),
                           EVOREG_PLUGIN_IMPORT_TIMEOUT="1")
    start = time.monotonic()
    done = evoreg_command("list", env=env, timeout=30)  # the interpreter exits, too
    assert done.returncode == 0, done.stderr
    assert time.monotonic() - start < 30
    assert "random-search" in done.stdout
    assert broken_plugins(done.stdout) == {
        name: f"EvoregError: plugin '{name}' (distribution evoreg-hang 0.3) did not finish "
              f"importing within 1 s (EVOREG_PLUGIN_IMPORT_TIMEOUT); it is not used (still "
              f"running at {site.folder / f'evoreg_test_{name}.py'}:{line})"
        for name, line in (("spin", 1), ("sleep", 2))
    }
    # Too slow this time need not mean too slow the next: no index is kept from this load.
    assert not cache.exists() or not any(cache.iterdir())


def test_a_slow_builtin_is_named_on_stderr_and_still_loaded(site: Site) -> None:
    # A distribution called evoreg first on the path is the one importlib takes for evoreg.
    site.install("evoreg", evoreg.__version__,
                 {"random_search": "evoreg.plugins.random_search", "slow": "evoreg_test_slow"},
                 {"evoreg_test_slow": "import time\ntime.sleep(1.5)\n"})
    env = site.environment(EVOREG_PLUGINS="random_search,slow",
                           EVOREG_PLUGIN_IMPORT_TIMEOUT="0.5")
    done = evoreg_command("list", env=env)
    assert done.returncode == 0, done.stderr
    assert (f"evoreg: still importing plugin 'slow' of evoreg {evoreg.__version__} after 0.5 s"
            in done.stderr)
    # Never given up on: imported in full, it defines no hook and so registers nothing.
    assert "Broken plugins" not in done.stdout and "random-search" in done.stdout


def test_a_package_that_loads_the_registry_while_it_is_imported_gets_its_own_plugin(
    site: Site
) -> None:
    # Its plugin module is imported in the thread that is importing the package: in a
    # helper thread, the plugin's own `from . import ...` would wait for the package's
    # import lock, which this thread holds until the registry is loaded, until the limit.
    site.install("evoreg-selfloading", "1.0", {"selfloading": "evoreg_test_pkg.plugin"}, {})
    package = site.folder / "evoreg_test_pkg"
    package.mkdir()
    (package / "__init__.py").write_text(
        "import time\n"
        "from evoreg.registry import Registry\n"
        "REGISTRY = Registry()\n"
        "START = time.monotonic()\n"
        "REGISTRY.load_entry_points({'EVOREG_PLUGINS': 'selfloading',\n"
        "                            'EVOREG_PLUGIN_IMPORT_TIMEOUT': '2'})\n"
        "SECONDS = time.monotonic() - START\n"
    )
    (package / "plugin.py").write_text(
        "from . import REGISTRY\n" + IMPOSTOR.format(module="pkg", names=["pkg-search"]))
    site.modules += ["evoreg_test_pkg", "evoreg_test_pkg.plugin"]
    importlib.invalidate_caches()
    import evoreg_test_pkg  # noqa: PLC0415 - written by this test

    assert evoreg_test_pkg.REGISTRY.broken == {}
    assert set(evoreg_test_pkg.REGISTRY.entries["optimizer"]) == {"pkg-search"}
    assert evoreg_test_pkg.SECONDS < 2


def test_the_import_time_limit_comes_from_the_environment() -> None:
    variable = evoreg.registry.TIMEOUT_VARIABLE
    assert import_timeout({}) == 10.0
    assert import_timeout({variable: " 2.5 "}) == 2.5
    assert import_timeout({variable: "0"}) is None and import_timeout({variable: "inf"}) is None
    for bad in ("ten", "nan"):
        with pytest.raises(EvoregError, match=f"{variable}='{bad}' is not a number of seconds"):
            import_timeout({variable: bad})


# --------------------------------------------------------------------------- provenance
def test_provenance_names_distribution_version_and_plugin(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EVOREG_PLUGINS", "random_search,sphere")  # the process-wide registry
    assert provenance("optimizer", "random-search") == {
        "distribution": "evoreg", "version": evoreg.__version__, "plugin": "random_search"}
    assert provenance("problem", "sphere") == {
        "distribution": "evoreg", "version": evoreg.__version__, "plugin": "sphere"}

    site.install("evoreg-extra", "4.5.6", {"extra": "evoreg_test_extra"},
                 {"evoreg_test_extra": IMPOSTOR.format(module="extra", names=["extra-search"])})
    registry = load({"EVOREG_PLUGINS": "extra"})
    assert registry.provenance("optimizer", "extra-search") == {
        "distribution": "evoreg-extra", "version": "4.5.6", "plugin": "extra"}

    module = types.ModuleType("in_process")
    module.evoreg_register_optimizers = hookimpl(
        lambda register: register("local-search", evoreg.optimizers()["random-search"].factory))
    registry.add_plugin(module, "in_process")
    assert registry.provenance("optimizer", "local-search") == {
        "distribution": None, "version": None, "plugin": "in_process"}
    with pytest.raises(UnknownNameError, match="did you mean 'extra-search'"):
        registry.provenance("optimizer", "extra-serch")
