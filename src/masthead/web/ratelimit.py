"""A small in-memory token bucket per key (an IP address, an email address)."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict


class TokenBucket:
    """``capacity`` requests at once, refilled at ``per_minute`` per minute, per key.

    In memory, so per process: enough to blunt a script hammering the sign-up form of
    one ``masthead serve``. At most ``max_keys`` keys are remembered (oldest dropped).
    """

    def __init__(self, capacity: float, per_minute: float, *, max_keys: int = 10_000) -> None:
        self.capacity = capacity
        self.rate = per_minute / 60.0
        self.max_keys = max_keys
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._lock = threading.Lock()

    def peek(self, key: str, *, now: float | None = None) -> bool:
        """Whether ``key`` has a token left, without taking it."""
        now = time.monotonic() if now is None else now
        with self._lock:
            tokens, last = self._buckets.get(key, (self.capacity, now))
            return min(self.capacity, tokens + (now - last) * self.rate) >= 1.0

    def allow(self, key: str, *, now: float | None = None) -> bool:
        """Take one token for ``key``; False when its bucket is empty."""
        now = time.monotonic() if now is None else now
        with self._lock:
            tokens, last = self._buckets.pop(key, (self.capacity, now))
            tokens = min(self.capacity, tokens + (now - last) * self.rate)
            allowed = tokens >= 1.0
            if allowed:
                tokens -= 1.0
            self._buckets[key] = (tokens, now)
            while len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
            return allowed
