"""The clocks the use cases are given: the system's in production, a fixed one in tests."""

from __future__ import annotations

import time


class SystemClock:
    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000


class FixedClock:
    """Stands still until moved, so a test states the time a rule is checked at."""

    def __init__(self, now_ms: int) -> None:
        self._now_ms = now_ms

    def now_ms(self) -> int:
        return self._now_ms

    def advance(self, by_ms: int) -> None:
        self._now_ms += by_ms


SYSTEM_CLOCK = SystemClock()
