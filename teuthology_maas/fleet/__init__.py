"""One status poller per MAAS endpoint per process, shared by every node waiting in it.

A lab reimages tens to hundreds of nodes at once. Polling each node on its own costs MAAS one
request per node per tick and, with a long tick, leaves every node idle for half a tick on
average after MAAS is done. Here all waiters of a process share one thread (a greenlet under
gevent) that asks MAAS about all of them with one `GET machines/?id=..&id=..` per tick, on an
adaptive tick (see `_fleet_policy`), and wakes each waiter the moment its machine reaches a
target or failure status.

The same holds for the hostname lookups every provisioner starts with: concurrent ones are
coalesced into one `GET machines/?hostname=..&hostname=..` per batch (see `_fleet_lookup`), the
first one sent at once.

Only `threading` primitives and `time` are used, which gevent's monkey-patching makes
cooperative; the same code runs with native threads outside teuthology.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from teuthology_maas.fleet.lookup import HostnameLookups, LookupClient, LookupStats
from teuthology_maas.fleet.poller import (
    DEFAULT_MAX_INTERVAL,
    DEFAULT_MIN_INTERVAL,
    OnChange,
    PollerStartError,
    PollingClient,
    StatusPoller,
)
from teuthology_maas.fleet.waiter import PollerStats
from teuthology_maas.models import Machine

__all__ = [
    "HostnameLookups",
    "LookupClient",
    "LookupStats",
    "OnChange",
    "PollerStartError",
    "PollerStats",
    "PollingClient",
    "StatusPoller",
    "forget_pollers",
    "hostname_lookups_for",
    "lookup_hostname",
    "poller_for",
]

# -- one poller per endpoint and API key, per process ------------------------------------------

_registry: dict[tuple[str, str], StatusPoller] = {}
_lookups: dict[tuple[str, str], HostnameLookups] = {}
_registry_lock = threading.Lock()
_registry_pid = os.getpid()


def _check_pid() -> None:
    """A forked child inherits the dicts but not the threads behind them (caller holds the
    lock)."""
    global _registry_pid
    if _registry_pid != os.getpid():
        _registry.clear()
        _lookups.clear()
        _registry_pid = os.getpid()


def _consumer_key(client: Any) -> str:
    """The API key's consumer part: distinguishes MAAS users on one endpoint (never the
    secret, which is not needed to tell keys apart and must not end up in a dict key)."""
    for holder in (client, getattr(client, "api_key", None)):
        key = getattr(holder, "consumer_key", None)
        if isinstance(key, str):
            return key
    raw = getattr(client, "api_key", None)
    if isinstance(raw, str):
        return raw.split(":", 1)[0]
    return ""


def poller_for(
    client: PollingClient,
    *,
    config: Any = None,
    min_interval: float | None = None,
    max_interval: float | None = None,
) -> StatusPoller:
    """The process's poller for `client`'s MAAS endpoint and user, created on first use.

    The poll intervals come from the arguments, else from `config` (a `MaasConfig`: its
    `poll_min_interval` / `poll_interval`), else from `client.config` when the client keeps
    one; the latest caller's values win. The poller polls through the latest client given.
    """
    source = config if config is not None else getattr(client, "config", None)
    fast = min_interval if min_interval is not None else getattr(source, "poll_min_interval", None)
    slow = max_interval if max_interval is not None else getattr(source, "poll_interval", None)
    key = (client.base_url, _consumer_key(client))
    with _registry_lock:
        _check_pid()
        poller = _registry.get(key)
        if poller is None:
            poller = StatusPoller(
                client,
                min_interval=fast if fast is not None else DEFAULT_MIN_INTERVAL,
                max_interval=slow
                if slow is not None
                else max(DEFAULT_MAX_INTERVAL, fast if fast is not None else 0.0),
            )
            _registry[key] = poller
            return poller
    poller.client = client
    if fast is not None or slow is not None:
        poller.configure(min_interval=fast, max_interval=slow)
    return poller


def hostname_lookups_for(client: LookupClient) -> HostnameLookups:
    """The process's hostname-lookup batcher for `client`'s MAAS endpoint and user (a
    non-admin key sees only some machines, so users are never mixed), created on first use."""
    key = (client.base_url, _consumer_key(client))
    with _registry_lock:
        _check_pid()
        lookups = _lookups.get(key)
        if lookups is None:
            lookups = _lookups[key] = HostnameLookups()
        return lookups


def lookup_hostname(client: LookupClient, hostname: str) -> list[Machine]:
    """Every machine MAAS lists with short hostname `hostname`, asked together with the other
    lookups of the process that are waiting at the same moment (a lone one goes at once)."""
    return hostname_lookups_for(client).machines(client, hostname)


def forget_pollers() -> None:
    """Drop every registered poller and lookup batcher (tests; a process that changes MAAS
    endpoints)."""
    with _registry_lock:
        _registry.clear()
        _lookups.clear()
