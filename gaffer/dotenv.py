"""Dotenv files: ``KEY=VALUE`` lines, as foreman, docker and systemd-ish tools read them.

One parser for the Procfile mode's ``.env`` files (``gaffer -e``) and for a job's
``env_file`` option. It imports nothing of gaffer but its errors, so the command line
and the engine can both use it.
"""

from __future__ import annotations

import re
from collections import ChainMap
from collections.abc import Iterable, Mapping

from gaffer.errors import ConfigError

_ENV_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_ENV_NAME_START = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_DQ_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\", "$": "$"}


class DotenvError(ConfigError):
    """A problem in a dotenv file; ``str()`` is ``path:line: message``."""

    def __init__(self, path: str, line: int | None, message: str) -> None:
        self.path, self.line, self.message = path, line, message
        where = f"{path}:{line}" if line else path
        super().__init__(f"{where}: {message}")


def parse_env(
    text: str, path: str = ".env", environ: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The variables of a dotenv file. Raises DotenvError.

    * ``KEY=VALUE``, optionally after ``export ``; spaces around ``=`` are allowed; a key
      is ``[A-Za-z_][A-Za-z0-9_]*``; blank lines and ``#`` lines are skipped; a key set
      twice keeps its last value.
    * Unquoted values are stripped; `` #`` (a ``#`` after a space) starts a comment.
    * ``'single quoted'`` values are literal.
    * ``"double quoted"`` values know ``\\n``, ``\\t``, ``\\r``, ``\\"``, ``\\\\`` and
      ``\\$`` (another backslash is kept as it is).
    * Quoted values may span lines; after the closing quote only a comment may follow.
    * ``$VAR``, ``${VAR}`` and ``${VAR:-default}`` in unquoted and double-quoted values
      are replaced by the value of VAR set earlier in the file, else in ``environ``, else
      by the empty string (or the default). ``$`` before anything else is literal.
    """
    environ = {} if environ is None else environ
    values: dict[str, str] = {}
    lookup = ChainMap(values, environ)  # type: ignore[arg-type]
    lines = text.replace("\r\n", "\n").split("\n")
    index = 0
    while index < len(lines):
        number = index + 1
        line = lines[index].lstrip()
        index += 1
        if not line.strip() or line.startswith("#"):
            continue
        if line.startswith("export") and line[6:7] in (" ", "\t"):
            line = line[7:].lstrip()
        key, sep, rest = line.partition("=")
        key = key.strip()
        if not sep:
            raise DotenvError(path, number, f"expected KEY=VALUE, got {line.rstrip()!r}")
        if not _ENV_KEY.match(key):
            raise DotenvError(
                path,
                number,
                f"bad variable name {key!r}: letters, digits and '_', not starting with a digit",
            )
        start = rest.lstrip(" \t")
        if start[:1] in ("'", '"'):
            quote = start[0]
            body = start[1:]
            while True:
                end = _closing_quote(body, quote)
                if end >= 0:
                    break
                if index >= len(lines):
                    raise DotenvError(
                        path, number, f"{key}: unterminated {quote} quote (opened here)"
                    )
                body += "\n" + lines[index]
                index += 1
            after = body[end + 1 :].strip()
            if after and not after.startswith("#"):
                raise DotenvError(
                    path, number, f"{key}: unexpected {after!r} after the closing {quote} quote"
                )
            raw = body[:end]
            if quote == "'":
                value = raw
            else:
                value = _expand(raw, lookup, True, path, number, key)
        else:
            value = _expand(_uncomment(rest).strip(), lookup, False, path, number, key)
        values[key] = value
    return dict(values)


def _closing_quote(body: str, quote: str) -> int:
    """Index of the quote closing ``body`` (backslash escapes count in double quotes)."""
    position = 0
    while position < len(body):
        char = body[position]
        if char == "\\" and quote == '"':
            position += 2
            continue
        if char == quote:
            return position
        position += 1
    return -1


def _uncomment(value: str) -> str:
    """Cut an inline comment: a ``#`` after whitespace."""
    for position, char in enumerate(value):
        if char == "#" and position and value[position - 1] in " \t":
            return value[:position]
    return value


def _expand(
    raw: str,
    lookup: Mapping[str, str],
    double_quoted: bool,
    path: str,
    number: int,
    key: str,
) -> str:
    out: list[str] = []
    position = 0
    while position < len(raw):
        char = raw[position]
        if char == "\\" and double_quoted and position + 1 < len(raw):
            escaped = _DQ_ESCAPES.get(raw[position + 1])
            if escaped is not None:
                out.append(escaped)
                position += 2
                continue
            out.append(char)
            position += 1
            continue
        if char != "$":
            out.append(char)
            position += 1
            continue
        following = raw[position + 1 : position + 2]
        if following == "{":
            end = raw.find("}", position + 2)
            if end < 0:
                raise DotenvError(path, number, f"{key}: unterminated ${{ in {raw!r}")
            inner = raw[position + 2 : end]
            name, has_default, default = inner.partition(":-")
            if not _ENV_KEY.match(name):
                raise DotenvError(
                    path, number, f"{key}: bad variable name {name!r} in ${{{inner}}}"
                )
            found = lookup.get(name, "")
            out.append(found if found or not has_default else default)
            position = end + 1
            continue
        match = _ENV_NAME_START.match(raw, position + 1)
        if match is None:
            out.append("$")
            position += 1
            continue
        out.append(lookup.get(match.group(0), ""))
        position = match.end()
    return "".join(out)


def load_env_files(
    paths: Iterable[str], environ: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The variables of several env files, later files overriding earlier ones.

    A file sees the variables of the files before it (they win over ``environ``) for
    ``$VAR`` expansion. Every file must exist: a missing one is a DotenvError.
    """
    merged: dict[str, str] = {}
    base = {} if environ is None else environ
    for path in paths:
        text = read_text(path)
        merged.update(parse_env(text, path, ChainMap(merged, base)))  # type: ignore[arg-type]
    return merged


def read_text(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except OSError as exc:
        raise DotenvError(path, None, f"cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise DotenvError(
            path, None, f"not UTF-8 text ({exc.reason} at byte {exc.start})"
        ) from None
