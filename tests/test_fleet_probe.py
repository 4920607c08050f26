"""Due times per machine, the long-job cadence, and the probe + one-read confirmation.

Scheduling against the in-memory stand-in (test_fleet.FakeMaas); the probe and its confirming
read against the simulator over real HTTP, with the node's readiness read from the files the
simulator writes when a machine reaches Deployed (what an SSH login would find)."""

from __future__ import annotations

import threading
import time

import pytest

from tests.test_fleet import FakeMaas, Waiters, eventually, make_poller
from teuthology_maas.endpoint import endpoint_for, forget_endpoints
from teuthology_maas.errors import MaasTimeout
from teuthology_maas.maas.client import MaasClient
from teuthology_maas.models import DEPLOY_FAILURE, DEPLOY_TARGET, NodeStatus
from teuthology_maas.simulator import ManualClock, ScaledClock


@pytest.fixture(autouse=True)
def _fresh_endpoints():
    forget_endpoints()
    yield
    forget_endpoints()


# -- due times (in-memory) ----------------------------------------------------------------------


def test_a_long_job_is_not_read_on_the_ticks_of_short_waits():
    client = FakeMaas()
    client.add("long", NodeStatus.DEPLOYING)
    client.add("short", NodeStatus.RELEASING)
    poller = make_poller(client, min_interval=0.01, max_interval=0.05)
    waiters = Waiters(poller)
    waiters.start("long", timeout=10, failure_interval=0.6)
    waiters.start("short", targets={NodeStatus.READY}, failures=(), timeout=10)
    eventually(lambda: len(client.list_calls()) >= 15, "the short wait's ticks", limit=5)
    calls = client.list_calls()
    with_long = [ids for ids in calls if "long" in ids]
    assert all("short" in ids for ids in calls)
    # read about every 0.6 s, not on each of the short wait's ticks
    assert len(with_long) <= 1 + 2 * (len(calls) * 0.05) / 0.6 + 1
    assert len(with_long) < len(calls) / 3
    client.set("short", NodeStatus.READY)
    client.set("long", NodeStatus.DEPLOYED)
    waiters.join()
    assert waiters.results["long"].status is NodeStatus.DEPLOYED


def test_long_jobs_started_apart_fall_into_step_and_share_their_reads():
    client = FakeMaas()
    ids = [f"d{i}" for i in range(5)]
    for system_id in ids:
        client.add(system_id, NodeStatus.DEPLOYING)
    poller = make_poller(client, min_interval=0.01, max_interval=0.05)
    waiters = Waiters(poller)
    for system_id in ids:  # one deploy after another, as lock-many's nodes do
        waiters.start(system_id, timeout=10, failure_interval=0.4)
        time.sleep(0.01)
    time.sleep(2.5)  # the reads have spread out to the 0.4 s cadence
    seen = len(client.list_calls())
    time.sleep(1.0)
    later = client.list_calls()[seen:]
    # in step: one request for all five per 0.4 s cycle (not one per machine)
    assert later and sorted(later[-1]) == ids, later
    assert len(later) <= 5, later
    for system_id in ids:
        client.set(system_id, NodeStatus.DEPLOYED)
    waiters.join()


def test_a_probe_that_answers_asks_for_one_read_and_only_maas_ends_the_wait():
    client = FakeMaas()
    client.add("n1", NodeStatus.DEPLOYING)
    poller = make_poller(client, min_interval=0.01, max_interval=0.05)
    answers = threading.Event()
    waiters = Waiters(poller)
    # a long job expected to end about now: its window is 0.9 to 1.25 s after the start
    waiters.start("n1", timeout=10, failure_interval=30.0, expected_duration=1.0,
                  probe=answers.is_set)
    eventually(lambda: poller.stats.probes >= 5, "probes tried")
    # probes cost MAAS nothing: only the long job's own reads, spreading out fast
    reads = len(client.list_calls())
    assert reads <= 6 and poller.stats.confirms == 0
    answers.set()  # the node answers, but MAAS still says Deploying: not believed
    eventually(lambda: poller.stats.confirms >= 1, "a confirm read")
    time.sleep(0.3)
    assert "n1" not in waiters.results
    # unconfirmed probes back off (0.03, 0.06, 0.12 ... s) instead of reading every near tick
    assert len(client.list_calls()) - reads <= 6
    client.set("n1", NodeStatus.DEPLOYED)
    waiters.join()
    assert waiters.results["n1"].status is NodeStatus.DEPLOYED


def test_with_nothing_known_a_long_job_probes_from_the_start_and_later_ones_wait_for_a_window():
    client = FakeMaas()
    client.add("first", NodeStatus.DEPLOYING)
    # (a wait counts as timing its action when it begins within a fastest tick of the kick)
    poller = make_poller(client, min_interval=0.1, max_interval=0.5)
    ready = threading.Event()
    waiters = Waiters(poller)
    # nothing learned, no expected duration: a lone node is probed from the start
    poller.kick()  # the deploy was just sent: what this wait sees is learned
    waiters.start("first", timeout=10, failure_interval=30.0, probe=ready.is_set, kind="deploy")
    eventually(lambda: poller.stats.probes >= 3, "blind probes")
    client.set("first", NodeStatus.DEPLOYED)
    ready.set()
    waiters.join()
    assert waiters.results["first"].status is NodeStatus.DEPLOYED
    assert poller.history.total("deploy") is not None
    # the first deployment taught when a deployment ends: the next one probes only near it
    poller.kick()  # (its wait follows its action, so what it sees is learned too)
    client.add("second", NodeStatus.DEPLOYING)
    probes = poller.stats.probes
    later = Waiters(poller)
    later.start("second", timeout=10, failure_interval=30.0, probe=lambda: False,
                kind="deploy")
    time.sleep(0.05)
    assert poller.stats.probes == probes
    client.set("second", NodeStatus.DEPLOYED)
    assert poller.confirm("second")
    later.join()


def test_confirm_reads_a_long_job_at_once_and_only_maas_decides():
    client = FakeMaas()
    client.add("c1", NodeStatus.DEPLOYING)
    poller = make_poller(client, min_interval=0.01, max_interval=0.05)
    waiters = Waiters(poller)
    waiters.start("c1", timeout=10, failure_interval=30.0)
    eventually(lambda: poller.waiting == 1, "registered")
    time.sleep(1.0)  # its reads have spread out: the next is seconds away
    reads = len(client.list_calls())
    assert poller.confirm("c1") is True
    eventually(lambda: len(client.list_calls()) > reads, "the confirming read", limit=1.0)
    time.sleep(0.1)
    assert "c1" not in waiters.results  # MAAS still said Deploying
    client.set("c1", NodeStatus.DEPLOYED)
    assert poller.confirm("c1") is True
    waiters.join()
    assert waiters.results["c1"].status is NodeStatus.DEPLOYED
    assert poller.confirm("c1") is False  # nobody waits for it any more


# -- over real HTTP on the simulator ---------------------------------------------------------


def _deploy(client: MaasClient, sim, hostnames):
    ids = [sim.system_id(h) for h in hostnames]
    for system_id in ids:
        client.deploy(system_id, distro_series="ubuntu/jammy")
    return ids


def test_deployments_are_seen_through_their_probe_and_one_confirming_read(
    maas_sim_factory, tmp_path
):
    # 600 simulated seconds per deployment at x100: 6 s real; MAAS is read for failures
    # only every 60 s once the first reads spread out, so only the confirmations can end
    # these waits in time.
    handle = maas_sim_factory(clock=ScaledClock(100), ssh_root=tmp_path)
    cfg = handle.config()
    hosts = ["smithi001", "smithi002", "smithi003"]
    with MaasClient.from_config(cfg) as client:
        poller = endpoint_for(cfg, client=client).status_poller(cfg)
        poller.configure(min_interval=0.05, max_interval=0.5)
        ids = _deploy(client, handle.sim, hosts)
        before = len(handle.sim.request_log)
        results: dict[str, object] = {}
        returned: dict[str, float] = {}

        def wait(system_id: str, host: str) -> None:
            results[host] = poller.wait(
                system_id, targets=DEPLOY_TARGET, failures=DEPLOY_FAILURE, timeout=30,
                failure_interval=60.0, expected_duration=5.0,
                probe=lambda: (tmp_path / host / "boot-finished").exists(),
            )
            returned[host] = time.monotonic()

        threads = [threading.Thread(target=wait, args=a) for a in zip(ids, hosts, strict=True)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        during = handle.sim.request_log[before:]
    assert {r.status for r in results.values()} == {NodeStatus.DEPLOYED}
    # The long jobs' first reads (0.15, 0.45, 1.35, 4 s after the deploy: they spread out
    # fast) and the confirmations, at most one each: not one read per 0.15 s near tick.
    assert poller.stats.confirms <= len(hosts)
    assert 1 <= len(during) <= 5 + len(hosts)
    assert {(r.method, r.system_id) for r in during} == {("GET", None)}
    assert poller.stats.probes > len(hosts)
    for host in hosts:  # seen promptly after the files appeared (the near tick is 0.15 s)
        appeared = (tmp_path / host / "boot-finished").stat().st_mtime
        assert returned[host] - time.monotonic() + time.time() - appeared < 1.5


def test_a_node_answering_is_never_believed_without_maas(maas_sim_factory):
    """Someone else's deployment may answer with a key we know: only MAAS's Deployed ends the
    wait, and confirmations MAAS refuses slow down."""
    handle = maas_sim_factory(clock=ManualClock())
    cfg = handle.config()
    with MaasClient.from_config(cfg) as client:
        (system_id,) = _deploy(client, handle.sim, ["smithi004"])
        poller = endpoint_for(cfg, client=client).status_poller(cfg)
        poller.configure(min_interval=0.05, max_interval=0.5)
        before = len(handle.sim.request_log)
        with pytest.raises(MaasTimeout) as caught:
            poller.wait(system_id, targets=DEPLOY_TARGET, failures=DEPLOY_FAILURE, timeout=2.0,
                        failure_interval=60.0, expected_duration=0.01, probe=lambda: True)
        reads = len(handle.sim.request_log) - before
    assert caught.value.last_status == "Deploying"
    # unconfirmed probes back off, and the reads stay a handful, not one per 0.15 s tick
    assert poller.stats.confirms >= 1
    assert 2 <= reads <= 9


def test_probes_and_confirmations_under_gevent(maas_sim_factory, tmp_path):
    """teuthology monkey-patches with gevent: the probes run in the waiting greenlets, the
    confirmations in the poller's, and nobody blocks anybody."""
    import json
    import subprocess
    import sys
    import textwrap

    handle = maas_sim_factory(clock=ScaledClock(200), ssh_root=tmp_path)
    hosts = ["smithi001", "smithi002", "smithi003", "smithi004"]
    script = textwrap.dedent(
        f"""
        from gevent import monkey
        monkey.patch_all()
        import json, os, gevent
        from teuthology_maas.endpoint import endpoint_for
        from teuthology_maas.maas.client import MaasClient
        from teuthology_maas.models import DEPLOY_FAILURE, DEPLOY_TARGET
        client = MaasClient({handle.api_url!r}, {handle.api_key!r})
        poller = endpoint_for(client=client).status_poller()
        poller.configure(min_interval=0.03, max_interval=0.3)
        machines = client.list_machines(hostname={hosts!r})
        for m in machines:
            client.deploy(m.system_id, distro_series="ubuntu/jammy")
        def wait(m):
            path = os.path.join({str(tmp_path)!r}, m.hostname, "boot-finished")
            return poller.wait(m.system_id, targets=DEPLOY_TARGET, failures=DEPLOY_FAILURE,
                               timeout=30, failure_interval=60.0, expected_duration=2.5,
                               probe=lambda: os.path.exists(path))
        jobs = [gevent.spawn(wait, m) for m in machines]
        gevent.joinall(jobs, timeout=30, raise_error=True)
        print(json.dumps({{"statuses": sorted(j.value.status_name for j in jobs),
                          "probes": poller.stats.probes, "confirms": poller.stats.confirms}}))
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=90)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["statuses"] == ["Deployed"] * len(hosts)
    assert result["probes"] > len(hosts)
    assert 1 <= result["confirms"] <= len(hosts)


def test_a_process_runs_only_a_few_probes_at_once_and_every_node_gets_its_turn():
    from teuthology_maas.fleet.poller import PROBES_IN_FLIGHT

    client = FakeMaas()
    nodes = [f"n{i}" for i in range(PROBES_IN_FLIGHT * 3)]
    for node in nodes:
        client.add(node, NodeStatus.DEPLOYING)
    poller = make_poller(client, min_interval=0.01, max_interval=0.05)
    running, most, tried = [0], [0], set()
    lock = threading.Lock()
    release = threading.Event()

    def probe_of(node: str):
        def probe() -> bool:  # an SSH login that takes a while
            with lock:
                running[0] += 1
                most[0] = max(most[0], running[0])
                tried.add(node)
            release.wait(0.05)
            with lock:
                running[0] -= 1
            return False

        return probe

    waiters = Waiters(poller)
    for node in nodes:
        # every node is in its finish window from the start
        waiters.start(node, timeout=10, failure_interval=30.0, expected_duration=0.01,
                      probe=probe_of(node))
    eventually(lambda: len(tried) == len(nodes), "every node probed")
    assert most[0] == PROBES_IN_FLIGHT
    assert poller.stats.probes_deferred > 0
    release.set()
    for node in nodes:
        client.set(node, NodeStatus.DEPLOYED)
    waiters.join()
    assert all(waiters.results[n].status is NodeStatus.DEPLOYED for n in nodes)
