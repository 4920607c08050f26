"""release(), abort(), destroy() and is_ready() against the simulator over HTTP."""

from __future__ import annotations

import pytest

from teuthology_maas.errors import MachineStateError, OwnershipError, ReleaseFailed

OURS_DEPLOYED = {
    "hostname": "smithi001",
    "status": "Deployed",
    "owner": "teuthology",
    "osystem": "ubuntu",
    "distro_series": "jammy",
    "power_state": "on",
}


def erased(lab, since_events: int = 0) -> bool:
    events = lab.sim.events_for("smithi001")
    return any(e["type"] == "Erasing disk" for e in events[: len(events) - since_events])


def assert_free(lab):
    state = lab.state("smithi001")
    assert state["status_name"] == "Ready", state["status_message"]
    assert state["owner"] in (None, "")
    assert state["locked"] is False


def test_release_of_our_locked_deployed_machine_unlocks_and_erases_it(lab_factory):
    lab = lab_factory([{**OURS_DEPLOYED, "locked": True}], ssh=False)
    since = lab.mark()
    lab.provisioner().release()
    assert_free(lab)
    assert lab.posts("smithi001", since) == ["unlock", "release"]
    assert erased(lab)  # the default erase mode is quick


@pytest.mark.parametrize(("erase", "erases"), [("none", False), ("full", True), ("secure", True)])
def test_release_uses_the_configured_erase_mode(lab_factory, erase, erases):
    lab = lab_factory([OURS_DEPLOYED], ssh=False, erase=erase)
    lab.provisioner().release()
    assert_free(lab)
    assert erased(lab) is erases


def test_release_erase_argument_overrides_the_config_for_one_release(lab_factory):
    lab = lab_factory([OURS_DEPLOYED], ssh=False, erase="quick")
    lab.provisioner().release(erase="none")
    assert_free(lab)
    assert not erased(lab)


@pytest.mark.parametrize(
    "machine",
    [
        {"hostname": "smithi001"},  # Ready
        {"hostname": "smithi001", "status": "New"},
        {"hostname": "smithi001", "status": "Allocated"},  # allocated to nobody
    ],
)
def test_release_of_a_free_machine_is_a_no_op(lab_factory, machine):
    lab = lab_factory([machine], ssh=False)
    before = lab.state("smithi001")["status_name"]
    since = lab.mark()
    lab.provisioner().release()
    assert lab.posts(since=since) == []
    assert lab.state("smithi001")["status_name"] == before


def test_release_of_an_allocated_machine_gives_it_back(lab_factory):
    lab = lab_factory([{"hostname": "smithi001", "status": "Allocated", "owner": "teuthology"}])
    lab.provisioner().release()
    assert_free(lab)


def test_release_of_a_deploying_machine_aborts_first(lab_factory):
    lab = lab_factory(ssh=False)
    lab.sim.faults.add("deploy_stuck", machine="smithi001")
    system_id = lab.state("smithi001")["system_id"]
    lab.client.deploy(system_id, distro_series="ubuntu/jammy")
    since = lab.mark()
    lab.provisioner().destroy()
    assert lab.posts("smithi001", since) == ["abort", "release"]
    assert_free(lab)


def test_release_waits_for_a_release_already_under_way(lab_factory):
    lab = lab_factory([OURS_DEPLOYED], ssh=False, timings={"disk_erasing_quick": 200.0})
    system_id = lab.state("smithi001")["system_id"]
    lab.client.release(system_id, erase=True, quick_erase=True)
    assert lab.state("smithi001")["status_name"] == "Disk erasing"
    since = lab.mark()
    lab.provisioner().release()
    assert lab.posts(since=since) == []
    assert_free(lab)


def test_release_refuses_a_machine_of_another_user_and_leaves_it_alone(lab_factory):
    lab = lab_factory([{**OURS_DEPLOYED, "owner": "alice", "locked": True}], ssh=False)
    since = lab.mark()
    with pytest.raises(OwnershipError, match="alice"):
        lab.provisioner(client=lab.client_as("admin")).release()
    assert lab.posts(since=since) == []
    state = lab.state("smithi001")
    assert (state["status_name"], state["owner"], state["locked"]) == ("Deployed", "alice", True)


def test_release_refuses_a_broken_machine(lab_factory):
    lab = lab_factory([{"hostname": "smithi001", "status": "Broken", "owner": "teuthology"}])
    with pytest.raises(MachineStateError, match="Broken"):
        lab.provisioner().release()
    assert lab.state("smithi001")["status_name"] == "Broken"


@pytest.mark.parametrize(
    ("fault", "final"),
    [("release_fail", "Releasing failed"), ("erase_fail", "Failed disk erasing")],
)
def test_failed_release_raises_with_maas_explanation(lab_factory, fault, final):
    lab = lab_factory([OURS_DEPLOYED], ssh=False)
    lab.sim.faults.add(fault, machine="smithi001")
    with pytest.raises(ReleaseFailed) as info:
        lab.provisioner().release()
    text = str(info.value)
    assert final in text
    assert "smithi001" in text
    assert "last events:" in text
    assert lab.state("smithi001")["status_name"] == final


def test_a_failed_release_can_be_retried_once_maas_recovers(lab_factory):
    lab = lab_factory([OURS_DEPLOYED], ssh=False)
    lab.sim.faults.add("erase_fail", machine="smithi001", times=1)
    with pytest.raises(ReleaseFailed):
        lab.provisioner().release()
    lab.provisioner().release()
    assert_free(lab)


@pytest.mark.parametrize(
    ("erase", "ladder"),
    [
        ("none", ["power_off", "mark_broken", "mark_fixed"]),
        ("quick", ["power_off", "abort", "mark_broken", "mark_fixed"]),
    ],
)
def test_stuck_release_climbs_the_recovery_ladder_then_reports(lab_factory, erase, ladder):
    lab = lab_factory([OURS_DEPLOYED], ssh=False, release_timeout=0.5, erase=erase)
    lab.sim.faults.add("release_stuck", machine="smithi001")
    since = lab.mark()
    with pytest.raises(ReleaseFailed) as info:
        lab.provisioner().release()
    text = str(info.value)
    assert "timed out" in text
    assert "Disk erasing" in text if erase == "quick" else "Releasing" in text
    assert [op for op in lab.posts("smithi001", since) if op != "release"] == ladder
    # mark_fixed needs an admin: with the lab's non-admin key the node waits, Broken, for one.
    assert "mark_fixed (refused" in text
    assert "needs an operator" in text and "mark it fixed" in text
    assert lab.state("smithi001")["status_name"] == "Broken"


def test_stuck_release_with_an_admin_key_ends_ready_but_is_still_reported(lab_factory):
    lab = lab_factory([{**OURS_DEPLOYED, "owner": "admin"}], ssh=False, release_timeout=0.5)
    admin = lab.client_as("admin")
    lab.sim.faults.add("release_stuck", machine="smithi001")
    with pytest.raises(ReleaseFailed, match="power control") as info:
        lab.provisioner(client=admin, config=lab.reconfigured(release_timeout=0.5)).release()
    assert "mark_broken, mark_fixed" in str(info.value)
    assert_free(lab)


def test_abort_stops_a_deployment_and_leaves_the_machine_allocated(lab_factory):
    lab = lab_factory(ssh=False)
    lab.sim.faults.add("deploy_stuck", machine="smithi001")
    system_id = lab.state("smithi001")["system_id"]
    lab.client.deploy(system_id, distro_series="ubuntu/jammy")
    lab.provisioner().abort()
    state = lab.state("smithi001")
    assert (state["status_name"], state["owner"]) == ("Allocated", "teuthology")
    since = lab.mark()
    lab.provisioner().abort()  # nothing in flight any more: a no-op
    assert lab.posts(since=since) == []


def test_is_ready_only_for_our_deployed_reachable_machine_of_the_requested_os(lab_factory):
    lab = lab_factory()
    assert lab.provisioner().is_ready() is False  # Ready, not deployed
    lab.provisioner().create()
    assert lab.provisioner().is_ready() is True
    assert lab.provisioner(os_version="24.04").is_ready() is False  # another OS
    assert lab.provisioner("smithi404").is_ready() is False  # no such machine
    lab.ssh.install_key("smithi001", "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKnotthekey nobody")
    assert lab.provisioner(config=lab.reconfigured(ssh_timeout=1.0)).is_ready() is False


def test_lost_release_answer_is_not_followed_by_a_second_release(lab_factory):
    lab = lab_factory([OURS_DEPLOYED], ssh=False)
    lab.sim.faults.add("drop", op="release", when="after", times=1)
    since = lab.mark()
    lab.provisioner().release()
    assert_free(lab)
    assert lab.posts("smithi001", since).count("release") == 1


def test_provisioners_without_a_client_share_one_and_ask_whoami_once(lab_factory):
    from teuthology_maas.node.provisioner import MaasProvisioner

    lab = lab_factory(
        [
            {"hostname": "smithi001"},
            {**OURS_DEPLOYED, "hostname": "smithi002"},
        ],
        ssh=False,
    )
    first = MaasProvisioner("smithi001", config=lab.config)
    second = MaasProvisioner("smithi002", config=lab.config)
    assert first.client is second.client
    first.release()
    second.release()
    whoami = [r for r in lab.sim.request_log if r.op == "whoami"]
    assert len(whoami) == 1
    assert lab.state("smithi002")["status_name"] == "Ready"


@pytest.mark.parametrize("status", ["Deployed", "Deploying"])
def test_release_without_waiting_only_requests_it(lab_factory, status):
    """What the adapter's exit hook uses: the release is sent (a Deploying node is released
    directly, without an abort to wait for) and MAAS finishes it by itself."""
    import time

    lab = lab_factory([{**OURS_DEPLOYED, "status": status, "locked": True}], ssh=False)
    since = lab.mark()
    lab.provisioner().release(wait=False)
    assert lab.posts("smithi001", since) == ["unlock", "release"]
    deadline = time.monotonic() + 20
    while lab.state("smithi001")["status_name"] != "Ready" and time.monotonic() < deadline:
        time.sleep(0.02)
    assert_free(lab)
