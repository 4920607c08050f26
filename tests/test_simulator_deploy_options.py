"""The simulator's deploy options, pinned to MAAS 3.7.3's code: hwe_kernel validation
(MachineForm.clean -> get_working_kernel), deploy to memory, bridge options, node_timeout per
region version, machines MAAS cannot power, and the release form (JSON bodies, validation before
the Ready/Releasing no-op). Every test runs over real HTTP on a manual clock."""

from __future__ import annotations

import json

import pytest

from teuthology_maas.simulator import ManualClock

MACHINES = [
    {"hostname": "n1"},
    {"hostname": "n2", "min_hwe_kernel": "hwe-22.04"},
    {"hostname": "arm", "architecture": "arm64/generic"},
    {"hostname": "console", "power_type": "manual"},
]
IMAGES = [
    {"name": "ubuntu/jammy", "kernels": ["ga-22.04", "hwe-22.04", "hwe-22.04-lowlatency",
                                         "ga-20.04"]},
    "ubuntu/noble",
    "centos/centos9-stream",
]  # fmt: skip


class Lab:
    def __init__(self, handle):
        self.handle = handle
        self.sim = handle.sim
        self.http = {u: handle.http(u) for u in ("teuthology", "admin")}

    def op(self, host, name, fields=(), user="teuthology"):
        path = f"machines/{self.sim.system_id(host)}/"
        return self.http[user].post(path, name, list(fields))

    def machine(self, host):
        return self.sim.machine(host)

    def status(self, host):
        return self.machine(host)["status_name"]

    def advance(self, seconds):
        self.sim.clock.advance(seconds)


@pytest.fixture
def make_lab(maas_sim_factory):
    def make(**extra):
        inventory = {"machines": MACHINES, "images": IMAGES, **extra}
        return Lab(maas_sim_factory(inventory, clock=ManualClock()))

    return make


@pytest.fixture
def lab(make_lab):
    return make_lab()


def form_error(answer):
    assert answer.status_code == 400, answer.text
    assert answer.headers["Content-Type"] == "application/json; charset=utf-8"
    return answer.json()


def assert_untouched(lab, host="n1"):
    machine = lab.machine(host)
    assert (machine["status_name"], machine["owner"], machine["hwe_kernel"]) == (
        "Ready",
        None,
        None,
    )


# -- hwe_kernel --------------------------------------------------------------------------------


def test_a_kernel_the_image_does_not_offer_is_refused_with_maas_s_words(lab):
    answer = lab.op("n1", "deploy", [("distro_series", "jammy"), ("hwe_kernel", "ga-99.99")])
    assert form_error(answer) == {
        "hwe_kernel": ["ga-99.99 is not available for ubuntu/jammy on amd64/generic."]
    }
    assert_untouched(lab)  # MAAS rolls the auto-allocation back


def test_an_offered_kernel_is_deployed_and_shown(lab):
    answer = lab.op("n1", "deploy", [("distro_series", "jammy"),
                                     ("hwe_kernel", "hwe-22.04-lowlatency")])  # fmt: skip
    assert answer.status_code == 200, answer.text
    assert answer.json()["hwe_kernel"] == "hwe-22.04-lowlatency"
    lab.advance(600)
    assert (lab.status("n1"), lab.machine("n1")["hwe_kernel"]) == (
        "Deployed", "hwe-22.04-lowlatency"
    )  # fmt: skip


def test_a_kernel_older_than_the_release_is_refused(lab):
    answer = lab.op("n1", "deploy", [("distro_series", "jammy"), ("hwe_kernel", "ga-20.04")])
    assert form_error(answer) == {"hwe_kernel": ["ga-20.04 is too old to use on ubuntu/jammy."]}


@pytest.mark.parametrize("value", ["generic", "lowlatency", "edge"])
def test_a_value_naming_no_ga_or_hwe_kernel_is_ignored(lab, value):
    answer = lab.op("n1", "deploy", [("distro_series", "jammy"), ("hwe_kernel", value)])
    assert answer.status_code == 200, answer.text
    assert answer.json()["hwe_kernel"] == "ga-22.04"  # the first suitable kernel


def test_the_machine_s_min_hwe_kernel_is_enforced_and_picks_the_default(lab):
    older = lab.op("n2", "deploy", [("distro_series", "jammy"), ("hwe_kernel", "ga-22.04")])
    assert form_error(older) == {
        "hwe_kernel": [
            "chosen kernel (ga-22.04) is older than minimal kernel required by the machine "
            "(hwe-22.04)."
        ]
    }
    assert lab.machine("n2")["min_hwe_kernel"] == "hwe-22.04"
    chosen = lab.op("n2", "deploy", [("distro_series", "jammy")])
    assert chosen.json()["hwe_kernel"] == "hwe-22.04"


def test_other_oses_are_checked_against_the_commissioning_release(lab):
    bad = lab.op("n1", "deploy", [("distro_series", "centos/centos9-stream"),
                                  ("hwe_kernel", "ga-99.99")])  # fmt: skip
    assert form_error(bad) == {
        "hwe_kernel": ["ga-99.99 is not available for ubuntu/jammy on amd64/generic."]
    }
    good = lab.op("n1", "deploy", [("distro_series", "centos/centos9-stream")])
    assert (good.json()["osystem"], good.json()["hwe_kernel"]) == ("centos", "ga-22.04")


def test_an_image_not_synced_for_the_architecture_has_no_kernels(lab):
    answer = lab.op("arm", "deploy", [("distro_series", "noble")])
    assert form_error(answer) == {"hwe_kernel": ["noble has no kernels available."]}


def test_a_machine_that_kept_its_kernel_is_not_checked_again(lab):
    """MachineForm.clean only picks a kernel when the machine has none: an aborted
    deployment keeps its hwe_kernel, and the next deploy's request is taken unchecked."""
    lab.op("n1", "deploy", [("distro_series", "jammy"), ("hwe_kernel", "hwe-22.04")])
    lab.op("n1", "abort")
    lab.advance(10)
    assert (lab.status("n1"), lab.machine("n1")["hwe_kernel"]) == ("Allocated", "hwe-22.04")
    again = lab.op("n1", "deploy", [("distro_series", "jammy"), ("hwe_kernel", "ga-99.99")])
    assert (again.status_code, again.json()["hwe_kernel"]) == (200, "ga-99.99")


def test_boot_resources_list_one_resource_per_kernel(lab):
    resources = lab.http["teuthology"].get("boot-resources/").json()
    jammy = sorted(r["architecture"] for r in resources if r["name"] == "ubuntu/jammy")
    assert jammy == ["amd64/ga-20.04", "amd64/ga-22.04", "amd64/hwe-22.04",
                     "amd64/hwe-22.04-lowlatency"]  # fmt: skip
    noble = [r for r in resources if r["name"] == "ubuntu/noble"]
    assert [r["architecture"] for r in noble] == ["amd64/ga-24.04", "amd64/hwe-24.04"]
    assert noble[1]["subarches"] == "generic,ga-24.04,hwe-24.04"


# -- deploy to memory ---------------------------------------------------------------------------


def test_a_deployment_to_memory_writes_nothing_to_disk(lab):
    answer = lab.op("n1", "deploy", [("ephemeral_deploy", "true")])
    assert answer.json()["ephemeral_deploy"] is True
    lab.advance(299)
    assert lab.status("n1") == "Deploying"
    lab.advance(1)
    machine = lab.machine("n1")
    assert (machine["status_name"], machine["ephemeral_deploy"]) == ("Deployed", True)
    assert machine["current_installation_result_id"] is None
    kinds = {e["type"] for e in lab.sim.events_for("n1")}
    assert "Performing PXE boot" in kinds
    assert not {"Configuring storage", "Installing OS"} & kinds
    lab.op("n1", "release")
    lab.advance(60)
    assert lab.machine("n1")["ephemeral_deploy"] is False


# -- bridge options ----------------------------------------------------------------------------


def test_a_bad_bridge_type_is_refused_before_the_state_check(lab):
    expected = {"bridge_type": ["'%(value)s' is not a valid bridge_type.  It should be one of: "
                                "'standard', 'ovs'."]}  # fmt: skip
    assert form_error(lab.op("n1", "deploy", [("bridge_type", "linux")])) == expected
    lab.op("n1", "deploy")
    lab.advance(600)
    # a Deployed machine cannot be deployed (409), but the options are read first
    assert form_error(lab.op("n1", "deploy", [("bridge_type", "linux")])) == expected
    assert lab.op("n1", "deploy").status_code == 409
    allocate = lab.http["teuthology"].post("machines/", "allocate", [("bridge_type", "x")])
    assert form_error(allocate) == expected


def test_bridge_fd_must_be_an_integer(lab):
    bad = lab.op("n1", "deploy", [("bridge_fd", "1.5")])
    assert (bad.status_code, bad.text) == (400, "Invalid bridge_fd: Please enter an integer value")
    assert bad.headers["Content-Type"].startswith("text/plain")
    assert_untouched(lab)
    good = lab.op("n1", "deploy", [("bridge_type", "ovs"), ("bridge_fd", " 15 "),
                                   ("bridge_stp", "yes")])  # fmt: skip
    assert good.status_code == 200, good.text


# -- node_timeout ------------------------------------------------------------------------------


def test_a_stuck_deployment_fails_30_minutes_after_its_last_sign_of_life(lab):
    lab.sim.faults.add("deploy_stuck", machine="n1")
    assert (
        lab.http["teuthology"]
        .get("maas/", params={"op": "get_config", "name": "node_timeout"})
        .json()
        == 30
    )
    lab.op("n1", "deploy")
    lab.advance(270 + 1799)  # "Installing OS" (270 s in) is the last milestone
    assert lab.status("n1") == "Deploying"
    lab.advance(1)
    machine = lab.machine("n1")
    reason = "Node operation 'Deploying' timed out after 30 minutes."
    assert (machine["status_name"], machine["error_description"]) == ("Failed deployment", reason)
    assert machine["status_message"] == f"Marking node failed - {reason}"


def test_node_timeout_follows_the_region_config(make_lab):
    lab = make_lab(config={"node_timeout": 10})
    lab.sim.faults.add("deploy_stuck", machine="n1")
    lab.op("n1", "deploy")
    lab.advance(270 + 600)
    assert lab.machine("n1")["error_description"] == (
        "Node operation 'Deploying' timed out after 10 minutes."
    )


def test_from_maas_3_6_the_deployment_workflow_times_out_after_twice_node_timeout(make_lab):
    lab = make_lab(maas_version="3.7.3")
    lab.sim.faults.add("deploy_stuck", machine="n1")
    lab.op("n1", "deploy")
    lab.advance(3599)
    assert lab.status("n1") == "Deploying"
    lab.advance(1)
    machine = lab.machine("n1")
    assert (machine["status_name"], machine["error_description"]) == (
        "Failed deployment", "time-out during deployment"
    )  # fmt: skip


# -- machines MAAS cannot power ------------------------------------------------------------------


def test_a_manual_machine_waits_in_deploying_until_someone_boots_it(lab):
    assert lab.op("console", "deploy").json()["status_name"] == "Deploying"
    lab.advance(100_000)  # MAAS 3.5 never starts the timer of a machine it cannot power
    assert lab.status("console") == "Deploying"
    assert "Performing PXE boot" not in {e["type"] for e in lab.sim.events_for("console")}
    lab.sim.boot("console")
    lab.advance(599)
    assert lab.status("console") == "Deploying"
    lab.advance(1)
    assert lab.status("console") == "Deployed"
    with pytest.raises(ValueError, match="not waiting to be powered on"):
        lab.sim.boot("console")


def test_a_manual_machine_times_out_on_the_workflow_from_maas_3_6(make_lab):
    lab = make_lab(maas_version="3.6.0")
    lab.op("console", "deploy")
    lab.advance(3600)
    assert lab.machine("console")["error_description"] == "time-out during deployment"


def test_a_manual_machine_erases_only_once_booted(lab):
    lab.op("console", "deploy")
    lab.sim.boot("console")
    lab.advance(600)
    answer = lab.op("console", "release", [("erase", "true"), ("quick_erase", "true")])
    assert answer.json()["status_name"] == "Disk erasing"
    lab.advance(10_000)
    assert lab.status("console") == "Disk erasing"
    lab.sim.boot("console")
    lab.advance(120)
    assert lab.status("console") == "Ready"


# -- release form ------------------------------------------------------------------------------


def json_release(lab, host, document):
    """A release whose body is JSON (op in the query, where MAAS looks for it)."""
    return lab.http["teuthology"].request(
        "POST",
        f"machines/{lab.sim.system_id(host)}/",
        params={"op": "release"},
        headers={"Content-Type": "application/json"},
        data=json.dumps(document),
    )


def deployed(lab, host="n1"):
    lab.op(host, "deploy")
    lab.advance(600)
    assert lab.status(host) == "Deployed"


def test_a_json_release_body_is_read_into_the_form(lab):
    deployed(lab)
    answer = json_release(lab, "n1", {"erase": True, "quick_erase": True, "comment": "json"})
    assert answer.status_code == 200, answer.text
    assert answer.json()["status_name"] == "Disk erasing"
    record = lab.sim.state.find("n1")
    assert (record.erase_mode, record.release_scripts) == ("quick", ("wipe-disks",))
    comment = next(e for e in lab.sim.events_for("n1") if e["type"] == "User releasing node")
    assert comment["description"] == "json"


@pytest.mark.parametrize("flag", [False, 0, None, "false", "False"])
def test_json_false_values_do_not_erase(lab, flag):
    deployed(lab)
    answer = json_release(lab, "n1", {"erase": flag})
    assert answer.json()["status_name"] == "Releasing"


def test_the_release_form_is_validated_before_the_ready_no_op(lab):
    bogus = lab.op("n1", "release", [("scripts", "bogus")])
    assert form_error(bogus) == {
        "scripts": ["Select a valid choice. bogus is not one of the available choices."]
    }
    assert form_error(json_release(lab, "n1", {"scripts": ["wipe-disks", "x"]})) == {
        "scripts": ["Select a valid choice. x is not one of the available choices."]
    }
    assert form_error(json_release(lab, "n1", {"scripts": 5})) == {
        "scripts": ["Enter a list of values."]
    }
    none = lab.op("n1", "release", [("scripts", "none")])
    assert (none.status_code, none.json()["status_name"]) == (200, "Ready")


def test_scripts_none_runs_no_script_and_only_the_last_scripts_field_counts(lab):
    deployed(lab)
    assert lab.op("n1", "release", [("scripts", "none")]).json()["status_name"] == "Releasing"
    lab.advance(60)
    deployed(lab)
    answer = lab.op("n1", "release", [("scripts", "bogus"), ("scripts", "wipe-disks")])
    assert answer.json()["status_name"] == "Disk erasing"


def test_a_json_release_body_that_is_not_an_object_crashes_like_maas(lab):
    deployed(lab)
    answer = json_release(lab, "n1", ["erase"])
    assert (answer.status_code, answer.text) == (500, "'list' object has no attribute 'get'")
    assert lab.status("n1") == "Deployed"
