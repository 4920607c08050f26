"""create() against the simulator over HTTP, with machines backed by real loopback sshd servers.

Every test asserts the machine's final state as MAAS shows it (sim.machine) and, where nothing
may be touched, that no state-changing request reached MAAS.
"""

from __future__ import annotations

import pytest

from teuthology_maas.errors import (
    DeploymentFailed,
    ImageNotAvailable,
    MachineNotFound,
    MachineStateError,
    OwnershipError,
    UserDataError,
)

# Statuses as sim.machine() shows them.
READY, ALLOCATED, DEPLOYED = "Ready", "Allocated", "Deployed"


def assert_deployed_by_us(lab, hostname="smithi001", distro_series="jammy"):
    state = lab.state(hostname)
    assert state["status_name"] == DEPLOYED
    assert state["owner"] == "teuthology"
    assert state["locked"] is True
    assert state["distro_series"] == distro_series
    return state


def assert_free(lab, hostname="smithi001"):
    state = lab.state(hostname)
    assert state["status_name"] == READY, state["status_message"]
    assert state["owner"] in (None, "")
    assert state["locked"] is False
    return state


def test_ready_machine_is_allocated_stamped_deployed_locked_and_verified(lab_factory):
    lab = lab_factory()
    since = lab.mark()
    lab.provisioner("ubuntu@smithi001.front.sepia.ceph.com", owner="me@control").create()

    state = assert_deployed_by_us(lab)
    assert state["osystem"] == "ubuntu"
    assert state["owner_data"]["teuthology_owner"] == "me@control"
    assert state["owner_data"]["agent"] == "teuthology-maas"
    assert lab.posts("smithi001", since) == ["allocate", "set_owner_data", "deploy", "lock"]
    served = lab.sim.user_data(state["system_id"]).decode()
    assert served.startswith("#cloud-config")
    assert lab.ssh.public_key.split()[1] in served


def test_allocated_to_us_is_deployed_without_a_new_allocation(lab_factory):
    lab = lab_factory([{"hostname": "smithi001", "status": "Allocated", "owner": "teuthology"}])
    since = lab.mark()
    lab.provisioner().create()
    assert_deployed_by_us(lab)
    assert "allocate" not in lab.posts("smithi001", since)


@pytest.mark.parametrize("status", ["Deployed", "Failed deployment"])
def test_our_deployed_or_failed_machine_is_released_then_freshly_deployed(lab_factory, status):
    lab = lab_factory(
        [
            {
                "hostname": "smithi001",
                "status": status,
                "owner": "teuthology",
                "osystem": "ubuntu",
                "distro_series": "focal",
                "locked": status == "Deployed",
            }
        ]
    )
    since = lab.mark()
    lab.provisioner(os_version="24.04").create()
    assert_deployed_by_us(lab, distro_series="noble")
    ops = lab.posts("smithi001", since)
    assert ops.index("release") < ops.index("allocate") < ops.index("deploy")
    assert ("unlock" in ops) == (status == "Deployed")


def test_our_deploying_machine_is_aborted_then_deployed(lab_factory):
    lab = lab_factory(
        # The simulator carries on with a deployment a machine starts in: slow enough that it
        # is still Deploying when the provisioner looks (0.6 s real at this scale).
        [{"hostname": "smithi001", "status": "Deploying", "owner": "teuthology",
          "osystem": "ubuntu", "distro_series": "focal", "timings": {"deploying": 120}}],
    )  # fmt: skip
    since = lab.mark()
    lab.provisioner().create()
    assert_deployed_by_us(lab)
    ops = lab.posts("smithi001", since)
    assert ops.index("abort") < ops.index("deploy")
    assert "release" not in ops


@pytest.mark.parametrize(("erase", "status"), [("none", "Releasing"), ("quick", "Disk erasing")])
def test_a_release_in_progress_is_waited_for(lab_factory, erase, status):
    lab = lab_factory(
        [
            {
                "hostname": "smithi001",
                "status": "Deployed",
                "owner": "teuthology",
                "osystem": "ubuntu",
                "distro_series": "focal",
                "power_state": "on",
            }
        ],
        timings={"releasing": 200.0, "disk_erasing_quick": 200.0},
    )
    system_id = lab.state("smithi001")["system_id"]
    lab.client.release(system_id, erase=erase != "none", quick_erase=erase == "quick")
    assert lab.state("smithi001")["status_name"] == status
    since = lab.mark()
    lab.provisioner().create()
    assert_deployed_by_us(lab)
    assert lab.posts("smithi001", since)[:1] == ["allocate"]


@pytest.mark.parametrize(
    "machine",
    [
        {"status": "Broken", "owner": "teuthology"},
        {"status": "Commissioning"},
        {"status": "Testing"},
        {"status": "Rescue mode"},
        {"status": "New"},
    ],
)
def test_operator_states_are_refused_without_touching_the_machine(lab_factory, machine):
    lab = lab_factory([{"hostname": "smithi001", **machine}], ssh=False)
    before = lab.state("smithi001")
    since = lab.mark()
    with pytest.raises(MachineStateError) as info:
        lab.provisioner().create()
    assert machine["status"] in str(info.value)
    assert "smithi001" in str(info.value)
    assert lab.posts(since=since) == []
    assert lab.state("smithi001")["status_name"] == before["status_name"]


def test_a_machine_owned_by_another_user_is_refused(lab_factory):
    lab = lab_factory(
        [{"hostname": "smithi001", "status": "Deployed", "owner": "alice",
          "osystem": "ubuntu", "distro_series": "jammy"}],
        ssh=False,
    )  # fmt: skip
    since = lab.mark()
    # An admin key sees alice's machine and is told whose it is ...
    admin = lab.client_as("admin")
    with pytest.raises(OwnershipError, match="alice"):
        lab.provisioner(client=admin).create()
    # ... a non-admin key cannot see it at all, and the error says why that may be.
    with pytest.raises(MachineNotFound, match="another user"):
        lab.provisioner().create()
    assert lab.posts(since=since) == []
    state = lab.state("smithi001")
    assert (state["status_name"], state["owner"]) == (DEPLOYED, "alice")


def test_a_machine_locked_by_someone_else_is_refused(lab_factory):
    lab = lab_factory(
        [{"hostname": "smithi001", "status": "Deployed", "owner": "alice", "locked": True,
          "osystem": "ubuntu", "distro_series": "jammy"}],
        ssh=False,
    )  # fmt: skip
    since = lab.mark()
    with pytest.raises(OwnershipError, match="alice"):
        lab.provisioner(client=lab.client_as("admin")).create()
    assert lab.posts(since=since) == []
    assert lab.state("smithi001")["locked"] is True


def test_an_unknown_or_ambiguous_hostname_is_an_error_naming_it(lab_factory):
    lab = lab_factory([{"hostname": "smithi001"}], ssh=False)
    with pytest.raises(MachineNotFound, match="'smithi099'"):
        lab.provisioner("smithi099.front.sepia.ceph.com").create()
    assert lab.posts() == []


def test_missing_image_fails_before_any_state_change_listing_what_is_synced(lab_factory):
    lab = lab_factory([{"hostname": "smithi001", "architecture": "arm64/generic"}], ssh=False)
    since = lab.mark()
    with pytest.raises(ImageNotAvailable) as info:
        lab.provisioner(os_version="24.04").create()
    assert "ubuntu/noble" in str(info.value)
    assert "ubuntu/jammy" in info.value.available
    assert lab.posts(since=since) == []
    # The shared copy of the image list said "missing": MAAS itself was asked again.
    assert sum("boot-resources" in r.path for r in lab.sim.request_log[since:]) == 2
    assert_free(lab)


def test_bad_template_fails_before_any_state_change(lab_factory, tmp_path):
    template = tmp_path / "ubuntu-22.04.yaml"
    template.write_text("#cloud-config\nhostname: {{ hostname }}\npackages: [{{ no_such_var }}]\n")
    lab = lab_factory(ssh=False, user_data=str(tmp_path / "{os_type}-{os_version}.yaml"))
    since = lab.mark()
    with pytest.raises(UserDataError) as info:
        lab.provisioner().create()
    assert "no_such_var" in str(info.value)
    assert info.value.line == 3
    assert lab.posts(since=since) == []
    assert_free(lab)


def test_failed_deployment_is_cleaned_up_and_explained(lab_factory):
    lab = lab_factory(ssh=False)
    lab.sim.faults.add("deploy_fail", machine="smithi001", reason="curtin: disk /dev/sda not found")
    with pytest.raises(DeploymentFailed) as info:
        lab.provisioner().create()
    text = str(info.value)
    assert "smithi001" in text
    assert "Failed deployment" in text
    assert "curtin: disk /dev/sda not found" in text
    assert "last events:" in text
    assert "Clean-up: released (Ready)" in text
    assert info.value.__cause__ is not None
    assert_free(lab)


def test_deployment_reverted_to_allocated_is_cleaned_up(lab_factory):
    lab = lab_factory(ssh=False)
    lab.sim.faults.add("deploy_revert", machine="smithi001")
    with pytest.raises(DeploymentFailed, match="reverted the deployment to Allocated"):
        lab.provisioner().create()
    assert_free(lab)


def test_stuck_deployment_times_out_is_aborted_and_released(lab_factory):
    lab = lab_factory(ssh=False, deploy_timeout=1.0)
    lab.sim.faults.add("deploy_stuck", machine="smithi001")
    since = lab.mark()
    with pytest.raises(DeploymentFailed) as info:
        lab.provisioner().create()
    assert "timed out" in str(info.value)
    assert "Deploying" in str(info.value)
    ops = lab.posts("smithi001", since)
    assert ops.index("abort") < ops.index("release")
    assert_free(lab)


def test_wrong_os_after_deploy_fails_and_releases(lab_factory):
    lab = lab_factory(
        images=[
            {"name": "ubuntu/jammy", "architecture": "amd64/generic",
             "os_release": {"ID": "ubuntu", "VERSION_ID": "20.04"}},
        ],
    )  # fmt: skip
    with pytest.raises(DeploymentFailed, match=r"runs ubuntu 20\.04"):
        lab.provisioner().create()
    assert_free(lab)


def test_failed_clean_up_says_an_operator_is_needed(lab_factory):
    lab = lab_factory(ssh=False)
    lab.sim.faults.add("deploy_fail", machine="smithi001")
    lab.sim.faults.add("release_fail", machine="smithi001")
    with pytest.raises(DeploymentFailed, match="needs an operator") as info:
        lab.provisioner().create()
    assert "Releasing failed" in str(info.value)
    assert lab.state("smithi001")["status_name"] == "Releasing failed"


def test_lost_deploy_answer_is_resolved_by_rereading_not_by_deploying_twice(lab_factory):
    lab = lab_factory()
    lab.sim.faults.add("drop", op="deploy", when="after", times=1)
    since = lab.mark()
    lab.provisioner().create()
    assert_deployed_by_us(lab)
    assert lab.posts("smithi001", since).count("deploy") == 1


@pytest.mark.parametrize("interrupt", [KeyboardInterrupt, SystemExit])
def test_interrupted_create_aborts_and_releases_before_the_interrupt_propagates(
    lab_factory, interrupt
):
    from tests.fixtures_provisioner import interrupt_after

    lab = lab_factory(ssh=False)
    lab.sim.faults.add("deploy_stuck", machine="smithi001")
    with pytest.raises(interrupt), interrupt_after(0.5, interrupt):
        lab.provisioner().create()
    state = lab.state("smithi001")
    assert state["status_name"] in ("Releasing", "Disk erasing", READY)
    assert state["locked"] is False


def test_lost_allocate_answer_is_resolved_by_rereading(lab_factory):
    lab = lab_factory()
    lab.sim.faults.add("drop", op="allocate", when="after", times=1)
    since = lab.mark()
    lab.provisioner().create()
    assert_deployed_by_us(lab)
    assert lab.posts("smithi001", since).count("allocate") == 1


def test_allocate_lost_before_maas_saw_it_is_sent_again(lab_factory):
    lab = lab_factory()
    lab.sim.faults.add("drop", op="allocate", when="before", times=1)
    lab.provisioner().create()
    assert_deployed_by_us(lab)


def test_machine_marked_broken_mid_deployment_is_reported_at_once_and_left_broken(lab_factory):
    import threading

    lab = lab_factory(ssh=False, deploy_timeout=30.0)
    lab.sim.faults.add("deploy_stuck", machine="smithi001")
    system_id = lab.state("smithi001")["system_id"]
    operator = lab.client_as("teuthology")

    def break_it():
        # Wait until the deployment is under way, then break it as an operator would.
        while lab.state("smithi001")["status_name"] != "Deploying":
            threading.Event().wait(0.02)
        operator.mark_broken(system_id, comment="PSU on fire")

    breaker = threading.Thread(target=break_it)
    breaker.start()
    try:
        with pytest.raises(DeploymentFailed) as info:
            lab.provisioner().create()
    finally:
        breaker.join()
    text = str(info.value)
    # MAAS's events name who broke it (the operator's MAAS user and comment), not a power fault
    assert "the deployment was marked broken by MAAS user 'teuthology'" in text
    assert "PSU on fire" in text and "power" not in text
    # Broken is an operator's hold: clean-up leaves it for them.
    assert lab.state("smithi001")["status_name"] == "Broken"


def test_lock_after_deploy_can_be_turned_off(lab_factory):
    lab = lab_factory(lock_after_deploy=False)
    since = lab.mark()
    lab.provisioner().create()
    state = lab.state("smithi001")
    assert (state["status_name"], state["locked"]) == (DEPLOYED, False)
    assert "lock" not in lab.posts("smithi001", since)


def test_deploy_lost_before_maas_saw_it_is_sent_again_after_rereading(lab_factory):
    lab = lab_factory()
    lab.sim.faults.add("drop", op="deploy", when="before", times=1)
    lab.provisioner().create()
    assert_deployed_by_us(lab)


def test_losing_the_allocation_race_changes_nothing(lab_factory):
    # Another process took the node between our lookup and our allocate: MAAS answers 409.
    lab = lab_factory(ssh=False)
    system_id = lab.state("smithi001")["system_id"]
    lab.sim.faults.add(
        "error", op="allocate", status=409, times=1,
        body=f"No machine with system ID {system_id} available.",
    )  # fmt: skip
    since = lab.mark()
    with pytest.raises(DeploymentFailed) as info:
        lab.provisioner().create()
    assert "No machine with system ID" in str(info.value)
    assert "nothing was changed in MAAS" in str(info.value)
    assert lab.posts("smithi001", since) == ["allocate"]
    assert_free(lab)


def test_parallel_creates_share_questions_and_one_failure_touches_only_its_node(lab_factory):
    # teuthology's lock-many reimages nodes in parallel, one provisioner per node.
    import threading

    hostnames = ["smithi001", "smithi002", "smithi003"]
    lab = lab_factory([{"hostname": h} for h in hostnames])
    lab.sim.faults.add("deploy_fail", machine="smithi002")
    errors: dict[str, BaseException] = {}

    def create(hostname):
        try:
            lab.provisioner(hostname).create()
        except BaseException as exc:
            errors[hostname] = exc

    threads = [threading.Thread(target=create, args=(h,)) for h in hostnames]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert set(errors) == {"smithi002"}
    # Questions every node would ask are asked once: who we are, which images are synced.
    log = list(lab.sim.request_log)
    assert [r.op for r in log].count("whoami") == 1
    assert sum("boot-resources" in r.path for r in log) == 1
    assert isinstance(errors["smithi002"], DeploymentFailed)
    assert "smithi002" in str(errors["smithi002"])
    assert_deployed_by_us(lab, "smithi001")
    assert_deployed_by_us(lab, "smithi003")
    assert_free(lab, "smithi002")


def test_sigterm_mid_deploy_cleans_up_then_exits(lab_factory):
    import os
    import signal
    import threading

    from teuthology_maas.teuthology import lifetime

    lab = lab_factory(ssh=False)
    lab.sim.faults.add("deploy_stuck", machine="smithi001")
    timer = threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGTERM))
    timer.start()
    try:
        # The host (here the test, as the CLI or the teuthology adapter would) owns signals.
        with lifetime.hosting(), pytest.raises(SystemExit) as info:
            lab.provisioner().create()
    finally:
        timer.cancel()
    assert info.value.code == 128 + signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # restored
    state = lab.state("smithi001")
    assert state["status_name"] in ("Releasing", "Disk erasing", READY)


def test_an_application_sigterm_handler_is_left_in_charge(lab_factory):
    import os
    import signal
    import threading

    from teuthology_maas.teuthology import lifetime

    received = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: received.append(signum))
    lab = lab_factory(ssh=False, deploy_timeout=1.5)
    lab.sim.faults.add("deploy_stuck", machine="smithi001")
    timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGTERM))
    timer.start()
    try:
        with lifetime.hosting(), pytest.raises(DeploymentFailed, match="timed out"):
            lab.provisioner().create()
        assert received == [signal.SIGTERM]
    finally:
        timer.cancel()
        signal.signal(signal.SIGTERM, previous)
    assert_free(lab)
