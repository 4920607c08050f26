"""Coalesced hostname lookups (Endpoint.lookup_hostname) over real HTTP against the simulator.

Native threads here; the same under gevent in a patched subprocess at the end. Where a test
needs callers to arrive while a lookup is in flight, the first request is held at a gate until
they have queued: the order is then certain instead of a race."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from teuthology_maas.config import MaasConfig
from teuthology_maas.endpoint import endpoint_for, forget_endpoints
from teuthology_maas.errors import MaasServerError, MachineNotFound
from teuthology_maas.fleet.lookup import HostnameLookups
from teuthology_maas.maas.client import MaasClient
from teuthology_maas.maas.retry import NO_RETRY
from teuthology_maas.node.provisioner import MaasProvisioner

HOSTS = [f"node{i:03d}" for i in range(20)]


@pytest.fixture(autouse=True)
def _fresh_registry():
    forget_endpoints()
    yield
    forget_endpoints()


@pytest.fixture
def lab(maas_sim_factory):
    machines = [{"hostname": h, "architecture": "amd64/generic"} for h in HOSTS]
    machines += [{"hostname": h, "architecture": "amd64/generic"} for h in ("twin", "twin-b")]
    handle = maas_sim_factory({"machines": machines})
    handle.twin_ids = sorted(handle.sim.system_id(h) for h in ("twin", "twin-b"))
    # MAAS does not stop two machines from carrying one hostname; the inventory does.
    handle.sim.update_machine("twin-b", hostname="twin")
    return handle


def eventually(predicate, what: str, limit: float = 10.0) -> None:
    deadline = time.monotonic() + limit
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened: {what}")
        time.sleep(0.001)


class GatedClient(MaasClient):
    """The real client; its first hostname lookup is held until `release` is set."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.release = threading.Event()
        self.held = threading.Event()
        self._first = True
        self._lock = threading.Lock()

    def list_machines(self, **kwargs):
        with self._lock:
            first, self._first = self._first, False
        if first and kwargs.get("hostname"):
            self.held.set()
            assert self.release.wait(20), "the gate was never opened"
        return super().list_machines(**kwargs)


def lookup_requests(sim, since: int = 0) -> list[list[str]]:
    """The hostnames each `GET machines/?hostname=...` asked for, in order."""
    return [
        r.param_list("hostname")
        for r in sim.request_log[since:]
        if r.method == "GET" and r.path.endswith("/machines/") and r.param_list("hostname")
    ]


def run_all(calls: dict[str, object]) -> dict[str, object]:
    """Run each zero-argument callable in its own thread; collect results or exceptions."""
    results: dict[str, object] = {}

    def run(label, call):
        try:
            results[label] = call()
        except Exception as exc:
            results[label] = exc

    threads = [threading.Thread(target=run, args=item) for item in calls.items()]
    for thread in threads:
        thread.start()
    return {"threads": threads, "results": results}


def join(started) -> dict[str, object]:
    for thread in started["threads"]:
        thread.join(30)
        assert not thread.is_alive()
    return started["results"]


def held_first(client: GatedClient, lookups: HostnameLookups, first, others: dict, queued: int):
    """Start `first`, hold its request in flight until `queued` callers wait, then let go."""
    leader = run_all({"first": first})
    assert client.held.wait(20)
    followers = run_all(others)
    eventually(lambda: lookups.waiting == queued, f"{queued} callers queued")
    client.release.set()
    return {**join(leader), **join(followers)}


def test_twenty_concurrent_lookups_take_two_requests_and_each_gets_its_machine(lab):
    client = GatedClient.from_config(lab.config())
    endpoint = endpoint_for(client=client)
    lookups = endpoint.hostname_lookups
    first, rest = HOSTS[0], HOSTS[1:]
    results = held_first(
        client,
        lookups,
        lambda: endpoint.lookup_hostname(first),
        {h: (lambda h=h: endpoint.lookup_hostname(h)) for h in rest},
        queued=len(rest),
    )
    # the lone first caller went at once, alone; everyone who came meanwhile shared one request
    asked = lookup_requests(lab.sim)
    assert len(asked) == 2
    assert asked[0] == [first]
    assert sorted(asked[1]) == sorted(rest)  # in the order the threads happened to arrive
    assert lookups.stats.requests == 2
    assert lookups.stats.lookups == len(HOSTS)
    for host in HOSTS:
        found = results["first" if host == first else host]
        assert [(m.hostname, m.system_id) for m in found] == [(host, lab.sim.system_id(host))]
    client.close()


def test_a_lone_lookup_is_sent_at_once_with_only_its_hostname(lab):
    with MaasClient.from_config(lab.config()) as client:
        before = len(lab.sim.request_log)
        endpoint = endpoint_for(client=client)
        found = endpoint.lookup_hostname("node007")
        lookups = endpoint.hostname_lookups
        assert [m.system_id for m in found] == [lab.sim.system_id("node007")]
        assert lookup_requests(lab.sim, before) == [["node007"]]
        assert (lookups.stats.requests, lookups.waiting, lookups.in_flight) == (1, 0, False)
        # and the next lone one is again a request of its own, nobody to wait for
        endpoint.lookup_hostname("node008")
        assert lookup_requests(lab.sim, before) == [["node007"], ["node008"]]


def test_a_large_batch_is_chunked_and_still_one_answer_per_caller(lab):
    client = GatedClient.from_config(lab.config())
    lookups = HostnameLookups(chunk_size=6)
    results = held_first(
        client,
        lookups,
        lambda: lookups.machines(client, HOSTS[0]),
        {h: (lambda h=h: lookups.machines(client, h)) for h in HOSTS[1:]},
        queued=19,
    )
    asked = lookup_requests(lab.sim)
    assert asked[0] == [HOSTS[0]]
    assert [len(names) for names in asked[1:]] == [6, 6, 6, 1]
    assert sorted(n for names in asked[1:] for n in names) == HOSTS[1:]
    for host in HOSTS[1:]:
        assert [m.system_id for m in results[host]] == [lab.sim.system_id(host)]
    client.close()


def test_duplicates_and_missing_names_are_told_apart_per_hostname_in_one_batch(lab):
    cfg = lab.config(lookup_retries=1)
    client = GatedClient.from_config(cfg)
    endpoint = endpoint_for(client=client)
    lookups = endpoint.hostname_lookups

    def machine_of(name):
        return lambda: MaasProvisioner(name, config=cfg, client=client).machine()

    results = held_first(
        client,
        lookups,
        machine_of("node000"),
        {name: machine_of(name) for name in ("twin", "nosuch", "node001", "node002")},
        queued=4,
    )
    twin = results["twin"]
    assert isinstance(twin, MachineNotFound)
    assert "2 MAAS machines have hostname 'twin'" in str(twin)
    assert all(system_id in str(twin) for system_id in lab.twin_ids)
    assert "expected exactly one" in str(twin)
    missing = results["nosuch"]
    assert isinstance(missing, MachineNotFound)
    assert "no machine with hostname 'nosuch'" in str(missing)
    assert "after 2 lookups" in str(missing)
    for name in ("node000", "node001", "node002"):
        assert results["first" if name == "node000" else name].system_id == lab.sim.system_id(
            name
        )
    asked = lookup_requests(lab.sim)
    # one lone request, one batch of four, then the empty answer's retry of its own
    assert asked[0] == ["node000"]
    assert sorted(asked[1]) == ["node001", "node002", "nosuch", "twin"]
    assert asked[2:] == [["nosuch"]]
    client.close()


def test_a_failed_batch_request_fails_each_of_its_callers(lab):
    client = GatedClient.from_config(lab.config(), retry=NO_RETRY)
    endpoint = endpoint_for(client=client)
    lookups = endpoint.hostname_lookups
    # the lone first request succeeds; the batch behind it meets a 500
    lab.sim.faults.add("error", method="GET", path="machines/", status=500, times=1,
                       skip=1)
    results = held_first(
        client,
        lookups,
        lambda: endpoint.lookup_hostname("node000"),
        {h: (lambda h=h: endpoint.lookup_hostname(h)) for h in ("node001", "node002")},
        queued=2,
    )
    assert [m.hostname for m in results["first"]] == ["node000"]
    for name in ("node001", "node002"):
        assert isinstance(results[name], MaasServerError)
    assert lookups.stats.requests == 2
    # the next caller asks afresh
    assert [m.hostname for m in endpoint.lookup_hostname("node001")] == ["node001"]
    client.close()


def test_a_batch_refused_with_400_is_asked_name_by_name(lab):
    client = GatedClient.from_config(lab.config(), retry=NO_RETRY)
    endpoint = endpoint_for(client=client)
    lookups = endpoint.hostname_lookups
    lab.sim.faults.add("error", method="GET", path="machines/", status=400, times=1, skip=1)
    others = ("node001", "node002", "node003")
    results = held_first(
        client,
        lookups,
        lambda: endpoint.lookup_hostname("node000"),
        {h: (lambda h=h: endpoint.lookup_hostname(h)) for h in others},
        queued=3,
    )
    for name in others:
        assert [m.system_id for m in results[name]] == [lab.sim.system_id(name)]
    asked = lookup_requests(lab.sim)
    assert asked[0] == ["node000"]
    assert sorted(asked[1]) == sorted(others)  # the refused batch
    assert sorted(names[0] for names in asked[2:]) == sorted(others)
    assert all(len(names) == 1 for names in asked[2:])
    client.close()


def test_one_key_s_lookups_are_never_batched_with_another_user_s():
    def Named(api_url, key):
        return MaasConfig.from_mapping({"api_url": api_url, "api_key": f"{key}:tk:ts"})

    a = endpoint_for(Named("http://127.0.0.1:1/MAAS/", "alice")).hostname_lookups
    b = endpoint_for(Named("http://127.0.0.1:1/MAAS/", "bob")).hostname_lookups
    c = endpoint_for(Named("http://127.0.0.1:2/MAAS/", "alice")).hostname_lookups
    again = endpoint_for(Named("http://127.0.0.1:1/MAAS/", "alice")).hostname_lookups
    assert a is again
    assert len({id(a), id(b), id(c)}) == 3


def test_an_interrupted_sender_leaves_its_batch_to_be_asked_again():
    class Interrupting:
        base_url = "http://127.0.0.1:1/MAAS/api/2.0/"

        def __init__(self):
            self.calls: list[list[str]] = []
            self.entered = threading.Event()
            self.go = threading.Event()

        def list_machines(self, *, hostname):
            self.calls.append(list(hostname))
            if len(self.calls) == 1:
                self.entered.set()
                assert self.go.wait(20)
                raise KeyboardInterrupt
            return []

    client = Interrupting()
    lookups = HostnameLookups()
    outcome: dict[str, object] = {}

    def first():
        try:
            lookups.machines(client, "a")
        except KeyboardInterrupt:
            outcome["a"] = "interrupted"

    def second():
        outcome["b"] = lookups.machines(client, "b")

    threads = [threading.Thread(target=first)]
    threads[0].start()
    assert client.entered.wait(20)
    threads.append(threading.Thread(target=second))
    threads[1].start()
    eventually(lambda: lookups.waiting == 1, "b queued")
    client.go.set()
    for thread in threads:
        thread.join(20)
    assert outcome == {"a": "interrupted", "b": []}
    assert client.calls == [["a"], ["b"]]
    assert (lookups.waiting, lookups.in_flight) == (0, False)


def test_lookups_coalesce_under_gevent(lab):
    script = textwrap.dedent(
        f"""
        from gevent import monkey
        monkey.patch_all()
        import json, gevent
        from teuthology_maas.endpoint import endpoint_for
        from teuthology_maas.maas.client import MaasClient
        client = MaasClient({lab.api_url!r}, {lab.api_key!r})
        hosts = {HOSTS!r}
        endpoint = endpoint_for(client=client)
        jobs = [gevent.spawn(endpoint.lookup_hostname, h) for h in hosts]
        gevent.joinall(jobs, timeout=30, raise_error=True)
        found = {{h: [[m.hostname, m.system_id] for m in job.value]
                 for h, job in zip(hosts, jobs)}}
        print(json.dumps({{"found": found,
                          "requests": endpoint.hostname_lookups.stats.requests}}))
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr[-3000:]
    verdict = json.loads(done.stdout.strip().splitlines()[-1])
    assert verdict["found"] == {h: [[h, lab.sim.system_id(h)]] for h in HOSTS}
    asked = lookup_requests(lab.sim)
    # the first greenlet's request went alone and at once; the other 19 queued behind it
    assert asked[0] == [HOSTS[0]]
    assert len(asked) == verdict["requests"] <= 2
    assert sorted(n for names in asked for n in names) == sorted(HOSTS)
