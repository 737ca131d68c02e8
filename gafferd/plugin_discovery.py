"""Finding gafferd's plugins: the ``gaffer.apps`` entry points and the plugins directory,
each plugin imported, checked (a name, no duplicate, its requirements) and put in the
order of its requirements; what fails is kept, in error, never fatal (plugins.py).
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import inspect
import itertools
import logging
import os
import pkgutil
import sys
from collections.abc import Iterator
from types import ModuleType
from typing import TYPE_CHECKING, Any

from gaffer.plugin import Plugin, PluginError, check_name

if TYPE_CHECKING:
    import importlib.metadata

logger = logging.getLogger("gafferd.plugins")  # one name for the plugins' log lines

#: the entry point group that declares plugins in installed distributions
ENTRY_POINT_GROUP = "gaffer.apps"

SITE_DIR = "_site"
MODULE_PREFIX = "_gaffer_plugin_"

_serial = itertools.count(1)


@dataclasses.dataclass(frozen=True)
class PluginInfo:
    """What ``gafferd --plugins`` shows of one plugin (or of one plugin that failed)."""

    name: str
    version: str = "0"
    description: str = ""
    requires: tuple[str, ...] = ()
    source: str = ""  # "entry point <dist>:<module:attr>" or the plugin's directory
    site: str | None = None  # the static site's directory
    error: str | None = None  # why the plugin is not started

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclasses.dataclass(eq=False)
class Entry:
    info: PluginInfo
    plugin: Plugin | None = None  # None: a site-only plugin, or an error
    site_key: str | None = None  # the <dirname> of /_plugin/<dirname>/
    app: Any = None

    @property
    def name(self) -> str:
        return self.info.name

    def fail(self, error: str) -> None:
        self.info = dataclasses.replace(self.info, error=error)


class _FactoryPlugin(Plugin):
    """An entry point that is a plain callable returning an application."""

    name = "<factory>"  # replaced by the entry point's name

    def __init__(self, name: str, factory: Any, version: str, description: str) -> None:
        super().__init__()
        self.name = name
        self.version = version
        self.description = description
        self.factory = factory

    def app(self, config: dict[str, Any]) -> Any:
        how = _config_argument(self.factory)
        if how == "positional":
            return self.factory(config)
        if how == "keyword":
            return self.factory(config=config)
        return self.factory()


def _config_argument(factory: Any) -> str | None:
    try:
        parameters = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):
        return None
    for parameter in parameters:
        if parameter.kind is parameter.VAR_POSITIONAL:
            return "positional"
        if (
            parameter.kind in (parameter.POSITIONAL_ONLY, parameter.POSITIONAL_OR_KEYWORD)
            and parameter.default is parameter.empty
        ):
            return "positional"
        if parameter.name == "config" and parameter.kind is not parameter.VAR_KEYWORD:
            return "keyword"
    return None


def may_declare(group: str) -> bool:
    """Whether a distribution on ``sys.path`` may declare entry points of ``group``: a
    look at their ``entry_points.txt`` (about a millisecond), so that importlib.metadata
    (5 ms and 0.8 MiB for good) is imported only when there is something to load. True
    whenever unsure: a zip on the path, a finder that lists distributions of its own."""
    standard = {"BuiltinImporter", "FrozenImporter", "PathFinder"}
    for finder in sys.meta_path:
        name = getattr(finder, "__name__", type(finder).__name__)
        if hasattr(finder, "find_distributions") and name not in standard:
            return True
    needle = f"[{group}]"
    for entry in sys.path:
        directory = entry or "."
        if not os.path.isdir(directory):
            if os.path.exists(directory):  # a zip file: only importlib.metadata can tell
                return True
            continue
        try:
            names = os.listdir(directory)
        except OSError:
            continue
        for name in names:
            if not name.endswith((".dist-info", ".egg-info")):
                continue
            try:
                with open(os.path.join(directory, name, "entry_points.txt"), "rb") as handle:
                    if needle.encode() in handle.read():
                        return True
            except OSError:
                continue
    return False


def from_entry_points(group: str) -> list[Entry]:
    if not may_declare(group):
        return []
    import importlib.metadata

    try:
        found = importlib.metadata.entry_points(group=group)
    except Exception:
        logger.exception("cannot list the %s entry points", group)
        return []
    return [_load_entry_point(ep) for ep in sorted(found, key=lambda ep: (ep.name, ep.value))]


def _load_entry_point(ep: importlib.metadata.EntryPoint) -> Entry:
    dist = ep.dist
    dist_name = (dist.name if dist is not None else None) or "?"
    dist_version = str(dist.version) if dist is not None else "0"
    source = f"entry point {dist_name}:{ep.value}"
    try:
        target = ep.load()
    except (Exception, SystemExit) as exc:
        logger.exception("plugin %s (%s): import failed", ep.name, source)
        error = f"import failed: {exc_text(exc)}"
        return Entry(PluginInfo(ep.name, dist_version, source=source, error=error))
    if isinstance(target, type) and issubclass(target, Plugin):
        entry = _instantiate(target, source)
        if entry.plugin is None:  # in error: known by its entry point
            entry.info = dataclasses.replace(entry.info, name=ep.name, version=dist_version)
        elif not _defines_version(target):
            entry.info = dataclasses.replace(entry.info, version=dist_version)
        return entry
    if isinstance(target, Plugin):
        return _from_instance(target, source)
    if callable(target):
        summary = (dist.metadata["Summary"] if dist is not None else None) or ""
        return _from_instance(_FactoryPlugin(ep.name, target, dist_version, summary), source)
    error = f"{ep.value} is neither a Plugin subclass nor a callable returning an application"
    return Entry(PluginInfo(ep.name, dist_version, source=source, error=error))


def _defines_version(cls: type) -> bool:
    return any("version" in klass.__dict__ for klass in cls.__mro__ if klass is not Plugin)


# == plugins directory =====================================================================
def from_directory(root: str) -> list[Entry]:
    if not os.path.isdir(root):
        logger.warning("plugin directory %s does not exist", root)
        return []
    entries: list[Entry] = []
    for dirname in sorted(os.listdir(root)):
        path = os.path.join(root, dirname)
        if dirname.startswith((".", "_")) or not os.path.isdir(path):
            continue
        entries.extend(_load_plugin_dir(dirname, path))
    return entries


def _load_plugin_dir(dirname: str, path: str) -> list[Entry]:
    site: str | None = os.path.join(path, SITE_DIR)
    if not os.path.isdir(site):
        site = None
    packages = sorted(
        name
        for name in os.listdir(path)
        if name != SITE_DIR and os.path.isfile(os.path.join(path, name, "__init__.py"))
    )
    if not packages:
        if site is None and os.path.isfile(os.path.join(path, "index.html")):
            site = path
        if site is None:
            logger.debug("%s: no package, no site: ignored", path)
            return []
        return [Entry(PluginInfo(dirname, source=path, site=site), site_key=dirname)]
    classes: list[type[Plugin]] = []
    try:
        for package in packages:
            for module in _import_package(os.path.join(path, package), package):
                for cls in _plugin_classes(module):
                    if cls not in classes:
                        classes.append(cls)
    except (Exception, SystemExit) as exc:
        logger.exception("plugin %s: import failed", path)
        error = f"import failed: {exc_text(exc)}"
        return [Entry(PluginInfo(dirname, source=path, site=site, error=error))]
    if not classes:
        if site is not None:
            return [Entry(PluginInfo(dirname, source=path, site=site), site_key=dirname)]
        error = f"no Plugin subclass found in {', '.join(packages)}"
        return [Entry(PluginInfo(dirname, source=path, error=error))]
    entries = []
    for cls in classes:
        entry = _instantiate(cls, path, site)
        entry.site_key = dirname if site is not None else None
        entries.append(entry)
    return entries


def _import_package(path: str, package: str) -> list[ModuleType]:
    """Import the package at ``path`` and every module in it, under a private name."""
    modname = f"{MODULE_PREFIX}{next(_serial)}_{package}"
    spec = importlib.util.spec_from_file_location(
        modname, os.path.join(path, "__init__.py"), submodule_search_locations=[path]
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[modname] = module
    try:
        spec.loader.exec_module(module)
        modules = [module]
        for name in _submodules(path):
            modules.append(importlib.import_module(f"{modname}.{name}"))
    except BaseException:
        for name in [name for name in sys.modules if name.split(".")[0] == modname]:
            del sys.modules[name]
        raise
    return modules


def _submodules(path: str, prefix: str = "") -> Iterator[str]:
    for info in sorted(pkgutil.iter_modules([path]), key=lambda info: info.name):
        yield prefix + info.name
        if info.ispkg:
            yield from _submodules(os.path.join(path, info.name), f"{prefix}{info.name}.")


def _plugin_classes(module: ModuleType) -> list[type[Plugin]]:
    exported = getattr(module, "__all__", None)
    if exported is not None:
        candidates = [getattr(module, name, None) for name in exported]
    else:
        candidates = [
            obj
            for obj in vars(module).values()
            if isinstance(obj, type) and obj.__module__ == module.__name__
        ]
    return [
        obj
        for obj in candidates
        if isinstance(obj, type) and issubclass(obj, Plugin) and obj is not Plugin
    ]


# == checks ================================================================================
def _instantiate(cls: type[Plugin], source: str, site: str | None = None) -> Entry:
    label = getattr(cls, "name", None) or cls.__qualname__
    try:
        check_name(cls)
        plugin = cls()
    except Exception as exc:
        if not isinstance(exc, PluginError):
            logger.exception("plugin %s (%s): cannot be created", label, source)
        error = str(exc) if isinstance(exc, PluginError) else f"{cls.__qualname__}(): {exc!r}"
        return Entry(PluginInfo(str(label), source=source, site=site, error=error))
    return _from_instance(plugin, source, site)


def _from_instance(plugin: Plugin, source: str, site: str | None = None) -> Entry:
    info = PluginInfo(
        name=plugin.name,
        version=str(plugin.version),
        description=plugin.description or "",
        requires=tuple(plugin.requires),
        source=source,
        site=site,
    )
    return Entry(info, plugin)


def check_duplicates(entries: list[Entry]) -> dict[str, Entry]:
    """The first of each name wins; the next ones are put in error."""
    by_name: dict[str, Entry] = {}
    for entry in entries:
        if not entry.info.ok:
            continue
        first = by_name.get(entry.name)
        if first is None:
            by_name[entry.name] = entry
        else:
            entry.fail(
                f"duplicate plugin name {entry.name!r}, already provided by {first.info.source}"
            )
    return by_name


def check_requirements(entries: list[Entry], by_name: dict[str, Entry]) -> None:
    """Puts in error, to a fixpoint, each plugin that requires a missing plugin or one in
    error."""
    changed = True
    while changed:
        changed = False
        for entry in entries:
            if not entry.info.ok:
                continue
            for required in entry.info.requires:
                dependency = by_name.get(required)
                if dependency is None:
                    entry.fail(f"requires {required} which is not installed")
                elif not dependency.info.ok:
                    entry.fail(f"requires {required} which is in error")
                else:
                    continue
                changed = True
                break


def dependency_order(entries: list[Entry], by_name: dict[str, Entry]) -> list[Entry]:
    """``entries`` in discovery order, except that each comes after those it requires
    (a cycle is left in discovery order)."""
    ordered: list[Entry] = []
    placed: set[str] = set()
    visiting: set[str] = set()

    def place(entry: Entry) -> None:
        if entry.name in placed or entry.name in visiting:
            return
        visiting.add(entry.name)
        for required in entry.info.requires:
            dependency = by_name.get(required)
            if dependency is not None and dependency.info.ok:
                place(dependency)
        visiting.discard(entry.name)
        placed.add(entry.name)
        ordered.append(entry)

    for entry in entries:
        place(entry)
    return ordered


def exc_text(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
