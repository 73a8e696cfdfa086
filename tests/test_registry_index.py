"""The registry index: `evoreg list` and `evoreg info` print from it without importing any
plugin, it is rebuilt when what it depends on changes, and a bad index is never an error."""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import evoreg.registry
from evoreg import registry_index
from evoreg.cli import main

HEAVY = ("torch", "numpy", "nevergrad")

#: Runs `evoreg` commands (argv lists, JSON in argv[1]) in one process, as the console script
#: would, and prints each one's status, stdout and stderr and the heavy modules imported.
RUN_COMMANDS = """
import contextlib, io, json, sys
from evoreg.cli import main
results = []
for args in json.loads(sys.argv[1]):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main(args)
    results.append([status, out.getvalue(), err.getvalue()])
heavy = sorted(name for name in json.loads(sys.argv[2]) if name in sys.modules)
print(json.dumps({"results": results, "heavy": heavy}))
"""

COMMANDS = [
    ["list"],
    ["list", "optimizers", "--family", "nevergrad"],
    ["info", "leea"],
    ["info", "ng:NGOpt"],
    ["info", "spher"],  # unknown: a close match, exit status 2
]


def run_commands(commands: list[list[str]], cache: Path) -> dict:
    env = dict(os.environ, EVOREG_CACHE_DIR=str(cache))
    # the default plugins of this environment: ng:* included
    env.pop("EVOREG_PLUGINS", None)
    env.pop("EVOREG_DISABLE_PLUGINS", None)
    done = subprocess.run(
        [sys.executable, "-c", RUN_COMMANDS, json.dumps(commands), json.dumps(HEAVY)],
        env=env, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


def test_list_and_info_print_the_same_from_the_index_without_importing_plugins(tmp_path):
    cache = tmp_path / "cache"
    # No index: the first command loads the registry (plugins, torch, nevergrad) and writes
    # the index; the others print from the registry loaded in that process.
    loaded = run_commands(COMMANDS, cache)
    assert set(loaded["heavy"]) == set(HEAVY)
    [index_file] = cache.iterdir()
    assert index_file.suffix == ".json"
    # With the index: the same output, and no plugin, torch, numpy or nevergrad imported.
    indexed = run_commands(COMMANDS, cache)
    assert indexed["heavy"] == []
    assert indexed["results"] == loaded["results"]

    results = dict(zip(map(tuple, COMMANDS), indexed["results"]))
    status, out, _ = results[("list",)]
    assert status == 0 and "random-search" in out and "ng:*" in out and "sphere" in out
    status, out, _ = results[("list", "optimizers", "--family", "nevergrad")]
    assert status == 0 and "ng:NGOpt" in out and "random-search" not in out
    status, out, _ = results[("info", "leea")]
    assert status == 0 and out.startswith("leea (optimizer)") and "Hyperparameters" in out
    status, out, _ = results[("info", "ng:NGOpt")]
    assert status == 0 and "ng:NGOpt (optimizer)" in out and "budget" in out
    status, out, err = results[("info", "spher")]
    assert status == 2 and out == ""
    assert err == "evoreg: error: unknown optimizer or problem 'spher'; did you mean 'sphere'?\n"


# --------------------------------------------------------------------------- in-process
PLUGIN_SOURCE = """
from evoreg import hookimpl
from evoreg.plugins.random_search import RandomSearch

@hookimpl
def evoreg_register_optimizers(register):
    register("{name}", RandomSearch, family="index-test", summary="{summary}")
"""


class FakeEntryPoints:
    """Plugin modules written to a folder on sys.path, declared as `evoreg` entry points."""

    def __init__(self, folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.folder = folder
        self.monkeypatch = monkeypatch
        self.entry_points: list[importlib.metadata.EntryPoint] = []
        monkeypatch.syspath_prepend(str(folder))
        monkeypatch.setattr(importlib.metadata, "entry_points", self._select)

    def _select(self, group: str) -> list[importlib.metadata.EntryPoint]:
        return [ep for ep in self.entry_points if ep.group == group]

    def add(self, name: str, source: str) -> Path:
        module = f"evoreg_index_test_{name}"
        path = self.folder / f"{module}.py"
        path.write_text(source)
        self.entry_points.append(importlib.metadata.EntryPoint(name, module, "evoreg"))
        self.monkeypatch.delitem(sys.modules, module, raising=False)
        return path

    def forget_loaded(self) -> None:
        """A new process, as far as the CLI can tell: no registry, no plugin module loaded."""
        evoreg.registry.reset_registry()
        for ep in self.entry_points:
            sys.modules.pop(ep.value, None)


@pytest.fixture
def plugins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeEntryPoints]:
    monkeypatch.setenv("EVOREG_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("EVOREG_PLUGINS", raising=False)
    monkeypatch.delenv("EVOREG_DISABLE_PLUGINS", raising=False)
    monkeypatch.setattr(evoreg.registry, "_default", None)  # restored after the test
    fake = FakeEntryPoints(tmp_path / "site", monkeypatch)
    fake.folder.mkdir()
    yield fake
    fake.forget_loaded()


def list_output(capsys: pytest.CaptureFixture[str], plugins: FakeEntryPoints) -> str:
    plugins.forget_loaded()
    assert main(["list"]) == 0
    return capsys.readouterr().out


def refuse_loading(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make loading the registry for real fail, so that a passing command used the index."""

    def load(*args, **kwargs):
        raise AssertionError("the registry was loaded although the index is valid")

    monkeypatch.setattr(evoreg.registry.Registry, "load_entry_points", load)


def test_index_is_used_until_a_plugin_source_file_changes(plugins, capsys, monkeypatch):
    path = plugins.add("alpha", PLUGIN_SOURCE.format(name="alpha-search", summary="one"))
    assert "one" in list_output(capsys, plugins)
    assert registry_index.index_path().is_file()
    stat = path.stat()

    # Same size and modification time: the index still holds, even though the text changed.
    path.write_text(PLUGIN_SOURCE.format(name="alpha-search", summary="two"))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    with monkeypatch.context() as patch:
        refuse_loading(patch)
        assert "one" in list_output(capsys, plugins)

    # A newer modification time (an edit of an editable install): rebuilt from the source.
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 100 * 10**9))
    assert "two" in list_output(capsys, plugins)
    with monkeypatch.context() as patch:  # and the rebuilt index is used again
        refuse_loading(patch)
        assert "two" in list_output(capsys, plugins)


def test_index_is_rebuilt_when_the_plugin_selection_changes(plugins, capsys, monkeypatch):
    plugins.add("alpha", PLUGIN_SOURCE.format(name="alpha-search", summary="a"))
    plugins.add("beta", PLUGIN_SOURCE.format(name="beta-search", summary="b"))
    out = list_output(capsys, plugins)
    assert "alpha-search" in out and "beta-search" in out
    monkeypatch.setenv("EVOREG_DISABLE_PLUGINS", "beta")
    out = list_output(capsys, plugins)
    assert "alpha-search" in out and "beta-search" not in out
    monkeypatch.setenv("EVOREG_PLUGINS", "beta")
    monkeypatch.delenv("EVOREG_DISABLE_PLUGINS")
    out = list_output(capsys, plugins)
    assert "alpha-search" not in out and "beta-search" in out


def test_broken_plugins_are_listed_and_warned_about_from_the_index(plugins, capsys, monkeypatch):
    plugins.add("alpha", PLUGIN_SOURCE.format(name="alpha-search", summary="a"))
    plugins.add("broken", "raise ImportError('needs libfoo')\n")
    loaded = list_output(capsys, plugins)  # the CLI turns the registry's warning into a line
    with monkeypatch.context() as patch:
        refuse_loading(patch)
        indexed = list_output(capsys, plugins)
        assert indexed == loaded
        assert "Broken plugins" in indexed and "ImportError: needs libfoo" in indexed
        assert main(["info", "alpha-search"]) == 0
        captured = capsys.readouterr()
        assert captured.out.startswith("alpha-search (optimizer)")
        assert captured.err.startswith("evoreg: warning: plugin 'broken' failed to load: "
                                       "ImportError: needs libfoo")


UNRENDERABLE_SOURCE = """
import dataclasses
from evoreg import hookimpl
from evoreg.plugins.random_search import RandomSearch

@dataclasses.dataclass
class Config:
    rate: float = dataclasses.field(default_factory=lambda: 1 / 0)  # breaks `info`'s table

class Unrenderable(RandomSearch):
    \"\"\"A random search whose hyperparameter table cannot be rendered.\"\"\"
    Config = Config

@hookimpl
def evoreg_register_optimizers(register):
    register("unrenderable", Unrenderable)
"""


def test_an_entry_that_info_cannot_render_keeps_list_working_and_info_shows_why(
    plugins, capsys, monkeypatch
):
    plugins.add("odd", UNRENDERABLE_SOURCE)
    plugins.add("alpha", PLUGIN_SOURCE.format(name="alpha-search", summary="a"))
    assert "unrenderable" in list_output(capsys, plugins)
    with monkeypatch.context() as patch:  # list and other entries' info: from the index
        refuse_loading(patch)
        assert "A random search whose" in list_output(capsys, plugins)
        assert main(["info", "alpha-search"]) == 0
    plugins.forget_loaded()
    # info renders it again from the registry, so the failure shows as a bug (traceback)
    assert main(["info", "unrenderable"]) == 1
    assert capsys.readouterr().err.strip().endswith("ZeroDivisionError: division by zero")


@pytest.mark.parametrize(
    "content",
    [
        "{not json",
        "",
        "[]",
        '{"fingerprint": 1}',
        b"\x00\xff not utf-8",
    ],
)
def test_a_corrupt_index_is_rebuilt_silently(plugins, capsys, content):
    plugins.add("alpha", PLUGIN_SOURCE.format(name="alpha-search", summary="a"))
    expected = list_output(capsys, plugins)
    path = registry_index.index_path()
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    plugins.forget_loaded()
    assert main(["list"]) == 0
    captured = capsys.readouterr()
    assert captured.out == expected and captured.err == ""
    assert json.loads(path.read_text())["entries"][0]["name"] == "alpha-search"


def test_an_index_with_the_right_fingerprint_but_bad_entries_is_rebuilt(plugins, capsys):
    plugins.add("alpha", PLUGIN_SOURCE.format(name="alpha-search", summary="a"))
    expected = list_output(capsys, plugins)
    path = registry_index.index_path()
    data = json.loads(path.read_text())
    for bad in ({"name": 3}, {"kind": "widget"}, {"unexpected": "key"}):
        record = {**data["entries"][0], **bad}
        path.write_text(json.dumps({**data, "entries": [record]}))
        assert list_output(capsys, plugins) == expected


def test_an_unwritable_cache_is_not_an_error(plugins, capsys, monkeypatch, tmp_path):
    plugins.add("alpha", PLUGIN_SOURCE.format(name="alpha-search", summary="a"))
    not_a_folder = tmp_path / "a-file"
    not_a_folder.write_text("")
    monkeypatch.setenv("EVOREG_CACHE_DIR", str(not_a_folder / "cache"))
    for _ in range(2):  # nothing written, so each call loads the registry
        plugins.forget_loaded()
        assert main(["list"]) == 0
        captured = capsys.readouterr()
        assert "alpha-search" in captured.out and captured.err == ""


def test_no_home_folder_is_not_an_error(plugins, capsys, monkeypatch):
    plugins.add("alpha", PLUGIN_SOURCE.format(name="alpha-search", summary="a"))
    for variable in ("EVOREG_CACHE_DIR", "XDG_CACHE_HOME", "HOME"):
        monkeypatch.delenv(variable, raising=False)

    def no_home() -> Path:
        raise RuntimeError("Could not determine home directory.")

    monkeypatch.setattr(Path, "home", staticmethod(no_home))
    assert "alpha-search" in list_output(capsys, plugins)
    assert capsys.readouterr().err == ""


def test_the_index_is_json_in_the_chosen_cache_folder(tmp_path):
    environ = {"EVOREG_CACHE_DIR": str(tmp_path / "a"), "XDG_CACHE_HOME": str(tmp_path / "b")}
    assert registry_index.index_path(environ).parent == tmp_path / "a"
    assert registry_index.index_path({"XDG_CACHE_HOME": str(tmp_path / "b")}).parent == (
        tmp_path / "b" / "evoreg"
    )
    assert registry_index.index_path({}).parent == Path.home() / ".cache" / "evoreg"
    # one file per Python environment, so two virtual environments do not overwrite each other
    assert registry_index.index_path(environ).name.startswith("registry-index-")


def test_the_fingerprint_covers_evoregs_own_source_folders():
    sources = registry_index.fingerprint()["sources"]
    folders = {Path(path).parent.name for stamps in sources.values() for path, _, _ in stamps}
    assert {"evoreg", "plugins", "problems"} <= folders
    assert any(path.endswith("random_search.py") for stamps in sources.values()
               for path, _, _ in stamps)
