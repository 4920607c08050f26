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

from teuthology_maas.client import MaasClient
from teuthology_maas.config import MaasConfig
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
            _clients_pid = os.getpid()
        client = _clients.get(key)
        if client is None:
            client = _clients[key] = MaasClient.from_config(config)
        return client


_whoami_lock = threading.Lock()


def username_of(client: MaasClient) -> str:
    """The MAAS user of the client's API key, asked once per client even when many
    provisioners ask at the same moment (whoami() records it on the client)."""
    if client.username:
        return client.username
    with _whoami_lock:
        return client.username or str(client.whoami()["username"])


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
