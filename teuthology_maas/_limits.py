"""A per-endpoint cap on concurrent state-changing MAAS calls.

Every client of the same MAAS region in this process (one per node under teuthology) shares
one semaphore, so a 200-node run sends at most `max_concurrent_actions` allocate/deploy/
release calls at a time and MAAS's region lock and DB do not turn the burst into 409s.
Built on `threading` primitives only, which gevent's monkey-patching makes cooperative.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

_registry_lock = threading.Lock()
_semaphores: dict[str, tuple[int, threading.BoundedSemaphore]] = {}


def action_semaphore(api_root: str, size: int) -> threading.BoundedSemaphore:
    """The semaphore shared by every caller for `api_root`. The first caller fixes its size
    (one process talks to one region with one configuration; swapping the semaphore under
    callers already holding slots would break the cap)."""
    if size < 1:
        raise ValueError(f"max_concurrent_actions must be >= 1, got {size}")
    with _registry_lock:
        current = _semaphores.get(api_root)
        if current is None:
            current = (size, threading.BoundedSemaphore(size))
            _semaphores[api_root] = current
        return current[1]


def limit_of(api_root: str) -> int | None:
    """The cap in force for `api_root` (None before the first client registered)."""
    with _registry_lock:
        current = _semaphores.get(api_root)
    return current[0] if current else None


@contextmanager
def action_slot(api_root: str, size: int) -> Iterator[None]:
    """Hold one of `api_root`'s action slots for the duration of the block."""
    semaphore = action_semaphore(api_root, size)
    with semaphore:
        yield


def reset() -> None:
    """Forget every semaphore (tests; a process that reconfigures endpoints)."""
    with _registry_lock:
        _semaphores.clear()
