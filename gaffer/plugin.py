"""``Plugin``: the base of gafferd plugins.

A plugin contributes, all optionally: an *application* (any object with ``start(loop,
manager)``, ``stop()`` and ``restart()``, see docs/embedding.md) built from the plugin's
config section, a static site (a ``_site/`` folder next to the plugin's package, served at
``/_plugin/<dirname>/``) and lifecycle hooks::

    from gaffer import Plugin

    class Pinger:
        def __init__(self, url):
            self.url = url
        def start(self, loop, manager):
            manager.events.subscribe("exit", self.on_exit)
        def stop(self):
            pass
        def restart(self):
            pass
        def on_exit(self, evtype, msg):
            ...

    class PingerPlugin(Plugin):
        name = "pinger"
        version = "1.0"
        description = "pings a URL each time a process exits"
        requires = ("webhooks",)

        def app(self, config):
            return Pinger(config.get("url", "http://localhost/"))

gafferd finds plugins through the ``gaffer.apps`` entry-point group (``pyproject.toml``:
``[project.entry-points."gaffer.apps"] pinger = "mypkg:PingerPlugin"``) and in its plugins
directory (``<plugins_dir>/<dirname>/<package>/``). Hooks are called in this order:
``initialize(manager)`` before any job starts, ``on_start(manager)`` once the jobs are
started, ``on_shutdown(manager)`` when everything has stopped, just before gafferd exits.
A plugin that raises in a hook or in its application is logged, never fatal.
"""

from __future__ import annotations

from typing import Any

from gaffer.errors import PluginError

__all__ = ["Plugin", "PluginError"]


class Plugin:
    """Base class of gafferd plugins; override what you need, everything is optional
    except ``name``.

    Class attributes:

    * ``name``: the plugin's name (required); it also names its config section.
    * ``version``: a version string, ``"0"`` by default.
    * ``description``: one line, shown by ``gafferd --plugins``.
    * ``requires``: names of the plugins this one needs (``mandatory``, the original
      gaffer's name, is accepted as an alias). A plugin whose requirement is missing is not
      started; the others still are.

    ``self.config`` holds the plugin's config section (a dict of strings) before any hook is
    called.

    Example::

        class Hello(Plugin):
            name = "hello"

            def on_start(self, manager):
                print("jobs:", manager.jobs())
    """

    name: str = ""
    version: str = "0"
    description: str = ""
    requires: tuple[str, ...] = ()
    mandatory: tuple[str, ...] = ()  # alias of ``requires``: the original gaffer's name

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        own = cls.__dict__
        if "requires" in own:
            requires = own["requires"]
        elif "mandatory" in own:
            requires = own["mandatory"]
        else:
            requires = cls.requires
        cls.requires = cls.mandatory = _as_names(cls, requires)
        if "version" in own:
            cls.version = str(own["version"])

    def __init__(self) -> None:
        check_name(type(self))
        self.config: dict[str, Any] = {}

    def app(self, config: dict[str, Any]) -> Any:
        """The application this plugin contributes, built from its config section, or None.

        Example::

            def app(self, config):
                return MyApp(port=int(config.get("port", "8080")))
        """
        return None

    def initialize(self, manager: Any) -> None:
        """Called before any job starts (and before the applications start).

        Example::

            def initialize(self, manager):
                manager.events.subscribe("spawn", self.count_spawn)
        """

    def on_start(self, manager: Any) -> None:
        """Called once the applications and the jobs are started.

        Example::

            def on_start(self, manager):
                logging.getLogger(__name__).info("%d jobs", len(manager.jobs()))
        """

    def on_shutdown(self, manager: Any) -> None:
        """Called when every process and application has stopped, before gafferd exits.

        Example::

            def on_shutdown(self, manager):
                self.db.close()
        """

    def __repr__(self) -> str:
        return f"<{type(self).__qualname__} {self.name!r} {self.version}>"


def check_name(cls: type) -> str:
    """The plugin class's name; raises PluginError when it has none."""
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name.strip():
        raise PluginError(
            f"plugin class {cls.__module__}.{cls.__qualname__} has no name: "
            "set its `name` class attribute"
        )
    return name


def _as_names(cls: type, value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = value.replace(",", " ").split()
    names = tuple(value)
    if not all(isinstance(name, str) and name for name in names):
        raise PluginError(f"{cls.__qualname__}.requires must be plugin names, not {value!r}")
    return names
