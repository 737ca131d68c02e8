"""The blocking client: the same objects and methods as the asyncio client, whose calls
return results instead of coroutines.

::

    server = Server("unix:/run/gaffer/gafferd.sock")
    job = server.load({"name": "web", "cmd": "python -m http.server"})
    job.scale("+1")
    for event in server.watch("job.default.web"):
        print(event)

Each ``Server`` runs the asyncio client on a private event loop; it cannot be used from
inside a running event loop (use ``AsyncServer`` there).
"""

from __future__ import annotations

import asyncio
import inspect
import weakref
from collections.abc import Iterator
from typing import Any

from gaffer.client import aio


class _Runner:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._iterators: weakref.WeakSet[Iterator[Any]] = weakref.WeakSet()

    def run(self, awaitable: Any) -> Any:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return self.loop.run_until_complete(awaitable)
        if inspect.iscoroutine(awaitable):
            awaitable.close()
        raise RuntimeError(
            "the blocking gaffer client cannot run inside an event loop: "
            "use gaffer.client.AsyncServer there"
        )

    def iterate(self, agen: Any) -> Iterator[Any]:
        iterator = self._iterate(agen)
        self._iterators.add(iterator)  # closed by close() if still open then
        return iterator

    def _iterate(self, agen: Any) -> Iterator[Any]:
        try:
            while True:
                try:
                    yield self.run(agen.__anext__())
                except StopAsyncIteration:
                    return
        finally:
            if not self.loop.is_closed():
                self.run(agen.aclose())

    def close(self) -> None:
        for iterator in list(self._iterators):
            iterator.close()
        if not self.loop.is_closed():
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            self.loop.close()


class _Sync:
    """Wraps an async client object: coroutines are run, async objects wrapped."""

    def __init__(self, target: Any, runner: _Runner) -> None:
        object.__setattr__(self, "_target", target)
        object.__setattr__(self, "_runner", runner)

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._target, name)
        if callable(value) and not isinstance(value, type):

            def call(*args: Any, **kwargs: Any) -> Any:
                return self._wrap(value(*args, **kwargs))

            call.__doc__ = value.__doc__
            return call
        return self._wrap(value)

    def _wrap(self, value: Any) -> Any:
        if inspect.isawaitable(value):
            value = self._runner.run(value)
        if inspect.isasyncgen(value):
            return self._runner.iterate(value)
        kind = _SYNC.get(type(value))
        return kind(value, self._runner) if kind is not None else value

    def __repr__(self) -> str:
        return repr(self._target)


class Server(_Sync):
    """A gafferd, blocking: ``Server(url, api_key=None, certfile=..., cacert=...)``."""

    def __init__(self, url: str | None = None, api_key: str | None = None, **options: Any) -> None:
        runner = _Runner()
        # the transport binds to the loop it first runs on: the runner's
        super().__init__(aio.AsyncServer(url, api_key, **options), runner)

    def close(self) -> None:
        self._target.close()
        self._runner.close()

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class Job(_Sync):
    """A job: ``info()``, ``stats()``, ``start()``, ``stop()``, ``scale(n)``..."""


class Process(_Sync):
    """A process: ``info()``, ``stats()``, ``stop()``, ``kill(sig)``, ``send(data)``..."""


class Keys(_Sync):
    pass


class Users(_Sync):
    pass


_SYNC: dict[type, type[_Sync]] = {
    aio.AsyncJob: Job,
    aio.AsyncProcess: Process,
    aio.AsyncKeys: Keys,
    aio.AsyncUsers: Users,
}
