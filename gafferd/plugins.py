"""gafferd plugins: discovery, requirement checks, hooks and guarded applications.

Plugins come from two places, in this order:

1. the ``gaffer.apps`` entry-point group of the installed distributions. An entry point
   resolves to a ``gaffer.Plugin`` subclass, or to any callable returning an application
   (it is called with the plugin's config dict when it takes a positional argument or a
   ``config`` argument, else with no argument); the plugin is then named after the entry
   point;
2. the plugins directory, one sub-directory per plugin::

       <plugins_dir>/<dirname>/_site/           a static site, served at /_plugin/<dirname>/
       <plugins_dir>/<dirname>/<package>/       a Python package (with __init__.py)
       <plugins_dir>/<dirname>/index.html       no package, no _site: the directory is the site

   Every module of every package is imported under a private name
   (``_gaffer_plugin_<n>_<package>``), so two plugin directories may hold packages of the
   same name; the modules of a plugin package import each other with relative imports.
   The ``Plugin`` subclasses listed in a module's ``__all__`` (or defined in it when it has
   no ``__all__``) are the plugins.

Nothing a plugin does is fatal to gafferd. An import failure, a plugin class without a
name, a second plugin of the same name, or a requirement that is missing or in error puts
the plugin *in error* (``PluginInfo.error``, logged): it is not started, the others are.
Exceptions raised by hooks and by applications (start, stop, restart) are logged and
swallowed.

Wiring, as gafferd does it::

    plugins = PluginManager(plugin_dir, configs)   # configs: plugin name -> config dict
    plugins.discover()
    plugins.initialize(manager)                    # before any job starts
    manager.start(apps=[*other_apps, *plugins.apps])
    ...load the jobs...
    plugins.on_start(manager)
    ...
    manager.stop(callback=plugins.on_shutdown)     # after every process and app stopped
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib
import importlib.util
import inspect
import itertools
import logging
import os
import pkgutil
import sys
from collections.abc import Iterable, Iterator, Mapping
from types import ModuleType
from typing import TYPE_CHECKING, Any

from gaffer.plugin import Plugin, PluginError, check_name

if TYPE_CHECKING:
    import importlib.metadata

__all__ = [
    "ENTRY_POINT_GROUP",
    "PluginApp",
    "PluginInfo",
    "PluginManager",
    "describe",
    "describe_apps",
]

logger = logging.getLogger(__name__)

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
class _Entry:
    info: PluginInfo
    plugin: Plugin | None = None  # None: a site-only plugin, or an error
    site_key: str | None = None  # the <dirname> of /_plugin/<dirname>/
    app: Any = None

    @property
    def name(self) -> str:
        return self.info.name

    def fail(self, error: str) -> None:
        self.info = dataclasses.replace(self.info, error=error)


class PluginManager:
    """Finds the plugins (entry points, then ``plugin_dir``), checks them, and calls them.

    ``configs`` maps a plugin name to its config section (a dict), given to the plugin's
    ``app(config)`` and set as ``plugin.config``. ``entry_points=False`` ignores the
    installed distributions (only ``plugin_dir`` is searched).

    ``discover()`` may be called again (on reload): the previous plugins and applications
    are forgotten, so stop the old applications first.
    """

    def __init__(
        self,
        plugin_dir: str | os.PathLike[str] | None,
        configs: Mapping[str, Mapping[str, Any]] | None = None,
        entry_points: bool = True,
        group: str = ENTRY_POINT_GROUP,
    ) -> None:
        self.plugin_dir = os.fspath(plugin_dir) if plugin_dir is not None else None
        self.configs: dict[str, dict[str, Any]] = {
            name: dict(config) for name, config in (configs or {}).items()
        }
        self.entry_points = entry_points
        self.group = group
        self._entries: list[_Entry] | None = None
        self._ordered: list[_Entry] = []  # loaded plugins, each after those it requires
        self._apps: list[PluginApp] | None = None

    # == discovery =========================================================================
    def discover(self) -> list[PluginInfo]:
        """Find, load and check every plugin; never raises for a plugin's fault."""
        entries: list[_Entry] = []
        if self.entry_points:
            entries.extend(_from_entry_points(self.group))
        if self.plugin_dir is not None:
            entries.extend(_from_directory(self.plugin_dir))
        by_name = _check_duplicates(entries)
        _check_requirements(entries, by_name)
        for entry in entries:
            if entry.info.error is not None and not entry.info.error.startswith("import failed"):
                logger.error(
                    "plugin %s (%s) not started: %s",
                    entry.name,
                    entry.info.source,
                    entry.info.error,
                )
        self._entries = entries
        self._ordered = _dependency_order([entry for entry in entries if entry.info.ok], by_name)
        self._apps = None
        for entry in self._ordered:
            if entry.plugin is not None:
                entry.plugin.config = dict(self.configs.get(entry.name, {}))
        return self.infos

    def _discovered(self) -> list[_Entry]:
        if self._entries is None:
            self.discover()
        assert self._entries is not None
        return self._entries

    @property
    def infos(self) -> list[PluginInfo]:
        """Every plugin found, in discovery order, those in error included."""
        return [entry.info for entry in self._discovered()]

    def get(self, name: str) -> Plugin:
        """The loaded plugin named ``name`` (KeyError when there is none, or it is in error
        or site-only)."""
        self._discovered()
        for entry in self._ordered:
            if entry.name == name and entry.plugin is not None:
                return entry.plugin
        raise KeyError(name)

    @property
    def apps(self) -> list[PluginApp]:
        """The applications to start (``manager.start(apps=...)``), each in a PluginApp
        guard; built once, on first use, with ``plugin.app(config)``. A plugin whose
        ``app()`` raises is logged and put in error (its hooks are still called)."""
        self._discovered()
        if self._apps is None:
            self._apps = []
            for entry in self._ordered:
                if entry.plugin is None:
                    continue
                config = dict(self.configs.get(entry.name, {}))
                try:
                    app = entry.plugin.app(config)
                except Exception as exc:
                    logger.exception("plugin %s: app() failed", entry.name)
                    entry.fail(f"app() failed: {_exc_text(exc)}")
                    continue
                if app is None:
                    continue
                entry.app = app
                self._apps.append(PluginApp(entry.name, app))
        return list(self._apps)

    @property
    def sites(self) -> dict[str, str]:
        """``dirname -> directory`` of the static sites to serve at ``/_plugin/<dirname>/``
        (plugins in error excluded)."""
        self._discovered()
        return {
            entry.site_key: entry.info.site
            for entry in self._ordered
            if entry.site_key is not None and entry.info.site is not None
        }

    # == hooks =============================================================================
    def initialize(self, manager: Any) -> None:
        """Call every plugin's ``initialize(manager)``: before any job starts."""
        self._call_hook("initialize", manager)

    def on_start(self, manager: Any) -> None:
        """Call every plugin's ``on_start(manager)``: once the jobs are started."""
        self._call_hook("on_start", manager)

    def on_shutdown(self, manager: Any) -> None:
        """Call every plugin's ``on_shutdown(manager)`` (dependents first): when everything
        has stopped. Fits ``manager.stop(callback=plugins.on_shutdown)``."""
        self._call_hook("on_shutdown", manager, reverse=True)

    def _call_hook(self, hook: str, manager: Any, reverse: bool = False) -> None:
        self._discovered()
        entries = reversed(self._ordered) if reverse else iter(self._ordered)
        for entry in entries:
            if entry.plugin is None:
                continue
            try:
                result = getattr(entry.plugin, hook)(manager)
            except Exception:
                logger.exception("plugin %s: %s() failed", entry.name, hook)
                continue
            if inspect.isawaitable(result):
                _discard(result)
                logger.error(
                    "plugin %s: %s() returned an awaitable, ignored: hooks are synchronous "
                    "(schedule work with manager.loop.create_task)",
                    entry.name,
                    hook,
                )

    def __repr__(self) -> str:
        found = "?" if self._entries is None else len(self._entries)
        return f"<PluginManager {self.plugin_dir!r} plugins={found}>"


class PluginApp:
    """Guards a plugin's application: ``start``, ``stop`` and ``restart`` log and swallow
    the application's exceptions, so a failing plugin is never fatal.

    ``stop()`` returns an awaitable when the application's ``stop()`` does (or when an
    asynchronous ``start()`` is still pending): the manager awaits it. An application
    whose ``start`` raised is not stopped nor restarted.
    """

    def __init__(self, name: str, app: Any) -> None:
        self.name = name
        self.app = app
        self.started = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending_start: asyncio.Future[Any] | None = None

    def start(self, loop: asyncio.AbstractEventLoop, manager: Any) -> None:
        self._loop = loop
        try:
            result = self.app.start(loop, manager)
        except Exception:
            logger.exception("plugin %s: application %r failed to start", self.name, self.app)
            return
        self.started = True
        if inspect.isawaitable(result):
            self._pending_start = self._background(result, "start")

    def stop(self) -> Any:
        if not self.started:
            return None
        self.started = False
        pending, self._pending_start = self._pending_start, None
        if pending is not None and not pending.done():
            pending.cancel()
        else:
            pending = None
        try:
            result = self._call("stop")
        except Exception:
            logger.exception("plugin %s: application %r failed to stop", self.name, self.app)
            result = None
        if pending is None and not inspect.isawaitable(result):
            return None
        return self._finish_stop(pending, result)

    async def _finish_stop(self, pending: asyncio.Future[Any] | None, result: Any) -> None:
        if pending is not None:
            await asyncio.wait([pending])
        if inspect.isawaitable(result):
            try:
                await result
            except Exception:
                logger.exception("plugin %s: application %r failed to stop", self.name, self.app)

    def restart(self) -> None:
        if not self.started:
            return
        try:
            result = self._call("restart")
        except Exception:
            logger.exception("plugin %s: application %r failed to restart", self.name, self.app)
            return
        if inspect.isawaitable(result):
            self._background(result, "restart")

    def _call(self, method: str) -> Any:
        func = getattr(self.app, method, None)
        return func() if func is not None else None

    def _background(self, awaitable: Any, what: str) -> asyncio.Future[Any]:
        future = asyncio.ensure_future(awaitable, loop=self._loop)

        def done(future: asyncio.Future[Any]) -> None:
            if future.cancelled():
                return
            exc = future.exception()
            if exc is not None:
                logger.error(
                    "plugin %s: application %r failed to %s",
                    self.name,
                    self.app,
                    what,
                    exc_info=exc,
                )

        future.add_done_callback(done)
        return future

    def __repr__(self) -> str:
        return f"<PluginApp {self.name} {type(self.app).__qualname__}>"


# == listings =============================================================================
def describe(infos: Iterable[PluginInfo]) -> str:
    """The listing ``gafferd --plugins`` prints: one line per plugin."""
    infos = list(infos)
    if not infos:
        return "no plugins found"
    name_width = max(len(info.name) for info in infos)
    version_width = max(len(info.version) for info in infos)
    lines = []
    for info in infos:
        parts = [f"{info.name:<{name_width}}", f"{info.version:<{version_width}}", info.source]
        if info.requires:
            parts.append(f"requires: {', '.join(info.requires)}")
        if info.site is not None:
            parts.append(f"site: {info.site}")
        if info.error is not None:
            parts.append(f"ERROR: {info.error}")
        lines.append("  ".join(parts))
    return "\n".join(lines)


def describe_apps(plugins: PluginManager) -> str:
    """The listing ``gafferd --apps`` prints: the application each plugin contributes
    (builds them, without starting them)."""
    plugins.apps  # noqa: B018 - builds the applications (and records app() failures)
    entries = plugins._discovered()
    if not entries:
        return "no plugins found"
    width = max(len(entry.name) for entry in entries)
    lines = []
    for entry in entries:
        if entry.info.error is not None:
            what = f"(not started: {entry.info.error})"
        elif entry.app is not None:
            what = type(entry.app).__qualname__
        elif entry.info.site is not None:
            what = "(site only)"
        else:
            what = "(no application)"
        lines.append(f"{entry.name:<{width}}  {what}")
    return "\n".join(lines)


# == entry points ==========================================================================
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


def _may_declare(group: str) -> bool:
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


def _from_entry_points(group: str) -> list[_Entry]:
    if not _may_declare(group):
        return []
    import importlib.metadata

    try:
        found = importlib.metadata.entry_points(group=group)
    except Exception:
        logger.exception("cannot list the %s entry points", group)
        return []
    return [_load_entry_point(ep) for ep in sorted(found, key=lambda ep: (ep.name, ep.value))]


def _load_entry_point(ep: importlib.metadata.EntryPoint) -> _Entry:
    dist = ep.dist
    dist_name = (dist.name if dist is not None else None) or "?"
    dist_version = str(dist.version) if dist is not None else "0"
    source = f"entry point {dist_name}:{ep.value}"
    try:
        target = ep.load()
    except (Exception, SystemExit) as exc:
        logger.exception("plugin %s (%s): import failed", ep.name, source)
        error = f"import failed: {_exc_text(exc)}"
        return _Entry(PluginInfo(ep.name, dist_version, source=source, error=error))
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
    return _Entry(PluginInfo(ep.name, dist_version, source=source, error=error))


def _defines_version(cls: type) -> bool:
    return any("version" in klass.__dict__ for klass in cls.__mro__ if klass is not Plugin)


# == plugins directory =====================================================================
def _from_directory(root: str) -> list[_Entry]:
    if not os.path.isdir(root):
        logger.warning("plugin directory %s does not exist", root)
        return []
    entries: list[_Entry] = []
    for dirname in sorted(os.listdir(root)):
        path = os.path.join(root, dirname)
        if dirname.startswith((".", "_")) or not os.path.isdir(path):
            continue
        entries.extend(_load_plugin_dir(dirname, path))
    return entries


def _load_plugin_dir(dirname: str, path: str) -> list[_Entry]:
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
        return [_Entry(PluginInfo(dirname, source=path, site=site), site_key=dirname)]
    classes: list[type[Plugin]] = []
    try:
        for package in packages:
            for module in _import_package(os.path.join(path, package), package):
                for cls in _plugin_classes(module):
                    if cls not in classes:
                        classes.append(cls)
    except (Exception, SystemExit) as exc:
        logger.exception("plugin %s: import failed", path)
        error = f"import failed: {_exc_text(exc)}"
        return [_Entry(PluginInfo(dirname, source=path, site=site, error=error))]
    if not classes:
        if site is not None:
            return [_Entry(PluginInfo(dirname, source=path, site=site), site_key=dirname)]
        error = f"no Plugin subclass found in {', '.join(packages)}"
        return [_Entry(PluginInfo(dirname, source=path, error=error))]
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
def _instantiate(cls: type[Plugin], source: str, site: str | None = None) -> _Entry:
    label = getattr(cls, "name", None) or cls.__qualname__
    try:
        check_name(cls)
        plugin = cls()
    except Exception as exc:
        if not isinstance(exc, PluginError):
            logger.exception("plugin %s (%s): cannot be created", label, source)
        error = str(exc) if isinstance(exc, PluginError) else f"{cls.__qualname__}(): {exc!r}"
        return _Entry(PluginInfo(str(label), source=source, site=site, error=error))
    return _from_instance(plugin, source, site)


def _from_instance(plugin: Plugin, source: str, site: str | None = None) -> _Entry:
    info = PluginInfo(
        name=plugin.name,
        version=str(plugin.version),
        description=plugin.description or "",
        requires=tuple(plugin.requires),
        source=source,
        site=site,
    )
    return _Entry(info, plugin)


def _check_duplicates(entries: list[_Entry]) -> dict[str, _Entry]:
    """The first of each name wins; the next ones are put in error."""
    by_name: dict[str, _Entry] = {}
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


def _check_requirements(entries: list[_Entry], by_name: dict[str, _Entry]) -> None:
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


def _dependency_order(entries: list[_Entry], by_name: dict[str, _Entry]) -> list[_Entry]:
    """``entries`` in discovery order, except that each comes after those it requires
    (a cycle is left in discovery order)."""
    ordered: list[_Entry] = []
    placed: set[str] = set()
    visiting: set[str] = set()

    def place(entry: _Entry) -> None:
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


def _exc_text(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _discard(awaitable: Any) -> None:
    close = getattr(awaitable, "close", None)
    if inspect.iscoroutine(awaitable) and close is not None:
        close()
    elif isinstance(awaitable, asyncio.Future):
        awaitable.cancel()
