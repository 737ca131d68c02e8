"""gaffer: a process supervisor on a libuv event loop.

Embedding::

    from gaffer import Manager, ProcessConfig

    manager = Manager()
    manager.start()
    manager.load(ProcessConfig("web", "python -m http.server 8000", numprocesses=2))
    manager.run()        # until manager.stop() is called, from any thread

The names below are imported when first used (module ``__getattr__``): ``import gaffer``
alone loads nothing of the engine, so the ``gaffer`` command and the client, which live
in this package too, start without it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.6.0"
version_info = tuple(int(part) for part in __version__.split("."))

# public name -> the module that defines it
_EXPORTS = {
    "EventEmitter": "gaffer.core.events",
    "FlappingInfo": "gaffer.crashloop",
    "GafferError": "gaffer.errors",
    "InvalidArgument": "gaffer.errors",
    "Manager": "gaffer.core.manager",
    "Plugin": "gaffer.plugin",
    "PluginError": "gaffer.plugin",
    "Process": "gaffer.core.process",
    "ProcessConfig": "gaffer.core.config",
    "ProcessConflict": "gaffer.errors",
    "ProcessError": "gaffer.errors",
    "ProcessLimitReached": "gaffer.errors",
    "ProcessNotFound": "gaffer.errors",
    "SpawnError": "gaffer.errors",
    "StreamNotFound": "gaffer.errors",
    "StreamNotRedirected": "gaffer.errors",
}

__all__ = [
    "EventEmitter",
    "FlappingInfo",
    "GafferError",
    "InvalidArgument",
    "Manager",
    "Plugin",
    "PluginError",
    "Process",
    "ProcessConfig",
    "ProcessConflict",
    "ProcessError",
    "ProcessLimitReached",
    "ProcessNotFound",
    "SpawnError",
    "StreamNotFound",
    "StreamNotRedirected",
    "__version__",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'gaffer' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # once imported, a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})


if TYPE_CHECKING:  # what type checkers and editors see
    from gaffer.core.config import ProcessConfig
    from gaffer.core.events import EventEmitter
    from gaffer.core.manager import Manager
    from gaffer.core.process import Process
    from gaffer.crashloop import FlappingInfo
    from gaffer.errors import (
        GafferError,
        InvalidArgument,
        ProcessConflict,
        ProcessError,
        ProcessLimitReached,
        ProcessNotFound,
        SpawnError,
        StreamNotFound,
        StreamNotRedirected,
    )
    from gaffer.plugin import Plugin, PluginError
