"""Failed logins, counted per client address: guessing passwords gets slower and slower.

``GET /auth`` costs gafferd one scrypt (about 50 ms of CPU and 16 MiB) per attempt, right
or wrong, and a password guessed opens everything the user's key may do. So an address
(an IPv6 address counts by its /64: one host has many) gets ``free`` failed logins, then
each further attempt waits: 1 s, 2 s, 4 s... up to ``max_delay``. An attempt that comes
too early is answered 429 with ``Retry-After`` without a scrypt (so it costs nothing) and
does not count; so is one that comes while ``free`` attempts of the address are still
being checked (or one, once it failed ``free`` times): twenty threads guessing at once get
no more scrypts than one. A good password clears the address. An address is forgotten
``FORGET_AFTER`` seconds after its last failure, and the table holds at most
``MAX_ADDRESSES`` (the address idle the longest goes first), so memory stays flat however
many guess.

Pure policy: time comes from ``clock`` (tests give a fake one).
"""

from __future__ import annotations

import ipaddress
import time
from collections import OrderedDict
from collections.abc import Callable

MAX_ADDRESSES = 10_000
FORGET_AFTER = 15 * 60.0


class LoginThrottle:
    def __init__(
        self,
        free: int = 5,
        max_delay: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
        max_addresses: int = MAX_ADDRESSES,
    ) -> None:
        self.free = max(0, free)
        self.max_delay = max_delay
        self.clock = clock
        self.max_addresses = max_addresses
        # address -> [failures, not before (clock), last failure (clock)], idle longest first
        self._seen: OrderedDict[str, list[float]] = OrderedDict()
        self._checking: dict[str, int] = {}  # address -> attempts being checked now

    @property
    def enabled(self) -> bool:
        return self.max_delay > 0

    def __len__(self) -> int:
        return len(self._seen)

    def wait(self, address: str) -> float:
        """Seconds ``address`` must still wait before its next attempt (0: go ahead)."""
        if not self.enabled:
            return 0.0
        key = _key(address)
        entry = self._seen.get(key)
        failures = 0 if entry is None else int(entry[0])
        checking = self._checking.get(key, 0)
        if checking and (checking + failures >= self.free or failures >= self.free):
            return 1.0  # its attempts being checked are as many as it may have
        if entry is None:
            return 0.0
        now = self.clock()
        if now - entry[2] > FORGET_AFTER:
            del self._seen[key]
            return 0.0
        return max(0.0, entry[1] - now)

    def begin(self, address: str) -> float:
        """An attempt of ``address``: 0 if it may go on (it is then being checked, until
        :meth:`failed` or :meth:`succeeded`), else the seconds to wait."""
        wait = self.wait(address)
        if wait <= 0 and self.enabled:
            key = _key(address)
            self._checking[key] = self._checking.get(key, 0) + 1
        return wait

    def _done(self, key: str) -> None:
        count = self._checking.get(key, 0)
        if count > 1:
            self._checking[key] = count - 1
        else:
            self._checking.pop(key, None)

    def failed(self, address: str) -> float:
        """Count a failed login; the seconds the address must now wait."""
        if not self.enabled:
            return 0.0
        key, now = _key(address), self.clock()
        self._done(key)
        entry = self._seen.pop(key, None)
        if entry is None or now - entry[2] > FORGET_AFTER:
            entry = [0, now, now]
        entry[0] += 1
        entry[2] = now
        over = int(entry[0]) - self.free
        delay = 0.0 if over <= 0 else min(self.max_delay, 2.0 ** min(over - 1, 62))
        entry[1] = now + delay
        self._seen[key] = entry  # now the most recent
        while len(self._seen) > self.max_addresses:
            self._seen.popitem(last=False)
        return delay

    def succeeded(self, address: str) -> None:
        key = _key(address)
        self._done(key)
        self._seen.pop(key, None)


def _key(address: str) -> str:
    """The address, an IPv6 one cut to its /64."""
    if ":" not in address:
        return address
    try:
        ip = ipaddress.IPv6Address(address.split("%", 1)[0])
    except ValueError:
        return address
    if ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ipaddress.IPv6Network((int(ip) >> 64 << 64, 64)))
