"""Simulated time.

Every duration in the simulator (a deployment, a disk erase) is counted in simulated seconds.
`ScaledClock` runs simulated time faster than real time so that a 10-minute deployment can
finish in well under a second; `ManualClock` only moves when a test says so.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Simulated seconds since the epoch."""
        ...


class ScaledClock:
    """Simulated seconds = real seconds elapsed since creation * `factor`."""

    def __init__(self, factor: float = 1.0, *, start: float | None = None) -> None:
        if factor <= 0:
            raise ValueError(f"clock factor must be > 0, got {factor!r}")
        self.factor = float(factor)
        self._start_sim = time.time() if start is None else float(start)
        self._start_real = time.monotonic()

    def now(self) -> float:
        return self._start_sim + (time.monotonic() - self._start_real) * self.factor

    def __repr__(self) -> str:
        return f"ScaledClock(factor={self.factor})"


class ManualClock:
    """A clock that stands still until `advance()`; listeners run after every move."""

    def __init__(self, start: float | None = None) -> None:
        self._now = time.time() if start is None else float(start)
        self._lock = threading.Lock()
        self._listeners: list[Callable[[], None]] = []

    def now(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> float:
        """Move simulated time forward; due transitions are applied before this returns."""
        if seconds < 0:
            raise ValueError(f"a clock cannot go backwards (advance by {seconds!r})")
        with self._lock:
            self._now += seconds
            now = self._now
            listeners = list(self._listeners)
        for listener in listeners:
            listener()
        return now

    def subscribe(self, listener: Callable[[], None]) -> None:
        with self._lock:
            self._listeners.append(listener)

    def __repr__(self) -> str:
        return f"ManualClock(now={self._now:.3f})"
