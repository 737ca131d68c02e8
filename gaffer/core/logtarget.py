"""Where a job's output goes: the ``stdout_logfile`` / ``stderr_logfile`` values, parsed.

* a path: appended to, rotated (logfile.py);
* ``"-"``: gaffer's own standard output;
* ``"syslog"``, ``"syslog:FACILITY"``, ``"syslog:FACILITY@ADDRESS"``: one datagram per
  line to ``/dev/log`` (or ADDRESS: a unix socket path, or ``host:port`` for UDP).

Not an option's value: ``LogTarget.console()``, the manager's standard output with every
line prefixed by its process (where a gafferd job that logs nowhere writes).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

SYSLOG_FACILITIES = {
    "kern": 0,
    "user": 1,
    "mail": 2,
    "daemon": 3,
    "auth": 4,
    "syslog": 5,
    "lpr": 6,
    "news": 7,
    "uucp": 8,
    "cron": 9,
    "authpriv": 10,
    "ftp": 11,
    **{f"local{n}": 16 + n for n in range(8)},
}
SYSLOG_INFO = 6
SYSLOG_MAX_LINE = 4096


@dataclass(frozen=True, slots=True)
class LogTarget:
    """A parsed ``*_logfile`` value."""

    # "file", "fd" (an open descriptor: "-" is gaffer's stdout), "syslog", or "console"
    # (gaffer's stdout, lines prefixed by their process)
    kind: str
    path: str | None = None  # file path, or the syslog unix socket
    facility: int = SYSLOG_FACILITIES["user"]
    host: tuple[str, int] | None = None
    fd: int = 1

    @classmethod
    def parse(cls, value: str) -> LogTarget:
        if not isinstance(value, str) or not value.strip():
            raise ValueError(
                f"expected a path, '-' or 'syslog[:facility][@address]', got {value!r}"
            )
        value = value.strip()
        if "\0" in value:
            raise ValueError(f"{value!r} holds a NUL byte")
        if value == "-":
            return cls("fd", fd=1)
        if value == "syslog" or value.startswith(("syslog:", "syslog@")):
            rest = value[len("syslog") :]
            facility_name, _, address = rest.lstrip(":").partition("@")
            facility_name = facility_name or "user"
            if facility_name not in SYSLOG_FACILITIES:
                raise ValueError(
                    f"unknown syslog facility {facility_name!r}; known: "
                    f"{', '.join(SYSLOG_FACILITIES)}"
                )
            facility = SYSLOG_FACILITIES[facility_name]
            if not address or address.startswith("/"):
                return cls("syslog", path=address or "/dev/log", facility=facility)
            host, _, port = address.rpartition(":")
            if not host or not port.isdigit():
                raise ValueError(f"bad syslog address {address!r}: a socket path or host:port")
            return cls("syslog", facility=facility, host=(host.strip("[]"), int(port)))
        return cls("file", path=os.path.abspath(os.path.expanduser(value)))

    @classmethod
    def console(cls, fd: int = 1) -> LogTarget:
        return cls("console", fd=fd)

    @property
    def key(self) -> str:
        if self.kind == "file":
            return f"file:{self.path}"
        if self.kind == "syslog":
            return f"syslog:{self.facility}@{self.path or self.host}"
        return f"{self.kind}:{self.fd}"
