"""Test harness: async tests on a fresh loop each, and no child left behind, ever."""

from __future__ import annotations

import asyncio
import inspect
import os
import signal
import time

import psutil
import pytest

# a move the state tables refuse is a bug: raise it, here and in every gafferd started
os.environ["GAFFER_STRICT_STATES"] = "1"

from gaffer.core import states
from gaffer.core.loop import new_event_loop

states.STRICT = True

ASYNC_TEST_TIMEOUT = float(os.environ.get("GAFFER_TEST_TIMEOUT", "45"))


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    """Run ``async def`` tests on a new event loop: uvloop unless the test takes a
    ``loop_kind`` argument (then each kind it is parametrized with)."""
    func = pyfuncitem.obj
    if not inspect.iscoroutinefunction(func):
        return None
    names = pyfuncitem._fixtureinfo.argnames
    kwargs = {name: pyfuncitem.funcargs[name] for name in names}
    loop = new_event_loop(kwargs.get("loop_kind", os.environ.get("GAFFER_LOOP", "uvloop")))
    try:
        loop.run_until_complete(asyncio.wait_for(func(**kwargs), ASYNC_TEST_TIMEOUT))
    finally:
        try:
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            loop.close()
    return True


@pytest.fixture(params=["uvloop", "asyncio"])
def loop_kind(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(autouse=True)
def no_leaked_children():
    """Fail a test that leaves a child process (or a zombie) of the test runner behind."""
    yield
    me = psutil.Process()
    deadline = time.monotonic() + 5
    leftovers = []
    while time.monotonic() < deadline:
        leftovers = [child for child in me.children(recursive=True) if _alive_or_zombie(child)]
        if not leftovers:
            return
        time.sleep(0.02)
    details = [f"{child.pid} {_describe(child)}" for child in leftovers]
    for child in leftovers:
        try:
            os.kill(child.pid, signal.SIGKILL)
        except OSError:
            pass
    for child in me.children():
        try:
            os.waitpid(child.pid, os.WNOHANG)
        except ChildProcessError:
            pass
    pytest.fail(f"test left processes behind: {details}")


def _alive_or_zombie(proc: psutil.Process) -> bool:
    try:
        proc.status()
    except psutil.NoSuchProcess:
        return False
    return True


def _describe(proc: psutil.Process) -> str:
    try:
        return f"{proc.status()} {' '.join(proc.cmdline())[:100]}"
    except psutil.Error:
        return "?"
