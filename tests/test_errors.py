"""One error tree: every exception class of gaffer/ and gafferd/ derives from GafferError,
no two share a name, and the engine's errors carry no HTTP status."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re

import pytest

import gaffer
import gafferd
from gaffer import errors
from gaffer.errors import GafferError, ProcessError
from gaffer.http.handlers.base import error_status


def _modules() -> list:
    found = []
    for package in (gaffer, gafferd):
        found.append(package)
        for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            if info.name.endswith(("__main__", ".guard_main")):
                continue  # __main__ runs a program; guard_main is a standalone script
            found.append(importlib.import_module(info.name))
    return found


def exception_classes() -> dict[str, list[type]]:
    """Every exception class defined in gaffer/ and gafferd/, by name."""
    by_name: dict[str, list[type]] = {}
    for module in _modules():
        for _, value in inspect.getmembers(module, inspect.isclass):
            mine = issubclass(value, BaseException) and value.__module__ == module.__name__
            if mine and value not in by_name.setdefault(value.__name__, []):
                by_name[value.__name__].append(value)
    return by_name


def test_every_exception_derives_from_gaffer_error():
    classes = exception_classes()
    assert len(classes) > 40  # the walk found them (today: every module's own)
    outside = sorted(
        f"{kind.__module__}.{kind.__name__}"
        for kinds in classes.values()
        for kind in kinds
        if not issubclass(kind, GafferError)
    )
    assert outside == []


def test_no_two_exception_classes_share_a_name():
    shared = {name: kinds for name, kinds in exception_classes().items() if len(kinds) > 1}
    assert shared == {}


def test_the_tree_is_drawn_in_the_docstring():
    classes = exception_classes()
    missing = sorted(name for name in classes if not re.search(rf"\b{name}\b", errors.__doc__))
    assert missing == []


@pytest.mark.parametrize(
    "name",
    sorted(
        name for name, kinds in exception_classes().items() if issubclass(kinds[0], ProcessError)
    ),
)
def test_engine_errors_carry_no_status(name):
    kind = exception_classes()[name][0]
    # (OSError has an errno of its own: the OS's, not a status)
    stored = [k for k in kind.__mro__ if issubclass(k, GafferError) and "errno" in vars(k)]
    assert stored == [], f"{name} stores a status: map it in error_status"
    assert isinstance(kind.reason, str) and kind.reason


def test_builtin_bases_are_kept_where_callers_rely_on_them():
    from gaffer.core.config import InvalidOption
    from gafferd.ini import IniError
    from gafferd.pidfile import AlreadyRunning
    from gafferd.settings import SettingError

    for kind in (InvalidOption, IniError, SettingError, errors.InvalidArgument):
        assert issubclass(kind, ValueError)
    assert issubclass(AlreadyRunning, RuntimeError)
    assert issubclass(errors.StreamNotRedirected, OSError)


def test_statuses_are_mapped_at_the_http_edge():
    from gaffer.http.controller import BadCommand, StreamClosed, UnknownCommand

    cases = {
        errors.ProcessNotFound("x"): (404, "not_found"),
        errors.ProcessConflict("x"): (409, "process_conflict"),
        errors.InvalidArgument("x", reason="bad_name"): (400, "bad_name"),
        errors.PermissionDenied("x"): (403, "forbidden"),
        errors.ProcessLimitReached("x"): (409, "process_limit"),
        errors.SpawnError("x"): (500, "spawn_error"),
        BadCommand("x"): (400, "bad_command"),
        UnknownCommand("x"): (404, "command_not_found"),
        StreamClosed("x"): (409, "stream_closed"),
    }
    for exc, expected in cases.items():
        assert error_status(exc)[:2] == expected, exc


def test_public_names_still_import():
    from gaffer import (  # the contract's names
        GafferError,
        ProcessConflict,
        ProcessError,
        ProcessNotFound,
    )

    assert issubclass(ProcessNotFound, ProcessError)
    assert issubclass(ProcessConflict, GafferError)
