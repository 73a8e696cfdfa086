"""`import evoreg` and the command line's start import nothing heavy; every public name still
works, imported on first use."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

import evoreg

HEAVY = ("torch", "numpy", "nevergrad")

REPORT_HEAVY = (
    "import json, sys; "
    f"print(json.dumps(sorted(name for name in {HEAVY!r} if name in sys.modules)))"
)


def heavy_modules_after(code: str) -> list[str]:
    env = {**os.environ}
    env.pop("THP_MEM_ALLOC_ENABLE", None)
    done = subprocess.run([sys.executable, "-c", f"{code}\n{REPORT_HEAVY}"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def test_import_evoreg_and_its_cli_imports_nothing_heavy():
    assert heavy_modules_after("import evoreg, evoreg.cli") == []


def test_version_and_argument_errors_import_nothing_heavy():
    code = (
        "import contextlib, io, os\n"
        "from evoreg.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()) as out:\n"
        "    assert main(['--version']) == 0\n"
        "assert out.getvalue() == 'evoreg ' + __import__('evoreg').__version__ + '\\n'\n"
        "with contextlib.redirect_stderr(io.StringIO()):\n"
        "    assert main(['frobnicate']) == 2\n"
        "assert os.environ['THP_MEM_ALLOC_ENABLE'] == '1'  # set before torch is first imported"
    )
    assert heavy_modules_after(code) == []


@pytest.mark.parametrize("name", evoreg.__all__)
def test_every_public_name_resolves(name):
    value = getattr(evoreg, name)
    namespace: dict = {}
    exec(f"from evoreg import {name}", namespace)
    assert namespace[name] is value
    assert name in dir(evoreg)


def test_problems_is_the_package_and_the_listing_function():
    import evoreg.problems.sphere as sphere

    assert evoreg.problems is sys.modules["evoreg.problems"]
    assert evoreg.problems()["sphere"].factory is sphere.Sphere


def test_submodules_are_reachable_as_attributes_and_unknown_names_are_refused():
    assert evoreg.runner.derive_seeds is sys.modules["evoreg.runner"].derive_seeds
    with pytest.raises(AttributeError, match="has no attribute 'no_such_name'"):
        evoreg.no_such_name  # noqa: B018
