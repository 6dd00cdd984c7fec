"""A per-client token bucket, in process. API Gateway throttles on AWS (usage plan); this is the local
equivalent, and harmless behind the gateway. Each client's bucket holds up to `burst` tokens and refills at
`rate_per_s`; a request takes one token or is refused with the time until one is back."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from .errors import RateLimited


class TokenBucket:
    def __init__(
        self,
        rate_per_s: float,
        burst: int,
        *,
        max_clients: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate_per_s <= 0 or burst < 1:
            raise ValueError("rate_per_s must be > 0 and burst >= 1")
        self.rate_per_s = rate_per_s
        self.burst = burst
        self._max_clients = max_clients
        self._clock = clock
        self._lock = threading.Lock()
        # client → (tokens, when counted), least recently seen first. A forgotten client comes back with a full
        # bucket, which is what an idle one would have anyway: memory stays bounded whatever the client count.
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def take(self, client: str) -> None:
        """Spend one of the client's tokens, or raise RateLimited saying when the next one is back."""
        with self._lock:
            now = self._clock()
            tokens, then = self._buckets.pop(client, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - then) * self.rate_per_s)
            if tokens < 1.0:
                self._buckets[client] = (tokens, now)
                wait = (1.0 - tokens) / self.rate_per_s
                raise RateLimited(f"too many requests: try again in {wait:.1f} s", retry_after_s=wait)
            self._buckets[client] = (tokens - 1.0, now)
            while len(self._buckets) > self._max_clients:
                self._buckets.popitem(last=False)
