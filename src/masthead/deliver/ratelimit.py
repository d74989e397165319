"""Rate limits that hold over *any* sliding window, not just per clock minute.

A fixed "per minute" counter lets 2 × limit messages through around a minute boundary; a log
of send times does not: a message may start only if fewer than ``limit`` started in the 60
seconds before it.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable


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


SLOT_GRACE = 0.25
"""Seconds after its booked time within which a slot may still be used; later, it is
dropped unused (so a late sender never bunches its messages into another's)."""


class SharedRate:
    """``[smtp] rate_per_minute`` across every sender of one database, on any machine.

    The database keeps one number per limit (table ``rate_limits``): the time, on the
    database's clock, at which the next message may start. A sender *books* a run of slots
    ``interval`` seconds apart by moving that time forward in one short transaction
    (:func:`book_slots`, the generic cell rate algorithm), then starts one message per
    slot, no earlier than the slot's time and at most :data:`SLOT_GRACE` seconds after it.
    So messages from all senders together are at least ``interval`` apart, less the grace:
    at most ``rate + rate × SLOT_GRACE / 60 + 1`` in any 60 seconds. Slots a sender could
    not use in time (it was slower than the rate) are dropped, and it books fewer next
    time; slots booked by a sender that dies are lost (the send slows, never speeds up).

    ``book(n, interval)`` returns ``(database now, first slot)`` in the database's seconds; the
    difference from this machine's clock is applied, so machines need not agree on time.
    """

    def __init__(self, per_minute: int, book: Callable[[int, float], tuple[float, float]]) -> None:
        self.interval = 60.0 / per_minute
        self.book = book
        self.slots: deque[float] = deque()
        self.chunk = 1
        self.max_chunk = max(1, min(200, int(1.0 / self.interval)))  # about a second
        self.dropped = 0

    def wait_time(self, now: float | None = None) -> float | None:
        """Seconds until the next booked slot (0: now); None: no slot left, book more."""
        now = time.monotonic() if now is None else now
        while self.slots and self.slots[0] + SLOT_GRACE < now:
            self.slots.popleft()
            self.dropped += 1
        if not self.slots:
            return None
        return max(0.0, self.slots[0] - now)

    def take(self) -> None:
        self.slots.popleft()

    def refill(self) -> None:
        """Book the next run of slots (blocking: call it off the event loop)."""
        if self.dropped:
            self.chunk = max(1, self.chunk // 2)
        else:
            self.chunk = min(self.max_chunk, self.chunk * 2)
        self.dropped = 0
        db_now, first = self.book(self.chunk, self.interval)
        local = time.monotonic() + (first - db_now)
        self.slots.extend(local + i * self.interval for i in range(self.chunk))
