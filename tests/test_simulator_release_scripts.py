"""Release scripts (MAAS 3.5+ `scripts` on release): only the region's known scripts are
accepted, their parameters travel as form fields, and a release runs through them."""

from __future__ import annotations

import pytest

from teuthology_maas.errors import MaasBadRequest
from teuthology_maas.maas.client import MaasClient
from teuthology_maas.models import NodeStatus
from teuthology_maas.node import erase as _erase
from teuthology_maas.simulator import Inventory, InventoryError, ManualClock

CEPH = _erase.CEPH_WIPE_SCRIPT
MACHINES = [{"hostname": f"smithi{i:03d}", "tags": ["smithi"]} for i in range(1, 4)]


def deployed(handle, host: str = "smithi001") -> str:
    system_id = handle.sim.system_id(host)
    answer = handle.http().post(f"machines/{system_id}/", "deploy")
    assert answer.status_code == 200, answer.text
    handle.sim.clock.advance(600)
    assert handle.sim.machine(host)["status_name"] == "Deployed"
    return system_id


def release(handle, system_id: str, fields):
    return handle.http().post(f"machines/{system_id}/", "release", fields)


@pytest.fixture
def default_region(maas_sim_factory):
    return maas_sim_factory({"machines": MACHINES}, clock=ManualClock())


@pytest.fixture
def ceph_region(maas_sim_factory):
    return maas_sim_factory(
        {"machines": MACHINES, "release_scripts": ["wipe-disks", CEPH]}, clock=ManualClock()
    )


def test_a_region_knows_only_the_builtin_wipe_disks_unless_told_otherwise():
    assert Inventory.from_mapping({}).release_scripts == ("wipe-disks",)
    # wipe-disks is built in: it is there even when the inventory lists only the lab's own
    assert Inventory.from_mapping({"release_scripts": [CEPH]}).release_scripts == (
        "wipe-disks",
        CEPH,
    )
    with pytest.raises(InventoryError, match="release_scripts"):
        Inventory.from_mapping({"release_scripts": {"wipe-disks": True}})


@pytest.mark.parametrize(
    "scripts", [CEPH, f"wipe-disks,{CEPH}", "no-such-script", f"{CEPH},collect-logs"]
)
def test_unknown_release_script_is_refused_like_the_release_form(default_region, scripts):
    system_id = deployed(default_region)
    answer = release(default_region, system_id, [("erase", "true"), ("scripts", scripts)])
    unknown = next(s for s in scripts.split(",") if s != "wipe-disks")
    assert answer.status_code == 400
    assert answer.headers["Content-Type"] == "application/json; charset=utf-8"
    assert answer.json() == {
        "scripts": [f"Select a valid choice. {unknown} is not one of the available choices."]
    }
    # a refused form changes nothing
    machine = default_region.sim.machine(system_id)
    assert (machine["status_name"], machine["owner"]) == ("Deployed", "teuthology")


def test_the_first_unknown_script_is_named(ceph_region):
    system_id = deployed(ceph_region)
    answer = release(ceph_region, system_id, [("scripts", f"{CEPH},one,two")])
    assert answer.json() == {
        "scripts": ["Select a valid choice. one is not one of the available choices."]
    }


def test_ceph_erase_runs_wipe_disks_and_the_lab_script_under_releasing(ceph_region):
    sim = ceph_region.sim
    system_id = deployed(ceph_region)
    fields = [
        ("erase", "true"),
        ("quick_erase", "true"),
        ("scripts", f"wipe-disks,{CEPH}"),
        (f"{CEPH}_offsets_gib", "0,1,10,100,1000"),
        ("unrelated-script_param", "ignored"),
    ]
    answer = release(ceph_region, system_id, fields)
    assert answer.status_code == 200, answer.text
    assert (answer.json()["status"], answer.json()["status_name"]) == (12, "Releasing")
    record = sim.state.find(system_id)
    assert record.release_scripts == ("wipe-disks", CEPH)
    assert record.release_script_params == {CEPH: {"offsets_gib": "0,1,10,100,1000"}}
    sim.clock.advance(5)
    assert sim.machine(system_id)["power_state"] == "on"  # booted to run the scripts
    # quick erase (120 s) plus one release script (60 s)
    sim.clock.advance(120 + 60 - 5 - 1)
    assert sim.machine(system_id)["status_name"] == "Releasing"
    sim.clock.advance(1)
    machine = sim.machine(system_id)
    assert (machine["status"], machine["owner"], machine["power_state"]) == (4, None, "off")


def test_erase_alone_still_runs_only_wipe_disks_under_disk_erasing(ceph_region):
    system_id = deployed(ceph_region)
    answer = release(ceph_region, system_id, [("erase", "true"), ("quick_erase", "true")])
    assert answer.json()["status_name"] == "Disk erasing"
    assert ceph_region.sim.state.find(system_id).release_scripts == ("wipe-disks",)


def test_a_lab_script_without_erasing_runs_under_releasing(ceph_region):
    sim = ceph_region.sim
    system_id = deployed(ceph_region)
    answer = release(ceph_region, system_id, [("scripts", CEPH)])
    assert answer.json()["status_name"] == "Releasing"
    assert sim.state.find(system_id).erase_mode is None
    sim.clock.advance(59)
    assert sim.machine(system_id)["status_name"] == "Releasing"
    sim.clock.advance(1)
    assert sim.machine(system_id)["status_name"] == "Ready"


@pytest.mark.parametrize(
    ("fields", "status", "reason"),
    [
        ([("erase", "true")], "Failed disk erasing", "Failed to erase disks."),
        ([("erase", "true"), ("scripts", CEPH)], "Releasing failed", "Failed to erase disks."),
        ([("scripts", CEPH)], "Releasing failed", "Failed to release machine."),
    ],
)
def test_a_failing_release_script_fails_the_release(ceph_region, fields, status, reason):
    sim = ceph_region.sim
    system_id = deployed(ceph_region)
    sim.faults.add("erase_fail", machine="smithi001", times=1)
    release(ceph_region, system_id, fields)
    sim.clock.advance(2000)
    machine = sim.machine(system_id)
    assert machine["status_name"] == status
    assert machine["error_description"] == reason
    assert machine["status_message"] == f"Marking node failed - {reason}"


def test_the_library_ceph_release_is_accepted_only_where_the_script_exists(
    default_region, ceph_region
):
    params = _erase.release_params("ceph")

    def release_as_the_library(region):
        system_id = deployed(region)
        with MaasClient.from_config(region.config()) as client:
            machine = client.release(
                system_id,
                erase=params.erase,
                quick_erase=params.quick_erase,
                scripts=params.scripts,
                script_params=params.script_params,
            )
        return system_id, machine

    system_id, machine = release_as_the_library(ceph_region)
    assert machine.status == NodeStatus.RELEASING
    record = ceph_region.sim.state.find(system_id)
    assert record.release_scripts == params.scripts
    assert record.release_script_params == {CEPH: {"offsets_gib": "0,1,10,100,1000"}}

    with pytest.raises(MaasBadRequest, match=f"Select a valid choice. {CEPH} is not one"):
        release_as_the_library(default_region)
