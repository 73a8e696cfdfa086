"""The plugin registry: pluggy, with built-ins and third-party packages loaded alike.

Plugins come from the ``evoreg`` entry-point group. ``EVOREG_PLUGINS=a,b`` loads only the
entry points named ``a`` and ``b``; ``EVOREG_DISABLE_PLUGINS=c`` skips ``c``. A plugin that
fails to import (``sys.exit()`` included), whose hook raises, or that gets a hook wrong (a
misspelt hook name or argument, a hook function without ``@hookimpl``: pluggy would never
call it) is recorded as broken (``evoreg list`` shows it with its error) and the others keep
working.

Built-ins are the entry points of the ``evoreg`` distribution itself. They are loaded first,
whatever order the entry points come in, so a third-party plugin cannot take a name that
evoreg provides: one that registers such a name (or uses the entry-point name of another
distribution's plugin) is broken, with both distributions named. Between third-party
plugins, the one whose distribution sorts first keeps a name.

A third-party plugin is imported in a daemon thread, and the registry stops waiting after
``EVOREG_PLUGIN_IMPORT_TIMEOUT`` seconds (default 10; 0 for no limit): a plugin that hangs
on import is broken and never used, and the interpreter can still exit. Built-ins are
imported in the calling thread (their imports are evoreg's own, and some of their
dependencies expect the main thread); one that takes longer than the limit is named on
stderr, so a hang shows where it is. So are third-party plugins when the registry is loaded
from a module's top level (a helper thread could wait for that module's import lock).
"""

from __future__ import annotations

import importlib.metadata
import inspect
import math
import os
import re
import sys
import threading
import traceback
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pluggy

from . import hookspecs
from .errors import EvoregError, close_matches, unknown_name

ENTRY_POINT_GROUP = "evoreg"
ONLY_VARIABLE = "EVOREG_PLUGINS"
DISABLE_VARIABLE = "EVOREG_DISABLE_PLUGINS"
TIMEOUT_VARIABLE = "EVOREG_PLUGIN_IMPORT_TIMEOUT"
#: Seconds a plugin's import may take (``EVOREG_PLUGIN_IMPORT_TIMEOUT``; 0: no limit).
DEFAULT_IMPORT_TIMEOUT = 10.0
KINDS = ("optimizer", "problem")
#: The distribution whose entry points are the built-ins.
OWN_DISTRIBUTION = "evoreg"


@dataclass(frozen=True)
class Origin:
    """The distribution that declares a plugin's entry point; both None for a plugin added
    in-process (``Registry.add_plugin``) or an entry point that names no distribution."""

    distribution: str | None = None
    version: str | None = None

    @property
    def builtin(self) -> bool:
        return (self.distribution is not None
                and _normalized(self.distribution) == OWN_DISTRIBUTION)

    def same_distribution(self, other: Origin) -> bool:
        if self.distribution is None or other.distribution is None:
            return self.distribution is other.distribution
        return _normalized(self.distribution) == _normalized(other.distribution)

    def describe_plugin(self, plugin: str) -> str:
        """How messages name ``plugin``: with its distribution, so that a plugin cannot pass
        for another package's."""
        if self.builtin:
            return f"plugin {plugin!r} of evoreg {self.version}"
        if self.distribution is None:
            return f"plugin {plugin!r}"
        return f"plugin {plugin!r} (distribution {self.distribution} {self.version})"


IN_PROCESS = Origin()


@dataclass
class Entry:
    """One registered optimizer or problem."""

    name: str
    kind: str
    factory: Callable[..., Any]
    plugin: str
    info: dict[str, Any] = field(default_factory=dict)
    origin: Origin = IN_PROCESS

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
        #: Broken plugins: name (with its distribution when another plugin has the name)
        #: -> the error, one line.
        self.broken: dict[str, str] = {}
        #: Every plugin name taken, loaded or broken, and whose it is.
        self.origins: dict[str, Origin] = {}
        #: Plugins given up on because their import took too long: an outcome of this run,
        #: not of what is installed (the registry index is not written from it).
        self.timed_out: set[str] = set()

    # ----------------------------------------------------------------- loading
    def load_entry_points(self, environ: Mapping[str, str] | None = None) -> None:
        environ = os.environ if environ is None else environ
        only = _name_set(environ.get(ONLY_VARIABLE))
        disabled = _name_set(environ.get(DISABLE_VARIABLE)) or set()
        limit = import_timeout(environ)
        entry_points = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
        cache: dict[int, Origin] = {}
        selected = [
            (entry_point, entry_point_origin(entry_point, cache))
            for entry_point in entry_points
            if (only is None or entry_point.name in only) and entry_point.name not in disabled
        ]
        # Built-ins first and the rest in a fixed order, whatever order importlib finds them
        # in (folders of sys.path, then the file system's): which plugin keeps a contested
        # name is then the same on every machine, and never a third-party one over evoreg.
        selected.sort(key=lambda pair: (not pair[1].builtin,
                                        _normalized(pair[1].distribution or ""), pair[0].name))
        for entry_point, origin in selected:
            name = entry_point.name
            holder = self.origins.get(name)
            if holder is not None:
                if holder.same_distribution(origin):
                    continue  # the same distribution seen twice on sys.path
                self._mark_broken(
                    f"{name} ({origin.distribution})",
                    EvoregError(
                        f"{origin.describe_plugin(name)} has the entry-point name of "
                        f"{holder.describe_plugin(name)}; it is not loaded (rename its entry point)"
                    ),
                )
                continue
            self.origins[name] = origin
            try:
                plugin = self._import(entry_point, origin, limit)
            except _ImportTimedOut as timed_out:
                self.timed_out.add(name)
                self._mark_broken(name, timed_out.error, where=timed_out.where)
                continue
            except (KeyboardInterrupt, GeneratorExit):
                raise  # Ctrl-C stops evoreg, as everywhere else
            except BaseException as error:  # noqa: BLE001 - SystemExit too: reported, not obeyed
                self._mark_broken(name, error)
                continue
            self.add_plugin(plugin, name, origin)

    def _import(self, entry_point: importlib.metadata.EntryPoint, origin: Origin,
                limit: float | None) -> Any:
        """``entry_point.load()``, within ``limit`` seconds for a third-party plugin.

        Raises what the import raised, or ``_ImportTimedOut``. Python cannot stop a thread,
        so an import that runs over the limit goes on in its daemon thread (which does not
        keep the interpreter alive) and its module is never used.
        """
        if limit is None or _inside_an_import():
            # No limit; or the registry is loaded from a module's top level, whose import
            # lock this thread holds: a helper thread whose plugin imports that module (a
            # package's plugin doing `from . import x`) would wait for it until the limit.
            return entry_point.load()
        label = origin.describe_plugin(entry_point.name)
        if origin.builtin:
            notice = threading.Timer(limit, _still_importing, args=(label, limit))
            notice.daemon = True
            notice.start()
            try:
                return entry_point.load()
            finally:
                notice.cancel()
        outcome: dict[str, Any] = {}

        def load() -> None:
            try:
                outcome["plugin"] = entry_point.load()
            except BaseException as error:  # noqa: BLE001 - handed to the waiting thread
                outcome["error"] = error

        thread = threading.Thread(target=load, name=f"evoreg import {entry_point.name}",
                                  daemon=True)
        thread.start()
        thread.join(limit)
        if thread.is_alive():
            frame = sys._current_frames().get(thread.ident or -1)
            where = f"{frame.f_code.co_filename}:{frame.f_lineno}" if frame else None
            raise _ImportTimedOut(
                EvoregError(
                    f"{label} did not finish importing within {limit:g} s "
                    f"({TIMEOUT_VARIABLE}); it is not used"
                ),
                f"still running at {where}" if where else None,
            )
        if "error" in outcome:
            raise outcome["error"]
        return outcome["plugin"]

    def add_plugin(self, plugin: Any, name: str | None = None,
                   origin: Origin = IN_PROCESS) -> None:
        """Register a plugin module or object and collect what its hooks register.

        ``origin``: the distribution that declares it (``provenance`` reports it); none for
        a plugin added in-process.
        """
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
        self.origins.setdefault(name, origin)
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
            try:
                for impl in impls:
                    impl.function(register=self._registrar(kind, name, origin))
            except (KeyboardInterrupt, GeneratorExit):
                raise
            except BaseException as error:  # noqa: BLE001 - a failing hook marks its plugin broken
                self._unregister(plugin)
                self._mark_broken(name, error)
                return

    def _unregister(self, plugin: Any) -> None:
        """Take ``plugin`` and every entry it registered out (of all kinds)."""
        name = self.manager.get_name(plugin)
        for entries in self.entries.values():
            for entry_name in [key for key, entry in entries.items() if entry.plugin == name]:
                del entries[entry_name]
        self.manager.unregister(plugin)

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

    def _registrar(self, kind: str, plugin: str, origin: Origin) -> Callable[..., None]:
        def register(name: str, factory: Callable[..., Any], **info: Any) -> None:
            if not isinstance(name, str) or not name:
                raise EvoregError(f"plugin {plugin!r} registered a {kind} without a name")
            existing = self.entries[kind].get(name)
            if existing is not None:
                who = origin.describe_plugin(plugin)
                if existing.plugin == plugin:
                    raise EvoregError(f"{who} registers {kind} {name!r} twice")
                holder = (f"evoreg {existing.origin.version}" if existing.origin.builtin
                          else existing.origin.describe_plugin(existing.plugin))
                raise EvoregError(
                    f"{who} registers {kind} {name!r}, which {holder} already provides; "
                    f"the plugin is not loaded"
                )
            self.entries[kind][name] = Entry(name, kind, factory, plugin, dict(info), origin)

        return register

    def _mark_broken(self, name: str, error: BaseException, where: str | None = None) -> None:
        """Record plugin ``name`` as broken by ``error``, raised at ``where`` (``file:line``;
        default: where the error was raised, in the plugin's code rather than evoreg's
        ``register``)."""
        if where is None and error.__traceback__ is not None:
            frames = traceback.extract_tb(error.__traceback__)
            outside = [frame for frame in frames if frame.filename != __file__] or frames
            where = f"{outside[-1].filename}:{outside[-1].lineno}"
        detail = f" ({where})" if where else ""
        text = " ".join(str(error).split())  # one line, like every plugin error
        message = f"{type(error).__name__}: {text}" if text else type(error).__name__
        self.broken[name] = message + detail
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

    def provenance(self, kind: str, name: str) -> dict[str, str | None]:
        """Where the ``kind`` registered as ``name`` comes from (see ``provenance``)."""
        if kind not in KINDS:
            raise unknown_name("kind", kind, KINDS)
        entry = self.get(kind, name)
        return {"distribution": entry.origin.distribution, "version": entry.origin.version,
                "plugin": entry.plugin}


def _definition(function: Callable[..., Any]) -> str | None:
    """``file:line`` where ``function`` is defined, when Python knows it."""
    code = getattr(inspect.unwrap(function), "__code__", None)
    return f"{code.co_filename}:{code.co_firstlineno}" if code is not None else None


class _ImportTimedOut(Exception):
    """A plugin's import ran over the limit: ``error`` to report, ``where`` it was then."""

    def __init__(self, error: EvoregError, where: str | None) -> None:
        super().__init__(str(error))
        self.error = error
        self.where = where


def import_timeout(environ: Mapping[str, str] | None = None) -> float | None:
    """Seconds a plugin's import may take, from ``EVOREG_PLUGIN_IMPORT_TIMEOUT``
    (default 10); None for no limit (0, a negative number or ``inf``)."""
    environ = os.environ if environ is None else environ
    text = environ.get(TIMEOUT_VARIABLE, "").strip()
    if not text:
        return DEFAULT_IMPORT_TIMEOUT
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if math.isnan(seconds):
        raise EvoregError(
            f"{TIMEOUT_VARIABLE}={text!r} is not a number of seconds "
            f"(default {DEFAULT_IMPORT_TIMEOUT:g}; 0 for no limit)"
        )
    return seconds if 0 < seconds < math.inf else None


def entry_point_origin(entry_point: importlib.metadata.EntryPoint,
                       cache: dict[int, Origin] | None = None) -> Origin:
    """The distribution that declares ``entry_point`` (none for one made up in code).

    ``cache``, by ``id`` of the distribution object, lives as long as the entry points do:
    reading a distribution's name and version parses its METADATA file (about 1 ms for
    evoreg's), and all entry points of a distribution share one object.
    """
    dist = getattr(entry_point, "dist", None)  # Python >= 3.10; None when made up in code
    if dist is None:
        return IN_PROCESS
    cache = {} if cache is None else cache
    if id(dist) not in cache:
        metadata = dist.metadata
        cache[id(dist)] = Origin((metadata or {}).get("Name"), dist.version)
    return cache[id(dist)]


def _normalized(distribution: str) -> str:
    """A distribution name as pip compares them (PEP 503)."""
    return re.sub(r"[-_.]+", "-", distribution).lower()


def _inside_an_import() -> bool:
    """Whether this thread is running a module's top level (importlib is on its stack)."""
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib._bootstrap"):
            return True
        frame = frame.f_back
    return False


def _still_importing(label: str, limit: float) -> None:
    print(f"evoreg: still importing {label} after {limit:g} s", file=sys.stderr, flush=True)


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


def provenance(kind: str, name: str) -> dict[str, str | None]:
    """Where the optimizer or problem (``kind``) registered as ``name`` comes from:
    ``{"distribution": ..., "version": ..., "plugin": ...}``, the installed distribution
    that declares its plugin (``"evoreg"`` for a built-in), that distribution's version, and
    the plugin's entry-point name. Distribution and version are None for a plugin added
    in-process with ``Registry.add_plugin``."""
    return get_registry().provenance(kind, name)


def names(kind: str) -> Iterable[str]:
    return get_registry().entries[kind].keys()
