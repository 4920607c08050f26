"""HA: `api_url` lists the region URLs of ONE MAAS (one database), over real HTTP.

Region URL A and B serve the same simulated MAAS on two ports, each behind a fault proxy.
Reads fail over freely and stick to the region that answered; a POST fails over only when it
cannot have reached MAAS (connection refused); a POST whose outcome is unknown is never sent
again to the other region (both regions would apply it): the caller re-reads, as with one
region.
"""

from __future__ import annotations

import logging
import threading
import time

import pytest

from teuthology_maas.errors import MaasOutcomeUnknown, MaasUnavailable
from teuthology_maas.maas.client import MaasClient
from teuthology_maas.maas.retry import RetryPolicy
from teuthology_maas.node.ownership import TOKEN_KEY
from teuthology_maas.node.provisioner import MaasProvisioner

NODE = "smithi001"
QUICK_RETRY = RetryPolicy(max_attempts=4, max_total=5.0, backoff_initial=0.05, backoff_max=0.2)


def _client(regions, **overrides):
    client = MaasClient.from_config(regions.config(**overrides), retry=QUICK_RETRY)
    regions.lab.clients.append(client)
    return client


def test_a_read_fails_over_to_region_b_and_sticks_there(ha_regions, caplog):
    regions = ha_regions(ssh=False)
    client = _client(regions)
    assert client.base_urls == (
        regions.url_a + "api/2.0/", regions.url_b + "api/2.0/"
    )
    assert client.whoami()["username"] == "teuthology"
    assert client.current_url == client.base_urls[0]
    regions.region_a.refuse_connections()
    with caplog.at_level(logging.WARNING, logger="teuthology_maas.maas.client"):
        assert client.whoami()["username"] == "teuthology"
    assert client.current_url == client.base_urls[1]
    assert any(
        "failed" in r.getMessage() and client.base_urls[1] in r.getMessage()
        for r in caplog.records
    ), [r.getMessage() for r in caplog.records]
    # A is back: requests stay on B (sticky, not round-robin) until B fails in turn
    regions.region_a.accept_connections()
    for _ in range(3):
        client.list_machines()
    # (the whoami cut off when A went down may be logged by A's proxy late, under load)
    assert not [r for r in regions.region_a.records() if r.path.endswith("/machines/")]
    assert len(regions.region_b.records(method="GET")) >= 4
    regions.region_b.refuse_connections()
    assert [m.hostname for m in client.list_machines()] == [NODE]
    assert client.current_url == client.base_urls[0]


def test_a_5xx_from_one_region_is_answered_by_the_other(ha_regions):
    regions = ha_regions(ssh=False)
    client = _client(regions)
    regions.region_a.add("gateway_after", method="GET", status=502)
    assert client.get_machine(regions.lab.state(NODE)["system_id"]).hostname == NODE
    assert client.current_url == client.base_urls[1]
    assert [r.status for r in regions.region_b.records(method="GET")] == [200]


def test_a_post_refused_by_region_a_is_sent_to_region_b_once(ha_regions):
    regions = ha_regions(ssh=False)
    client = _client(regions)
    regions.region_a.refuse_connections()
    machine = client.allocate(name=NODE)
    assert machine.hostname == NODE
    assert regions.posts(regions.region_b, "allocate") == 1
    assert len(regions.lab.sim.requests(op="allocate")) == 1


@pytest.mark.parametrize("drop", ["reset_after", "gateway_503"])
def test_a_post_dropped_by_region_a_is_not_replayed_on_region_b(ha_regions, drop):
    regions = ha_regions(ssh=False)
    client = _client(regions)
    if drop == "reset_after":
        regions.region_a.add("reset_after", method="POST", op="allocate")
    else:
        regions.region_a.add("gateway_after", method="POST", op="allocate", status=503)
    with pytest.raises(MaasOutcomeUnknown) as caught:
        client.allocate(name=NODE)
    assert client.base_urls[0] in str(caught.value)  # the error names the region URL
    # A applied it; B never saw it: the regions share one database, so a re-send there would
    # have been a second allocate. The caller's re-read goes to B.
    assert regions.posts(regions.region_a, "allocate") == 1
    assert regions.posts(regions.region_b, "allocate") == 0
    assert len(regions.lab.sim.requests(op="allocate")) == 1
    assert client.current_url == client.base_urls[1]
    assert client.get_machine(regions.lab.state(NODE)["system_id"]).owner == "teuthology"


def test_every_region_down_names_each_url_and_never_the_key(ha_regions):
    regions = ha_regions(ssh=False)
    client = _client(regions)
    regions.region_a.refuse_connections()
    regions.region_b.refuse_connections()
    with pytest.raises(MaasUnavailable) as caught:
        client.whoami()
    text = str(caught.value)
    assert client.base_urls[0] in text and client.base_urls[1] in text, text
    assert client.api_key.token_secret not in text


def test_region_a_killed_mid_deploy_the_wait_continues_on_region_b(ha_regions, caplog):
    # A deployment of ~1.5 s real time: long enough to take region A away during it.
    regions = ha_regions(timings={"deploying": 300.0})
    config = regions.config()
    provisioner = MaasProvisioner(NODE, config=config)
    assert provisioner.client.base_urls == config.api_urls
    killed = threading.Event()

    def kill_a_while_deploying() -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if regions.lab.state(NODE)["status_name"] == "Deploying":
                regions.region_a.refuse_connections()
                killed.set()
                return
            time.sleep(0.01)

    killer = threading.Thread(target=kill_a_while_deploying, daemon=True)
    killer.start()
    with caplog.at_level(logging.WARNING, logger="teuthology_maas"):
        provisioner.create()
    killer.join()
    assert killed.is_set()
    machine = regions.lab.state(NODE)
    assert (machine["status_name"], machine["locked"]) == ("Deployed", True)
    assert machine["owner_data"][TOKEN_KEY] == provisioner.deployment.token
    # the deploy went through A, the rest of the wait and the hand-over (lock) through B
    assert regions.posts(regions.region_a, "deploy") == 1
    assert regions.posts(regions.region_b, "deploy") == 0
    assert regions.posts(regions.region_b, "lock") == 1
    assert len(regions.lab.sim.requests(op="deploy")) == 1
    assert provisioner.client.current_url == config.api_urls[1]
    assert config.api_key.token_secret not in caplog.text


def test_waits_name_the_maas_by_its_first_url_whichever_region_answers(ha_regions):
    from teuthology_maas import waits

    regions = ha_regions(ssh=False)
    client = _client(regions)
    seen = []
    regions.region_a.refuse_connections()
    with waits.watching(seen.append):
        client.whoami()
        regions.region_a.accept_connections()
        regions.region_b.add("gateway_after", method="GET", status=503)
        client.whoami()
    assert [r.what for r in seen] and {r.subject for r in seen} == {client.base_url}
    assert client.current_url == client.base_urls[0]  # B's 503 sent it back to A


def test_quarantine_counts_and_marks_broken_through_the_region_that_answers(ha_regions):
    """The failure count reads MAAS's events and the quarantine marks the node broken through
    the client's failover: region A down between two failures, B answers both."""
    from teuthology_maas.errors import DeploymentFailed, NodeQuarantined

    regions = ha_regions(ssh=False, quarantine_after=2)
    lab = regions.lab
    lab.sim.faults.add("deploy_fail", machine=NODE)
    config = regions.config(quarantine_after=2, ssh_keys=list(lab.config.ssh_keys))
    with pytest.raises(DeploymentFailed) as first:
        MaasProvisioner(NODE, config=config).create()
    assert not isinstance(first.value, NodeQuarantined)
    assert lab.state(NODE)["status_name"] == "Ready"
    regions.region_a.refuse_connections()
    seen_a = len(regions.region_a.records())
    with pytest.raises(NodeQuarantined) as second:
        MaasProvisioner(NODE, config=config).create()
    assert "2 failed deployments in a row" in second.value.quarantine
    assert lab.state(NODE)["status_name"] == "Broken"
    assert regions.posts(regions.region_b, "mark_broken") == 1
    events_b = [r for r in regions.region_b.records(method="GET") if "events" in r.path]
    assert events_b and all(r.forwarded and r.status == 200 for r in events_b)
    late_a = regions.region_a.records()[seen_a:]  # at most a poll cut off when A went down
    assert not [r for r in late_a if "events" in r.path or r.op == "mark_broken"], late_a
