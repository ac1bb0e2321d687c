"""A token bucket per client address, in memory: how anonymous feedback is rate-limited.

Each client may send `burst` posts at once, then one more every 60 / `per_minute` seconds.
Only the `max_clients` most recently seen addresses are remembered (a flood of addresses
must not grow memory); a forgotten one starts again with a full bucket, which is why the
feedback store also caps the anonymous rows it keeps. State is per process and lost on a
restart: a limit on abuse, not an accounting.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable


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
        """0.0 when `client` may go ahead (one token spent), else the seconds until it may."""
        now = self.clock()
        with self._lock:
            tokens, then = self._buckets.pop(client, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - then) * self.per_second)
            wait = 0.0 if tokens >= 1.0 else (1.0 - tokens) / self.per_second
            self._buckets[client] = (tokens - 1.0 if wait == 0.0 else tokens, now)
            while len(self._buckets) > self.max_clients:
                self._buckets.popitem(last=False)
        return wait
