"""The wheel: every module of the source tree under its installed name, the entry points of
pyproject.toml, an SPDX license, and a build that setuptools does not warn about.

An editable install finds modules in the source tree whatever the package list says, so only a
built wheel shows a subpackage left out. The wheel is built from a copy of the tree, so that
no build/ or *.egg-info lands in the repository.
"""

from __future__ import annotations

import configparser
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
#: Folder of the source tree -> the package it installs as.
INSTALLED_AS = {"evoreg": "evoreg", "plugins": "evoreg/plugins", "problems": "evoreg/problems"}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The wheel built from a copy of the source tree, and what the build printed."""
    root = tmp_path_factory.mktemp("packaging")
    source = shutil.copytree(ROOT, root / "source", ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", "runs"))
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "-w", str(root / "wheels"), str(source)],
        capture_output=True, text=True, timeout=300,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-3000:]
    [wheel] = (root / "wheels").glob("evoreg-*.whl")
    return wheel, output


def test_every_module_of_the_source_tree_is_in_the_wheel_under_its_installed_name(built):
    wheel, _ = built
    expected = {
        f"{package}/{path.relative_to(ROOT / folder).as_posix()}"
        for folder, package in INSTALLED_AS.items()
        for path in (ROOT / folder).rglob("*.py")
        if "__pycache__" not in path.parts
    }
    assert "evoreg/nets/batched.py" in expected  # a subpackage (one was once missing from the list)
    with zipfile.ZipFile(wheel) as archive:
        modules = {name for name in archive.namelist() if name.endswith(".py")}
    assert sorted(expected - modules) == [], "left out of the wheel"
    assert sorted(modules - expected) == [], "in the wheel but not in the source tree"


def test_the_wheels_entry_points_are_pyprojects(built):
    wheel, _ = built
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    with zipfile.ZipFile(wheel) as archive:
        text = archive.read("evoreg-0.1.0.dist-info/entry_points.txt").decode()
    entry_points = configparser.ConfigParser(delimiters=("=",))
    entry_points.optionxform = str  # names are case-sensitive
    entry_points.read_string(text)
    assert dict(entry_points["evoreg"]) == project["entry-points"]["evoreg"]
    assert dict(entry_points["console_scripts"]) == project["scripts"]


def test_the_license_is_an_spdx_expression_and_the_build_does_not_warn_about_it(built):
    wheel, output = built
    warnings = [line for line in output.splitlines()
                if "license" in line.lower() and "deprecat" in line.lower()]
    assert warnings == []
    with zipfile.ZipFile(wheel) as archive:
        metadata = archive.read("evoreg-0.1.0.dist-info/METADATA").decode()
        license_text = archive.read("evoreg-0.1.0.dist-info/licenses/LICENSE").decode()
    assert "License-Expression: MIT" in metadata.splitlines()
    assert "License-File: LICENSE" in metadata.splitlines()
    assert license_text.startswith("MIT License") and "evoreg developers" in license_text
