"""The registry index: what ``evoreg list`` and ``evoreg info`` print, kept as a JSON file.

Listing the registry for real imports every plugin, and the plugins import torch and
nevergrad: seconds before the first line is printed. When ``evoreg list`` or ``evoreg info``
has loaded the registry, it writes each entry's name, kind, plugin, family, summary and the
text ``evoreg info`` renders for it, plus the plugins that failed to load, to a file; later
calls print from that file while it is valid.

It is valid while its *fingerprint* is the current one: evoreg's and Python's versions,
every installed distribution and its version, the ``evoreg`` entry points and the
distribution that declares each, the ``EVOREG_PLUGINS`` / ``EVOREG_DISABLE_PLUGINS``
variables, and the modification time and size of every source file of each entry point's
top-level package or module (an editable install changes without a version bump). The
fingerprint is computed without importing any plugin. A load in which a plugin's import ran
over its time limit is not written: that is an outcome of the moment, not of what is
installed.

The file lives in ``$EVOREG_CACHE_DIR``, else ``$XDG_CACHE_HOME/evoreg``, else
``~/.cache/evoreg``, one file per Python environment. It is data (JSON), never code; a
missing, stale, corrupt or unwritable index is never an error: the registry is loaded for
real instead.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import os
import sys
import tempfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .registry import (
    DISABLE_VARIABLE,
    ENTRY_POINT_GROUP,
    KINDS,
    ONLY_VARIABLE,
    Entry,
    Origin,
    Registry,
    entry_point_origin,
)

#: Bumped when the file's layout or the rendering of what it stores changes.
INDEX_FORMAT = 2
CACHE_VARIABLE = "EVOREG_CACHE_DIR"
#: This package: its subpackages may live outside its folder (plugins/ and problems/ in an
#: editable install), and importing it to find them is cheap.
OWN_PACKAGE = __name__.partition(".")[0]


@dataclass(frozen=True)
class IndexedEntry:
    """What ``evoreg list`` and ``evoreg info`` show of one registered entry."""

    name: str
    kind: str
    plugin: str
    family: str
    summary: str
    #: ``describe(entry)``'s text; None when rendering it failed (then ``info`` loads the
    #: registry and renders it again, so the failure shows as it would without an index).
    description: str | None


@dataclass
class RegistryIndex:
    """Every entry by kind and name, and the plugins that failed to load with their errors."""

    entries: dict[str, dict[str, IndexedEntry]]
    broken: dict[str, str]

    @classmethod
    def from_registry(cls, registry: Registry, describe: Callable[[Entry], str]) -> RegistryIndex:
        entries: dict[str, dict[str, IndexedEntry]] = {kind: {} for kind in KINDS}
        for kind in KINDS:
            for name, entry in registry.entries[kind].items():
                try:
                    description: str | None = describe(entry)
                except Exception:  # noqa: BLE001 - `info` renders it again and shows the error
                    description = None
                entries[kind][name] = IndexedEntry(
                    name, kind, entry.plugin, str(entry.family), str(entry.summary), description
                )
        return cls(entries, dict(registry.broken))

    def to_json(self, fingerprint: dict[str, Any]) -> dict[str, Any]:
        return {
            "fingerprint": fingerprint,
            "entries": [asdict(entry) for kind in KINDS for entry in self.entries[kind].values()],
            "broken": self.broken,
        }

    @classmethod
    def from_json(cls, data: Any) -> RegistryIndex:
        """The index in ``data``; ValueError when it is not one (a corrupt or foreign file)."""
        if not isinstance(data, dict):
            raise ValueError("not an index")
        entries: dict[str, dict[str, IndexedEntry]] = {kind: {} for kind in KINDS}
        for record in data["entries"]:
            entry = IndexedEntry(**record)
            strings = (entry.name, entry.kind, entry.plugin, entry.family, entry.summary)
            if not all(isinstance(value, str) for value in strings) or entry.kind not in KINDS:
                raise ValueError(f"not an index entry: {record!r}")
            if not isinstance(entry.description, (str, type(None))):
                raise ValueError(f"not an index entry: {record!r}")
            entries[entry.kind][entry.name] = entry
        broken = data["broken"]
        if not isinstance(broken, dict) or not all(
            isinstance(key, str) and isinstance(value, str) for key, value in broken.items()
        ):
            raise ValueError("not an index: broken plugins")
        return cls(entries, broken)


# --------------------------------------------------------------------------- the file
def index_path(environ: Mapping[str, str] | None = None) -> Path:
    """The index file of this Python environment (two virtual environments each keep one)."""
    environ = os.environ if environ is None else environ
    if environ.get(CACHE_VARIABLE):
        folder = Path(environ[CACHE_VARIABLE])
    elif environ.get("XDG_CACHE_HOME"):
        folder = Path(environ["XDG_CACHE_HOME"]) / "evoreg"
    else:
        folder = Path.home() / ".cache" / "evoreg"
    environment = hashlib.sha256(os.path.abspath(sys.prefix).encode()).hexdigest()[:16]
    return folder / f"registry-index-{environment}.json"


def read_index(fingerprint: dict[str, Any], path: Path | None = None) -> RegistryIndex | None:
    """The index stored at ``path`` when its fingerprint is ``fingerprint``, else None."""
    try:
        path = index_path() if path is None else path
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict) or data.get("fingerprint") != fingerprint:
            return None
        return RegistryIndex.from_json(data)
    except (OSError, ValueError, TypeError, KeyError, RuntimeError):
        # missing, unreadable or corrupt, or no home folder to look in (RuntimeError): the
        # caller loads the registry instead
        return None


def write_index(
    index: RegistryIndex, fingerprint: dict[str, Any], path: Path | None = None
) -> bool:
    """Store ``index`` at ``path`` (temporary file, then rename: readers never see half a
    file); True when written. A folder that cannot be written is not an error."""
    temporary = None
    try:
        path = index_path() if path is None else path
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp",
                                             dir=path.parent)
        # No fsync: after a crash the file is at worst corrupt, and a corrupt index is rebuilt.
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            json.dump(index.to_json(fingerprint), file, ensure_ascii=False)
        os.replace(temporary, path)
        temporary = None
        return True
    except (OSError, TypeError, ValueError, RuntimeError):
        return False
    finally:
        if temporary is not None:
            try:
                os.unlink(temporary)
            except OSError:
                pass


# --------------------------------------------------------------------------- the fingerprint
def fingerprint(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """What the index depends on, as JSON values (compared with ``==`` after a round trip).

    Computed from package metadata and file stats; no plugin is imported.
    """
    from . import __version__

    environ = os.environ if environ is None else environ
    entry_points = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
    # Sets: a distribution seen twice on sys.path (an egg-info folder in the current
    # directory beside the installed one) is the same, and the registry loads it once.
    distributions = sorted({_name_and_version(dist) for dist in importlib.metadata.distributions()})
    # Each entry point with its distribution: a package that gains an entry point with the
    # name and target of a built-in one changes neither the other lists nor, when the
    # package is an editable install, its version, yet evoreg now reports it as a clash.
    origins: dict[int, Origin] = {}
    declared = {
        f"{entry_point_origin(ep, origins).distribution}:{ep.name}={ep.value}"
        for ep in entry_points
    }
    return {
        "format": INDEX_FORMAT,
        "evoreg": __version__,
        "python": sys.version,
        "distributions": [list(pair) for pair in distributions],
        "entry_points": sorted(declared),
        "environment": {name: environ.get(name) for name in (ONLY_VARIABLE, DISABLE_VARIABLE)},
        "sources": source_stamps(ep.module for ep in entry_points),
    }


def _name_and_version(dist: importlib.metadata.Distribution) -> tuple[str, str]:
    # One parse of the METADATA file: `dist.version` would parse it again, and parsing is
    # most of the fingerprint's time (some 80 distributions, 30 ms of `evoreg list`).
    metadata = dist.metadata or {}  # None: no METADATA
    return metadata.get("Name") or "", metadata.get("Version") or ""


def source_stamps(modules: Iterable[str]) -> dict[str, list[list[Any]] | None]:
    """``[path, mtime_ns, size]`` of each ``.py`` file of the packages that hold ``modules``,
    by package name (None: not found).

    A third-party module is stamped through its top-level package or module: finding a
    subpackage would import its parent, which may be heavy. This package's own subpackages
    are also looked up, since an editable install maps them to folders of their own.
    """
    packages: set[str] = set()
    for module in modules:
        parts = module.split(".")
        packages.add(parts[0])
        if parts[0] == OWN_PACKAGE:
            packages.update(".".join(parts[:depth]) for depth in range(2, len(parts)))
    return {package: _stamps(package) for package in sorted(packages)}


def _stamps(package: str) -> list[list[Any]] | None:
    try:
        spec = importlib.util.find_spec(package)
    except Exception:  # noqa: BLE001 - a broken finder or parent package: stamped as not found
        return None
    if spec is None:
        return None
    if spec.submodule_search_locations:
        files = [path for folder in spec.submodule_search_locations for path in _py_files(folder)]
    elif spec.origin and os.path.isfile(spec.origin):
        files = [spec.origin]
    else:
        return []  # built in or frozen: its version is in the fingerprint
    stamps = []
    for path in sorted(set(files)):
        try:
            stat = os.stat(path)
        except OSError:
            continue
        stamps.append([path, stat.st_mtime_ns, stat.st_size])
    return stamps


def _py_files(folder: str) -> Iterable[str]:
    for directory, subdirectories, files in os.walk(folder):
        subdirectories[:] = [d for d in subdirectories if d != "__pycache__"
                             and not d.startswith(".")]
        yield from (os.path.join(directory, name) for name in files if name.endswith(".py"))
