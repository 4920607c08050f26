"""`Endpoint`: everything per MAAS region and API key in this process.

Teuthology makes one provisioner per node and reimages many nodes at once. Without sharing,
each would open its own connection pool, ask MAAS the same questions (`whoami`, the synced
images) at the same moment, poll its own machine and look its hostname up alone. One Endpoint
per (api_url, consumer key) per process owns instead:

- the `MaasClient` and its session (and so the cap on concurrent state-changing calls);
- the MAAS user name of the key, asked once, concurrent askers waiting for that one answer;
- a short-lived copy of the boot-resource list;
- the status poller every waiting node shares, and the hostname-lookup batcher;
- the host store (`fleet.store`, the config's `host_store`), through which the processes of a
  host share the user name, the boot-resource list and the timings the poller learns.

`endpoint_for(config)` is the one way library code, the teuthology adapter, the CLI and the
benchmarks obtain it; tests may also build one around a client (`Endpoint(client)`).

The fork rule, the only one: an Endpoint serves the process that made it. `endpoint_for()` in
a forked child never returns its parent's Endpoint, and an Endpoint object carried across a
fork starts its per-process services afresh there (poller and lookups, whose threads stayed in
the parent; the user-name fetch in flight; the image copy; and the client when the Endpoint
built it, so that the child does not share its parent's sockets).

Sharing between the processes of one host plugs in here: with `host_sharing` on (the
default), an Endpoint that built its own client from a config hands out the host's poller and
lookups (`fleet.hostshare.HostShare`: one process of the host polls MAAS for all of them) in
place of its own, with the same interface. An Endpoint around a client someone gave it keeps
its own (a test's fake client must be the one polled).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import NamedTuple

from teuthology_maas.config import MaasConfig
from teuthology_maas.config_regions import DEFAULT_REGION
from teuthology_maas.errors import MaasAuthError, MaasError, MaasPermissionDenied
from teuthology_maas.fleet._hostdir import share_name
from teuthology_maas.fleet.estimate import Bracket, FinishEstimator
from teuthology_maas.fleet.hostshare import HostShare
from teuthology_maas.fleet.lookup import HostnameLookups
from teuthology_maas.fleet.poller import DEFAULT_MAX_INTERVAL, DEFAULT_MIN_INTERVAL, StatusPoller
from teuthology_maas.fleet.store import HostStore, default_path
from teuthology_maas.maas.client import MaasClient
from teuthology_maas.maas.transport import ActionCap
from teuthology_maas.models import BootResource, Machine

__all__ = [
    "BOOT_RESOURCES_TTL",
    "BootResourceCache",
    "Endpoint",
    "EndpointKey",
    "endpoint_for",
    "forget_endpoints",
]

# How long a boot-resource list is reused. A miss is always re-checked against MAAS (the
# provisioner forgets the copy and asks again), so a freshly imported image is never reported
# missing because of this cache.
BOOT_RESOURCES_TTL = 60.0


class EndpointKey(NamedTuple):
    """What tells endpoints apart: the API root and the key's consumer part (never the
    secret, which is not needed to tell keys apart and must not end up in a dict key)."""

    api_url: str
    consumer_key: str


class BootResourceCache:
    """MAAS's boot-resource list, reused for `ttl` seconds (a source for
    `images.ensure_available`)."""

    def __init__(
        self,
        client: MaasClient,
        *,
        ttl: float = BOOT_RESOURCES_TTL,
        clock: Callable[[], float] = time.monotonic,
        store: HostStore | None = None,
    ) -> None:
        self.client = client
        self.ttl = ttl
        self._clock = clock
        self._lock = threading.Lock()
        self._copy: tuple[float, list[BootResource]] | None = None
        self._store = store
        self._ask_maas = False  # forget() was called: the host store's copy is not enough

    def boot_resources(self) -> list[BootResource]:
        with self._lock:
            now = self._clock()
            if self._copy is None or now - self._copy[0] > self.ttl:
                found = None if self._ask_maas else self._stored()
                if found is None:
                    found = self.client.boot_resources()
                    self._save(found)
                self._ask_maas = False
                self._copy = (now, found)
            return list(self._copy[1])

    def forget(self) -> None:
        """Ask MAAS afresh next time (an image was missing from the copy)."""
        with self._lock:
            self._copy = None
            self._ask_maas = True

    def _stored(self) -> list[BootResource] | None:
        """Another process's recent answer, when the host store has one that parses."""
        if self._store is None:
            return None
        items = self._store.images(self.client.base_url, self.client.api_key.consumer_key)
        if items is None:
            return None
        try:
            return [BootResource.from_json(item) for item in items]
        except MaasError:  # not what MAAS would answer: ask MAAS
            return None

    def _save(self, resources: list[BootResource]) -> None:
        if self._store is None:
            return
        items = [
            {"id": r.id, "type": r.type, "name": r.name, "architecture": r.architecture,
             "subarches": ",".join(r.subarches)}
            for r in resources
        ]  # fmt: skip
        self._store.save_images(self.client.base_url, self.client.api_key.consumer_key, items)


class _WhoamiFetch:
    """One whoami() in flight: its callers wait on `done` for its answer."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.username: str | None = None
        self.error: Exception | None = None


class Endpoint:
    """One MAAS region and API key, as this process uses it (see the module docstring)."""

    def __init__(self, client: MaasClient, *, config: MaasConfig | None = None) -> None:
        self.client = client
        self.config = config
        self.key = EndpointKey(client.base_url, client.api_key.consumer_key)
        self._owns_client = False
        self._lock = threading.Lock()
        self._start_services()

    @classmethod
    def from_config(cls, config: MaasConfig) -> Endpoint:
        """An Endpoint with its own client built from `config` (not the process's shared
        one: that is `endpoint_for(config)`)."""
        endpoint = cls(MaasClient.from_config(config), config=config)
        endpoint._owns_client = True
        return endpoint

    def __repr__(self) -> str:
        return f"Endpoint({self.key.api_url!r}, consumer_key={self.key.consumer_key!r})"

    def _start_services(self) -> None:
        self.pid = os.getpid()
        self._username: str | None = None
        self._whoami: _WhoamiFetch | None = None
        self.store = host_store_for(self.config)
        self._images = BootResourceCache(self.client, store=self.store)
        self._poller: StatusPoller | None = None
        self._lookups: HostnameLookups | None = None
        self._share: HostShare | None = None

    def _in_this_process(self) -> None:
        """The fork rule (see the module docstring); caller holds `_lock`."""
        if self.pid == os.getpid():
            return
        if self._owns_client and self.config is not None:
            # Not closed: closing would shut the parent's connections down too.
            self.client = MaasClient.from_config(self.config)
        self._start_services()

    # -- what it owns ---------------------------------------------------------------------

    @property
    def action_cap(self) -> ActionCap:
        """The cap on concurrent state-changing calls every user of this endpoint shares."""
        return self.client.action_cap

    @property
    def images(self) -> BootResourceCache:
        """The boot-resource list, reused for BOOT_RESOURCES_TTL seconds."""
        with self._lock:
            self._in_this_process()
            return self._images

    def _host_share(self) -> HostShare | None:
        """The host's poller and lookups when this endpoint shares them (see the module
        docstring); caller holds `_lock`."""
        config = self.config
        if config is None or not config.host_sharing or not self._owns_client:
            return None
        if self._share is None:
            self._share = HostShare(
                self.client,
                name=share_name(self.key.api_url, self.key.consumer_key, config.verify),
                directory=config.host_sharing_dir,
                min_interval=config.poll_min_interval,
                max_interval=config.poll_interval,
                on_poller=self._share_timings,
            )
        return self._share

    def status_poller(self, config: MaasConfig | None = None) -> StatusPoller | HostShare:
        """The status poller every node waiting on this endpoint shares, created on first
        use (the host's, with `host_sharing`). Its ticks are `config`'s `poll_min_interval` /
        `poll_interval` (else the endpoint's own config's, else the documented defaults); the
        latest caller's win."""
        source = config if config is not None else self.config
        with self._lock:
            self._in_this_process()
            share = self._host_share()
        if share is not None:
            if config is not None:
                share.configure(min_interval=config.poll_min_interval,
                                max_interval=config.poll_interval)  # fmt: skip
            return share
        with self._lock:
            poller = self._poller
            if poller is None:
                fast = source.poll_min_interval if source is not None else DEFAULT_MIN_INTERVAL
                slow = source.poll_interval if source is not None else DEFAULT_MAX_INTERVAL
                poller = self._poller = StatusPoller(
                    self.client, min_interval=fast, max_interval=max(slow, fast)
                )
                self._share_timings(poller)
                return poller
        if config is not None:
            poller.configure(min_interval=config.poll_min_interval,
                             max_interval=config.poll_interval)  # fmt: skip
        return poller

    def _share_timings(self, poller: StatusPoller) -> None:
        """Give the poller the timings the processes of the host have learned so far (when it
        is made, and when this process takes the host's lead), and save what it learns for
        them."""
        store = self.store
        if store is None:
            return
        url, consumer = self.key
        history = FinishEstimator()
        for kind, samples in store.samples(url, consumer).items():
            for sample in samples:
                seen = {m: Bracket(lo, hi) for m, (lo, hi) in sample["seen"].items()}
                history.learn(kind, Bracket(*sample["total"]), seen)
        poller.adopt_history(history)

        def save(kind: str, finished: Bracket, seen: dict[str, Bracket]) -> None:
            sample = {
                "total": [finished.lo, finished.hi],
                "seen": {m: [b.lo, b.hi] for m, b in list(seen.items())[:24]},
            }
            store.add_sample(url, consumer, kind, sample)

        poller.on_learn = save

    @property
    def hostname_lookups(self) -> HostnameLookups:
        """The batcher that coalesces concurrent hostname lookups into one request."""
        with self._lock:
            self._in_this_process()
            if self._lookups is None:
                self._lookups = HostnameLookups()
            return self._lookups

    def lookup_hostname(self, hostname: str) -> list[Machine]:
        """Every machine MAAS lists with short hostname `hostname`, asked together with the
        other lookups waiting at the same moment (a lone one goes at once), on this host with
        `host_sharing`."""
        with self._lock:
            self._in_this_process()
            share = self._host_share()
        if share is not None:
            return share.lookup(hostname)
        return self.hostname_lookups.machines(self.client, hostname)

    def username(self) -> str:
        """The MAAS user of the API key, asked once even when many provisioners ask at the
        same moment: the first caller asks MAAS, the others wait for its answer (threading
        primitives, so greenlets under gevent wait cooperatively).

        A failure is handed to every caller that was waiting for that answer: they would each
        spend the whole retry budget again, one after another, on the same outage (50 nodes x
        120 s). A later caller asks afresh. Only this endpoint's own fetch is waited for, so a
        hung MAAS behind one endpoint or key does not hold up another."""
        while True:
            with self._lock:
                self._in_this_process()
                # The client's own whoami (a CLI command may have asked) counts too, and the
                # answer another process of this host saved.
                known = self._username or self.client.username or self._stored_username()
                if known:
                    self._username = known
                    return known
                fetch = self._whoami
                leader = fetch is None
                if fetch is None:
                    fetch = self._whoami = _WhoamiFetch()
            if leader:
                return self._fetch_username(fetch)
            fetch.done.wait()
            if fetch.username:
                return fetch.username
            if fetch.error is not None:
                raise fetch.error
            # The asking caller was interrupted (KeyboardInterrupt, GreenletExit): ask ourselves.

    def _stored_username(self) -> str | None:
        if self.store is None:
            return None
        return self.store.username(*self.key)

    def _fetch_username(self, fetch: _WhoamiFetch) -> str:
        try:
            try:
                username = self.client.whoami().get("username")
            except (MaasAuthError, MaasPermissionDenied) as exc:
                # Several MAAS installations (maas: regions:): say which refused its key.
                raise type(exc)(
                    f"{exc} (MAAS at {self.client.base_url}{self._region_label()}: check "
                    "this MAAS's api_key)",
                    http_status=exc.http_status,
                    maas_message=exc.maas_message,
                ) from None
            if not username:
                raise MaasError(
                    f"MAAS at {self.client.base_url} answered whoami without a username; "
                    f"expected the API key's user",
                )
            fetch.username = str(username)
            if self.store is not None:
                self.store.save_username(*self.key, fetch.username)
            return fetch.username
        except Exception as exc:  # any failure is the waiters' answer too; re-raised here
            fetch.error = exc
            raise
        finally:
            with self._lock:
                if fetch.username:
                    self._username = fetch.username
                if self._whoami is fetch:
                    self._whoami = None
            fetch.done.set()

    def _region_label(self) -> str:
        """`, region 'octo'` for a region of `maas: regions:` (nothing in the flat form)."""
        region = self.config.region if self.config is not None else DEFAULT_REGION
        return "" if region == DEFAULT_REGION else f", region {region!r}"

    def serves(self, config: MaasConfig) -> bool:
        """Whether this endpoint's client is what `config` asks for (same key, TLS check,
        request timeout, deadline and size cap, and action cap), so that the config's users may
        share it."""
        client = self.client
        if not isinstance(client, MaasClient):
            return False  # a stand-in a test built: only those it was given to use it
        return (
            self.key == EndpointKey(config.api_url, config.api_key.consumer_key)
            and client.base_urls == (config.api_urls or (config.api_url,))
            and client.api_key == config.api_key
            and client.session.verify == config.verify
            and client.timeout == config.http_timeout
            and client.deadline == config.http_deadline
            and client.max_response_bytes == config.max_response_size
            and client.max_concurrent_actions == config.max_concurrent_actions
        )

    def close(self) -> None:
        """Close the client this endpoint built (a client it was given stays its owner's) and
        stop handing this endpoint out."""
        with _registry_lock:
            if _registry.get(self.key) is self:
                del _registry[self.key]
        with self._lock:
            share, self._share = self._share, None
        if share is not None:
            share.close()  # a leader hands over before its client goes
        if self._owns_client:
            self.client.close()


def host_store_for(config: MaasConfig | None) -> HostStore | None:
    """The host store `config` names (`host_store`), or None: none configured, or an
    Endpoint a test built around a client without a config."""
    if config is None or config.host_store is False:
        return None
    return HostStore(default_path() if config.host_store is True else config.host_store)


# -- the process's endpoints ---------------------------------------------------------------------

_registry: dict[EndpointKey, Endpoint] = {}
_registry_lock = threading.Lock()
_registry_pid = os.getpid()


def endpoint_for(config: MaasConfig | None = None, *, client: MaasClient | None = None) -> Endpoint:
    """The process's Endpoint for `config`'s MAAS region and API key, made on first use.

    With `client`, the Endpoint around that client (made and registered when the registered
    one has another client: the latest client given wins). Without, the registered Endpoint
    when its client is what `config` asks for, else a new one with its own client (a config
    whose key, TLS check, request timeout or action cap changed gets a new client)."""
    global _registry_pid
    if client is None and config is None:
        raise TypeError("endpoint_for() needs a config or a client")
    with _registry_lock:
        if _registry_pid != os.getpid():  # a forked child makes its own (the fork rule)
            _registry.clear()
            _registry_pid = os.getpid()
        if client is not None:
            key = EndpointKey(client.base_url, client.api_key.consumer_key)
            endpoint = _registry.get(key)
            if endpoint is None or endpoint.client is not client:
                endpoint = _registry[key] = Endpoint(client, config=config)
            return endpoint
        assert config is not None
        key = EndpointKey(config.api_url, config.api_key.consumer_key)
        endpoint = _registry.get(key)
        if endpoint is None or not endpoint.serves(config):
            endpoint = _registry[key] = Endpoint.from_config(config)
        return endpoint


def forget_endpoints() -> None:
    """Stop handing out the endpoints made so far (tests; a process that changes MAAS
    regions). Their holders keep them; nothing is closed."""
    with _registry_lock:
        _registry.clear()
