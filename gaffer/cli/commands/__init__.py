"""The commands of ``gaffer``, one module per group. A command is an async function
registered with ``@command(name, arg(...)...)``; its docstring is its help."""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

GROUPS = ("ps", "jobs", "logs", "io", "stats", "accounts", "local", "daemon")


@dataclass
class Command:
    name: str
    func: Callable[[Any], Awaitable[int | None]]
    summary: str
    description: str
    arguments: list[tuple[tuple[str, ...], dict[str, Any]]] = field(default_factory=list)


COMMANDS: dict[str, Command] = {}


def arg(*names: str, **kwargs: Any) -> tuple[tuple[str, ...], dict[str, Any]]:
    return names, kwargs


def command(name: str, *arguments: tuple[tuple[str, ...], dict[str, Any]]):
    def register(func: Callable[[Any], Awaitable[int | None]]):
        doc = inspect.getdoc(func) or ""
        COMMANDS[name] = Command(
            name, func, doc.splitlines()[0] if doc else "", doc, list(arguments)
        )
        return func

    return register


def load_commands() -> None:
    for group in GROUPS:
        importlib.import_module(f"gaffer.cli.commands.{group}")


YES = arg(
    "-y", "--yes", "--no-input", dest="yes", action="store_true", help="do not ask for confirmation"
)
