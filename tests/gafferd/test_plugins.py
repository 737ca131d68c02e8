"""gafferd plugins: discovery (plugins directory and entry points), errors that are never
fatal, hooks and applications around a real Manager, and the --plugins/--apps listings."""

from __future__ import annotations

import asyncio
import logging
import sys
import textwrap
from pathlib import Path

import pytest

from gaffer import Manager, ProcessConfig
from gaffer.plugin import Plugin, PluginError
from gafferd.plugins import (
    PluginApp,
    PluginInfo,
    PluginManager,
    describe,
    describe_apps,
)
from tests.helpers import EventRecorder, child_cmd

FIXTURES = Path(__file__).parent.parent / "fixtures" / "plugins"
PLUGIN_DIR = FIXTURES / "plugin_dir"
SITE_PACKAGES = FIXTURES / "site-packages"
DIST_SOURCE = "entry point gaffer-test-plugin:gaffer_test_plugin"


@pytest.fixture
def installed(monkeypatch):
    """The gaffer-test-plugin distribution, found by importlib.metadata as if pip-installed."""
    monkeypatch.delitem(sys.modules, "gaffer_test_plugin", raising=False)
    monkeypatch.syspath_prepend(str(SITE_PACKAGES))


def by_name(infos: list[PluginInfo]) -> dict[str, PluginInfo]:
    return {info.name: info for info in infos}


def write_plugin(root: Path, dirname: str, code: str, package: str = "pkg") -> Path:
    """A plugin directory ``root/dirname/package/__init__.py`` holding ``code``."""
    path = root / dirname / package
    path.mkdir(parents=True)
    (path / "__init__.py").write_text(
        "from gaffer.plugin import Plugin\n\n" + textwrap.dedent(code)
    )
    return root / dirname


def app_of(plugins: PluginManager, name: str):
    apps = [guard.app for guard in plugins.apps if guard.name == name]
    assert len(apps) == 1, f"{name}: {plugins.apps}"
    return apps[0]


# == discovery: plugins directory =========================================================
def test_the_plugin_dir_fixture_lists_every_kind_of_plugin():
    infos = PluginManager(PLUGIN_DIR, entry_points=False).discover()
    assert [info.name for info in infos] == [
        "bare_site",
        "broken",
        "failing",
        "needy",
        "recorder",
        "static",
    ]
    found = by_name(infos)
    assert found["recorder"] == PluginInfo(
        name="recorder",
        version="1.2",
        description="records its hooks and its application's calls",
        requires=(),
        source=str(PLUGIN_DIR / "recorder"),
        site=str(PLUGIN_DIR / "recorder" / "_site"),
        error=None,
    )
    assert found["static"].site == str(PLUGIN_DIR / "static" / "_site")
    assert found["static"].error is None
    assert found["bare_site"].site == str(PLUGIN_DIR / "bare_site")
    assert found["failing"].version == "0.1" and found["failing"].ok
    assert "not_exported" not in found  # defined in a module, but not in its __all__


def test_sites_are_keyed_by_directory_name():
    plugins = PluginManager(PLUGIN_DIR, entry_points=False)
    assert plugins.sites == {
        "bare_site": str(PLUGIN_DIR / "bare_site"),
        "recorder": str(PLUGIN_DIR / "recorder" / "_site"),
        "static": str(PLUGIN_DIR / "static" / "_site"),
    }
    for directory in plugins.sites.values():
        assert (Path(directory) / "index.html").is_file()


def test_site_key_is_the_directory_even_when_the_plugin_has_another_name(tmp_path):
    root = tmp_path / "plugins"
    where = write_plugin(root, "web_ui", 'class UI(Plugin):\n    name = "dashboard"\n')
    (where / "_site").mkdir()
    (where / "_site" / "index.html").write_text("<p>ui</p>")
    plugins = PluginManager(root, entry_points=False)
    assert [(info.name, info.site) for info in plugins.discover()] == [
        ("dashboard", str(where / "_site"))
    ]
    assert plugins.sites == {"web_ui": str(where / "_site")}


def test_packages_of_the_same_name_in_two_plugin_dirs_do_not_clash(tmp_path):
    root = tmp_path / "plugins"
    for dirname in ("one", "two"):
        write_plugin(
            root,
            dirname,
            f"""
            from .helper import VALUE

            class P(Plugin):
                name = "{dirname}"
                version = VALUE
            """,
            package="common",
        )
        (root / dirname / "common" / "helper.py").write_text(f"VALUE = '{dirname}-1'\n")
    infos = PluginManager(root, entry_points=False).discover()
    assert [(info.name, info.version, info.error) for info in infos] == [
        ("one", "one-1", None),
        ("two", "two-1", None),
    ]
    assert "common" not in sys.modules and "common.helper" not in sys.modules
    classes = [type(PluginManager(root, entry_points=False).get(name)) for name in ("one", "two")]
    assert all(cls.__module__.startswith("_gaffer_plugin_") for cls in classes)
    assert classes[0].__module__ != classes[1].__module__


def test_every_module_of_a_package_is_imported_and_subclasses_without_all_count(tmp_path):
    root = tmp_path / "plugins"
    where = write_plugin(root, "multi", "")
    (where / "pkg" / "first.py").write_text(
        "from gaffer.plugin import Plugin\n\nclass First(Plugin):\n    name = 'first'\n"
    )
    (where / "pkg" / "sub").mkdir()
    (where / "pkg" / "sub" / "__init__.py").write_text("")
    (where / "pkg" / "sub" / "deep.py").write_text(
        "from gaffer.plugin import Plugin\n\n"
        "class Deep(Plugin):\n    name = 'deep'\n\n"
        "Imported = Plugin  # not defined here: ignored\n"
    )
    infos = PluginManager(root, entry_points=False).discover()
    assert sorted(info.name for info in infos) == ["deep", "first"]
    assert all(info.ok and info.source == str(where) for info in infos)


def test_a_missing_plugin_dir_gives_no_plugin_and_a_warning(tmp_path, caplog):
    plugins = PluginManager(tmp_path / "nowhere", entry_points=False)
    assert plugins.discover() == []
    assert plugins.apps == [] and plugins.sites == {}
    assert "does not exist" in caplog.text


def test_a_package_without_plugin_and_without_site_is_reported(tmp_path):
    root = tmp_path / "plugins"
    write_plugin(root, "empty", "VALUE = 1\n")
    (info,) = PluginManager(root, entry_points=False).discover()
    assert info.name == "empty"
    assert info.error == "no Plugin subclass found in pkg"


# == discovery: entry points ==============================================================
@pytest.mark.usefixtures("installed")
def test_entry_points_of_an_installed_distribution_are_plugins():
    found = by_name(PluginManager(None).discover())
    assert found["testapp"] == PluginInfo(
        name="testapp",
        version="1.0",
        description="the test plugin of the gaffer-test-plugin distribution",
        requires=(),
        source=f"{DIST_SOURCE}:TestPlugin",
        site=None,
        error=None,
    )
    # a plain callable: named after its entry point, described by its distribution
    assert found["testfactory"] == PluginInfo(
        name="testfactory",
        version="1.0",
        description="A gaffer plugin installed without pip, for the tests",
        source=f"{DIST_SOURCE}:make_app",
    )


@pytest.mark.usefixtures("installed")
def test_entry_point_apps_get_their_config_and_entry_points_can_be_turned_off(tmp_path):
    configs = {"testapp": {"marker": "a"}, "testfactory": {"marker": "b"}}
    plugins = PluginManager(None, configs)
    assert app_of(plugins, "testapp").config == {"marker": "a"}
    assert app_of(plugins, "testfactory").config == {"marker": "b"}
    assert type(app_of(plugins, "testfactory")).__qualname__ == "TestApp"
    assert PluginManager(tmp_path, entry_points=False).discover() == []


def test_entry_points_that_fail_or_are_not_callable_are_reported(tmp_path, monkeypatch):
    site = tmp_path / "site"
    info = site / "odd_dist-2.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: odd-dist\nVersion: 2.0\n")
    (info / "entry_points.txt").write_text(
        "[gaffer.apps]\n"
        "broken = odd_missing_module:App\n"
        "constant = odd_plugins:VALUE\n"
        "noargs = odd_plugins:NoArgs\n"
        "keyword = odd_plugins:keyword\n"
        "nameless = odd_plugins:Nameless\n"
        "versionless = odd_plugins:Versionless\n"
    )
    (site / "odd_plugins.py").write_text(
        textwrap.dedent(
            """
            from gaffer.plugin import Plugin

            VALUE = 42

            class NoArgs:
                def __init__(self, verbose=False):
                    self.verbose = verbose
                def start(self, loop, manager): pass
                def stop(self): pass
                def restart(self): pass

            def keyword(*, config=None):
                app = NoArgs()
                app.config = config
                return app

            class Nameless(Plugin):
                pass

            class Versionless(Plugin):
                name = "versionless"
            """
        )
    )
    monkeypatch.delitem(sys.modules, "odd_plugins", raising=False)
    monkeypatch.syspath_prepend(str(site))
    plugins = PluginManager(None, {"noargs": {"x": "1"}, "keyword": {"y": "2"}})
    found = by_name(plugins.discover())
    assert found["broken"].error.startswith("import failed: ModuleNotFoundError")
    assert found["broken"].source == "entry point odd-dist:odd_missing_module:App"
    assert "neither a Plugin subclass nor a callable" in found["constant"].error
    assert "has no name" in found["nameless"].error
    assert found["noargs"].ok and found["keyword"].ok
    assert found["noargs"].version == "2.0"  # a callable: its distribution's version
    assert found["versionless"].version == "2.0"  # a Plugin without a version: idem
    assert app_of(plugins, "noargs").verbose is False  # called without the config
    assert app_of(plugins, "keyword").config == {"y": "2"}


@pytest.mark.usefixtures("installed")
def test_a_directory_plugin_named_like_an_entry_point_is_a_duplicate(tmp_path):
    root = tmp_path / "plugins"
    write_plugin(root, "again", 'class Again(Plugin):\n    name = "testapp"\n')
    infos = [info for info in PluginManager(root).discover() if info.name == "testapp"]
    assert [info.source for info in infos] == [f"{DIST_SOURCE}:TestPlugin", str(root / "again")]
    assert infos[0].ok
    assert infos[1].error.startswith("duplicate plugin name 'testapp'")


# == errors are never fatal ===============================================================
def test_a_broken_import_is_reported_and_logged_not_raised(caplog):
    with caplog.at_level(logging.ERROR, logger="gafferd.plugins"):
        found = by_name(PluginManager(PLUGIN_DIR, entry_points=False).discover())
    broken = found["broken"]
    assert broken.error == "import failed: ImportError: broken plugin fixture: cannot import"
    assert broken.source == str(PLUGIN_DIR / "broken")
    assert any(
        record.levelno == logging.ERROR and "broken" in record.getMessage() and record.exc_info
        for record in caplog.records
    )
    assert found["recorder"].ok
    assert not [name for name in sys.modules if name.endswith("broken_plugin")]


def test_a_missing_requirement_keeps_that_plugin_only_from_starting():
    plugins = PluginManager(PLUGIN_DIR, entry_points=False)
    needy = by_name(plugins.discover())["needy"]
    assert needy.requires == ("missing",)  # declared with the original's `mandatory`
    assert needy.error == "requires missing which is not installed"
    assert sorted(guard.name for guard in plugins.apps) == ["failing", "recorder"]
    with pytest.raises(KeyError):
        plugins.get("needy")


def test_requirements_fail_transitively_and_order_the_plugins(tmp_path):
    root = tmp_path / "plugins"
    calls: list[str] = []
    write_plugin(root, "a_user", 'class User(Plugin):\n    name = "user"\n    requires = ["db"]\n')
    write_plugin(
        root, "b_chain", 'class Chain(Plugin):\n    name = "chain"\n    requires = "base"\n'
    )
    write_plugin(
        root, "c_base", 'class Base(Plugin):\n    name = "base"\n    requires = ("gone",)\n'
    )
    write_plugin(root, "z_db", 'class Db(Plugin):\n    name = "db"\n')
    plugins = PluginManager(root, entry_points=False)
    found = by_name(plugins.discover())
    assert found["base"].error == "requires gone which is not installed"
    assert found["chain"].error == "requires base which is in error"
    assert found["user"].ok and found["db"].ok
    for name in ("user", "db"):
        plugin = plugins.get(name)
        plugin.initialize = lambda manager, name=name: calls.append(f"initialize {name}")
        plugin.on_shutdown = lambda manager, name=name: calls.append(f"on_shutdown {name}")
    plugins.initialize(None)
    plugins.on_shutdown(None)
    # a plugin is initialized after what it requires, and shut down before it
    assert calls == ["initialize db", "initialize user", "on_shutdown user", "on_shutdown db"]


def test_a_second_plugin_of_the_same_name_is_in_error(tmp_path):
    root = tmp_path / "plugins"
    write_plugin(root, "first", 'class One(Plugin):\n    name = "twin"\n    version = "1"\n')
    write_plugin(root, "second", 'class Two(Plugin):\n    name = "twin"\n    version = "2"\n')
    plugins = PluginManager(root, entry_points=False)
    first, second = plugins.discover()
    assert (first.version, first.error) == ("1", None)
    assert second.version == "2"
    assert second.error == f"duplicate plugin name 'twin', already provided by {root / 'first'}"
    assert plugins.get("twin").version == "1"


def test_a_plugin_class_without_a_name_is_a_clear_error(tmp_path):
    class Nameless(Plugin):
        pass

    with pytest.raises(PluginError, match=r"Nameless has no name: set its `name`"):
        Nameless()
    root = tmp_path / "plugins"
    write_plugin(root, "anonymous", "class Anonymous(Plugin):\n    version = '3'\n")
    (info,) = PluginManager(root, entry_points=False).discover()
    assert info.name == "Anonymous"
    assert "Anonymous has no name" in info.error


def test_plugin_class_defaults_and_the_mandatory_alias():
    class Minimal(Plugin):
        name = "minimal"

    class Old(Plugin):
        name = "old"
        mandatory = ["a", "b"]

    class Listed(Plugin):
        name = "listed"
        requires = "a, b"

    plugin = Minimal()
    assert (plugin.version, plugin.description, plugin.requires) == ("0", "", ())
    assert plugin.config == {}
    assert plugin.app({"x": "1"}) is None
    assert plugin.initialize(None) is None
    assert Old.requires == Old.mandatory == ("a", "b")
    assert Listed.requires == ("a", "b")
    with pytest.raises(PluginError, match="must be plugin names"):

        class Bad(Plugin):
            name = "bad"
            requires = [1]


def test_hooks_that_raise_or_are_async_are_logged_and_the_others_still_run(tmp_path, caplog):
    root = tmp_path / "plugins"
    write_plugin(
        root,
        "a_bad",
        """
        class Bad(Plugin):
            name = "bad"
            def initialize(self, manager):
                raise RuntimeError("hook exploded")
            async def on_start(self, manager):
                raise AssertionError("never awaited")
        """,
    )
    write_plugin(
        root,
        "b_good",
        """
        class Good(Plugin):
            name = "good"
            calls = []
            def initialize(self, manager):
                self.calls.append("initialize")
            def on_start(self, manager):
                self.calls.append("on_start")
        """,
    )
    plugins = PluginManager(root, entry_points=False)
    plugins.initialize(None)
    plugins.on_start(None)
    assert plugins.get("good").calls == ["initialize", "on_start"]
    assert "plugin bad: initialize() failed" in caplog.text
    assert "hook exploded" in caplog.text
    assert "plugin bad: on_start() returned an awaitable, ignored" in caplog.text


def test_app_builder_that_raises_puts_the_plugin_in_error(tmp_path, caplog):
    root = tmp_path / "plugins"
    write_plugin(
        root,
        "builder",
        """
        class Builder(Plugin):
            name = "builder"
            def app(self, config):
                raise ValueError("bad port " + config["port"])
        """,
    )
    plugins = PluginManager(root, {"builder": {"port": "x"}}, entry_points=False)
    assert plugins.apps == []
    (info,) = plugins.infos
    assert info.error == "app() failed: ValueError: bad port x"
    assert "plugin builder: app() failed" in caplog.text
    assert describe_apps(plugins) == "builder  (not started: app() failed: ValueError: bad port x)"


# == with a real Manager ==================================================================
async def test_hooks_and_app_around_a_real_manager(tmp_path):
    marker = tmp_path / "marker"
    configs = {"recorder": {"marker": str(marker), "greeting": "hello"}}
    plugins = PluginManager(PLUGIN_DIR, configs, entry_points=False)
    plugins.discover()
    manager = Manager()
    events = EventRecorder(manager)
    manager.load(ProcessConfig("sleeper", child_cmd("sleep")))
    plugins.initialize(manager)
    manager.start(apps=plugins.apps)
    await events.wait("spawn")
    plugins.on_start(manager)
    manager.stop(callback=plugins.on_shutdown)
    await manager.wait_stopped()

    assert marker.read_text().splitlines() == [
        "initialize pids=0",  # before the jobs start
        "start pids=0",  # applications start before the jobs
        "on_start pids=1",  # after
        "stop",
        "on_shutdown pids=0",  # once every process is gone
    ]
    recorder = plugins.get("recorder")
    assert recorder.config == configs["recorder"]
    assert recorder.calls == ["initialize pids=0", "on_start pids=1", "on_shutdown pids=0"]
    app = app_of(plugins, "recorder")
    assert app.config == configs["recorder"]
    assert app.loop is asyncio.get_running_loop()
    assert app.manager is manager
    assert app.calls == ["start", "stop"]


async def test_an_app_failing_at_start_is_logged_and_the_others_are_started(tmp_path, caplog):
    marker = tmp_path / "marker"
    plugins = PluginManager(PLUGIN_DIR, {"recorder": {"marker": str(marker)}}, entry_points=False)
    manager = Manager()
    manager.start(apps=plugins.apps)
    failing = app_of(plugins, "failing")
    assert "failing plugin fixture: start failed" in caplog.text
    assert "plugin failing: application" in caplog.text
    manager.restart()
    manager.stop()
    await manager.wait_stopped()
    assert marker.read_text().splitlines() == ["start pids=0", "restart", "stop"]
    assert failing.stopped is False  # never started: not stopped
    assert by_name(plugins.infos)["failing"].ok  # a start failure does not hide the plugin


@pytest.mark.usefixtures("installed")
async def test_an_entry_point_app_is_started_and_stopped_by_the_manager(tmp_path):
    marker = tmp_path / "marker"
    plugins = PluginManager(None, {"testapp": {"marker": str(marker)}})
    manager = Manager()
    manager.start(apps=plugins.apps)
    manager.stop()
    await manager.wait_stopped()
    assert marker.read_text().splitlines() == ["start", "stop"]
    assert app_of(plugins, "testapp").manager is manager


# == the PluginApp guard ==================================================================
class Recording:
    def __init__(self, fail: str | None = None) -> None:
        self.fail = fail
        self.calls: list[str] = []

    def _call(self, what: str) -> None:
        self.calls.append(what)
        if self.fail == what:
            raise RuntimeError(f"{what} failed")

    def start(self, loop, manager):
        self._call("start")

    def stop(self):
        self._call("stop")

    def restart(self):
        self._call("restart")


class AsyncRecording(Recording):
    def __init__(self, fail: str | None = None) -> None:
        super().__init__(fail)
        self.entered = asyncio.Event()
        self.release = asyncio.Event()
        self.started = asyncio.Event()

    async def start(self, loop, manager):
        self._call("start")
        self.entered.set()
        await self.release.wait()
        self.calls.append("started")
        self.started.set()

    async def stop(self):
        await asyncio.sleep(0)
        self._call("stop")
        self.calls.append("stopped")


async def test_the_guard_swallows_stop_and_restart_failures(caplog):
    for fail in ("stop", "restart"):
        app = Recording(fail=fail)
        guard = PluginApp("p", app)
        guard.start(asyncio.get_running_loop(), None)
        guard.restart()
        assert guard.stop() is None
        assert app.calls == ["start", "restart", "stop"]
        assert f"plugin p: application {app!r} failed to {fail}" in caplog.text
    assert PluginApp("p", Recording()).stop() is None  # never started


async def test_the_guard_awaits_an_async_stop_through_the_manager():
    app = AsyncRecording()
    manager = Manager()
    manager.start(apps=[PluginApp("async", app)])
    app.release.set()
    await app.started.wait()
    manager.stop()
    await manager.wait_stopped()
    assert app.calls == ["start", "started", "stop", "stopped"]


async def test_the_guard_cancels_a_pending_async_start_and_logs_async_failures(caplog):
    app = AsyncRecording(fail="stop")
    guard = PluginApp("slow", app)
    guard.start(asyncio.get_running_loop(), None)
    await app.entered.wait()
    assert app.calls == ["start"]
    await guard.stop()  # the start still waits: cancelled, then the app's stop awaited
    assert app.calls == ["start", "stop"]
    assert "plugin slow: application" in caplog.text and "failed to stop" in caplog.text


# == listings =============================================================================
@pytest.mark.usefixtures("installed")
def test_describe_lists_every_plugin_on_one_line():
    plugins = PluginManager(PLUGIN_DIR)
    text = describe(plugins.discover())
    lines = text.splitlines()
    names = [info.name for info in plugins.infos]
    assert len(lines) == len(names)
    for line, info in zip(lines, plugins.infos, strict=True):
        assert line.startswith(info.name)
        assert info.version in line and info.source in line
    found = dict(zip(names, lines, strict=True))
    assert f"site: {PLUGIN_DIR / 'recorder' / '_site'}" in found["recorder"]
    assert "1.2" in found["recorder"]
    assert "requires: missing" in found["needy"]
    assert "ERROR: requires missing which is not installed" in found["needy"]
    assert "ERROR: import failed: ImportError" in found["broken"]
    assert f"{DIST_SOURCE}:TestPlugin" in found["testapp"]
    assert "ERROR" not in found["recorder"] and "ERROR" not in found["testapp"]
    assert describe([]) == "no plugins found"


@pytest.mark.usefixtures("installed")
def test_describe_apps_names_each_plugins_application():
    plugins = PluginManager(PLUGIN_DIR)
    lines = {
        line.split()[0]: line.split(None, 1)[1] for line in describe_apps(plugins).splitlines()
    }
    assert lines["recorder"] == "RecorderApp"
    assert lines["failing"] == "FailingApp"
    assert lines["testapp"] == "TestApp"
    assert lines["testfactory"] == "TestApp"
    assert lines["static"] == "(site only)"
    assert lines["bare_site"] == "(site only)"
    assert lines["needy"] == "(not started: requires missing which is not installed)"
    assert lines["broken"].startswith("(not started: import failed: ImportError")
    assert describe_apps(PluginManager(None, entry_points=False)) == "no plugins found"
