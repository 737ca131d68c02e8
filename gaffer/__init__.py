"""gaffer: a process supervisor on a libuv event loop.

Embedding::

    from gaffer import Manager, ProcessConfig

    manager = Manager()
    manager.start()
    manager.load(ProcessConfig("web", "python -m http.server 8000", numprocesses=2))
    manager.run()        # until manager.stop() is called, from any thread
"""

from __future__ import annotations

from gaffer.core.config import ProcessConfig
from gaffer.core.events import EventEmitter
from gaffer.core.flapping import FlappingInfo
from gaffer.core.manager import Manager
from gaffer.core.process import Process
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

__version__ = "0.6.0"
version_info = tuple(int(part) for part in __version__.split("."))

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
