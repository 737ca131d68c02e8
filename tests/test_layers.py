"""The layer rule of docs/design.md, enforced.

* ``gaffer`` itself, the ``gaffer`` command (all its commands registered) and the client
  load no module of ``gaffer.core`` or ``gaffer.http`` when imported;
* ``gaffer.core`` imports nothing of ``gaffer.http``, ``gafferd``, ``gaffer.cli`` or
  ``gaffer.client``; ``gaffer.http`` nothing of ``gafferd``;
* the neutral modules (``gaffer.errors``, ``gaffer.wire``, ``gaffer.crashloop``,
  ``gaffer.dotenv``) import no other module of gaffer but ``gaffer.errors``.

Each import runs in a fresh interpreter, whose ``sys.modules`` is then read: what a module
pulls in through the modules it imports counts too. A second look reads the source, for
the imports written inside functions, which run later (a command's engine, loaded when
it runs, is allowed; the engine reaching for the HTTP layer is not, even late).
"""

from __future__ import annotations

import ast
import gc
import json
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
ENGINE = ("gaffer.core", "gaffer.http")
NOT_FOR_CORE = ("gaffer.http", "gafferd", "gaffer.cli", "gaffer.client", "gaffer.console")
NEUTRAL = ("gaffer.errors", "gaffer.wire", "gaffer.crashloop", "gaffer.dotenv")

PROBE = """
import importlib, json, pkgutil, sys
for name in {names!r}:
    module = importlib.import_module(name)
    if {walk!r} and hasattr(module, "__path__"):
        for info in pkgutil.walk_packages(module.__path__, name + "."):
            importlib.import_module(info.name)
{then}
print(json.dumps(sorted(sys.modules)))
"""


def loaded_by(*names: str, walk: bool = False, then: str = "") -> list[str]:
    """The modules a fresh interpreter holds once it imported ``names`` (and, with
    ``walk``, every module of those packages), then ran ``then``."""
    code = PROBE.format(names=list(names), walk=walk, then=then)
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.splitlines()[-1])


def within(modules: list[str], packages: tuple[str, ...]) -> list[str]:
    return [m for m in modules if any(m == p or m.startswith(p + ".") for p in packages)]


def test_import_gaffer_loads_no_engine():
    modules = loaded_by("gaffer")
    assert within(modules, ENGINE) == []
    assert [m for m in modules if m.startswith("gaffer.")] == []


def test_gaffer_command_loads_no_engine():
    # build_parser registers every command: their modules are imported then
    modules = loaded_by("gaffer.cli.main", then="sys.modules['gaffer.cli.main'].build_parser()")
    assert "gaffer.cli.commands.local" in modules  # the probe saw every command
    assert within(modules, ENGINE) == []


def test_gaffer_command_module_entry_loads_no_engine():
    # python -m gaffer --version: the whole start of the command, up to its exit
    modules = loaded_by(
        "gaffer.cli.main",
        then=(
            "try:\n    sys.modules['gaffer.cli.main'].main(['--version'])\n"
            "except SystemExit:\n    pass"
        ),
    )
    assert within(modules, ENGINE) == []


def test_client_loads_no_engine():
    modules = loaded_by("gaffer.client", "gaffer.client.channel")
    assert within(modules, ENGINE) == []


def test_embedding_names_still_import_lazily():
    modules = loaded_by("gaffer", then="from gaffer import Manager, ProcessConfig, FlappingInfo")
    assert "gaffer.core.manager" in modules


def test_core_imports_nothing_of_the_outer_layers():
    modules = loaded_by("gaffer.core", walk=True)
    assert "gaffer.core.manager" in modules
    assert within(modules, NOT_FOR_CORE) == []


def test_http_imports_nothing_of_gafferd():
    modules = loaded_by("gaffer.http", walk=True)
    assert "gaffer.http.handlers.channel" in modules
    assert within(modules, ("gafferd",)) == []


@pytest.mark.parametrize("name", NEUTRAL)
def test_neutral_modules_import_no_other_gaffer_module(name):
    modules = loaded_by(name)
    assert {m for m in modules if m.startswith("gaffer.")} <= {name, "gaffer.errors"}


# -- imports written anywhere in the source (functions included) ---------------------------
def imported_names(path: pathlib.Path) -> list[tuple[int, str]]:
    """``(line, module)`` of every import statement of a file, at any depth."""
    found = []
    # a collection in the middle of the parse can upset CPython 3.11's depth check of the
    # AST constructor ("recursion depth mismatch", CPython gh-106905): none meanwhile
    gc.disable()
    try:
        tree = ast.parse(path.read_text(), str(path))
    finally:
        gc.enable()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
    return found


def offending(package: str, forbidden: tuple[str, ...]) -> list[str]:
    out = []
    for path in sorted((ROOT / package.replace(".", "/")).rglob("*.py")):
        for line, module in imported_names(path):
            if within([module], forbidden):
                out.append(f"{path.relative_to(ROOT)}:{line}: {module}")
    return out


def test_core_source_never_imports_the_outer_layers():
    assert offending("gaffer.core", NOT_FOR_CORE) == []


def test_http_source_never_imports_gafferd():
    assert offending("gaffer.http", ("gafferd",)) == []


def test_client_source_never_imports_the_engine():
    assert offending("gaffer.client", ENGINE) == []
