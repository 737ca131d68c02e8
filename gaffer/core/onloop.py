"""Calling an engine object from any thread: ``@on_loop`` runs a method on its loop.

Called on the loop's thread (or before the loop runs), the method runs at once. Called
from another thread while the loop runs, it is queued on the loop and the caller waits for
its result; if the loop stops before it ran, the caller gets ``ManagerStopped`` rather
than waiting for ever. A call from *another* running event loop is refused: waiting there
would block that loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from gaffer.errors import ManagerStopped

F = TypeVar("F", bound=Callable[..., Any])


class LoopOwner(Protocol):
    loop: asyncio.AbstractEventLoop
    _pending_calls: set[concurrent.futures.Future[Any]]


def on_loop(method: F) -> F:
    """Run ``method`` on the owner's loop; from another thread, wait for its result."""

    @functools.wraps(method)
    def wrapper(self: LoopOwner, *args: Any, **kwargs: Any) -> Any:
        loop = self.loop
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop or (running is None and not loop.is_running()):
            return method(self, *args, **kwargs)
        if running is not None:  # waiting here would block that loop for ever
            raise RuntimeError(
                f"Manager.{method.__name__}() called from another event loop "
                "than the manager's: create the Manager inside the loop "
                "that runs it, or pass it loop="
            )
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()

        def call() -> None:
            self._pending_calls.discard(future)
            if not future.set_running_or_notify_cancel():
                return
            try:
                future.set_result(method(self, *args, **kwargs))
            except BaseException as exc:
                future.set_exception(exc)

        self._pending_calls.add(future)
        loop.call_soon_threadsafe(call)
        return future.result()

    return wrapper  # type: ignore[return-value]


def call_soon_here(loop: asyncio.AbstractEventLoop, func: Callable[..., None], *args: Any) -> None:
    """``func(*args)`` now on the loop's thread, else queued on the loop; never waits."""
    try:
        here = asyncio.get_running_loop() is loop
    except RuntimeError:
        here = False
    if here:
        func(*args)
    else:
        loop.call_soon_threadsafe(func, *args)


def fail_pending(pending: set[concurrent.futures.Future[Any]]) -> None:
    """Calls from other threads that a stopped loop will never run: fail them."""
    for future in list(pending):
        pending.discard(future)
        if future.set_running_or_notify_cancel():
            future.set_exception(ManagerStopped("the manager's loop stopped"))
