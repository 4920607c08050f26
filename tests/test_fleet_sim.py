"""The shared poller with the real MaasClient against the simulator, over loopback HTTP."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading

import pytest

from teuthology_maas.endpoint import endpoint_for, forget_endpoints
from teuthology_maas.errors import MaasTimeout
from teuthology_maas.maas.client import MaasClient
from teuthology_maas.maas.retry import NO_RETRY
from teuthology_maas.models import DEPLOY_FAILURE, DEPLOY_TARGET, Machine, NodeStatus
from teuthology_maas.simulator import ManualClock, ScaledClock

HOSTS = [f"smithi{i:03d}" for i in range(1, 7)]


@pytest.fixture(autouse=True)
def _fresh_pollers():
    forget_endpoints()
    yield
    forget_endpoints()


class SpyClient(MaasClient):
    """The real client, recording which ids each list request asked for."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.asked: list[tuple[str, ...]] = []
        self.lock = threading.Lock()

    def list_machines(self, **kwargs):
        if kwargs.get("id"):
            with self.lock:
                self.asked.append(tuple(kwargs["id"]))
        return super().list_machines(**kwargs)


def deploy_all(client: MaasClient, sim, hostnames) -> list[str]:
    ids = [sim.system_id(h) for h in hostnames]
    for system_id in ids:
        client.deploy(system_id, distro_series="ubuntu/jammy")
    return ids


def wait_all(poller, ids, **kwargs) -> dict[str, object]:
    results: dict[str, object] = {}

    def run(system_id: str) -> None:
        try:
            results[system_id] = poller.wait(system_id, **kwargs)
        except Exception as exc:
            results[system_id] = exc

    threads = [threading.Thread(target=run, args=(s,)) for s in ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return results


def test_six_deployments_are_watched_through_list_requests_only(maas_sim):
    cfg = maas_sim.config()
    client = SpyClient.from_config(cfg)
    ids = deploy_all(client, maas_sim.sim, HOSTS)
    poller = endpoint_for(cfg, client=client).status_poller(cfg)
    before = len(maas_sim.sim.request_log)
    changes: list[Machine] = []
    results = wait_all(poller, ids, targets=DEPLOY_TARGET, failures=DEPLOY_FAILURE, timeout=30,
                       on_change=changes.append)
    assert {r.status for r in results.values()} == {NodeStatus.DEPLOYED}
    during = maas_sim.sim.request_log[before:]
    # every status read was a list request; no per-machine GET
    assert {(r.method, r.system_id) for r in during} == {("GET", None)}
    assert len(during) == len(client.asked)
    assert max(len(ids_asked) for ids_asked in client.asked) == 6
    # MAAS's progress messages reached the callback on the way
    messages = {m.status_message for m in changes}
    assert "Deployed" in messages
    assert messages & {"Installing OS", "Rebooting", "Configuring OS", "Performing PXE boot"}
    client.close()


def test_a_failed_deployment_returns_with_maas_own_words(maas_sim):
    maas_sim.sim.faults.add("deploy_fail", machine="smithi002", reason="curtin: disk /dev/sda")
    cfg = maas_sim.config()
    with MaasClient.from_config(cfg) as client:
        ids = deploy_all(client, maas_sim.sim, ["smithi001", "smithi002"])
        poller = endpoint_for(cfg, client=client).status_poller(cfg)
        results = wait_all(poller, ids, targets=DEPLOY_TARGET,
                           failures=DEPLOY_FAILURE, timeout=30)
    good, bad = results[ids[0]], results[ids[1]]
    assert good.status is NodeStatus.DEPLOYED
    assert bad.status is NodeStatus.FAILED_DEPLOYMENT
    assert "curtin: disk /dev/sda" in (bad.status_message or "") + bad.error_description


def test_maas_answering_503_for_a_while_does_not_end_the_wait(maas_sim):
    cfg = maas_sim.config()
    # No client-side retries: every 503 reaches the poller, which must carry on.
    with MaasClient.from_config(cfg, retry=NO_RETRY) as client:
        ids = deploy_all(client, maas_sim.sim, ["smithi003"])
        maas_sim.sim.faults.add("error", method="GET", path="machines/", status=503, times=8)
        poller = endpoint_for(cfg, client=client).status_poller(cfg)
        machine = poller.wait(ids[0], targets=DEPLOY_TARGET, failures=DEPLOY_FAILURE,
                              timeout=30)
    assert machine.status is NodeStatus.DEPLOYED
    assert sum(r.status == 503 for r in maas_sim.sim.request_log) == 8
    assert poller.stats.errors == 8


def test_a_spurious_empty_list_is_checked_by_reading_the_machine(maas_sim):
    cfg = maas_sim.config()
    with SpyClient.from_config(cfg) as client:
        ids = deploy_all(client, maas_sim.sim, ["smithi004"])
        maas_sim.sim.faults.add("error", method="GET", path="machines/", status=200, body="[]",
                                times=50)
        poller = endpoint_for(cfg, client=client).status_poller(cfg)
        machine = poller.wait(ids[0], targets=DEPLOY_TARGET, failures=DEPLOY_FAILURE,
                              timeout=30)
    assert machine.status is NodeStatus.DEPLOYED
    reads = [r for r in maas_sim.sim.request_log if r.method == "GET" and r.system_id == ids[0]]
    assert reads, "the machine was never read on its own"
    assert poller.stats.rereads >= 1


def test_timeout_reports_what_the_simulator_showed_last(maas_sim_factory):
    handle = maas_sim_factory(clock=ManualClock())
    cfg = handle.config()
    with MaasClient.from_config(cfg) as client:
        ids = deploy_all(client, handle.sim, ["smithi005"])
        with pytest.raises(MaasTimeout) as caught:
            endpoint_for(cfg, client=client).status_poller(cfg).wait(
                ids[0], targets=DEPLOY_TARGET, failures=DEPLOY_FAILURE, timeout=0.5
            )
    assert caught.value.last_status == "Deploying"
    assert f"smithi005 ({ids[0]}) did not reach Deployed within 0.5 s" in str(caught.value)


def test_the_real_client_and_poller_under_gevent(maas_sim_factory):
    handle = maas_sim_factory(clock=ScaledClock(1000))
    script = textwrap.dedent(
        f"""
        from gevent import monkey
        monkey.patch_all()
        import json, gevent
        from teuthology_maas.endpoint import endpoint_for
        from teuthology_maas.maas.client import MaasClient
        from teuthology_maas.models import DEPLOY_FAILURE, DEPLOY_TARGET
        client = MaasClient({handle.api_url!r}, {handle.api_key!r})
        poller = endpoint_for(client=client).status_poller()
        poller.configure(min_interval=0.02, max_interval=0.1)
        ids = [m.system_id for m in client.list_machines(hostname={HOSTS!r})]
        for system_id in ids:
            client.deploy(system_id, distro_series="ubuntu/jammy")
        jobs = [gevent.spawn(poller.wait, s, targets=DEPLOY_TARGET, failures=DEPLOY_FAILURE,
                             timeout=30) for s in ids]
        gevent.joinall(jobs, timeout=30, raise_error=True)
        print(json.dumps(sorted(job.value.status_name for job in jobs)))
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == ["Deployed"] * 6
