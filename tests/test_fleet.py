"""The shared status poller against a small in-memory stand-in for MaasClient (native threads).

Behaviour over real HTTP against the simulator is in test_fleet_sim.py; the same poller under
gevent is in test_fleet_gevent.py."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

import pytest
import requests

from teuthology_maas import fleet
from teuthology_maas.errors import (
    MaasAuthError,
    MaasNotFound,
    MaasTimeout,
    MaasUnavailable,
    MachineNotFound,
)
from teuthology_maas.fleet.policy import TickPolicy
from teuthology_maas.models import DEPLOY_FAILURE, DEPLOY_TARGET, Machine, NodeStatus

FAST = 0.01
SLOW = 0.05


class FakeMaas:
    """Answers list_machines/get_machine from a dict; records every call; injects errors."""

    def __init__(self, base_url: str = "http://127.0.0.1:1/MAAS/api/2.0/", key: str = "ck"):
        self.base_url = base_url
        self.api_key = f"{key}:tk:secret-never-shown"
        self._lock = threading.Lock()
        self.machines: dict[str, dict] = {}
        self.calls: list[tuple[str, tuple[str, ...]]] = []
        self.list_errors: list[BaseException] = []
        self.hidden_from_list: set[str] = set()
        self.list_started = threading.Event()

    def add(self, system_id: str, status: NodeStatus = NodeStatus.DEPLOYING, message=None):
        with self._lock:
            self.machines[system_id] = {
                "system_id": system_id,
                "hostname": f"host-{system_id}",
                "status": int(status),
                "status_message": message,
            }

    def set(self, system_id: str, status: NodeStatus, message=None):
        with self._lock:
            self.machines[system_id].update(status=int(status), status_name=status.label,
                                            status_message=message)

    def list_machines(self, *, id: Sequence[str]) -> list[Machine]:
        with self._lock:
            self.calls.append(("list", tuple(id)))
            self.list_started.set()
            if self.list_errors:
                raise self.list_errors.pop(0)
            return [
                Machine.from_json(self.machines[s])
                for s in id
                if s in self.machines and s not in self.hidden_from_list
            ]

    def get_machine(self, system_id: str) -> Machine:
        with self._lock:
            self.calls.append(("get", (system_id,)))
            if system_id not in self.machines:
                raise MaasNotFound("No Machine matches the given query.", http_status=404,
                                   maas_message="No Machine matches the given query.")
            return Machine.from_json(self.machines[system_id])

    def list_calls(self) -> list[tuple[str, ...]]:
        with self._lock:
            return [ids for kind, ids in self.calls if kind == "list"]


def make_poller(client: FakeMaas, **kwargs) -> fleet.StatusPoller:
    kwargs.setdefault("min_interval", FAST)
    kwargs.setdefault("max_interval", SLOW)
    return fleet.StatusPoller(client, **kwargs)


def eventually(predicate, what: str, limit: float = 5.0) -> None:
    """Wait for a condition the code under test brings about asynchronously."""
    deadline = time.monotonic() + limit
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened: {what}")
        time.sleep(0.002)


class Waiters:
    """Runs poller.wait() for several machines in threads and collects what each got."""

    def __init__(self, poller: fleet.StatusPoller):
        self.poller = poller
        self.results: dict[str, object] = {}
        self.threads: list[threading.Thread] = []

    def start(self, system_id: str, label: str | None = None, **kwargs) -> None:
        label = label or system_id
        kwargs.setdefault("targets", DEPLOY_TARGET)
        kwargs.setdefault("failures", DEPLOY_FAILURE)
        kwargs.setdefault("timeout", 10.0)

        def run() -> None:
            try:
                self.results[label] = self.poller.wait(system_id, **kwargs)
            except Exception as exc:
                self.results[label] = exc

        thread = threading.Thread(target=run)
        thread.start()
        self.threads.append(thread)

    def join(self) -> dict[str, object]:
        for thread in self.threads:
            thread.join(15)
            assert not thread.is_alive(), "a waiter never returned"
        return self.results


def test_every_waiter_shares_one_list_request_per_tick_and_wakes_on_target():
    client = FakeMaas()
    ids = [f"m{i:02d}" for i in range(20)]
    for system_id in ids:
        client.add(system_id)
    poller = make_poller(client)
    waiters = Waiters(poller)
    for system_id in ids:
        waiters.start(system_id)
    eventually(lambda: poller.waiting == 20, "all 20 waiters registered")
    seen = len(client.list_calls())
    eventually(lambda: len(client.list_calls()) > seen + 1, "two more ticks")
    full_tick = client.list_calls()[seen + 1]
    assert sorted(full_tick) == ids  # one request asks about every waiting machine

    for system_id in ids[:10]:
        client.set(system_id, NodeStatus.DEPLOYED)
    eventually(lambda: len(waiters.results) == 10, "the first ten woke")
    assert poller.waiting == 10
    for system_id in ids[10:]:
        client.set(system_id, NodeStatus.DEPLOYED)
    results = waiters.join()
    assert {sid: r.status for sid, r in results.items()} == dict.fromkeys(ids, NodeStatus.DEPLOYED)
    # Once the first ten were done nobody asked about them any more.
    later = client.list_calls()[-1]
    assert set(later) <= set(ids[10:])
    assert all(kind == "list" for kind, _ in client.calls)


def test_large_sets_are_asked_for_in_chunks():
    client = FakeMaas()
    ids = [f"c{i:02d}" for i in range(20)]
    for system_id in ids:
        client.add(system_id)
    poller = make_poller(client, chunk_size=7)
    waiters = Waiters(poller)
    for system_id in ids:
        waiters.start(system_id)
    eventually(lambda: poller.waiting == 20, "all registered")
    seen = len(client.list_calls())
    eventually(lambda: len(client.list_calls()) >= seen + 6, "two full ticks")
    for system_id in ids:
        client.set(system_id, NodeStatus.DEPLOYED)
    waiters.join()
    sizes = [len(ids) for ids in client.list_calls()[seen : seen + 6]]
    # a tick may have started before the last waiter registered; a later one is whole
    assert [7, 7, 6] in [sizes[i : i + 3] for i in range(4)]
    assert max(len(c) for c in client.list_calls()) <= 7


def test_a_failure_status_ends_the_wait_with_the_machine_for_the_caller_to_judge():
    client = FakeMaas()
    client.add("f1")
    poller = make_poller(client)
    waiters = Waiters(poller)
    waiters.start("f1")
    eventually(lambda: client.list_calls(), "first poll")
    client.set("f1", NodeStatus.FAILED_DEPLOYMENT, "Marking node failed - Installation failed")
    machine = waiters.join()["f1"]
    assert isinstance(machine, Machine)
    assert machine.status is NodeStatus.FAILED_DEPLOYMENT
    assert machine.status_message == "Marking node failed - Installation failed"


def test_timeout_names_the_machine_and_what_maas_showed_last():
    client = FakeMaas()
    client.add("t1", NodeStatus.DEPLOYING, "Installing OS")
    poller = make_poller(client)
    with pytest.raises(MaasTimeout) as caught:
        poller.wait("t1", targets=DEPLOY_TARGET, failures=DEPLOY_FAILURE, timeout=0.2)
    error = caught.value
    assert error.last_status == "Deploying"
    assert error.system_id == "t1"
    assert error.machine == "host-t1"
    assert "host-t1 (t1) did not reach Deployed within 0.2 s" in str(error)
    assert "'Deploying' (Installing OS)" in str(error)
    assert poller.waiting == 0


def test_on_change_reports_each_status_and_message_change_in_the_callers_thread():
    client = FakeMaas()
    client.add("c1", NodeStatus.DEPLOYING, "Performing PXE boot")
    poller = make_poller(client)
    seen: list[tuple[NodeStatus, str | None, int]] = []
    result: dict[str, object] = {}

    def on_change(machine: Machine) -> None:
        seen.append((machine.status, machine.status_message, threading.get_ident()))

    def run() -> None:
        result["ident"] = threading.get_ident()
        result["machine"] = poller.wait("c1", targets=DEPLOY_TARGET, failures=DEPLOY_FAILURE,
                                        timeout=10, on_change=on_change)

    thread = threading.Thread(target=run)
    thread.start()
    for message in ("Performing PXE boot", "Installing OS", "Rebooting"):
        client.set("c1", NodeStatus.DEPLOYING, message)
        eventually(lambda m=message: any(s[1] == m for s in seen), f"{message} reported")
    client.set("c1", NodeStatus.DEPLOYED, "Deployed")
    thread.join(10)
    assert [(s, m) for s, m, _ in seen] == [
        (NodeStatus.DEPLOYING, "Performing PXE boot"),
        (NodeStatus.DEPLOYING, "Installing OS"),
        (NodeStatus.DEPLOYING, "Rebooting"),
        (NodeStatus.DEPLOYED, "Deployed"),
    ]
    assert {ident for _, _, ident in seen} == {result["ident"]}


def test_an_exception_from_on_change_ends_only_that_wait():
    client = FakeMaas()
    client.add("e1")
    client.add("e2")
    poller = make_poller(client)
    waiters = Waiters(poller)

    def explode(machine: Machine) -> None:
        raise RuntimeError("callback broke")

    waiters.start("e1", on_change=explode)
    waiters.start("e2")
    eventually(lambda: "e1" in waiters.results, "e1 ended")
    client.set("e2", NodeStatus.DEPLOYED)
    results = waiters.join()
    assert isinstance(results["e1"], RuntimeError)
    assert results["e2"].status is NodeStatus.DEPLOYED


@pytest.mark.parametrize(
    "error",
    [
        MaasUnavailable("MAAS at http://127.0.0.1:1/ is unreachable"),
        requests.ConnectionError("connection refused"),
        ConnectionResetError("reset by peer"),
    ],
    ids=["unavailable", "requests-connection-error", "os-error"],
)
def test_transient_errors_are_survived_until_maas_answers(error):
    client = FakeMaas()
    client.add("u1", NodeStatus.DEPLOYED)
    client.list_errors = [error, error, error]
    poller = make_poller(client)
    machine = poller.wait("u1", targets=DEPLOY_TARGET, failures=DEPLOY_FAILURE, timeout=10)
    assert machine.status is NodeStatus.DEPLOYED
    assert len(client.list_calls()) == 4
    assert poller.stats.errors == 3


def test_a_timeout_while_maas_is_unreachable_says_so():
    client = FakeMaas()
    client.add("u2")
    client.list_errors = [MaasUnavailable("MAAS at http://127.0.0.1:1/ is unreachable")] * 1000
    poller = make_poller(client)
    with pytest.raises(MaasTimeout) as caught:
        poller.wait("u2", targets=DEPLOY_TARGET, timeout=0.2)
    assert caught.value.last_status is None
    assert "MAAS never answered about it" in str(caught.value)
    assert "the last poll of MAAS failed: MaasUnavailable: MAAS at" in str(caught.value)


def test_a_machine_missing_from_the_list_is_read_alone_before_being_believed_gone():
    client = FakeMaas()
    client.add("s1", NodeStatus.DEPLOYED)
    client.add("s2", NodeStatus.DEPLOYING)
    client.hidden_from_list = {"s1"}  # the spurious empty answer of a loaded MAAS
    poller = make_poller(client)
    machine = poller.wait("s1", targets=DEPLOY_TARGET, timeout=10)
    assert machine.status is NodeStatus.DEPLOYED
    assert ("get", ("s1",)) in client.calls
    assert poller.stats.rereads >= 1


def test_a_machine_that_maas_no_longer_knows_ends_the_wait():
    client = FakeMaas()
    poller = make_poller(client)
    with pytest.raises(MachineNotFound) as caught:
        poller.wait("gone", targets=DEPLOY_TARGET, timeout=10)
    assert "gone disappeared from MAAS" in str(caught.value)
    assert "No Machine matches the given query." in str(caught.value)


def test_a_refused_poll_is_raised_to_the_waiters_at_once():
    client = FakeMaas()
    client.add("a1")
    client.list_errors = [MaasAuthError("MAAS rejected the API key", http_status=401)]
    poller = make_poller(client)
    with pytest.raises(MaasAuthError):
        poller.wait("a1", targets=DEPLOY_TARGET, timeout=10)
    assert len(client.list_calls()) == 1


def test_the_thread_stops_when_nobody_waits_and_starts_again_on_demand():
    client = FakeMaas()
    client.add("r1", NodeStatus.DEPLOYED)
    poller = make_poller(client)
    assert not poller.running
    poller.wait("r1", targets=DEPLOY_TARGET, timeout=10)
    eventually(lambda: not poller.running, "the poller thread ended")
    calls = len(client.list_calls())
    time.sleep(SLOW * 3)
    assert len(client.list_calls()) == calls  # no polling while nobody waits
    client.set("r1", NodeStatus.RELEASING)
    waiters = Waiters(poller)
    waiters.start("r1", targets={NodeStatus.READY}, failures={NodeStatus.FAILED_RELEASING})
    eventually(lambda: len(client.list_calls()) > calls, "a new thread polls")
    client.set("r1", NodeStatus.READY)
    assert waiters.join()["r1"].status is NodeStatus.READY


class _Patient(TickPolicy):
    """A policy that would wait a minute before every poll."""

    def interval_for(self, timing, now, history):
        return 60.0


def test_kick_polls_once_at_once_even_when_the_schedule_is_far_away():
    client = FakeMaas()
    client.add("k1", NodeStatus.DEPLOYING)
    poller = make_poller(client, policy=_Patient(FAST, 60.0))
    waiters = Waiters(poller)
    waiters.start("k1", timeout=20)
    eventually(lambda: poller.waiting == 1, "registered")
    time.sleep(0.05)
    assert client.list_calls() == []  # the schedule says a minute from now
    poller.kick()
    eventually(lambda: len(client.list_calls()) == 1, "the kicked poll")
    time.sleep(0.1)
    assert len(client.list_calls()) == 1  # one poll per kick, not a burst
    client.set("k1", NodeStatus.DEPLOYED)
    poller.kick()
    assert waiters.join()["k1"].status is NodeStatus.DEPLOYED
    assert len(client.list_calls()) == 2


def test_waits_of_the_same_machine_by_two_callers_both_end():
    client = FakeMaas()
    client.add("d1")
    poller = make_poller(client)
    waiters = Waiters(poller)
    waiters.start("d1", "deployed")
    waiters.start("d1", "deploying", targets={NodeStatus.DEPLOYING}, failures=())
    eventually(lambda: "deploying" in waiters.results, "the Deploying waiter returned")
    assert "deployed" not in waiters.results
    client.set("d1", NodeStatus.DEPLOYED)
    results = waiters.join()
    assert results["deploying"].status is NodeStatus.DEPLOYING
    assert results["deployed"].status is NodeStatus.DEPLOYED
    assert poller.waiting == 0


def test_invalid_arguments_are_refused_with_what_was_expected():
    poller = make_poller(FakeMaas())
    with pytest.raises(ValueError, match="targets must name at least one status"):
        poller.wait("x", targets=(), timeout=1)
    with pytest.raises(ValueError, match="0 < fast <= slow"):
        fleet.StatusPoller(FakeMaas(), min_interval=5, max_interval=1)
    with pytest.raises(ValueError, match="chunk_size must be >= 1"):
        fleet.StatusPoller(FakeMaas(), chunk_size=0)


def _wait_through_two_polls(client: FakeMaas, poller: fleet.StatusPoller, system_id: str,
                            *, kick: bool):
    seen = len(client.list_calls())

    def finish_later() -> None:
        eventually(lambda: len(client.list_calls()) >= seen + 2, "two polls of the running job")
        client.set(system_id, NodeStatus.DEPLOYED, "Deployed")

    finisher = threading.Thread(target=finish_later)
    finisher.start()
    if kick:
        poller.kick()  # what the provisioner does right after its deploy POST
    machine = poller.wait(system_id, targets=DEPLOY_TARGET, failures=DEPLOY_FAILURE, timeout=10)
    finisher.join(10)
    return machine


def test_only_waits_that_follow_an_action_teach_finish_times():
    client = FakeMaas()
    client.add("found-busy", NodeStatus.DEPLOYING, "Installing OS")
    client.add("ours", NodeStatus.DEPLOYING, "Deploying")
    poller = make_poller(client)
    # a machine found mid-deploy: its wait did not start with the deploy
    machine = _wait_through_two_polls(client, poller, "found-busy", kick=False)
    assert machine.status is NodeStatus.DEPLOYED
    assert poller.history.total(frozenset(DEPLOY_TARGET)) is None

    machine = _wait_through_two_polls(client, poller, "ours", kick=True)
    assert machine.status is NodeStatus.DEPLOYED
    assert poller.history.total(frozenset(DEPLOY_TARGET)) is not None


def test_reconfiguring_with_a_slowest_tick_below_the_fastest_keeps_polling_at_the_fastest():
    poller = make_poller(FakeMaas())
    poller.configure(min_interval=2.0, max_interval=1.0)
    assert (poller.policy.fast, poller.policy.slow) == (2.0, 2.0)


def test_a_poller_thread_that_cannot_start_leaves_no_waiter_behind(monkeypatch):
    client = FakeMaas()
    client.add("m1", NodeStatus.DEPLOYED)
    poller = make_poller(client)

    def refuse(self):
        raise RuntimeError("can't create new thread at interpreter shutdown")

    with monkeypatch.context() as patched:
        patched.setattr(threading.Thread, "start", refuse)
        with pytest.raises(fleet.PollerStartError) as caught:
            poller.wait("m1", targets=DEPLOY_TARGET, timeout=5.0)
    text = str(caught.value)
    assert "cannot wait for m1" in text
    assert "could not be started (RuntimeError: can't create new thread at interpreter shutdown)"\
        in text
    assert isinstance(caught.value.__cause__, RuntimeError)
    # No registration left behind: nobody waits, no thread is believed to run, nothing polled.
    assert poller.waiting == 0
    assert not poller.running
    assert client.calls == []
    # Once threads can start again, the next wait starts one and is served.
    assert poller.wait("m1", targets=DEPLOY_TARGET, timeout=5.0).status is NodeStatus.DEPLOYED
    eventually(lambda: not poller.running, "the poller thread ended with its last waiter")
