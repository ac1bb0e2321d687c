"""A token bucket per client address, in memory: how anonymous feedback is rate-limited.

Each client may send `burst` posts at once, then one more every 60 / `per_minute` seconds.
Only the `max_clients` most recently seen addresses are remembered (a flood of addresses
must not grow memory); a forgotten one starts again with a full bucket, which is why the
feedback store also caps the anonymous rows it keeps. State is per process and lost on a
restart: a limit on abuse, not an accounting.

Clients are grouped as networks hand out addresses: an IPv4 address is one client, an IPv6
address counts as its /64 (one subscriber's network usually gets a whole /64, so a client
could otherwise take a fresh address, and a fresh bucket, for every post).
"""

from __future__ import annotations

import ipaddress
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

IPV6_PREFIX = 64  # the IPv6 network one bucket covers


def client_group(address: str) -> str:
    """The bucket an address belongs to: an IPv4 address (also written IPv4-mapped) itself,
    an IPv6 address its /64; anything that is no address (a test client's name, "unknown")
    as it is."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, IPV6_PREFIX), strict=False))
    return str(ip)


class ClientRateLimiter:
    def __init__(self, per_minute: float, burst: int, *, max_clients: int = 10_000,
                 clock: Callable[[], float] = time.monotonic):
        if per_minute <= 0 or burst < 1:
            raise ValueError(f"a rate limit needs per_minute > 0 and burst >= 1, got "
                             f"{per_minute} and {burst}")
        self.per_second, self.burst = per_minute / 60.0, burst
        self.max_clients, self.clock = max_clients, clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # tokens, when
        self._lock = threading.Lock()

    def take(self, client: str) -> float:
        """0.0 when `client` (an address; see client_group) may go ahead (one token spent),
        else the seconds until it may."""
        client = client_group(client)
        now = self.clock()
        with self._lock:
            tokens, then = self._buckets.pop(client, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - then) * self.per_second)
            wait = 0.0 if tokens >= 1.0 else (1.0 - tokens) / self.per_second
            self._buckets[client] = (tokens - 1.0 if wait == 0.0 else tokens, now)
            while len(self._buckets) > self.max_clients:
                self._buckets.popitem(last=False)
        return wait
