"""What the library is waiting for, and why it is still waiting: for whoever watches.

The library never prints. The waits that can last minutes (SSH to a freshly deployed node, a
MAAS that does not answer or asks us to come back later) report every attempt here as a
`WaitReport`; a front-end such as the `teuthology-maas` command subscribes with `watching()`
and shows them. With nobody subscribed a report costs a lock and an empty loop.

Reports come from whichever thread waits (the caller's for SSH, the shared poller's for MAAS
reads), so subscribers must be thread-safe and quick; an exception in one is swallowed, since
a display problem must never break the wait it displays.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "Reason",
    "State",
    "WaitReport",
    "report",
    "watching",
]

What = Literal["ssh", "maas"]
State = Literal["waiting", "done", "failed"]


class Reason:
    """Why a wait is still waiting, in the words a person needs (the error itself is the
    report's `detail`)."""

    CONNECTING = "connecting"
    NAME_UNRESOLVED = "name does not resolve"
    DNS_TEMPORARY = "name lookup failing (DNS did not answer)"
    REFUSED = "connection refused"
    UNREACHABLE = "host unreachable"
    CANNOT_CONNECT = "cannot connect"
    TIMED_OUT = "no answer (timed out)"
    RESET = "connection closed by the other side"
    AUTH_REFUSED = "authentication refused (our key is not on the node yet?)"
    HANDSHAKE = "SSH handshake failed"
    SENTINEL = "waiting for cloud-init to finish"
    BUSY = "busy, asked us to come back"
    OTHER = "error"


@dataclass(frozen=True)
class WaitReport:
    """One attempt of a wait. `subject` is the node's name (ssh) or the MAAS URL (maas);
    `target` what was tried (`ubuntu@smithi001.example.com (10.0.0.11 port 22)`, `GET
    machines/`); `retry_in` the seconds until the next attempt, when known."""

    what: What
    subject: str
    reason: str
    detail: str = ""
    attempt: int = 0
    state: State = "waiting"
    target: str = ""
    retry_in: float | None = None


Subscriber = Callable[[WaitReport], None]

_lock = threading.Lock()
_subscribers: list[Subscriber] = []


def report(item: WaitReport) -> None:
    """Hand `item` to every subscriber; never raises."""
    with _lock:
        subscribers = list(_subscribers)
    for subscriber in subscribers:
        try:
            subscriber(item)
        except Exception:  # a display problem must not break the wait
            continue


@contextmanager
def watching(subscriber: Subscriber) -> Iterator[None]:
    """Receive every WaitReport made in this process while the block runs."""
    with _lock:
        _subscribers.append(subscriber)
    try:
        yield
    finally:
        with _lock:
            _subscribers.remove(subscriber)
