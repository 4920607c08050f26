"""Machine objects rendered the way MAAS's machine handler renders them (reference §4.4)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from teuthology_maas.simulator._events import EventLog
from teuthology_maas.simulator._records import MachineRecord
from teuthology_maas.simulator._storage_json import disks_json, groups_json, virtual_json

API_ROOT = "/MAAS/api/2.0/"
_TEST_STATUS_FIELDS = (
    "commissioning",
    "testing",
    "cpu_test",
    "memory_test",
    "network_test",
    "storage_test",
    "other_test",
    "interface_test",
)
_HARDWARE_INFO_KEYS = (
    "system_vendor",
    "system_product",
    "system_family",
    "system_version",
    "system_sku",
    "system_serial",
    "cpu_model",
    "mainboard_vendor",
    "mainboard_product",
    "mainboard_serial",
    "mainboard_version",
    "mainboard_firmware_vendor",
    "mainboard_firmware_date",
    "mainboard_firmware_version",
    "chassis_vendor",
    "chassis_type",
    "chassis_serial",
    "chassis_version",
)


@dataclass
class Catalog:
    """Zones, pools and domains: named objects with ids, created on first mention."""

    zones: dict[str, int] = field(default_factory=lambda: {"default": 1})
    pools: dict[str, int] = field(default_factory=lambda: {"default": 0})
    domains: dict[str, int] = field(default_factory=lambda: {"maas": 0})

    def add(self, machine: MachineRecord) -> None:
        self.zones.setdefault(machine.zone, max(self.zones.values(), default=0) + 1)
        self.pools.setdefault(machine.pool, max(self.pools.values(), default=-1) + 1)
        self.domains.setdefault(machine.domain, max(self.domains.values(), default=-1) + 1)

    def zone_json(self, name: str) -> dict[str, Any]:
        zone_id = self.zones[name]
        description = "" if name != "default" else "Default availability zone"
        return {
            "id": zone_id,
            "name": name,
            "description": description,
            "resource_uri": f"{API_ROOT}zones/{name}/",
        }

    def pool_json(self, name: str) -> dict[str, Any]:
        pool_id = self.pools[name]
        description = "Default pool" if name == "default" else ""
        return {
            "id": pool_id,
            "name": name,
            "description": description,
            "resource_uri": f"{API_ROOT}resourcepool/{pool_id}/",
        }

    def domain_json(self, name: str, record_count: int = 0) -> dict[str, Any]:
        domain_id = self.domains[name]
        return {
            "authoritative": True,
            "ttl": None,
            "resource_record_count": record_count,
            "name": name,
            "is_default": domain_id == 0,
            "id": domain_id,
            "resource_uri": f"{API_ROOT}domains/{domain_id}/",
        }


def machine_json(
    machine: MachineRecord, catalog: Catalog, events: EventLog, *, loopback_ip: bool
) -> dict[str, Any]:
    latest = events.latest_info(machine.system_id)
    nics = machine.interfaces
    interfaces = nics.all_json(machine.system_id)
    storage = machine.disks
    disks = disks_json(storage, machine.system_id)
    installation = machine.installation
    data: dict[str, Any] = {
        "system_id": machine.system_id,
        "hostname": machine.hostname,
        "fqdn": machine.fqdn,
        "domain": catalog.domain_json(machine.domain),
        "description": machine.description,
        "hardware_uuid": f"4c4c4544-0000-1000-8000-{machine.index:012d}",
        "owner": machine.owner,
        "owner_data": dict(machine.workload_annotations),
        "workload_annotations": dict(machine.workload_annotations),
        "locked": machine.locked,
        "status": int(machine.status),
        "status_name": machine.status.label,
        "status_message": latest.status_message if latest else None,
        "status_action": latest.action if latest else None,
        "error_description": machine.error_description,
        "architecture": machine.architecture,
        "min_hwe_kernel": machine.min_hwe_kernel,
        "hwe_kernel": machine.hwe_kernel,
        "osystem": machine.osystem,
        "distro_series": machine.distro_series,
        "ephemeral_deploy": machine.ephemeral_deploy,
        "netboot": machine.netboot,
        "power_type": machine.power_type,
        "power_state": machine.power_state,
        "cpu_count": machine.cpu_count,
        "cpu_speed": machine.cpu_speed,
        "memory": machine.memory,
        "swap_size": None,
        "storage": storage.total_mb(),
        "tag_names": list(machine.tags),
        "ip_addresses": ["127.0.0.1"]
        if loopback_ip
        else [f"10.0.{machine.index // 250}.{machine.index % 250 + 2}"],
        "interface_set": interfaces,
        "boot_interface": nics.json(machine.system_id, nics.boot),
        "zone": catalog.zone_json(machine.zone),
        "pool": catalog.pool_json(machine.pool),
        "address_ttl": None,
        "disable_ipv4": False,
        "bios_boot_method": "uefi",
        "boot_disk": disks[0],
        "blockdevice_set": disks + virtual_json(storage, machine.system_id),
        "physicalblockdevice_set": disks,
        "virtualblockdevice_set": virtual_json(storage, machine.system_id),
        "volume_groups": groups_json(machine.system_id, storage.volume_groups),
        "raids": [],
        "bcaches": groups_json(machine.system_id, storage.bcaches),
        "cache_sets": groups_json(machine.system_id, storage.cache_sets),
        "special_filesystems": [],
        "default_gateways": {
            "ipv4": {"gateway_ip": None, "link_id": None},
            "ipv6": {"gateway_ip": None, "link_id": None},
        },
        "parent": None,
        "node_type": 0,
        "node_type_name": "Machine",
        "current_commissioning_result_id": machine.index * 3 + 1,
        "current_testing_result_id": machine.index * 3 + 2,
        "current_installation_result_id": installation.id if installation else None,
        "hardware_info": {key: "Unknown" for key in _HARDWARE_INFO_KEYS},
        "numanode_set": [
            {
                "index": 0,
                "cores": list(range(machine.cpu_count)),
                "memory": machine.memory,
                "hugepages_set": [],
            }
        ],
        "last_sync": None,
        "next_sync": None,
        "sync_interval": None,
        "enable_hw_sync": False,
        "enable_kernel_crash_dump": False,
        "is_dpu": False,
        "resource_uri": f"{API_ROOT}machines/{machine.system_id}/",
    }
    data["hardware_info"].update(
        {
            "system_vendor": "Supermicro",
            "system_product": "SYS-5019C-MR",
            "cpu_model": "Intel(R) Xeon(R) E-2278G CPU @ 3.40GHz",
        }
    )
    for name in _TEST_STATUS_FIELDS:
        data[f"{name}_status"] = 2
        data[f"{name}_status_name"] = "Passed"
    return data
