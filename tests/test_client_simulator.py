"""MaasClient against the MAAS simulator over loopback HTTP: the calls the provisioner makes,
MAAS's error answers mapped to typed errors, and injected faults retried (or not) as MAAS's
semantics demand."""

from __future__ import annotations

import time

import pytest

from teuthology_maas.errors import (
    MaasAuthError,
    MaasConflict,
    MaasNotFound,
    MaasOutcomeUnknown,
    MaasPermissionDenied,
    MaasUnavailable,
    NoMachineAvailable,
)
from teuthology_maas.maas.client import MaasClient, RetryPolicy
from teuthology_maas.models import NodeStatus

FAST = RetryPolicy(max_attempts=3, max_total=10.0, backoff_initial=0.01, backoff_max=0.05)


class RecordingSleep:
    def __init__(self) -> None:
        self.sleeps: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.sleeps.append(seconds)


@pytest.fixture
def sleep():
    return RecordingSleep()


@pytest.fixture
def client(maas_sim, sleep):
    with MaasClient.from_config(maas_sim.config(), retry=FAST, sleep=sleep) as c:
        yield c


def wait_for(client, system_id, wanted, *, limit=15.0):
    deadline = time.monotonic() + limit
    while True:
        machine = client.get_machine(system_id)
        if machine.status in wanted or time.monotonic() > deadline:
            return machine
        time.sleep(0.02)


def system_id_of(maas_sim, hostname):
    return maas_sim.sim.machine(hostname)["system_id"]


def test_account_and_region_calls(client, maas_sim):
    assert client.whoami()["username"] == "teuthology"
    assert client.username == "teuthology"
    assert client.version()["version"]
    assert client.get_config("default_distro_series")
    names = {resource.name for resource in client.boot_resources()}
    assert {"ubuntu/jammy", "rocky/9"} <= names


def test_a_whole_lifecycle(client, maas_sim):
    machines = client.list_machines(pool="smithi", status=NodeStatus.READY)
    assert [m.hostname for m in machines] == [f"smithi{i:03d}" for i in range(1, 7)]
    allocated = client.allocate(name="smithi003", agent_name="teuthology-maas", comment="job 1")
    assert allocated.status is NodeStatus.ALLOCATED and allocated.owner == "teuthology"
    sid = allocated.system_id
    client.set_owner_data(sid, {"teuthology_job": "1"})
    user_data = "#cloud-config\nssh_authorized_keys: ['ssh-ed25519 AAAA test']\n"
    deploying = client.deploy(sid, distro_series="ubuntu/jammy", user_data=user_data)
    assert deploying.status is NodeStatus.DEPLOYING
    assert maas_sim.sim.user_data(sid) == user_data.encode()  # decoded by MAAS as served
    deployed = wait_for(client, sid, {NodeStatus.DEPLOYED})
    assert deployed.status is NodeStatus.DEPLOYED
    assert deployed.owner_data.get("teuthology_job") == "1"
    assert client.lock(sid).locked
    with pytest.raises(MaasPermissionDenied):
        client.release(sid)  # locked machines refuse every change
    assert not client.unlock(sid).locked
    released = client.release(sid, erase=True, quick_erase=True, comment="job 1 done")
    assert released.status in {NodeStatus.RELEASING, NodeStatus.DISK_ERASING}
    assert wait_for(client, sid, {NodeStatus.READY}).status is NodeStatus.READY
    events = client.events(id=sid, level="DEBUG", limit=100)
    assert events and all(e.node == sid for e in events)
    ops = [r.op for r in maas_sim.sim.request_log if r.system_id == sid and r.method == "POST"]
    assert ops[:2] == ["set_owner_data", "deploy"]


def test_maas_refusals_are_typed(client, maas_sim):
    with pytest.raises(NoMachineAvailable) as no_machine:
        client.allocate(name="nosuchhost")
    assert "No available machine matches constraints" in no_machine.value.maas_message
    with pytest.raises(MaasNotFound) as not_found:
        client.get_machine("nosuch")
    assert not_found.value.maas_message == "No Machine matches the given query."
    sid = client.allocate(name="smithi001").system_id
    client.deploy(sid, distro_series="ubuntu/jammy")
    with pytest.raises(MaasConflict) as conflict:
        client.deploy(sid, distro_series="ubuntu/jammy")
    assert "Deploying" in conflict.value.maas_message


def test_another_users_machine_is_refused(maas_sim, client):
    sid = client.allocate(name="smithi002").system_id
    with MaasClient(maas_sim.url, maas_sim.key_for("alice"), retry=FAST) as alice:
        assert "smithi002" not in [m.hostname for m in alice.list_machines()]
        with pytest.raises(MaasPermissionDenied):
            alice.release(sid)


def test_wrong_secret_is_an_auth_error(maas_sim):
    consumer, token, _ = maas_sim.api_key.split(":")
    with MaasClient(maas_sim.url, f"{consumer}:{token}:WrongSecret", retry=FAST) as bad:
        with pytest.raises(MaasAuthError) as info:
            bad.whoami()
        assert bad.version()  # anonymous: still answers
    assert info.value.http_status == 401


def test_injected_503_with_retry_after_is_retried_for_a_read(maas_sim, sleep):
    maas_sim.sim.faults.add("error", status=503, retry_after=10, op="whoami", times=2)
    policy = RetryPolicy(max_attempts=3, max_total=60.0)
    with MaasClient.from_config(maas_sim.config(), retry=policy, sleep=sleep) as client:
        assert client.whoami()["username"] == "teuthology"
    assert sleep.sleeps == [10.0, 10.0]
    asked = [r for r in maas_sim.sim.request_log if r.op == "whoami"]
    assert [r.status for r in asked] == [503, 503, 200]


def test_injected_503_on_a_post_is_an_uncertain_outcome_not_a_resend(maas_sim, sleep):
    """MAAS (or a proxy in front of it) may answer 503 after applying a POST: the client says
    so, with the Retry-After, and leaves the re-read to the caller (the lifecycle)."""
    maas_sim.sim.faults.add("error", status=503, retry_after=10, op="allocate", times=1)
    with (
        MaasClient.from_config(maas_sim.config(), sleep=sleep) as client,
        pytest.raises(MaasOutcomeUnknown) as info,
    ):
        client.allocate(name="smithi004")
    assert (info.value.http_status, info.value.retry_after) == (503, 10.0)
    assert sleep.sleeps == []
    assert [r.status for r in maas_sim.sim.request_log if r.op == "allocate"] == [503]


def test_injected_db_conflict_409_is_uncertain_and_state_409_is_final(client, maas_sim, sleep):
    sid = system_id_of(maas_sim, "smithi005")
    maas_sim.sim.faults.add("error", status=409, retry_after=5, op="deploy", times=1)
    with pytest.raises(MaasOutcomeUnknown) as info:
        client.deploy(sid, distro_series="ubuntu/jammy")
    assert (info.value.http_status, info.value.retry_after) == (409, 5.0)
    with pytest.raises(MaasConflict):
        client.abort(system_id_of(maas_sim, "smithi006"))  # Ready: cannot abort, no retry
    assert sleep.sleeps == []


def test_post_dropped_after_it_was_applied_is_outcome_unknown(client, maas_sim):
    maas_sim.sim.faults.add("drop", op="allocate", when="after", times=1)
    with pytest.raises(MaasOutcomeUnknown) as info:
        client.allocate(name="smithi006")
    assert info.value.op == "allocate"
    # It was applied: re-reading the machine is how the caller finds out.
    assert maas_sim.sim.machine("smithi006")["status"] == NodeStatus.ALLOCATED
    # Not repeated: a second allocate would have taken another machine.
    owned = [m["hostname"] for m in maas_sim.sim.machines() if m.get("owner") == "teuthology"]
    assert owned == ["smithi006"]


def test_region_that_keeps_answering_503_is_unavailable(client, maas_sim, sleep):
    maas_sim.sim.faults.add("error", status=503, path="machines/")
    with pytest.raises(MaasUnavailable) as info:
        client.list_machines()
    assert len(sleep.sleeps) == FAST.max_attempts - 1
    assert "rack controller" in str(info.value)
