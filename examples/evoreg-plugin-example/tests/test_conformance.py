"""The plugin passes the checks every evoreg optimizer passes (run with the plugin installed)."""

from evoreg.testing import conformance


@conformance(["one-fifth-es"])
def test_conformance(name, check):
    check(name)
