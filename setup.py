"""Which packages the distribution installs, found rather than listed by hand.

Everything else is in pyproject.toml. plugins/ and problems/ install under evoreg.*
(evoreg.plugins, evoreg.problems) so that no generic top-level names land in site-packages;
setuptools' own discovery in pyproject cannot rename a folder, hence this file. Every
subpackage below each root is found, so a new one cannot be left out of the wheel (an
editable install would have hidden that).
"""

from setuptools import find_packages, setup

#: Installed package name -> its folder in the source tree.
ROOTS = {"evoreg": "evoreg", "evoreg.plugins": "plugins", "evoreg.problems": "problems"}


def packages() -> list[str]:
    found = []
    for package, folder in ROOTS.items():
        found.append(package)
        found.extend(f"{package}.{sub}" for sub in find_packages(where=folder))
    return found


setup(packages=packages(), package_dir=ROOTS)
