"""A per-endpoint cap on concurrent state-changing MAAS calls.

Every client of the same MAAS region in this process (one per node under teuthology) shares
one semaphore, so a 200-node run sends at most `max_concurrent_actions` allocate/deploy/
release calls at a time and MAAS's region lock and DB do not turn the burst into 409s.
Built on `threading` primitives only, which gevent's monkey-patching makes cooperative.

The registry holds semaphores weakly: clients keep theirs alive, and once every client of an
endpoint is gone the next one starts afresh (with its own configured size).
"""

from __future__ import annotations

import threading
import weakref


class ActionSemaphore(threading.BoundedSemaphore):
    """A bounded semaphore that remembers its size."""

    def __init__(self, size: int) -> None:
        super().__init__(size)
        self.size = size


_registry_lock = threading.Lock()
_semaphores: weakref.WeakValueDictionary[str, ActionSemaphore] = weakref.WeakValueDictionary()


def action_semaphore(api_root: str, size: int) -> ActionSemaphore:
    """The semaphore shared by every live caller for `api_root`. While one exists, its size
    stands (one process talks to one region with one configuration; swapping the semaphore
    under callers already holding slots would break the cap)."""
    if size < 1:
        raise ValueError(f"max_concurrent_actions must be >= 1, got {size}")
    with _registry_lock:
        semaphore = _semaphores.get(api_root)
        if semaphore is None:
            semaphore = ActionSemaphore(size)
            _semaphores[api_root] = semaphore
        return semaphore


def limit_of(api_root: str) -> int | None:
    """The cap in force for `api_root` (None when no live client registered one)."""
    with _registry_lock:
        semaphore = _semaphores.get(api_root)
    return semaphore.size if semaphore is not None else None
