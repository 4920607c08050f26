"""When a MAAS call may be repeated, and how long to wait before doing so.

MAAS itself says when to come back: 503 with `Retry-After: 10` (no rack controller reachable)
and 409 with `Retry-After: 5` (a DB conflict that outlived the region's own retries). A 409
*without* Retry-After is a state conflict and final. A GET is repeated after any of these, after
a 502/504 and after a dropped connection or a timeout. A POST is repeated here only when it
cannot have reached MAAS (connection refused, DNS failure, connect timeout): after any other
failure (a 502/503/504 may come from a proxy in front of a MAAS that applied the request, and a
409 that asks to be retried is not known to have been rolled back by everything in between) its
outcome is uncertain, and the caller re-reads the machine before anything is sent again.
"""

from __future__ import annotations

import email.utils
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.client import RemoteDisconnected

import requests
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError, ProxyError

from teuthology_maas.waits import Reason


@dataclass(frozen=True)
class RetryPolicy:
    """Bounds for repeating a call: both the attempt count and the total time are capped.

    `max_attempts` counts the first try. `max_total` bounds the time from the first attempt
    to the start of the last one: a wait that would cross it (Retry-After included; MAAS is
    never called back sooner than it asked) ends the retries at once. Waits without a
    Retry-After grow from `backoff_initial` by `backoff_factor` up to `backoff_max`.
    """

    max_attempts: int = 5
    max_total: float = 120.0
    backoff_initial: float = 1.0
    backoff_factor: float = 2.0
    backoff_max: float = 15.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {self.max_attempts}")
        if self.max_total < 0 or self.backoff_initial < 0 or self.backoff_max < 0:
            raise ValueError("retry durations must not be negative")

    def backoff(self, attempt: int) -> float:
        """The wait after failed attempt number `attempt` (1-based) without Retry-After."""
        return min(self.backoff_max, self.backoff_initial * self.backoff_factor ** (attempt - 1))


NO_RETRY = RetryPolicy(max_attempts=1, max_total=0.0)


def parse_retry_after(value: str | None, *, now: Callable[[], float] = time.time) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date); None if absent
    or unparseable."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, when.timestamp() - now())


def _chain(exc: BaseException) -> list[BaseException]:
    """The exception and everything it wraps (args, urllib3 `reason`, causes, contexts)."""
    seen: list[BaseException] = []
    todo: list[BaseException] = [exc]
    while todo:
        item = todo.pop()
        if any(item is s for s in seen):
            continue
        seen.append(item)
        todo.extend(a for a in item.args if isinstance(a, BaseException))
        reason = getattr(item, "reason", None)
        if isinstance(reason, BaseException):
            todo.append(reason)
        for linked in (item.__cause__, item.__context__):
            if linked is not None:
                todo.append(linked)
    return seen


def failed_before_sending(exc: BaseException) -> bool:
    """True when the request never reached the server: refused/unroutable connection, DNS
    failure, connect timeout, proxy refusal. Such a request is safe to repeat for any method."""
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return True
    return any(
        isinstance(item, NewConnectionError | ConnectTimeoutError | ProxyError)
        for item in _chain(exc)
    )


def trouble(exc: BaseException) -> str:
    """A transport failure in a few words (`connection refused`), for progress displays."""
    chain = _chain(exc)
    if any(isinstance(item, socket.gaierror) for item in chain):
        return Reason.NAME_UNRESOLVED
    if any(isinstance(item, ConnectionRefusedError) for item in chain):
        return Reason.REFUSED
    if any(isinstance(item, NewConnectionError) for item in chain):
        return Reason.CANNOT_CONNECT
    if any(isinstance(item, requests.exceptions.Timeout | TimeoutError) for item in chain):
        return Reason.TIMED_OUT
    if any(isinstance(item, ConnectionResetError | RemoteDisconnected) for item in chain):
        return Reason.RESET
    return type(exc).__name__


# Statuses after which MAAS may or may not have applied a POST: the gateway (a proxy, or the
# region's own RPC to a rack) gave up while the call might still be running. A 503 is one of
# them for a POST too (see the module docstring); a GET is simply retried after either.
UNCERTAIN_STATUSES = frozenset({502, 504})
