"""SSH connections the probe keeps open to nodes that let us in before they had finished.

Near the end of a deployment a node's sshd takes our key a while before cloud-init writes its
sentinel, and the status poller probes it every second meanwhile (`ssh.probe_ready`). The
login is the expensive part of a probe: against a loopback sshd its key exchange and
authentication take about 70 ms and 5 ms of this process's CPU, a command over an open
connection about 2 ms of CPU (`bench/probe_cost.py`). The probe therefore keeps the
connection of a node that answered "not yet" and asks again over it; a node that is ready,
or drops the connection (it rebooted), gives it up. Each connection is used by one probe at a
time (taken out while in use), closed when its node's wait is over (`ssh.end_probes`), else
after `IDLE` seconds unused, and at most `LIMIT` are kept, the oldest closed first. A forked
child forgets its parent's without closing them: the sockets are the parent's.

What a kept connection says is only ever a reason to read MAAS, like any probe; verify_ssh
logs in afresh.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

import paramiko

# What a connection is kept under: the node and everything that decides how we log in to it.
Key = tuple[object, ...]
# Seconds a kept connection may go unused: probes come every second or few while a node is in
# its finish window; a minute without one means its wait is over.
IDLE = 60.0
# Connections kept per process at most: a lock-many's nodes in their finish windows at once.
LIMIT = 256


class KeptConnections:
    """Open SSH clients by target, each lent to one caller at a time."""

    def __init__(
        self, *, idle: float = IDLE, limit: int = LIMIT, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.idle = idle
        self.limit = limit
        self._clock = clock
        self._lock = threading.Lock()
        self._kept: OrderedDict[Key, tuple[paramiko.SSHClient, float]] = OrderedDict()

    def __len__(self) -> int:
        with self._lock:
            return len(self._kept)

    def take(self, key: Key) -> paramiko.SSHClient | None:
        """The kept connection for `key`, if it is still open (the caller now owns it)."""
        with self._lock:
            stale = self._expire()
            entry = self._kept.pop(key, None)
        _close_all(stale)
        if entry is None:
            return None
        client = entry[0]
        transport = client.get_transport()
        if transport is None or not transport.is_active():
            client.close()
            return None
        return client

    def keep(self, key: Key, client: paramiko.SSHClient) -> None:
        """Give `client` back to be used by the next probe of `key`."""
        with self._lock:
            stale = self._expire()
            replaced = self._kept.pop(key, None)
            if replaced is not None:
                stale.append(replaced[0])
            self._kept[key] = (client, self._clock())
            while len(self._kept) > self.limit:
                stale.append(self._kept.popitem(last=False)[1][0])
        _close_all(stale)

    def discard(self, matching: Callable[[Key], bool]) -> None:
        """Close the kept connections whose key is `matching` (a wait that is over)."""
        with self._lock:
            keys = [key for key in self._kept if matching(key)]
            clients = [self._kept.pop(key)[0] for key in keys]
        _close_all(clients)

    def close(self) -> None:
        with self._lock:
            clients = [client for client, _ in self._kept.values()]
            self._kept.clear()
        _close_all(clients)

    def forget(self) -> None:
        """Drop every connection without closing it (a forked child: they are the parent's).
        The lock is new too: another thread may have held it at the fork."""
        self._lock = threading.Lock()
        self._kept = OrderedDict()

    def _expire(self) -> list[paramiko.SSHClient]:
        oldest = self._clock() - self.idle
        stale = []
        # Kept in the order they were given back, so the stale ones come first.
        while self._kept:
            key, (client, since) = next(iter(self._kept.items()))
            if since > oldest:
                break
            del self._kept[key]
            stale.append(client)
        return stale


def _close_all(clients: list[paramiko.SSHClient]) -> None:
    for client in clients:
        # A connection already broken is closed as far as we care.
        with contextlib.suppress(Exception):
            client.close()


probe_connections = KeptConnections()
os.register_at_fork(after_in_child=probe_connections.forget)
