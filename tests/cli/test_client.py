"""The Python client (gaffer.client): the blocking ``Server`` and the asyncio
``AsyncServer`` against a real gafferd, over its unix socket and over TCP: jobs,
processes, feeds, keys and users, the typed errors, the /channel WebSocket (GafferSocket)
and a process's IO channel (IOChannel).

Async tests run on a fresh uvloop loop each (tests/conftest.py). Most tests share one
gafferd (module scope) and leave it empty; the keys and users tests share another one that
requires keys.
"""

from __future__ import annotations

import asyncio
import gc
import sys
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psutil
import pytest

import gaffer
from gaffer.client import (
    ApiError,
    AsyncJob,
    AsyncServer,
    Conflict,
    Forbidden,
    Job,
    NotFound,
    Process,
    Server,
    Unauthorized,
    Unreachable,
)
from gaffer.client.channel import ChannelClosed, GafferSocket, IOChannel
from tests.cli.cli_helpers import (
    Daemon,
    LongLived,
    check_no_leftovers,
    child_job,
    environ_of,
    start_daemon,
)
from tests.gafferd.harness import free_port
from tests.helpers import read_file, wait_until, wait_until_sync

pytestmark = pytest.mark.timeout(90)

TRANSPORTS = ["unix", "tcp"]


# -- fixtures --------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def no_leaked_children() -> Iterator[None]:
    """tests/conftest.py's check, but the module's gafferds (and their jobs) live on."""
    yield
    check_no_leftovers()


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    with LongLived(start_daemon(tmp_path_factory.mktemp("client"), tcp=True)) as running:
        yield running


@pytest.fixture
def daemon(shared: Daemon) -> Iterator[Daemon]:
    """The shared gafferd; every job is unloaded after the test."""
    yield shared
    for job in shared.jobs():
        shared.unload(job)


@pytest.fixture(params=TRANSPORTS)
def url(request: pytest.FixtureRequest, daemon: Daemon) -> str:
    """The shared gafferd's address: its unix socket, then its TCP port."""
    return daemon.url(request.param)


@pytest.fixture
def server(url: str) -> Iterator[Server]:
    with Server(url) as blocking:
        yield blocking


@pytest.fixture(scope="module")
def auth(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    """A gafferd with require_key = true and an admin user admin/pw."""
    directory = tmp_path_factory.mktemp("client-auth")
    with LongLived(start_daemon(directory, require_key=True, tcp=True)) as running:
        yield running


@pytest.fixture(params=TRANSPORTS)
def auth_url(request: pytest.FixtureRequest, auth: Daemon) -> str:
    return auth.url(request.param)


def dead_addresses(tmp_path: Path) -> list[str]:
    return [f"unix:{tmp_path / 'nobody.sock'}", f"http://127.0.0.1:{free_port()}"]


async def poll(predicate: Any, timeout: float = 15, what: str = "condition") -> Any:
    """Await ``predicate()`` (a coroutine function) until it is true; its last value."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await predicate()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what} ({value!r})")
        await asyncio.sleep(0.02)


async def running_pids(job: AsyncJob, count: int, timeout: float = 15) -> list[int]:
    """The job's pids once it has ``count`` processes that really run."""
    server = job.server

    async def ready() -> list[int] | None:
        pids = await job.pids()
        if len(pids) != count:
            return None
        for pid in pids:
            try:
                if not (await server.process(pid).info()).get("os_pid"):
                    return None
            except NotFound:
                return None
        return pids or [0]

    pids = await poll(ready, timeout, f"{count} processes of {job.id}")
    return [] if pids == [0] else pids


def sync_running_pids(job: Job, count: int, server: Server) -> list[int]:
    found: list[int] = []

    def ready() -> bool:
        nonlocal found
        found = job.pids()
        try:
            return len(found) == count and all(
                server.process(pid).info().get("os_pid") for pid in found
            )
        except NotFound:
            return False

    wait_until_sync(ready, timeout=15, what=f"{count} processes of {job.id}: {found}")
    return found


# -- the blocking Server ---------------------------------------------------------------------------


def test_version_and_ping(server: Server) -> None:
    assert server.version() == gaffer.__version__
    assert server.ping() is True


def test_load_get_job_and_the_lists(daemon: Daemon, server: Server) -> None:
    job = server.load(child_job("cjob", "sleep", numprocesses=2))
    assert isinstance(job, Job)
    assert job.id == "default.cjob"
    assert server.get_job("cjob").id == "default.cjob"
    assert server.job_exists("default.cjob") is True
    pids = sync_running_pids(job, 2, server)
    assert "default.cjob" in server.jobs()
    assert server.jobs("default") == ["default.cjob"]
    assert "default" in server.sessions()
    assert set(pids) <= set(server.pids())
    other = server.load(child_job("sjob", "sleep"), sessionid="clientapp", start=False)
    assert other.id == "clientapp.sjob"
    assert server.jobs("clientapp") == ["clientapp.sjob"]
    assert server.get_job("sjob", "clientapp").id == "clientapp.sjob"
    with pytest.raises(NotFound):
        server.get_job("nosuchjob")
    with pytest.raises(NotFound):
        server.jobs("nosuchsession")
    assert server.job_exists("nosuchjob") is False
    server.unload("cjob")
    server.unload("clientapp.sjob")
    assert server.jobs() == [] and server.sessions() == []


def test_load_twice_is_a_conflict_and_force_updates(daemon: Daemon, server: Server) -> None:
    config = child_job("twice", "sleep")
    job = server.load(config)
    sync_running_pids(job, 1, server)
    with pytest.raises(Conflict) as caught:
        server.load(config)
    assert caught.value.status == 409
    updated = server.load({**config, "numprocesses": 3}, force=True)
    assert updated.id == job.id
    assert job.info()["config"]["numprocesses"] == 3
    sync_running_pids(job, 3, server)
    assert job.numprocesses() == 3


def test_job_lifecycle(daemon: Daemon, server: Server) -> None:
    job = server.load(child_job("life", "sleep"), start=False)
    assert job.active() is False
    assert job.pids() == []
    job.start()
    assert job.active() is True
    [first] = sync_running_pids(job, 1, server)
    info = job.info()
    assert info["name"] == "default.life" and info["running"] == 1 and info["active"] is True
    assert info["config"]["args"][-1] == "sleep"
    assert job.config() == info["config"]
    assert job.scale("+2") == 3
    assert job.numprocesses() == 3
    sync_running_pids(job, 3, server)
    assert job.scale(-2) == 1
    sync_running_pids(job, 1, server)
    assert job.scale("=2") == 2
    pids = sync_running_pids(job, 2, server)
    stats = job.stats()
    assert stats["name"] == "default.life"
    assert sorted(stat["pid"] for stat in stats["stats"]) == sorted(pids)
    for stat in stats["stats"]:
        assert stat["os_pid"] == server.process(stat["pid"]).info()["os_pid"]
        assert isinstance(stat["cpu"], int | float) and isinstance(stat["mem_info1"], int)
    job.reload()  # new processes, as many as the config says (reference section 3.2)
    after = sync_running_pids(job, 1, server)
    assert not set(after) & {first, *pids}
    assert job.numprocesses() == 1
    job.stop()
    assert job.pids() == []
    assert job.active() is False
    job.unload()
    with pytest.raises(NotFound):
        job.info()


def test_commit_a_one_off_process(daemon: Daemon, server: Server) -> None:
    job = server.load(child_job("commit", "sleep", numprocesses=0))
    pid = job.commit(env={"BLAH": "test"})
    process = server.get_process(pid)
    assert isinstance(process, Process)
    info = process.info()
    assert info["name"] == "default.commit"
    assert info["env"]["BLAH"] == "test"
    assert info["once"] is True
    assert job.pids() == []  # not kept alive
    assert pid in server.pids()
    job_info = job.info()
    assert job_info["numprocesses"] == 0 and job_info["running_out"] == 1
    wait_until_sync(lambda: server.process(pid).info()["os_pid"], what="an os pid")
    assert environ_of(server.process(pid).info()["os_pid"], "BLAH")["BLAH"] == "test"


def test_signals_to_a_job_and_to_a_process(daemon: Daemon, server: Server, tmp_path: Path) -> None:
    path = tmp_path / "dummy.txt"
    job = server.load(child_job("dummy", "dummy", path))
    [pid] = sync_running_pids(job, 1, server)
    wait_until_sync(lambda: read_file(path) == "START", what="START")
    job.kill("HUP")
    wait_until_sync(lambda: read_file(path) == "STARTHUP", what="STARTHUP")
    server.process(pid).kill("SIGHUP")
    wait_until_sync(lambda: read_file(path) == "STARTHUPHUP", what="STARTHUPHUP")
    job.stop()
    wait_until_sync(lambda: read_file(path) == "STARTHUPHUPQUITSTOP", what=read_file(path))
    with pytest.raises(NotFound):
        server.job("nosuchjob").kill("HUP")
    with pytest.raises(ApiError) as caught:
        job.kill("NOSUCHSIGNAL")
    assert caught.value.status == 400


def test_process_info_stats_and_stop(daemon: Daemon, server: Server) -> None:
    job = server.load(child_job("procs", "sleep"))
    [pid] = sync_running_pids(job, 1, server)
    process = server.process(pid)
    info = process.info()
    assert info["pid"] == pid and info["name"] == "default.procs"
    assert psutil.pid_exists(info["os_pid"])
    stats = process.stats()
    assert stats["pid"] == pid and stats["os_pid"] == info["os_pid"]
    for key in ("cpu", "mem", "mem_info1", "mem_info2", "ctime"):
        assert isinstance(stats[key], int | float) and not isinstance(stats[key], bool), key
    assert process.active() is True
    process.stop()
    assert process.active() is False
    [new] = sync_running_pids(job, 1, server)
    assert new != pid
    with pytest.raises(NotFound):
        server.get_process(pid)
    with pytest.raises(NotFound):
        server.process(pid).info()


def test_send_and_output_with_the_blocking_client(daemon: Daemon, server: Server) -> None:
    job = server.load(child_job("secho", "echo", redirect_input=True, redirect_output=["stdout"]))
    [pid] = sync_running_pids(job, 1, server)
    process = server.process(pid)
    stop = threading.Event()

    def keep_sending() -> None:  # until the feed below has started and seen a line
        while not stop.wait(0.2):
            daemon.ok("POST", f"/streams/{pid}/stdin", "ping\n")

    sender = threading.Thread(target=keep_sending, daemon=True)
    sender.start()
    try:
        output = process.output("stdout")
        assert next(output).startswith(b"ping\n")
    finally:
        stop.set()
        sender.join(5)
    process.send("hello\n")
    received = b""
    for chunk in output:  # ends when the process exits
        received += chunk
        if b"hello\n" in received and process.active():
            process.stop()
    assert received.replace(b"ping\n", b"") == b"hello\n"


@contextmanager
def scaling(daemon: Daemon, job_id: str, every: float = 0.3) -> Iterator[None]:
    """Scale ``job_id`` up every ``every`` seconds (from a thread) while the block runs: a
    feed opened in it surely gets events, however late it starts."""
    stop = threading.Event()
    path = "/jobs/" + job_id.replace(".", "/", 1) + "/numprocesses"

    def keep_scaling() -> None:
        while not stop.wait(every):
            daemon.ok("POST", path, {"scale": "+1"})

    scaler = threading.Thread(target=keep_scaling, daemon=True)
    scaler.start()
    try:
        yield
    finally:
        stop.set()
        scaler.join(5)


@contextmanager
def leaks() -> Iterator[list[str]]:
    """What the block leaves behind that Python complains about at garbage collection:
    ResourceWarnings (an unclosed socket, transport...) and errors raised in ``__del__``."""
    found: list[str] = []
    previous = sys.unraisablehook

    def hook(info: Any) -> None:
        found.append(f"{info.exc_type.__name__}: {info.exc_value} in {info.object!r}")

    sys.unraisablehook = hook
    try:
        with warnings.catch_warnings(record=True) as recorded:
            warnings.simplefilter("always", ResourceWarning)
            try:
                yield found
            finally:
                gc.collect()
        found.extend(
            f"{warning.category.__name__}: {warning.message}"
            for warning in recorded
            if issubclass(warning.category, ResourceWarning)
        )
    finally:
        sys.unraisablehook = previous


def test_watch_with_the_blocking_client(daemon: Daemon, url: str) -> None:
    events = []
    # leaving the feed early leaks its connection: see the test after this one
    with leaks(), Server(url) as server:
        job = server.load(child_job("swatch", "sleep"))
        sync_running_pids(job, 1, server)
        with scaling(daemon, job.id):
            for event in server.watch("job.default.swatch"):
                events.append(event)
                if len(events) == 4:
                    break
    assert {event["name"] for event in events} == {"default.swatch"}
    assert all(event["event"].startswith("job.default.swatch.") for event in events)
    assert {"job.default.swatch.update", "job.default.swatch.spawn"} <= {
        event["event"] for event in events
    }


@pytest.mark.parametrize("close_it", [True, False], ids=["closed", "dropped"])
def test_leaving_a_blocking_watch_early_leaks_nothing(
    daemon: Daemon, url: str, close_it: bool
) -> None:
    """``for event in server.watch(): ... break`` (the client's own example), then closing
    the Server, must leave no open connection and raise nothing at garbage collection."""
    with leaks() as found:
        with Server(url) as server:
            job = server.load(child_job("early", "sleep"))
            with scaling(daemon, job.id):
                events = server.watch("job.default.early")
                first = next(events)
            if close_it:
                events.close()
        assert first["name"] == "default.early"
        del events
    assert found == []


def test_the_blocking_client_refuses_a_running_event_loop(url: str) -> None:
    with Server(url) as blocking:
        assert blocking.ping() is True  # usable outside a loop

        async def inside() -> None:
            blocking.version()

        with pytest.raises(RuntimeError, match="AsyncServer"):
            asyncio.run(inside())
        assert blocking.version() == gaffer.__version__  # still usable after


async def test_the_blocking_client_in_an_async_test(url: str) -> None:
    blocking = Server(url)
    try:
        with pytest.raises(RuntimeError, match="cannot run inside an event loop"):
            blocking.ping()
        with pytest.raises(RuntimeError, match="AsyncServer"):
            blocking.job("web").info()
    finally:
        await asyncio.to_thread(blocking.close)  # closing runs its own loop


def test_unreachable_with_the_blocking_client(tmp_path: Path) -> None:
    for address in dead_addresses(tmp_path):
        with Server(address) as blocking:
            with pytest.raises(Unreachable, match="cannot reach gafferd"):
                blocking.version()
            with pytest.raises(Unreachable):
                blocking.load(child_job("never", "sleep"))


# -- the asyncio AsyncServer -----------------------------------------------------------------------


async def test_async_version_ping_and_lists(daemon: Daemon, url: str) -> None:
    async with AsyncServer(url) as server:
        assert await server.version() == gaffer.__version__
        assert await server.ping() is True
        assert await server.jobs() == [] and await server.sessions() == []
        job = await server.load(child_job("ajob", "sleep"), sessionid="asyncapp")
        pids = await running_pids(job, 1)
        assert await server.jobs() == ["asyncapp.ajob"]
        assert await server.sessions() == ["asyncapp"]
        assert set(pids) <= set(await server.pids())
        assert (await server.get_job("asyncapp.ajob")).id == "asyncapp.ajob"
        with pytest.raises(NotFound):
            await server.get_job("ajob")  # default.ajob
        with pytest.raises(Conflict):
            await server.load(child_job("ajob", "sleep"), sessionid="asyncapp")
        await server.load(child_job("ajob", "sleep", numprocesses=2), "asyncapp", force=True)
        assert await job.numprocesses() == 2
        await server.unload("ajob", "asyncapp")
        assert await server.jobs() == []


async def test_async_job_methods(daemon: Daemon, url: str) -> None:
    async with AsyncServer(url) as server:
        job = await server.load(child_job("amethods", "sleep"), start=False)
        assert await job.active() is False
        await job.start()
        [first] = await running_pids(job, 1)
        assert await job.scale(3) == 4  # a number adds
        await running_pids(job, 4)
        assert await job.scale("-3") == 1
        await running_pids(job, 1)
        stats = await job.stats()
        assert stats["name"] == "default.amethods" and len(stats["stats"]) == 1
        await job.restart()
        [second] = await running_pids(job, 1)
        assert second != first
        pid = await job.commit(graceful_timeout=1, env={"X": "y"})
        assert (await server.process(pid).info())["env"]["X"] == "y"
        await job.stop()
        assert await job.pids() == []
        info = await job.info()
        assert info["active"] is False
        await job.unload()
        assert await server.job_exists("amethods") is False


async def test_async_process_send_and_output(daemon: Daemon, url: str) -> None:
    """The output async generator of an echo process gives what ``send`` wrote."""
    async with AsyncServer(url) as server:
        job = await server.load(
            child_job("aecho", "echo", redirect_input=True, redirect_output=["stdout", "stderr"])
        )
        [pid] = await running_pids(job, 1)
        process = server.process(pid)
        received = bytearray()

        async def read() -> None:
            async for chunk in process.output():
                received.extend(chunk)

        reader = asyncio.ensure_future(read())
        try:
            # until the feed has started, what is sent may come before it: send markers
            async def following() -> bool:
                if b"marker\n" in received:
                    return True
                await process.send("marker\n")
                await asyncio.sleep(0.2)
                return False

            await poll(following, what="the output feed following")
            await process.send(b"hello from the client\n")
            await wait_until(lambda: b"hello from the client\n" in received, 10, "the echo")
            # the feed ends when the process exits
            await process.stop()
            await asyncio.wait_for(reader, 10)
        finally:
            reader.cancel()
        assert bytes(received).replace(b"marker\n", b"") == b"hello from the client\n"


async def test_async_process_info_stats_kill(daemon: Daemon, url: str, tmp_path: Path) -> None:
    path = tmp_path / "dummy.txt"
    async with AsyncServer(url) as server:
        job = await server.load(child_job("adummy", "dummy", path))
        [pid] = await running_pids(job, 1)
        process = await server.get_process(pid)
        info = await process.info()
        assert info["pid"] == pid and info["name"] == "default.adummy"
        stats = await process.stats()
        assert stats["os_pid"] == info["os_pid"]
        await wait_until(lambda: read_file(path) == "START", 10, "START")
        await process.kill("HUP")
        await wait_until(lambda: read_file(path) == "STARTHUP", 10, "STARTHUP")
        await process.kill(15)
        await wait_until(lambda: read_file(path).startswith("STARTHUPQUITSTOP"), 10, "STOP")
        with pytest.raises(NotFound):
            await server.get_process(99999)


async def test_async_watch_while_scaling(daemon: Daemon, url: str) -> None:
    async with AsyncServer(url) as server:
        job = await server.load(child_job("awatch", "sleep"))
        await running_pids(job, 1)
        events: list[dict[str, Any]] = []

        async def watch() -> None:
            async for event in server.watch("job.default.awatch"):
                events.append(event)
                if len(events) >= 4:
                    return

        watcher = asyncio.ensure_future(watch())
        try:

            async def seen() -> bool:
                if watcher.done():
                    return True
                await job.scale("+1")
                await asyncio.wait({watcher}, timeout=0.3)
                return watcher.done()

            await poll(seen, what="4 events")
            await watcher  # raises what the feed raised
        finally:
            watcher.cancel()
        assert all(event["name"] == "default.awatch" for event in events)
        kinds = {event["event"] for event in events}
        assert {"job.default.awatch.update", "job.default.awatch.spawn"} <= kinds
        spawns = [event for event in events if event["event"].endswith(".spawn")]
        assert all(isinstance(event["pid"], int) for event in spawns)


async def test_async_unreachable(tmp_path: Path) -> None:
    for address in dead_addresses(tmp_path):
        async with AsyncServer(address) as server:
            with pytest.raises(Unreachable, match="cannot reach gafferd"):
                await server.ping()
            with pytest.raises(Unreachable):
                async for _ in server.watch():
                    pass
            with pytest.raises(Unreachable):
                await server.socket()


# -- the /channel WebSocket and a process's IO channel ---------------------------------------------


async def test_gaffer_socket_subscribe_and_command(daemon: Daemon, url: str) -> None:
    async with AsyncServer(url) as server:
        job = await server.load(child_job("web", "sleep"))
        await running_pids(job, 1)
        socket = await server.socket()
        assert isinstance(socket, GafferSocket)
        try:
            events: list[tuple[str, dict[str, Any]]] = []
            await socket.subscribe(
                "JOB:default.web", lambda evtype, msg: events.append((evtype, msg))
            )
            assert await socket.command("scale", "default.web", "+1") == {"numprocesses": 2}
            await running_pids(job, 2)
            await wait_until(
                lambda: any(evtype == "spawn" for evtype, _ in events), 10, "a spawn event"
            )
            spawn = next(msg for evtype, msg in events if evtype == "spawn")
            assert spawn["name"] == "default.web"
            assert spawn["pid"] in await job.pids()
            # an unknown job is an error of the command, with its status
            with pytest.raises(NotFound):
                await socket.command("scale", "default.nosuchjob", "+1")
            # an unknown command too
            with pytest.raises(ApiError):
                await socket.command("nosuchcommand")
            # the channel still works after errors
            assert (await socket.command("jobs")) is not None
        finally:
            await socket.close()


async def test_io_channel_of_an_echo_process(daemon: Daemon, url: str) -> None:
    async with AsyncServer(url) as server:
        job = await server.load(
            child_job("ioecho", "echo", redirect_input=True, redirect_output=["stdout"])
        )
        [pid] = await running_pids(job, 1)
        channel = await server.process(pid).channel()
        assert isinstance(channel, IOChannel)
        received = bytearray()
        channel.on_data(received.extend)
        try:
            await channel.write(b"ECHO\n")  # returns once gafferd took it
            await wait_until(lambda: b"ECHO\n" in received, 10, "the echo")
            await channel.write("second line\n")
            await wait_until(lambda: b"second line\n" in received, 10, "the second echo")
            assert bytes(received) == b"ECHO\nsecond line\n"
        finally:
            await channel.close()


async def test_io_channel_of_a_custom_stream(daemon: Daemon, url: str) -> None:
    async with AsyncServer(url) as server:
        job = await server.load(child_job("iofd3", "echo-fd3", custom_streams=["ctrl"]))
        [pid] = await running_pids(job, 1)
        channel = await server.process(pid).channel(stream="ctrl")
        received = bytearray()
        channel.on_data(received.extend)
        try:
            await channel.write(b"PING\n")
            await wait_until(lambda: b"PING\n" in received, 10, "PING back on ctrl")
            assert bytes(received) == b"PING\n"
        finally:
            await channel.close()
        # the channel closes when the process exits
        channel = await server.process(pid).channel(mode=1, stream="ctrl")
        try:
            await job.stop()
            await asyncio.wait_for(channel.closed.wait(), 10)
        finally:
            await channel.close()


# -- keys, users, typed errors (gafferd with require_key) ------------------------------------------


async def test_keys(auth: Daemon, auth_url: str) -> None:
    async with AsyncServer(auth_url, auth.admin_key) as server:
        secret = await server.keys.create_key({"read": ["keyapp"]}, label=f"reader {auth_url}")
        assert secret.startswith("gk_")
        keys = {key["label"]: key for key in await server.keys.all_keys()}
        key = keys[f"reader {auth_url}"]
        assert key["permissions"]["read"] == ["keyapp"]
        shown = await server.keys.get_key(key["key_id"])
        assert shown["key_id"] == key["key_id"] and secret not in str(shown)
        assert await server.keys.has_key(key["key_id"]) is True
        sub = await server.keys.create_key(
            {"read": ["keyapp"]}, label=f"sub {auth_url}", parent=key["key_id"]
        )
        assert sub.startswith("gk_")
        async with AsyncServer(auth_url, secret) as reader:
            assert await reader.jobs() == []
        deleted = await server.keys.delete_key(key["key_id"])
        assert key["key_id"] in deleted and len(deleted) == 2
        assert await server.keys.has_key(key["key_id"]) is False
        with pytest.raises(NotFound):
            await server.keys.get_key(key["key_id"])
        async with AsyncServer(auth_url, secret) as deleted_key:
            with pytest.raises(Forbidden):
                await deleted_key.jobs()


def test_users_and_authenticate(auth: Daemon, auth_url: str) -> None:
    name = "carol-unix" if auth_url.startswith("unix:") else "carol-tcp"
    with Server(auth_url, auth.admin_key) as admin:
        key_secret = admin.keys.create_key({"read": ["carolapp"]}, label=f"{name} key")
        key_id = next(
            key["key_id"] for key in admin.keys.all_keys() if key["label"] == f"{name} key"
        )
        created = admin.users.create_user(name, "pw1", key=key_id)
        assert created["username"] == name and created["key_id"] == key_id
        assert "pw1" not in str(created)
        assert name in {user["username"] for user in admin.users.all_users()}
        assert admin.users.get_user(name)["user_type"] == 1
        assert admin.users.has_user(name) is True
        with pytest.raises(Conflict):
            admin.users.create_user(name, "again")
        admin.users.set_password(name, "pw2")
    with Server(auth_url) as anonymous:
        with pytest.raises(Unauthorized):
            anonymous.jobs()
        with pytest.raises(ApiError) as caught:
            anonymous.authenticate(name, "pw1")  # the old password
        assert caught.value.status in (401, 403)
        login_key = anonymous.authenticate(name, "pw2")
        assert login_key.startswith("gk_") and login_key != key_secret
        assert anonymous.api_key == login_key  # kept for what follows
        assert anonymous.jobs() == []
        with pytest.raises(Forbidden):
            anonymous.load(child_job("denied", "sleep"), sessionid="carolapp")
    with Server(auth_url, auth.admin_key) as admin:
        admin.users.delete_user(name)
        assert admin.users.has_user(name) is False
        with pytest.raises(NotFound):
            admin.users.get_user(name)


async def test_typed_errors(auth: Daemon, auth_url: str) -> None:
    async with AsyncServer(auth_url) as nobody:
        with pytest.raises(Unauthorized) as unauthorized:
            await nobody.jobs()
        assert unauthorized.value.status == 401
    async with AsyncServer(auth_url, "gk_made-up") as wrong:
        with pytest.raises(Forbidden):
            await wrong.jobs()
    async with AsyncServer(auth_url, auth.admin_key) as admin:
        reader_key = await admin.keys.create_key({"read": ["typed"]}, label="typed reader")
        job = await admin.load(child_job("job", "sleep"), sessionid="typed", start=False)
        try:
            with pytest.raises(Conflict) as conflict:
                await admin.load(child_job("job", "sleep"), sessionid="typed", start=False)
            assert conflict.value.status == 409 and conflict.value.code
            with pytest.raises(NotFound) as not_found:
                await admin.get_job("typed.nosuchjob")
            assert not_found.value.status == 404
            async with AsyncServer(auth_url, reader_key) as reader:
                assert (await reader.job("typed.job").info())["name"] == "typed.job"
                with pytest.raises(Forbidden) as forbidden:
                    await reader.job("typed.job").start()
                assert forbidden.value.status == 403
                with pytest.raises(Forbidden):
                    await reader.job("typed.job").scale(2)
                with pytest.raises(Forbidden):
                    await reader.load(child_job("other", "sleep"), sessionid="typed")
            assert await job.pids() == []
        finally:
            await job.unload()


async def test_the_channel_with_keys(auth: Daemon, auth_url: str) -> None:
    # without a key the handshake passes (an AUTH message may follow), a command does not
    async with AsyncServer(auth_url) as nobody:
        socket = await nobody.socket()
        try:
            with pytest.raises(ChannelClosed):
                await socket.command("sessions")
            assert [error["data"]["error"] for error in socket.errors] == ["AUTH_REQUIRED"]
        finally:
            await socket.close()
    async with AsyncServer(auth_url, "gk_made-up") as wrong:
        with pytest.raises(Forbidden):
            await wrong.socket()
    async with AsyncServer(auth_url, auth.admin_key) as admin:
        job = await admin.load(child_job("chan", "sleep"), sessionid="channelapp", start=False)
        socket = await admin.socket()
        try:
            assert await socket.command("jobs", "channelapp") == {
                "sessionid": "channelapp",
                "jobs": ["channelapp.chan"],
            }
        finally:
            await socket.close()
            await job.unload()
