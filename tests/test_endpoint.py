"""The Endpoint: one per MAAS region and API key per process, owning the client, the user
name, the image copy, the status poller, the hostname lookups and the action cap, with one
fork rule (teuthology_maas.endpoint)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from teuthology_maas.config import MaasConfig
from teuthology_maas.endpoint import (
    BootResourceCache,
    Endpoint,
    EndpointKey,
    endpoint_for,
    forget_endpoints,
)
from teuthology_maas.maas.client import MaasClient
from teuthology_maas.models import BootResource
from teuthology_maas.node.provisioner import MaasProvisioner

SECRET = "secret-never-shown-0123456789"
URL = "http://127.0.0.1:1/MAAS/"


def config(**overrides: object) -> MaasConfig:
    section: dict[str, object] = {"api_url": URL, "api_key": f"teuthology:tk:{SECRET}"}
    section.update(overrides)
    return MaasConfig.from_mapping(section)


@pytest.fixture(autouse=True)
def _fresh_registry() -> Iterator[None]:
    forget_endpoints()
    yield
    forget_endpoints()


def test_one_endpoint_per_region_and_key_per_process() -> None:
    first = endpoint_for(config())
    assert endpoint_for(config()) is first
    assert first.key == EndpointKey("http://127.0.0.1:1/MAAS/api/2.0/", "teuthology")
    other_user = endpoint_for(config(api_key=f"alice:tk:{SECRET}"))
    other_maas = endpoint_for(config(api_url="http://127.0.0.2:1/MAAS/"))
    assert len({id(first), id(other_user), id(other_maas)}) == 3
    # Settings outside the client's (ticks, timeouts of waits) share the endpoint.
    assert endpoint_for(config(poll_interval=2.0, deploy_timeout=3600)) is first
    assert SECRET not in repr(first) and SECRET not in repr(first.key)


@pytest.mark.parametrize(
    "change",
    [
        {"api_key": "teuthology:tk:another-secret-0123456789"},
        {"api_key": f"teuthology:tk2:{SECRET}"},
        {"http_timeout": 5},
        {"verify": False},
        {"max_concurrent_actions": 3},
    ],
)
def test_a_config_asking_for_another_client_gets_a_new_endpoint(change: dict) -> None:
    before = endpoint_for(config())
    after = endpoint_for(config(**change))
    assert after is not before and after.client is not before.client
    assert after.key == before.key
    assert endpoint_for(config(**change)) is after  # and keeps it


def test_a_client_given_gets_the_endpoint_around_it_and_the_latest_client_wins() -> None:
    client = MaasClient.from_config(config())
    around = endpoint_for(client=client)
    assert around.client is client
    assert endpoint_for(client=client) is around
    # a config whose client this one is uses the same endpoint
    assert endpoint_for(config()) is around
    newer = MaasClient.from_config(config())
    assert endpoint_for(client=newer).client is newer
    assert endpoint_for(config()).client is newer
    with pytest.raises(TypeError, match="needs a config or a client"):
        endpoint_for()


def test_provisioners_of_one_maas_share_the_endpoint_whichever_way_they_are_made() -> None:
    cfg = config()
    plain = MaasProvisioner("smithi001", config=cfg)
    assert MaasProvisioner("smithi002", config=cfg).endpoint is plain.endpoint
    assert plain.client is plain.endpoint.client
    client = MaasClient.from_config(cfg)
    given = [MaasProvisioner(f"smithi00{i}", config=cfg, client=client) for i in (3, 4)]
    assert given[0].endpoint is given[1].endpoint and given[0].client is client
    own = Endpoint.from_config(cfg)
    made = MaasProvisioner("smithi005", endpoint=own)
    assert made.endpoint is own and made.config is cfg and made.client is own.client
    with pytest.raises(TypeError, match="not both"):
        MaasProvisioner("smithi006", config=cfg, client=client, endpoint=own)


def test_the_status_poller_is_one_per_endpoint_and_takes_the_latest_ticks() -> None:
    endpoint = Endpoint.from_config(config(poll_min_interval=0.2, poll_interval=4))
    poller = endpoint.status_poller()
    assert endpoint.status_poller() is poller and poller.client is endpoint.client
    assert (poller.policy.fast, poller.policy.slow) == (0.2, 4.0)
    assert endpoint.status_poller(config(poll_min_interval=0.1, poll_interval=2)) is poller
    assert (poller.policy.fast, poller.policy.slow) == (0.1, 2.0)
    assert SECRET not in repr(poller)
    bare = Endpoint(MaasClient.from_config(config()))
    assert (bare.status_poller().policy.fast, bare.status_poller().policy.slow) == (0.5, 10.0)


def test_services_are_made_once_and_the_cap_is_the_client_s() -> None:
    endpoint = Endpoint.from_config(config(max_concurrent_actions=3))
    assert endpoint.hostname_lookups is endpoint.hostname_lookups
    assert endpoint.images is endpoint.images
    assert endpoint.action_cap is endpoint.client.action_cap
    assert endpoint.client.max_concurrent_actions == 3


class _Images:
    def __init__(self) -> None:
        self.asked = 0

    def boot_resources(self) -> list[BootResource]:
        self.asked += 1
        return [BootResource.from_json({"id": self.asked, "name": "ubuntu/jammy",
                                        "architecture": "amd64/generic", "type": "Synced"})]


def test_the_image_copy_is_reused_within_its_ttl_and_asked_afresh_when_forgotten() -> None:
    now = [100.0]
    source = _Images()
    cache = BootResourceCache(source, ttl=60.0, clock=lambda: now[0])  # type: ignore[arg-type]
    assert cache.boot_resources()[0].id == 1
    now[0] += 59
    assert cache.boot_resources()[0].id == 1
    now[0] += 2
    assert cache.boot_resources()[0].id == 2
    cache.forget()
    assert cache.boot_resources()[0].id == 3
    assert source.asked == 3


def test_close_stops_handing_the_endpoint_out_and_closes_only_its_own_client() -> None:
    endpoint = endpoint_for(config())
    endpoint.close()
    assert endpoint_for(config()) is not endpoint
    given = MaasClient.from_config(config())
    closed: list[bool] = []
    given.close = lambda: closed.append(True)  # type: ignore[method-assign]
    endpoint_for(client=given).close()
    assert closed == []  # the caller's client stays the caller's


def _in_child(check: object) -> bytes:
    """Run `check()` in a forked child; its bytes come back through a pipe."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_end)
        try:
            os.write(write_end, check())  # type: ignore[operator]
        finally:
            os._exit(0)
    os.close(write_end)
    answer = os.read(read_end, 256)
    os.close(read_end)
    os.waitpid(pid, 0)
    return answer


def test_the_fork_rule_a_child_never_uses_its_parent_s_services() -> None:
    cfg = config()
    parent = endpoint_for(cfg)
    poller, lookups, images, client = (
        parent.status_poller(), parent.hostname_lookups, parent.images, parent.client
    )

    def child() -> bytes:
        fresh = endpoint_for(cfg)
        # the parent's object, carried over the fork, starts its services afresh too
        carried = [
            parent.status_poller() is not poller,
            parent.hostname_lookups is not lookups,
            parent.images is not images,
            parent.client is not client,  # built from config: not the parent's sockets
        ]
        return b",".join(
            [b"new" if fresh is not parent else b"same"]
            + [b"fresh" if fact else b"inherited" for fact in carried]
        )

    assert _in_child(child) == b"new,fresh,fresh,fresh,fresh"
    # and nothing changed for the parent
    assert endpoint_for(cfg) is parent
    assert (parent.status_poller(), parent.hostname_lookups, parent.images, parent.client) == (
        poller, lookups, images, client
    )
