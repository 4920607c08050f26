"""What every provisioner of a process shares per MAAS endpoint: the client, the API key's
user name and a short-lived copy of the boot-resource list.

Teuthology makes one provisioner per node and reimages many nodes at once; without sharing,
each would open its own connection pool and ask MAAS the same two questions (`whoami`, the
synced images) at the same moment.
"""

from __future__ import annotations

import os
import threading
import time
import weakref

from teuthology_maas.config import MaasConfig
from teuthology_maas.errors import MaasError
from teuthology_maas.maas.client import MaasClient
from teuthology_maas.models import BootResource

# How long a boot-resource list is reused. A miss is always re-checked against MAAS, so a
# freshly imported image is never reported missing because of this cache.
BOOT_RESOURCES_TTL = 60.0

_lock = threading.Lock()
_clients: dict[tuple[object, ...], MaasClient] = {}
_clients_pid = os.getpid()
_boot_resources: weakref.WeakKeyDictionary[MaasClient, tuple[float, list[BootResource]]] = (
    weakref.WeakKeyDictionary()
)


def shared_client(config: MaasConfig) -> MaasClient:
    """One client per MAAS endpoint and key per process."""
    global _clients_pid
    key = (
        config.api_url,
        config.api_key.consumer_key,
        config.api_key.token_key,
        config.verify,
        config.http_timeout,
        config.max_concurrent_actions,
    )
    with _lock:
        if _clients_pid != os.getpid():  # a forked child must not share its parent's sockets
            _clients.clear()
            _boot_resources.clear()
            _whoami_fetches.clear()
            _clients_pid = os.getpid()
        client = _clients.get(key)
        if client is None:
            client = _clients[key] = MaasClient.from_config(config)
        return client


class _WhoamiFetch:
    """One whoami() in flight for a client: its callers wait on `done` for its answer."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.username: str | None = None
        self.error: Exception | None = None


_whoami_lock = threading.Lock()
_whoami_fetches: weakref.WeakKeyDictionary[MaasClient, _WhoamiFetch] = (
    weakref.WeakKeyDictionary()
)


def username_of(client: MaasClient) -> str:
    """The MAAS user of the client's API key, asked once per client even when many
    provisioners ask at the same moment: the first caller asks MAAS, the others wait for its
    answer (threading primitives, so greenlets under gevent wait cooperatively).

    A failure is handed to every caller that was waiting for that answer: they would each
    spend the whole retry budget again, one after another, on the same outage (50 nodes x
    120 s). A later caller asks afresh. Only the client's own fetch is waited for, so a hung
    MAAS behind one endpoint or key does not hold up another."""
    while True:
        if client.username:
            return client.username
        with _whoami_lock:
            if client.username:
                return client.username
            fetch = _whoami_fetches.get(client)
            leader = fetch is None
            if fetch is None:
                fetch = _whoami_fetches[client] = _WhoamiFetch()
        if leader:
            return _fetch_username(client, fetch)
        fetch.done.wait()
        if fetch.username:
            return fetch.username
        if fetch.error is not None:
            raise fetch.error
        # The asking caller was interrupted (KeyboardInterrupt, GreenletExit): ask ourselves.


def _fetch_username(client: MaasClient, fetch: _WhoamiFetch) -> str:
    try:
        username = client.whoami().get("username")
        if not username:
            raise MaasError(
                f"MAAS at {client.base_url} answered whoami without a username; expected the "
                f"API key's user",
            )
        fetch.username = str(username)
        return fetch.username
    except Exception as exc:
        fetch.error = exc
        raise
    finally:
        with _whoami_lock:
            if _whoami_fetches.get(client) is fetch:
                del _whoami_fetches[client]
        fetch.done.set()


_images_lock = threading.Lock()


class CachedBootResources:
    """`boot_resources()` for images.ensure_available, answered from a per-client copy."""

    def __init__(self, client: MaasClient, *, fresh: bool = False) -> None:
        self.client = client
        self.fresh = fresh

    def boot_resources(self) -> list[BootResource]:
        with _images_lock:
            cached = _boot_resources.get(self.client)
            now = time.monotonic()
            if self.fresh or cached is None or now - cached[0] > BOOT_RESOURCES_TTL:
                cached = (now, self.client.boot_resources())
                _boot_resources[self.client] = cached
            return list(cached[1])
