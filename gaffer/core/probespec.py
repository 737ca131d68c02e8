"""What a ``ready`` or ``health`` option says: the kind of probe and its target.

A plain value (it imports nothing of gaffer), parsed once when a job's config is made;
``probes.py`` runs the probes, ``notify.py`` listens to ``sd_notify``.
"""

from __future__ import annotations

from dataclasses import dataclass

PROBES = ("tcp", "http", "exec")  # what a health check may be
READINESS = ("notify", "fd", *PROBES)  # what a readiness check may be


@dataclass(frozen=True, slots=True)
class ProbeSpec:
    kind: str  # tcp, http, exec (and for readiness: notify, fd)
    target: str = ""

    @classmethod
    def parse(cls, value: str, kinds: tuple[str, ...] = PROBES) -> ProbeSpec:
        text = value.strip() if isinstance(value, str) else value
        if not isinstance(text, str) or not text:
            raise ValueError(f"expected {' | '.join(_forms(kinds))}, got {value!r}")
        kind, sep, target = text.partition(":")
        kind = kind.strip().lower()
        if kind not in kinds or (kind != "notify" and not (sep and target.strip())):
            raise ValueError(f"expected {' | '.join(_forms(kinds))}, got {value!r}")
        target = target.strip()
        if kind == "fd" and (not target.isdigit() or int(target) < 3):
            raise ValueError(f"fd:N needs a descriptor number >= 3, got {value!r}")
        if kind == "tcp" and "$" not in target:
            tcp_address(target)  # a bad port fails now, not at each probe
        return cls(kind, target)

    def __str__(self) -> str:
        return self.kind if not self.target else f"{self.kind}:{self.target}"


def _forms(kinds: tuple[str, ...]) -> list[str]:
    forms = {
        "notify": "notify",
        "fd": "fd:N",
        "tcp": "tcp:PORT",
        "http": "http:URL",
        "exec": "exec:COMMAND",
    }
    return [forms[kind] for kind in kinds]


def tcp_address(target: str) -> tuple[str, int]:
    host, _, port = target.rpartition(":")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"tcp:[HOST:]PORT needs a port from 1 to 65535, got {target!r}")
    return host.strip("[]") or "127.0.0.1", int(port)
