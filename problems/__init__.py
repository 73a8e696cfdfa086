"""Built-in problems, installed as ``evoreg.problems``; each module is a plugin.

``evoreg.problems`` is both this package and the function that lists registered problems
(``evoreg.problems()``): the package's module object is made callable so the two names
do not shadow each other.
"""

import sys
import types


class _CallableModule(types.ModuleType):
    def __call__(self):
        """Registered problems by name (the same as ``evoreg.registry.problems()``)."""
        from evoreg.registry import problems

        return problems()


sys.modules[__name__].__class__ = _CallableModule
