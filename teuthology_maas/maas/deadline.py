"""A wall-clock deadline for one MAAS request: connect, headers and body together.

requests' `timeout` bounds each socket operation, not the request: a server that sends a byte
every few seconds holds a call (and, for a POST, one of the endpoint's action slots) forever.
Each attempt of `Transport` therefore runs under a `Deadline`. The connection classes of
`DeadlineAdapter` tell the current deadline which socket carries the request; one watchdog per
process shuts that socket down when the deadline passes, which ends any blocked read or write
(natively and under gevent, where the watchdog is a greenlet and the blocked reader wakes up
on the socket's EOF). The body is read by `Transport` with the same deadline checked between
chunks.

The socket is shut down at the file-descriptor level, only while the connection still carries
the request that armed the deadline (a pooled connection may already serve another request),
and never closed here: the connection's owner closes it.

The connection classes also refuse to talk to a link-local or cloud-metadata address, checked
on the address actually connected to (a harmless-looking name may resolve there).
"""

from __future__ import annotations

import _socket
import contextlib
import heapq
import itertools
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any

from requests.adapters import HTTPAdapter
from urllib3 import connection as _connection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.poolmanager import ProxyManager

from teuthology_maas.api_url import forbidden_address
from teuthology_maas.errors import ConfigError

_current: ContextVar[Deadline | None] = ContextVar("teuthology_maas_deadline", default=None)


class DeadlinePassed(OSError):
    """Raised (and wrapped by urllib3/requests) when a request would start after its deadline."""


class Deadline:
    """The bound of one request attempt. `sending` turns true once a byte of the request may
    have left (the outcome of a POST is uncertain from then on)."""

    def __init__(self, seconds: float, watchdog: _Watchdog | None) -> None:
        self.seconds = seconds
        self.watchdog = watchdog
        self.expires = time.monotonic() + seconds
        self.expired = False
        self.sending = False
        self.cancelled = False
        self._conn: Any = None
        self._sock: Any = None

    def remaining(self) -> float:
        return self.expires - time.monotonic()

    def carried_by(self, conn: Any, sock: Any) -> None:
        """`conn` (with its socket `sock`) carries this request from now on."""
        with self.watchdog.lock if self.watchdog is not None else contextlib.nullcontext():
            conn._maas_deadline = self
            self._conn, self._sock = conn, sock
            if self.expired:
                _shut_down(sock)

    def fire(self) -> None:
        """Called by the watchdog (its lock held) when the deadline passes."""
        self.expired = True
        conn = self._conn
        if conn is not None and getattr(conn, "_maas_deadline", None) is self:
            _shut_down(self._sock)

    def check(self) -> None:
        if self.expired or self.remaining() <= 0:
            self.expired = True
            raise DeadlinePassed(f"the {self.seconds:g} s request deadline passed")


def _shut_down(sock: Any) -> None:
    """Shut the socket down under whoever is blocked on it, without closing it (its owner
    does) and below any TLS or gevent wrapper."""
    if sock is None:
        return
    try:
        fd = sock.fileno()
        if fd < 0:
            return
        raw = _socket.socket(fileno=fd)
        try:
            raw.shutdown(socket.SHUT_RDWR)
        finally:
            raw.detach()
    except OSError:
        pass  # already closed or never connected: nothing is blocked on it


class _Watchdog:
    """Fires deadlines in time order from one daemon thread (a greenlet under gevent)."""

    def __init__(self, key: tuple[int, Any]) -> None:
        self.key = key
        self.lock = threading.Lock()
        self._wake = threading.Condition(self.lock)
        self._heap: list[tuple[float, int, Deadline]] = []
        self._cancelled = 0
        self._order = itertools.count()
        thread = threading.Thread(target=self._run, name="maas-request-deadlines", daemon=True)
        thread.start()

    def add(self, deadline: Deadline) -> None:
        with self._wake:
            heapq.heappush(self._heap, (deadline.expires, next(self._order), deadline))
            if self._heap[0][2] is deadline:
                self._wake.notify()

    def cancel(self, deadline: Deadline) -> None:
        with self.lock:
            deadline.cancelled = True
            deadline._conn = deadline._sock = None
            self._cancelled += 1
            # Finished requests leave their entries behind; drop them once they dominate.
            if self._cancelled > 64 and self._cancelled * 2 > len(self._heap):
                self._heap = [item for item in self._heap if not item[2].cancelled]
                heapq.heapify(self._heap)
                self._cancelled = 0

    def _run(self) -> None:
        with self._wake:
            while True:
                while self._heap and self._heap[0][2].cancelled:
                    heapq.heappop(self._heap)
                    self._cancelled = max(0, self._cancelled - 1)
                if not self._heap:
                    self._wake.wait()
                    continue
                delay = self._heap[0][0] - time.monotonic()
                if delay > 0:
                    self._wake.wait(delay)
                    continue
                heapq.heappop(self._heap)[2].fire()


_the_watchdog: _Watchdog | None = None


def _watchdog() -> _Watchdog | None:
    """The watchdog of this process and threading world: a fork (new pid) or gevent's
    monkey-patching (a different Thread class) after the first request gets a fresh one.
    None when no thread can be started (an exit hook at interpreter shutdown): requests then
    keep the per-read timeout and the deadline checks between body chunks."""
    global _the_watchdog
    key = (os.getpid(), threading.Thread)
    current = _the_watchdog
    if current is None or current.key != key:
        try:
            current = _Watchdog(key)
        except RuntimeError:  # "can't create new thread at interpreter shutdown"
            return None
        _the_watchdog = current
    return current


@contextlib.contextmanager
def armed(seconds: float) -> Iterator[Deadline]:
    """Run one request attempt under a deadline of `seconds`."""
    watchdog = _watchdog()
    deadline = Deadline(seconds, watchdog)
    if watchdog is not None:
        watchdog.add(deadline)
    token = _current.set(deadline)
    try:
        yield deadline
    finally:
        _current.reset(token)
        if watchdog is not None:
            watchdog.cancel(deadline)


class _DeadlineConnection:
    """Mixed into urllib3's connection classes: report the socket carrying the request to the
    current deadline, note when sending starts, and refuse metadata/link-local peers."""

    sock: Any
    auto_open: int
    host: str

    def _new_conn(self) -> Any:
        sock = super()._new_conn()  # type: ignore[misc]
        deadline = _current.get()
        if deadline is not None:
            deadline.carried_by(self, sock)
        if getattr(self, "proxy", None) is None:
            try:
                peer = str(sock.getpeername()[0])
            except OSError:
                peer = ""
            why = forbidden_address(peer) if peer else None
            if why is not None:
                sock.close()
                raise ConfigError(
                    f"maas: api_url host {self.host!r} resolved to {peer}, {why}; refused "
                    "before anything was sent (the API key would go there); expected the "
                    "MAAS region's address",
                    key="api_url",
                )
        return sock

    def request(self, *args: Any, **kwargs: Any) -> Any:
        deadline = _current.get()
        if deadline is not None:
            deadline.check()
            if self.sock is not None:  # a pooled connection: it carries this request now
                deadline.carried_by(self, self.sock)
        return super().request(*args, **kwargs)  # type: ignore[misc]

    def send(self, data: Any) -> Any:
        deadline = _current.get()
        if deadline is not None:
            if self.sock is None and self.auto_open:
                self.connect()  # type: ignore[attr-defined]
            deadline.check()
            deadline.sending = True
        return super().send(data)  # type: ignore[misc]


class _HTTPConnection(_DeadlineConnection, _connection.HTTPConnection):
    pass


class _HTTPSConnection(_DeadlineConnection, _connection.HTTPSConnection):
    pass


class _HTTPPool(HTTPConnectionPool):
    ConnectionCls = _HTTPConnection


class _HTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection


_POOLS: dict[str, Any] = {"http": _HTTPPool, "https": _HTTPSPool}


class DeadlineAdapter(HTTPAdapter):
    """requests' adapter with connections that a `Deadline` can cut (also through an HTTP(S)
    proxy; a SOCKS proxy keeps its own connections, bounded only between body chunks)."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _POOLS

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        if type(manager) is ProxyManager:
            manager.pool_classes_by_scheme = _POOLS
        return manager
