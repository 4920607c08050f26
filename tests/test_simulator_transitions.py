"""Every transition of the state machine, on a manual clock, over real HTTP."""

from __future__ import annotations

import pytest

from teuthology_maas.simulator import ManualClock

INVENTORY = {
    "machines": [
        {"hostname": f"smithi{i:03d}", "tags": ["smithi"], "pool": "smithi"} for i in range(1, 5)
    ]
    + [
        {"hostname": "taken", "status": "ready", "owner": "alice"},
        {"hostname": "alices", "status": "allocated", "owner": "alice"},
        {"hostname": "fresh", "status": "new"},
        {"hostname": "manual", "power_type": "manual"},
    ],
    "release_scripts": ["collect-logs"],
}


class Lab:
    def __init__(self, handle):
        self.handle = handle
        self.sim = handle.sim
        self.clock = handle.sim.clock
        self.http = {name: handle.http(name) for name in ("teuthology", "admin", "alice")}

    def op(self, host: str, name: str, fields=(), user: str = "teuthology"):
        return self.http[user].post(f"machines/{self.sim.system_id(host)}/", name, list(fields))

    def status(self, host: str) -> str:
        return self.sim.machine(host)["status_name"]

    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)

    def events(self, host: str) -> list[tuple[str, str]]:
        return [(e["type"], e["description"]) for e in self.sim.events_for(host)]


@pytest.fixture
def lab(maas_sim_factory):
    return Lab(maas_sim_factory(INVENTORY, clock=ManualClock()))


def deployed(lab: Lab, host: str = "smithi001", **fields) -> dict:
    answer = lab.op(host, "deploy", fields.items())
    assert answer.status_code == 200, answer.text
    lab.advance(600)
    assert lab.status(host) == "Deployed"
    return lab.sim.machine(host)


# -- deploy ------------------------------------------------------------------------------


def test_deploy_of_a_ready_machine_allocates_it_and_answers_deploying(lab):
    answer = lab.op("smithi001", "deploy", [("agent_name", "teuthology-maas")])
    machine = answer.json()
    assert (machine["status"], machine["status_name"]) == (9, "Deploying")
    assert machine["owner"] == "teuthology"
    assert (machine["osystem"], machine["distro_series"], machine["hwe_kernel"]) == (
        "ubuntu",
        "jammy",
        "ga-22.04",
    )
    assert machine["status_message"] == "Deploying"
    listed = lab.http["teuthology"].get("machines/", params={"agent_name": "teuthology-maas"})
    assert [m["hostname"] for m in listed.json()] == ["smithi001"]


def test_deployment_progresses_on_the_clock(lab):
    lab.op("smithi001", "deploy")
    lab.advance(5)
    assert lab.sim.machine("smithi001")["power_state"] == "on"
    lab.advance(280)
    assert lab.sim.machine("smithi001")["status_message"] == "Installing OS"
    lab.advance(314)
    machine = lab.sim.machine("smithi001")
    assert (machine["status_name"], machine["status_message"]) == ("Deploying", "Rebooting")
    lab.advance(1)
    machine = lab.sim.machine("smithi001")
    assert (machine["status_name"], machine["status_message"]) == ("Deployed", "Deployed")
    info = [t for t, _ in lab.events("smithi001") if t not in ("Node changed status",)]
    assert info[:9] == [
        "Deployed",
        "Rebooting",
        "Configuring OS",
        "Installing OS",
        "Configuring storage",
        "Loading ephemeral",
        "Performing PXE boot",
        "Node powered on",
        "Deploying",
    ]
    assert ("Node changed status", "From 'Deploying' to 'Deployed'") in lab.events("smithi001")


def test_inventory_timings_set_the_pace(maas_sim_factory):
    handle = maas_sim_factory(
        {"machines": [{"hostname": "quick", "timings": {"deploying": 30}}, {"hostname": "slow"}],
         "timings": {"deploying": 90}},
        clock=ManualClock(),
    )  # fmt: skip
    lab = Lab(handle)
    lab.op("quick", "deploy")
    lab.op("slow", "deploy")
    lab.advance(30)
    assert (lab.status("quick"), lab.status("slow")) == ("Deployed", "Deploying")
    lab.advance(60)
    assert lab.status("slow") == "Deployed"


def test_deploy_of_an_allocated_machine(lab):
    lab.http["teuthology"].post("machines/", "allocate", [("name", "smithi002")])
    assert lab.op("smithi002", "deploy", [("distro_series", "focal")]).json()["status"] == 9
    lab.advance(600)
    machine = lab.sim.machine("smithi002")
    assert (machine["status_name"], machine["distro_series"]) == ("Deployed", "focal")


@pytest.mark.parametrize("state", ["Deploying", "Deployed", "Failed deployment", "New"])
def test_deploy_refused_in_other_states(lab, state):
    host = "fresh" if state == "New" else "smithi001"
    if state != "New":
        lab.op(host, "deploy")
    if state == "Deployed":
        lab.advance(600)
    if state == "Failed deployment":
        lab.sim.update_machine(host, status="failed_deployment")
    answer = lab.op(host, "deploy", user="admin" if state == "New" else "teuthology")
    assert (answer.status_code, answer.text) == (
        409,
        f"Can't deploy a machine that is in the '{state}' state",
    )


def test_other_users_machines(lab):
    # Not visible to a non-admin: 403 with an empty body.
    for op in ("deploy", "release", "abort", "lock", "mark_broken"):
        answer = lab.op("alices", op)
        assert (answer.status_code, answer.text) == (403, ""), op
    # An admin may act, but not allocate someone else's Ready machine.
    taken = lab.op("taken", "deploy", user="admin")
    assert (taken.status_code, taken.text) == (
        409,
        "Can't allocate a machine belonging to another user.",
    )
    assert lab.op("alices", "deploy", user="admin").json()["status_name"] == "Deploying"
    assert lab.sim.machine("alices")["owner"] == "alice"


def test_failed_validation_rolls_back_the_allocation(lab):
    answer = lab.op("smithi001", "deploy", [("distro_series", "nosuch")])
    assert answer.status_code == 400
    machine = lab.sim.machine("smithi001")
    assert (machine["status_name"], machine["owner"]) == ("Ready", None)


@pytest.mark.parametrize(
    ("series", "expected"),
    [
        ("", ("ubuntu", "jammy")),
        ("jammy", ("ubuntu", "jammy")),
        ("ubuntu/noble", ("ubuntu", "noble")),
        ("22.04", ("ubuntu", "jammy")),
        ("ubuntu/20.04", ("ubuntu", "focal")),
        ("ubuntu", ("ubuntu", "noble")),  # an OS alone: its alphabetically last release
        ("centos/centos9-stream", ("centos", "centos9-stream")),
        ("centos9", ("centos", "centos9-stream")),
        ("rocky/9", ("rocky", "9")),
        ("rhel/9", ("rhel", "9")),
    ],
)
def test_distro_series_resolution(lab, series, expected):
    fields = [("distro_series", series)] if series else []
    machine = lab.op("smithi001", "deploy", fields).json()
    assert (machine["osystem"], machine["distro_series"]) == expected


def test_invalid_distro_series(lab):
    answer = lab.op("smithi001", "deploy", [("distro_series", "warty")])
    assert answer.status_code == 400
    message = answer.json()["distro_series"][0]
    assert message.startswith("'warty' is not a valid distro_series.  It should be one of: '', ")
    assert "'ubuntu/jammy'" in message and "'rocky/9'" in message


def test_image_missing_for_the_architecture(maas_sim_factory):
    handle = maas_sim_factory(
        {"machines": [{"hostname": "arm", "architecture": "arm64/generic"}]}, clock=ManualClock()
    )
    answer = Lab(handle).op("arm", "deploy", [("distro_series", "centos/centos9-stream")])
    assert (answer.status_code, answer.text) == (
        400,
        "Deployment operating system centos/centos9-stream is unavailable for arm64/generic.",
    )
    assert Lab(handle).op("arm", "deploy", [("distro_series", "jammy")]).status_code == 200


def test_vm_host_rack_and_invalid_deploy_options(lab):
    # MAAS 3.7: VM hosts are admin-only (sic), racks are no longer deployed
    kvm = lab.op("smithi001", "deploy", [("install_kvm", "true")])
    assert (kvm.status_code, kvm.text) == (403, "Only administratros can deploy VM hosts")
    rack = lab.op("smithi001", "deploy", [("install_rackd", "yes")], user="admin")
    assert (rack.status_code, rack.text) == (
        400,
        "Deploying a machine as a rackd has been disabled and it's not supported anymore.",
    )
    memory = lab.op(
        "smithi001", "deploy", [("register_vmhost", "1"), ("ephemeral_deploy", "1")], user="admin"
    )
    assert memory.text == "A machine can not be a VM host if it is deployed to memory."
    assert lab.status("smithi001") == "Ready"
    bad = lab.op("smithi001", "deploy", [("ephemeral_deploy", "maybe")])
    assert bad.text == "Invalid ephemeral_deploy: Value should be 'true' or 'false'"
    ok = lab.op("smithi001", "deploy", [("ephemeral_deploy", "1"), ("colour", "ignored")])
    assert ok.json()["ephemeral_deploy"] is True


# -- user_data -----------------------------------------------------------------------------


CLOUD_CONFIG = b"#cloud-config\nruncmd: [[echo, hi]]\n"
CANONICAL = "I2Nsb3VkLWNvbmZpZwpydW5jbWQ6IFtbZWNobywgaGldXQo="


@pytest.mark.parametrize(
    ("sent", "served"),
    [
        (CANONICAL, CLOUD_CONFIG),
        ("\n".join([CANONICAL[:20], CANONICAL[20:40], CANONICAL[40:]]) + "\n", CLOUD_CONFIG),
        ("#!/bin/sh\necho plain text\n", b"#!/bin/sh\necho plain text\n"),
        (CANONICAL.rstrip("="), CANONICAL.rstrip("=").encode()),  # not canonical: kept as is
        ("aGk-", b"aGk-"),  # URL-safe alphabet: kept as is
    ],
)
def test_user_data_is_stored_verbatim_and_served_as_maas_does(lab, sent, served):
    machine = lab.op("smithi001", "deploy", [("user_data", sent)]).json()
    assert "user_data" not in machine
    assert lab.sim.stored_user_data("smithi001") == sent.encode()
    assert lab.sim.user_data("smithi001") == served


def test_a_deploy_without_user_data_deletes_the_stored_one(lab):
    lab.op("smithi001", "deploy", [("user_data", "aGk=")])
    assert lab.sim.user_data("smithi001") == b"hi"
    lab.op("smithi001", "abort")
    lab.advance(10)
    lab.op("smithi001", "deploy")
    assert lab.sim.user_data("smithi001") is None


# -- release -------------------------------------------------------------------------------


def test_release_of_a_deployed_machine(lab):
    deployed(lab, "smithi001", user_data="aGk=")
    lab.op("smithi001", "set_workload_annotations", [("job", "42")])
    answer = lab.op("smithi001", "release", [("comment", "done")]).json()
    assert (answer["status"], answer["status_name"]) == (12, "Releasing")
    assert (answer["osystem"], answer["distro_series"], answer["owner"]) == ("", "", "teuthology")
    lab.advance(5)
    assert lab.sim.machine("smithi001")["power_state"] == "off"
    lab.advance(55)
    machine = lab.sim.machine("smithi001")
    assert (machine["status_name"], machine["owner"]) == ("Ready", None)
    assert machine["workload_annotations"] == {} and machine["status_message"] == "Released"
    assert lab.sim.user_data("smithi001") is None
    assert ("User releasing node", "done") in lab.events("smithi001")


def test_release_of_an_allocated_powered_off_machine_is_immediate(lab):
    lab.http["teuthology"].post("machines/", "allocate", [("name", "smithi002")])
    answer = lab.op("smithi002", "release").json()
    assert (answer["status_name"], answer["owner"]) == ("Ready", None)


@pytest.mark.parametrize(
    ("fields", "status", "seconds"),
    [
        ([("erase", "true")], "Disk erasing", 900),
        ([("erase", "0")], "Disk erasing", 900),  # Django BooleanField: "0" is true
        ([("quick_erase", "true")], "Disk erasing", 120),
        ([("secure_erase", "true")], "Disk erasing", 300),
        ([("erase", "false")], "Releasing", 60),
        ([("scripts", "wipe-disks,collect-logs")], "Releasing", 900 + 60),
        ([("scripts", "collect-logs")], "Releasing", 60),
    ],
)
def test_release_erase_variants(lab, fields, status, seconds):
    deployed(lab)
    assert lab.op("smithi001", "release", fields).json()["status_name"] == status
    lab.advance(seconds - 1)
    assert lab.status("smithi001") == status
    lab.advance(1)
    assert lab.status("smithi001") == "Ready"


def test_release_is_a_no_op_on_ready_and_releasing(lab):
    ready = lab.op("smithi001", "release")
    assert (ready.status_code, ready.json()["status_name"]) == (200, "Ready")
    deployed(lab)
    lab.op("smithi001", "release")
    again = lab.op("smithi001", "release")
    assert (again.status_code, again.json()["status_name"]) == (200, "Releasing")
    lab.advance(60)
    assert lab.status("smithi001") == "Ready"


def test_release_refused_in_unreleasable_states(lab):
    answer = lab.op("fresh", "release", user="admin")
    assert (answer.status_code, answer.text) == (
        409,
        "Machine cannot be released in its current state ('New').",
    )


def test_release_of_deploying_and_failed_machines(lab):
    lab.op("smithi001", "deploy")
    lab.advance(10)  # powered on by now: the release has to wait for power-off
    assert lab.op("smithi001", "release").json()["status_name"] == "Releasing"
    lab.advance(600)
    assert lab.status("smithi001") == "Ready"  # the deployment steps were cancelled
    lab.op("smithi002", "deploy")
    lab.sim.update_machine("smithi002", status="failed_deployment", power_state="on")
    assert lab.op("smithi002", "release").json()["status_name"] == "Releasing"


def test_bulk_release(lab):
    deployed(lab, "smithi001")
    lab.http["teuthology"].post("machines/", "allocate", [("name", "smithi002")])
    ids = [lab.sim.system_id(h) for h in ("smithi001", "smithi002", "smithi003")]
    http = lab.http["teuthology"]
    answer = http.post("machines/", "release", [("machines", i) for i in ids])
    assert answer.json() == ids[:2]
    unknown = http.post("machines/", "release", [("machines", "nosuch")])
    assert (unknown.status_code, unknown.text) == (400, "Unknown machine(s): nosuch.")
    releasing = http.post("machines/", "release", [("machines", ids[0])])
    assert releasing.status_code == 409
    assert releasing.text == (
        f"Machine(s) cannot be released in their current state: {ids[0]} ('Releasing')."
    )


# -- abort ---------------------------------------------------------------------------------


def test_abort_of_a_deployment(lab):
    lab.op("smithi001", "deploy")
    lab.advance(100)
    answer = lab.op("smithi001", "abort", [("comment", "stop")])
    assert answer.json()["status_name"] == "Deploying"  # the answer predates the abort
    lab.advance(9)
    assert lab.status("smithi001") == "Deploying"
    lab.advance(1)
    machine = lab.sim.machine("smithi001")
    assert (machine["status_name"], machine["owner"], machine["power_state"]) == (
        "Allocated",
        "teuthology",
        "off",
    )
    assert machine["status_message"] == "Aborted deployment"
    lab.advance(1000)
    assert lab.status("smithi001") == "Allocated"
    assert ("User aborting deployment", "stop") in lab.events("smithi001")


def test_abort_of_disk_erasing(lab):
    deployed(lab)
    lab.op("smithi001", "release", [("erase", "true")])
    assert lab.op("smithi001", "abort").json()["status_name"] == "Disk erasing"
    lab.advance(10)
    assert lab.status("smithi001") == "Failed disk erasing"
    assert lab.op("smithi001", "release").json()["status_name"] == "Releasing"


def test_abort_refused_when_nothing_runs(lab):
    lab.http["teuthology"].post("machines/", "allocate", [("name", "smithi001")])
    answer = lab.op("smithi001", "abort")
    system_id = lab.sim.system_id("smithi001")
    assert (answer.status_code, answer.text) == (
        409,
        f"Cannot abort in current state: node {system_id} is in state Allocated.",
    )


# -- lock / unlock ---------------------------------------------------------------------------


def test_lock_and_unlock(lab):
    lab.http["teuthology"].post("machines/", "allocate", [("name", "smithi001")])
    early = lab.op("smithi001", "lock")
    assert (early.status_code, early.text) == (409, "Can't lock, node is not deployed or deploying")
    lab.op("smithi001", "deploy")
    assert lab.op("smithi001", "lock").json()["locked"] is True
    again = lab.op("smithi001", "lock")
    assert (again.status_code, again.text) == (409, "Machine is already locked")
    lab.advance(600)
    assert lab.status("smithi001") == "Deployed"
    for user in ("teuthology", "admin"):
        for op in ("release", "abort", "deploy", "mark_broken", "power_off"):
            refused = lab.op("smithi001", op, user=user)
            assert (refused.status_code, refused.text) == (403, ""), (user, op)
    assert lab.http["teuthology"].get(f"machines/{lab.sim.system_id('smithi001')}/").ok
    assert lab.op("smithi001", "unlock").json()["locked"] is False
    unlocked = lab.op("smithi001", "unlock")
    assert (unlocked.status_code, unlocked.text) == (409, "Machine is not locked")
    assert lab.op("smithi001", "release").json()["status_name"] == "Releasing"


# -- broken / fixed ------------------------------------------------------------------------


def test_mark_broken_needs_the_owner_and_mark_fixed_an_admin(lab):
    deployed(lab)
    not_owner = lab.op("smithi001", "mark_broken", user="admin")
    assert (not_owner.status_code, not_owner.text) == (403, "")
    broken = lab.op("smithi001", "mark_broken", [("comment", "bad disk")]).json()
    assert (broken["status_name"], broken["error_description"]) == ("Broken", "bad disk")
    user_fix = lab.op("smithi001", "mark_fixed")
    assert (user_fix.status_code, user_fix.text) == (403, "")
    fixed = lab.op("smithi001", "mark_fixed", user="admin").json()
    assert (fixed["status_name"], fixed["error_description"]) == ("Deployed", "")
    not_broken = lab.op("smithi001", "mark_fixed", user="admin")
    assert (not_broken.status_code, not_broken.text) == (
        409,
        "Can't mark a non-broken node as 'Ready'.",
    )


def test_mark_broken_of_an_allocated_machine_then_fixed_is_ready(lab):
    lab.http["teuthology"].post("machines/", "allocate", [("name", "smithi002")])
    assert lab.op("smithi002", "mark_broken").json()["status_name"] == "Broken"
    fixed = lab.op("smithi002", "mark_fixed", user="admin").json()
    assert (fixed["status_name"], fixed["owner"]) == ("Ready", None)


# -- power -----------------------------------------------------------------------------------


def test_power_operations(lab):
    unowned = lab.op("smithi001", "power_on")
    assert (unowned.status_code, unowned.text) == (
        409,
        "Can't start node: it hasn't been allocated.",
    )
    deployed(lab)
    system_id = lab.sim.system_id("smithi001")
    lab.op("smithi001", "power_off", [("stop_mode", "soft")])
    lab.advance(5)
    state = lab.http["teuthology"].get(f"machines/{system_id}/", params={"op": "query_power_state"})
    assert state.json() == {"state": "off"}
    lab.op("smithi001", "power_on")
    lab.advance(5)
    assert lab.sim.machine("smithi001")["power_state"] == "on"
    assert lab.sim.machine("smithi001")["status_name"] == "Deployed"


def test_power_on_of_an_allocated_machine_starts_a_deployment(lab):
    lab.http["teuthology"].post("machines/", "allocate", [("name", "smithi003")])
    assert lab.op("smithi003", "power_on").json()["status_name"] == "Deploying"


def test_manual_power_type(lab):
    lab.http["teuthology"].post("machines/", "allocate", [("name", "manual")])
    off = lab.op("manual", "power_off")
    assert (off.status_code, off.text) == (200, "null")
    assert lab.sim.machine("manual")["power_state"] == "unknown"


# -- workload annotations --------------------------------------------------------------------


def test_workload_annotations(lab):
    not_owner = lab.op("smithi001", "set_workload_annotations", [("a", "1")])
    assert (not_owner.status_code, not_owner.text) == (
        409,
        "Cannot set workload annotation: it hasn't been acquired.",
    )
    lab.http["teuthology"].post("machines/", "allocate", [("name", "smithi001")])
    lab.op("smithi001", "set_workload_annotations", [("a", "1"), ("b", "2")])
    machine = lab.op("smithi001", "set_owner_data", [("a", "")]).json()
    assert machine["workload_annotations"] == {"b": "2"} == machine["owner_data"]


def test_abort_of_commissioning_and_testing(maas_sim_factory):
    handle = maas_sim_factory(
        {"machines": [{"hostname": "comm", "status": "commissioning"},
                      {"hostname": "test", "status": "testing"}]},
        clock=ManualClock(),
    )  # fmt: skip
    lab = Lab(handle)
    assert lab.op("comm", "abort", user="admin").json()["status_name"] == "Commissioning"
    assert lab.op("test", "abort", user="admin").json()["status_name"] == "Testing"
    lab.advance(10)
    assert (lab.status("comm"), lab.status("test")) == ("New", "Ready")
