"""Machine: what a parsed MAAS machine keeps of MAAS's object, and what that costs."""

from __future__ import annotations

import copy
import gc
import json
import tracemalloc
from typing import Any

import pytest

from teuthology_maas.fleet._hostwire import machine_from_json, machine_to_json
from teuthology_maas.machine_parts import interfaces_of, physical_disks_of
from teuthology_maas.models import Machine, NodeStatus


def maas_shaped(index: int) -> dict[str, Any]:
    """A machine object with the nested parts a real MAAS sends (disks, interfaces)."""
    disks = [
        {
            "id": index * 10 + d, "name": f"sd{'abc'[d]}", "type": "physical",
            "size": 480_103_981_056, "tags": ["ssd", "rotary"][: d + 1],
            "serial": f"S{index:05d}{d}", "model": "SAMSUNG MZ7LH480", "partitions": [],
            "filesystem": None, "resource_uri": f"/MAAS/api/2.0/nodes/m{index}/blockdevices/{d}/",
        }
        for d in range(3)
    ]
    nics = [
        {
            "id": index * 10 + n, "name": f"eno{n + 1}", "type": "physical",
            "mac_address": f"52:54:00:{index // 256:02x}:{index % 256:02x}:{n:02x}",
            "links": [{"id": n, "mode": "auto", "subnet": {"cidr": "10.0.0.0/16", "vlan": 5001}}],
            "vlan": {"vid": 0, "mtu": 1500, "fabric": "fabric-0"}, "enabled": True,
        }
        for n in range(2)
    ]
    return {
        "system_id": f"m{index:05d}", "hostname": f"smithi{index:03d}", "status": 9,
        "status_name": "Deploying", "status_message": "Deploying: Installing OS",
        "owner": "teuthology", "owner_data": {"teuthology.job": "42"},
        "architecture": "amd64/generic", "osystem": "ubuntu", "distro_series": "jammy",
        "interface_set": nics, "boot_interface": nics[0],
        "blockdevice_set": disks, "physicalblockdevice_set": disks, "boot_disk": disks[0],
        "hardware_info": {"cpu_model": "Intel(R) Xeon(R) E5-2620 v4", "mainboard": "X10SRi-F"},
        "description": "rack 3, slot 7, façade ☃",  # not ASCII
    }


def test_raw_is_the_whole_object_as_maas_sent_it():
    data = maas_shaped(7)
    machine = Machine.from_json(copy.deepcopy(data))
    assert machine.raw == data
    assert machine.raw["description"] == "rack 3, slot 7, façade ☃"
    assert [i.mac_address for i in interfaces_of(machine)] == [
        "52:54:00:00:07:00", "52:54:00:00:07:01"
    ]  # fmt: skip
    assert [d.name for d in physical_disks_of(machine)] == ["sda", "sdb", "sdc"]


def test_raw_is_a_fresh_copy_that_changing_leaves_the_machine_as_it_was():
    machine = Machine.from_json(maas_shaped(3))
    mine = machine.raw
    mine["interface_set"].clear()
    mine["hostname"] = "someone-else"
    assert machine.raw == maas_shaped(3)
    assert machine == Machine.from_json(maas_shaped(3))


def test_the_source_object_can_change_after_parsing_without_changing_the_machine():
    data = maas_shaped(4)
    machine = Machine.from_json(data)
    data["interface_set"][0]["mac_address"] = "00:00:00:00:00:00"
    assert interfaces_of(machine)[0].mac_address == "52:54:00:00:04:00"


def test_a_machine_handed_to_another_process_arrives_whole():
    machine = Machine.from_json(maas_shaped(5))
    wire = json.loads(json.dumps(machine_to_json(machine)))
    arrived = machine_from_json(wire)
    assert arrived == machine
    assert arrived is not None and arrived.raw == maas_shaped(5)


def test_a_machine_made_in_code_has_an_empty_object_and_goes_over_the_wire_by_its_fields():
    machine = Machine(system_id="abc123", hostname="n1", status=NodeStatus.READY,
                      status_name="Ready")  # fmt: skip
    assert machine.raw == {}
    assert machine_from_json(machine_to_json(machine)) == machine


def _held_bytes(make: Any, count: int) -> int:
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        held = [make(i) for i in range(count)]
        gc.collect()
        size = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert len(held) == count
    return size


def test_holding_many_machines_costs_a_fraction_of_their_decoded_objects():
    # A lock-many of 1000 nodes holds a few thousand machines while it waits (each waiter's
    # last poll, each node's last action answer); decoded, MAAS's objects alone took 150 MB.
    count = 200
    decoded = _held_bytes(lambda i: json.loads(json.dumps(maas_shaped(i))), count)
    machines = _held_bytes(lambda i: Machine.from_json(json.loads(json.dumps(maas_shaped(i)))),
                           count)  # fmt: skip
    assert machines < decoded / 2, (machines, decoded)


def test_an_object_that_is_not_json_is_a_protocol_error_naming_it():
    from teuthology_maas.errors import MaasProtocolError

    data = dict(maas_shaped(1), hardware_info={"when": object()})  # only from code, never MAAS
    with pytest.raises(MaasProtocolError, match="a machine object that cannot be kept as JSON"):
        Machine.from_json(data)
