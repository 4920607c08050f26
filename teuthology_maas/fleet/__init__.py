"""Waiting for many machines of one MAAS endpoint at once, and looking many up at once.

A lab reimages tens to hundreds of nodes at once. Polling each node on its own costs MAAS one
request per node per tick and, with a long tick, leaves every node idle for half a tick on
average after MAAS is done. Here all waiters of a process share one thread (a greenlet under
gevent) that asks MAAS about all of them with one `GET machines/?id=..&id=..` per tick, on an
adaptive tick (see `fleet.policy`), and wakes each waiter the moment its machine reaches a
target or failure status.

The same holds for the hostname lookups every provisioner starts with: concurrent ones are
coalesced into one `GET machines/?hostname=..&hostname=..` per batch (see `fleet.lookup`), the
first one sent at once.

Only `threading` primitives and `time` are used, which gevent's monkey-patching makes
cooperative; the same code runs with native threads outside teuthology. Each process has one
poller and one lookup batcher per MAAS endpoint and key: `teuthology_maas.endpoint.Endpoint`
owns them.
"""

from __future__ import annotations

from teuthology_maas.fleet.lookup import HostnameLookups, LookupClient, LookupStats
from teuthology_maas.fleet.poller import (
    DEFAULT_MAX_INTERVAL,
    DEFAULT_MIN_INTERVAL,
    OnChange,
    PollerStartError,
    StatusPoller,
)
from teuthology_maas.fleet.reading import PollingClient
from teuthology_maas.fleet.waiter import PollerStats

__all__ = [
    "DEFAULT_MAX_INTERVAL",
    "DEFAULT_MIN_INTERVAL",
    "HostnameLookups",
    "LookupClient",
    "LookupStats",
    "OnChange",
    "PollerStartError",
    "PollerStats",
    "PollingClient",
    "StatusPoller",
]
