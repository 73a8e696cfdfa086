"""The plugin registry: pluggy, with built-ins and third-party packages loaded alike.

Plugins come from the ``evoreg`` entry-point group. ``EVOREG_PLUGINS=a,b`` loads only the
entry points named ``a`` and ``b``; ``EVOREG_DISABLE_PLUGINS=c`` skips ``c``. A plugin that
fails to import, whose hook raises, or that gets a hook wrong (a misspelt hook name or
argument, a hook function without ``@hookimpl``: pluggy would never call it) is recorded as
broken (``evoreg list`` shows it with its error) and the others keep working.
"""

from __future__ import annotations

import importlib.metadata
import inspect
import os
import traceback
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import pluggy

from . import hookspecs
from .errors import EvoregError, close_matches, unknown_name

ENTRY_POINT_GROUP = "evoreg"
ONLY_VARIABLE = "EVOREG_PLUGINS"
DISABLE_VARIABLE = "EVOREG_DISABLE_PLUGINS"
KINDS = ("optimizer", "problem")


@dataclass
class Entry:
    """One registered optimizer or problem."""

    name: str
    kind: str
    factory: Callable[..., Any]
    plugin: str
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def family(self) -> str:
        return self.info.get("family", "")

    @property
    def summary(self) -> str:
        if "summary" in self.info:
            return self.info["summary"]
        doc = inspect.getdoc(self.factory) or ""
        return doc.strip().splitlines()[0] if doc.strip() else ""

    @property
    def doc(self) -> str:
        return self.info.get("doc") or inspect.getdoc(self.factory) or ""

    @property
    def config(self) -> type | None:
        return self.info.get("config", getattr(self.factory, "Config", None))

    @property
    def citation(self) -> str:
        return self.info.get("citation", getattr(self.factory, "citation", ""))


class Registry:
    """Optimizers and problems by name, gathered from plugins."""

    def __init__(self) -> None:
        self.manager = pluggy.PluginManager("evoreg")
        self.manager.add_hookspecs(hookspecs)
        self.entries: dict[str, dict[str, Entry]] = {kind: {} for kind in KINDS}
        self.broken: dict[str, str] = {}

    # ----------------------------------------------------------------- loading
    def load_entry_points(self, environ: dict[str, str] | None = None) -> None:
        environ = os.environ if environ is None else environ
        only = _name_set(environ.get(ONLY_VARIABLE))
        disabled = _name_set(environ.get(DISABLE_VARIABLE)) or set()
        for entry_point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            if (only is not None and entry_point.name not in only) or (
                entry_point.name in disabled
            ):
                continue
            if self.manager.has_plugin(entry_point.name) or entry_point.name in self.broken:
                continue  # the same distribution seen twice on sys.path
            try:
                plugin = entry_point.load()
            except Exception as error:  # noqa: BLE001 - any import failure is reported
                self._mark_broken(entry_point.name, error)
                continue
            self.add_plugin(plugin, entry_point.name)

    def add_plugin(self, plugin: Any, name: str | None = None) -> None:
        """Register a plugin module or object and collect what its hooks register."""
        name = name or getattr(plugin, "__name__", repr(plugin))
        try:
            self.manager.register(plugin, name=name)
        except pluggy.PluginValidationError as error:  # a hookimpl argument the hook lacks
            if self.manager.is_registered(plugin):  # older pluggy registers it half-way
                self.manager.unregister(plugin)
            self._mark_broken(name, EvoregError(" ".join(str(error).split())))
            return
        except ValueError as error:
            raise EvoregError(f"plugin {name!r} is already registered") from error
        mistake = self._hook_mistake(plugin, name)
        if mistake is not None:
            self.manager.unregister(plugin)
            self._mark_broken(name, *mistake)
            return
        for kind, hook in (
            ("optimizer", self.manager.hook.evoreg_register_optimizers),
            ("problem", self.manager.hook.evoreg_register_problems),
        ):
            impls = [impl for impl in hook.get_hookimpls() if impl.plugin is plugin]
            added: list[str] = []
            try:
                for impl in impls:
                    impl.function(register=self._registrar(kind, name, added))
            except Exception as error:  # noqa: BLE001 - a failing hook marks its plugin broken
                for entry_name in added:
                    del self.entries[kind][entry_name]
                self.manager.unregister(plugin)
                self._mark_broken(name, error)
                return

    def _hook_mistake(self, plugin: Any, name: str) -> tuple[EvoregError, str | None] | None:
        """A hook that ``plugin`` gets wrong, which pluggy would silently never call, as an
        error and where it is; None when there is none.

        Either a ``@hookimpl`` whose name is no hook of evoreg (a misspelling: pluggy keeps it
        for a hook that may be declared later, which evoreg never does), or a function named
        like a hook but without ``@hookimpl``.
        """
        hooks = sorted(hook_name for hook_name, caller in vars(self.manager.hook).items()
                       if not hook_name.startswith("_") and caller.has_spec())
        for caller in self.manager.get_hookcallers(plugin) or []:
            if caller.has_spec():
                continue
            for impl in caller.get_hookimpls():
                if impl.plugin is plugin and not impl.optionalhook:
                    matches = close_matches(caller.name, hooks, n=1)
                    hint = (f"did you mean {matches[0]!r}?"
                            if matches else "evoreg's hooks: " + ", ".join(hooks))
                    error = EvoregError(
                        f"plugin {name!r} implements unknown hook {caller.name!r}; {hint}"
                    )
                    return error, _definition(impl.function)
        for hook_name in hooks:
            function = getattr(plugin, hook_name, None)
            if callable(function) and self.manager.parse_hookimpl_opts(plugin, hook_name) is None:
                error = EvoregError(
                    f"plugin {name!r} defines {hook_name}() without the @hookimpl marker, so "
                    f"it is never called; decorate it with @evoreg.hookimpl"
                )
                return error, _definition(function)
        return None

    def _registrar(self, kind: str, plugin: str, added: list[str]) -> Callable[..., None]:
        def register(name: str, factory: Callable[..., Any], **info: Any) -> None:
            if not isinstance(name, str) or not name:
                raise EvoregError(f"plugin {plugin!r} registered a {kind} without a name")
            existing = self.entries[kind].get(name)
            if existing is not None:
                raise EvoregError(
                    f"{kind} {name!r} from plugin {plugin!r} is already registered "
                    f"by plugin {existing.plugin!r}"
                )
            self.entries[kind][name] = Entry(name, kind, factory, plugin, dict(info))
            added.append(name)

        return register

    def _mark_broken(self, name: str, error: BaseException, where: str | None = None) -> None:
        """Record plugin ``name`` as broken by ``error``, raised at ``where`` (``file:line``;
        default: where the error was raised)."""
        if where is None and error.__traceback__ is not None:
            frame = traceback.extract_tb(error.__traceback__)[-1]
            where = f"{frame.filename}:{frame.lineno}"
        detail = f" ({where})" if where else ""
        self.broken[name] = f"{type(error).__name__}: {error}{detail}"
        warnings.warn(f"evoreg plugin {name!r} failed to load: {self.broken[name]}", stacklevel=3)

    # ----------------------------------------------------------------- lookup
    def get(self, kind: str, name: str) -> Entry:
        entries = self.entries[kind]
        if name not in entries:
            raise unknown_name(kind, name, entries)
        return entries[name]

    def make_optimizer(self, name: str, space: Any, **config: Any) -> Any:
        entry = self.get("optimizer", name)
        optimizer = entry.factory(space, **config)
        optimizer.name = name
        return optimizer

    def make_problem(self, name: str, **config: Any) -> Any:
        entry = self.get("problem", name)
        problem = entry.factory(**config)
        problem.name = name
        return problem


def _definition(function: Callable[..., Any]) -> str | None:
    """``file:line`` where ``function`` is defined, when Python knows it."""
    code = getattr(inspect.unwrap(function), "__code__", None)
    return f"{code.co_filename}:{code.co_firstlineno}" if code is not None else None


def _name_set(value: str | None) -> set[str] | None:
    if value is None:
        return None
    return {part.strip() for part in value.split(",") if part.strip()}


_default: Registry | None = None


def get_registry() -> Registry:
    """The process-wide registry, loaded from entry points on first use."""
    global _default
    if _default is None:
        _default = Registry()
        _default.load_entry_points()
    return _default


def is_loaded() -> bool:
    """Whether this process already holds the registry (``get_registry`` costs nothing)."""
    return _default is not None


def reset_registry() -> None:
    """Forget the loaded registry (tests; after installing a plugin in a running process)."""
    global _default
    _default = None


def optimizers() -> dict[str, Entry]:
    """Registered optimizers by name."""
    return dict(get_registry().entries["optimizer"])


def problems() -> dict[str, Entry]:
    """Registered problems by name."""
    return dict(get_registry().entries["problem"])


def make_optimizer(name: str, space: Any, **config: Any) -> Any:
    """The optimizer registered as ``name`` over ``space`` (``seed=``, ``device=`` and its
    hyperparameters as keywords)."""
    return get_registry().make_optimizer(name, space, **config)


def make_problem(name: str, **config: Any) -> Any:
    """The problem registered as ``name`` (``seed=``, ``device=`` and its config as keywords)."""
    return get_registry().make_problem(name, **config)


def names(kind: str) -> Iterable[str]:
    return get_registry().entries[kind].keys()
