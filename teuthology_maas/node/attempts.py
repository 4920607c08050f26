"""The create() attempts running in this process, and the one way to stop them.

A create() registers itself here for as long as it runs (clean-up included). Process
lifetime (signals, the interpreter exiting, a release of the same node) belongs to the host
(`teuthology_maas.teuthology.lifetime`, used by the teuthology adapter and the CLI): the host
decides *when* to stop attempts, this module only delivers the request. `Attempt.interrupt`
makes the attempt raise the host's exception at its next check point (every wake-up of a
status wait, every SSH attempt, before every MAAS action), in whatever thread or greenlet
runs it; from there its own BaseException clean-up takes over.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Attempt", "running", "running_attempts", "running_tokens"]


@dataclass(eq=False)
class Attempt:
    """One create() in flight."""

    token: str
    name: str  # the node, as the caller named it
    runner: Any = None  # the greenlet running it when greenlets are in use, else None
    thread: int = field(default_factory=threading.get_ident)
    started: float = field(default_factory=time.monotonic)
    done: threading.Event = field(default_factory=threading.Event)
    _stop: BaseException | None = None
    _cleaning: bool = False
    # Re-entrant: a signal handler may ask the thread it interrupts, while that thread holds it.
    _lock: threading.RLock = field(default_factory=threading.RLock)

    def interrupt(self, exc: BaseException) -> bool:
        """Ask the attempt to raise `exc` at its next check point. False when it is already
        finished or cleaning up (its clean-up must not be interrupted)."""
        with self._lock:
            if self.done.is_set() or self._cleaning or self._stop is not None:
                return False
            self._stop = exc
            return True

    @property
    def stopping_with(self) -> BaseException | None:
        """The exception the attempt was asked to stop with, if it was."""
        return self._stop

    @property
    def cleaning(self) -> bool:
        return self._cleaning

    def check(self) -> None:
        """Raise the host's exception if the attempt was asked to stop (not while it cleans
        up)."""
        with self._lock:
            stop = None if self._cleaning else self._stop
        if stop is not None:
            raise stop

    def cleaning_up(self) -> None:
        """The attempt has begun its clean-up: no further interruption reaches it."""
        with self._lock:
            self._cleaning = True


_lock = threading.RLock()  # re-entrant for the same reason
_running: dict[str, Attempt] = {}


def _current_greenlet() -> Any:
    greenlet = sys.modules.get("greenlet")  # only when something already uses greenlets
    return greenlet.getcurrent() if greenlet is not None else None


@contextmanager
def running(token: str, name: str) -> Iterator[Attempt]:
    """Register the create() attempt `token` (of node `name`) for the duration of the block."""
    attempt = Attempt(token, name, runner=_current_greenlet())
    with _lock:
        _running[token] = attempt
    try:
        yield attempt
    finally:
        with _lock:
            _running.pop(token, None)
        attempt.done.set()


def running_attempts() -> list[Attempt]:
    with _lock:
        return list(_running.values())


def running_tokens() -> frozenset[str]:
    with _lock:
        return frozenset(_running)
