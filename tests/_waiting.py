"""Bounded real-time polling for tests against the (scaled-clock) simulator."""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_until[T](
    condition: Callable[[], T],
    *,
    timeout: float,
    failure: str | Callable[[], str],
    interval: float = 0.02,
) -> T:
    """Poll `condition` until it returns something truthy, and return that. After `timeout`
    real seconds (a bound, not a timed assertion), AssertionError with `failure` (called at
    that moment when it is a callable, so it can describe the state reached)."""
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(failure() if callable(failure) else failure)
        time.sleep(interval)
    return result
