"""Rate limits that hold over *any* sliding window, not just per clock minute.

A fixed "per minute" counter lets 2 × limit messages through around a minute boundary; a log
of send times does not: a message may start only if fewer than ``limit`` started in the 60
seconds before it.
"""

from __future__ import annotations

import time
from collections import deque


class SlidingWindow:
    """At most ``limit`` events in any ``window`` seconds (``limit`` 0: no limit)."""

    def __init__(self, limit: int, window: float = 60.0, clock=time.monotonic) -> None:  # type: ignore[no-untyped-def]
        self.limit = limit
        self.window = window
        self.clock = clock
        self.events: deque[float] = deque()

    def wait_time(self) -> float:
        """Seconds until one more event is allowed (0: now)."""
        if self.limit <= 0:
            return 0.0
        now = self.clock()
        while self.events and self.events[0] <= now - self.window:
            self.events.popleft()
        if len(self.events) < self.limit:
            return 0.0
        return self.events[0] + self.window - now

    def take(self) -> None:
        if self.limit > 0:
            self.events.append(self.clock())


class DomainLimits:
    """One :class:`SlidingWindow` per recipient domain."""

    def __init__(self, limit: int, window: float = 60.0) -> None:
        self.limit = limit
        self.window = window
        self.windows: dict[str, SlidingWindow] = {}

    def wait_time(self, domain: str) -> float:
        if self.limit <= 0:
            return 0.0
        window = self.windows.get(domain)
        return 0.0 if window is None else window.wait_time()

    def take(self, domain: str) -> None:
        if self.limit <= 0:
            return
        window = self.windows.get(domain)
        if window is None:
            window = self.windows[domain] = SlidingWindow(self.limit, self.window)
        window.take()
