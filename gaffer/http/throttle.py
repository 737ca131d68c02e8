"""Failed logins, counted per client address: guessing passwords gets slower and slower.

``GET /auth`` costs gafferd one scrypt (about 50 ms of CPU and 16 MiB) per attempt, right
or wrong, and a password guessed opens everything the user's key may do. So an address
(an IPv6 address counts by its /64: one host has many) gets ``free`` failed logins, then
each further attempt waits: 1 s, 2 s, 4 s... up to ``max_delay``. An attempt that comes
too early is answered 429 with ``Retry-After`` without a scrypt (so it costs nothing) and
does not count. A good password clears the address. An address is forgotten
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

    @property
    def enabled(self) -> bool:
        return self.max_delay > 0

    def __len__(self) -> int:
        return len(self._seen)

    def wait(self, address: str) -> float:
        """Seconds ``address`` must still wait before its next attempt (0: go ahead)."""
        if not self.enabled:
            return 0.0
        entry = self._seen.get(_key(address))
        if entry is None:
            return 0.0
        now = self.clock()
        if now - entry[2] > FORGET_AFTER:
            del self._seen[_key(address)]
            return 0.0
        return max(0.0, entry[1] - now)

    def failed(self, address: str) -> float:
        """Count a failed login; the seconds the address must now wait."""
        if not self.enabled:
            return 0.0
        key, now = _key(address), self.clock()
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
        self._seen.pop(_key(address), None)


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
