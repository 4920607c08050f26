"""Retry waits on virtual time: many retries in little real time, the retry budget intact.

Give `VirtualTime().sleep` and `.now` to MaasClient as `sleep=` and `clock=`: a Retry-After of
10 s is slept as 10 ms of real time but counted in full on the client's clock, so the budget
(`max_total`) runs out exactly as it would against a real MAAS.
"""

from __future__ import annotations

import threading
import time


class VirtualTime:
    """`sleep` records the wait and sleeps `scale` of it (at most `real_cap`); `now` includes
    every wait in full."""

    def __init__(self, scale: float = 0.001, real_cap: float = 0.05) -> None:
        self.scale = scale
        self.real_cap = real_cap
        self.waits: list[float] = []
        self._offset = 0.0
        self._lock = threading.Lock()

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.waits.append(seconds)
            self._offset += max(0.0, seconds)
        time.sleep(min(max(0.0, seconds) * self.scale, self.real_cap))

    def now(self) -> float:
        with self._lock:
            return time.monotonic() + self._offset

    @property
    def total(self) -> float:
        """Virtual seconds waited so far."""
        with self._lock:
            return self._offset
