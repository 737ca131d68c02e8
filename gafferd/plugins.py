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
import inspect
import logging
import os
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from gaffer.plugin import Plugin
from gafferd.plugin_discovery import (
    ENTRY_POINT_GROUP,
    Entry,
    PluginInfo,
    check_duplicates,
    check_requirements,
    dependency_order,
    exc_text,
    from_directory,
    from_entry_points,
)

if TYPE_CHECKING:
    pass

__all__ = [
    "ENTRY_POINT_GROUP",
    "PluginApp",
    "PluginInfo",
    "PluginManager",
    "describe",
    "describe_apps",
]

logger = logging.getLogger(__name__)


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
        self._entries: list[Entry] | None = None
        self._ordered: list[Entry] = []  # loaded plugins, each after those it requires
        self._apps: list[PluginApp] | None = None

    # == discovery =========================================================================
    def discover(self) -> list[PluginInfo]:
        """Find, load and check every plugin; never raises for a plugin's fault."""
        entries: list[Entry] = []
        if self.entry_points:
            entries.extend(from_entry_points(self.group))
        if self.plugin_dir is not None:
            entries.extend(from_directory(self.plugin_dir))
        by_name = check_duplicates(entries)
        check_requirements(entries, by_name)
        for entry in entries:
            if entry.info.error is not None and not entry.info.error.startswith("import failed"):
                logger.error(
                    "plugin %s (%s) not started: %s",
                    entry.name,
                    entry.info.source,
                    entry.info.error,
                )
        self._entries = entries
        self._ordered = dependency_order([entry for entry in entries if entry.info.ok], by_name)
        self._apps = None
        for entry in self._ordered:
            if entry.plugin is not None:
                entry.plugin.config = dict(self.configs.get(entry.name, {}))
        return self.infos

    def _discovered(self) -> list[Entry]:
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
                    entry.fail(f"app() failed: {exc_text(exc)}")
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
def _discard(awaitable: Any) -> None:
    close = getattr(awaitable, "close", None)
    if inspect.iscoroutine(awaitable) and close is not None:
        close()
    elif isinstance(awaitable, asyncio.Future):
        awaitable.cancel()
