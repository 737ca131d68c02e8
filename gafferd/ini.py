"""Reading ini files with the file and line of everything, and their includes.

Syntax: ``[section]`` headers; ``key = value`` entries (only ``=`` separates, so keys like
``env:PATH`` work); lines starting with whitespace continue the previous value. Comments:
a line whose first character is ``#`` or ``;``; after a section header, ``;`` or ``#``;
after a value, `` ;`` (a semicolon after a space, outside quotes). What such a comment cut
off a value is kept in ``Entry.comment``: where a ``;`` means something (a command line,
an environment value) gafferd/config.py refuses a cut value rather than run half a
command. Keys keep their case (environment variable names need it); they are compared
without case where the format says so.

``include = a.ini b/*.ini`` and ``include_dir = conf.d`` in ``[gaffer]`` read more files
(relative to the including file; directories recursively, ``*.ini`` in name order). A
missing or unreadable file, a cycle, a duplicate section or a duplicate key is an error
naming the file and the line.
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass, field

from gaffer.errors import ConfigError


class IniError(ConfigError):
    """A problem in an ini file, at ``path:line``."""

    def __init__(self, path: str, line: int | None, message: str) -> None:
        self.path, self.line, self.message = path, line, message
        where = f"{path}:{line}" if line else path
        super().__init__(f"{where}: {message}")


@dataclass(frozen=True)
class Entry:
    key: str
    value: str
    path: str
    line: int
    comment: str = ""  # an inline comment cut off the value, from its ";"

    @property
    def origin(self) -> str:
        return f"{self.path}:{self.line}"


@dataclass
class Section:
    name: str
    path: str
    line: int
    entries: dict[str, Entry] = field(default_factory=dict)  # by key, case kept

    @property
    def origin(self) -> str:
        return f"{self.path}:{self.line}"

    def where(self, key: str | None = None) -> str:
        entry = self.entries.get(key) if key else None
        return entry.origin if entry else self.origin


def parse(text: str, path: str) -> list[Section]:
    """The sections of one file's text. Raises IniError."""
    sections: list[Section] = []
    by_name: dict[str, Section] = {}
    current: Section | None = None
    last: Entry | None = None
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not stripped or stripped[0] in "#;":
            continue
        if raw[0].isspace() and last is not None and current is not None:
            # a continuation line: appended to the previous value
            more, comment = _uncomment(stripped)
            value = f"{last.value}\n{more}".strip()
            last = Entry(last.key, value, last.path, last.line, last.comment or comment)
            current.entries[last.key] = last
            continue
        if stripped.startswith("["):
            end = stripped.find("]")
            rest = stripped[end + 1 :].strip() if end > 0 else ""
            if end < 2 or (rest and rest[0] not in "#;"):
                raise IniError(path, number, f"bad section header {stripped!r}")
            name = stripped[1:end].strip()
            if name in by_name:
                raise IniError(
                    path,
                    number,
                    f"section [{name}] is already defined at line {by_name[name].line}",
                )
            current = Section(name, path, number)
            by_name[name] = current
            sections.append(current)
            last = None
            continue
        if current is None:
            raise IniError(path, number, f"{stripped!r} comes before any [section]")
        line, comment = _uncomment(stripped)
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not key:
            raise IniError(path, number, f"expected key = value, got {stripped!r}")
        if key in current.entries:
            raise IniError(
                path,
                number,
                f"[{current.name}] {key} is already set at line {current.entries[key].line}",
            )
        last = Entry(key, value.strip(), path, number, comment)
        current.entries[key] = last
    return sections


def _uncomment(line: str) -> tuple[str, str]:
    """``(text, comment)``: the line cut at an inline `` ;`` comment (a ``;`` after a
    space, outside single or double quotes)."""
    quote = ""
    for index, char in enumerate(line):
        if quote:
            if char == quote:
                quote = ""
        elif char in "'\"":
            quote = char
        elif char == ";" and index and line[index - 1].isspace():
            return line[:index].rstrip(), line[index:]
    return line, ""


def read(path: str) -> list[Section]:
    """A file and everything it includes, in order. Raises IniError."""
    return _read(os.path.abspath(path), [], None)


def _read(path: str, stack: list[str], included_from: Entry | None) -> list[Section]:
    if path in stack:
        chain = " -> ".join([*stack, path])
        raise IniError(
            included_from.path if included_from else path,
            included_from.line if included_from else None,
            f"include cycle: {chain}",
        )
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except OSError as exc:
        reason = exc.strerror or str(exc)
        if included_from is not None:
            raise IniError(
                included_from.path,
                included_from.line,
                f"{included_from.key} = {included_from.value}: cannot read {path}: {reason}",
            ) from None
        raise IniError(path, None, f"cannot read: {reason}") from None
    except UnicodeDecodeError as exc:
        raise IniError(path, None, f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    sections = parse(text, path)
    out = list(sections)
    base = os.path.dirname(path)
    for section in sections:
        if section.name != "gaffer":
            continue
        for key in ("include", "include_dir"):
            entry = section.entries.get(key)
            if entry is None:
                continue
            for included in _included_files(entry, base):
                out.extend(_read(included, [*stack, path], entry))
    return out


def _included_files(entry: Entry, base: str) -> list[str]:
    files: list[str] = []
    for word in entry.value.replace(",", " ").split():
        target = os.path.join(base, os.path.expanduser(word))
        if entry.key == "include_dir":
            if not os.path.isdir(target):
                raise IniError(
                    entry.path,
                    entry.line,
                    f"include_dir = {entry.value}: {target} is not a directory",
                )
            found = sorted(glob.glob(os.path.join(target, "**", "*.ini"), recursive=True))
            files.extend(found)
        elif glob.has_magic(word):
            files.extend(sorted(glob.glob(target)))
        elif not os.path.exists(target):
            raise IniError(
                entry.path, entry.line, f"include = {entry.value}: {target} does not exist"
            )
        else:
            files.append(target)
    return [os.path.abspath(name) for name in files]


def merge(sections: list[Section]) -> list[Section]:
    """Sections of several files: a name defined twice is an error naming both places."""
    seen: dict[str, Section] = {}
    for section in sections:
        first = seen.get(section.name)
        if first is not None:
            raise IniError(
                section.path,
                section.line,
                f"section [{section.name}] is already defined at {first.origin}",
            )
        seen[section.name] = section
    return sections
