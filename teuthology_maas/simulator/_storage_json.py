"""Block devices rendered the way MAAS's machine handler shows them (blockdevice_set ...)."""

from __future__ import annotations

import uuid
from typing import Any

from teuthology_maas.simulator._storage import Disk, Filesystem, Storage

API = "/MAAS/api/2.0/"


def disks_json(storage: Storage, system_id: str) -> list[dict[str, Any]]:
    return [_disk_json(system_id, disk) for disk in storage.disks]


def virtual_json(storage: Storage, system_id: str) -> list[dict[str, Any]]:
    return [
        {
            "id": v.id,
            "system_id": system_id,
            "name": v.name,
            "path": f"/dev/disk/by-dname/{v.name}",
            "size": v.size,
            "block_size": 4096,
            "tags": [],
            "type": "virtual",
            "uuid": str(uuid.uuid5(uuid.NAMESPACE_OID, f"{system_id}-{v.id}")),
            "filesystem": v.filesystem.json() if v.filesystem else None,
            "partitions": [],
            "used_for": _used_for(v.filesystem),
            "resource_uri": f"{API}nodes/{system_id}/blockdevices/{v.id}/",
        }
        for v in storage.virtual
    ]


def groups_json(system_id: str, ids: list[int]) -> list[dict[str, Any]]:
    """Volume groups, bcaches and cache sets appear as incomplete references."""
    return [{"system_id": system_id, "id": i, "__incomplete__": True} for i in ids]


def _disk_json(system_id: str, disk: Disk) -> dict[str, Any]:
    used = sum(p.size for p in disk.partitions)
    if disk.filesystem is not None:
        used = disk.size
    partitions: list[dict[str, Any]] = [
        {
            "id": p.id,
            "uuid": str(uuid.uuid5(uuid.NAMESPACE_OID, f"{system_id}-{p.id}")),
            "size": p.size,
            "bootable": p.bootable,
            "tags": [],
            "type": "partition",
            "path": f"/dev/disk/by-dname/{disk.name}-part{n}",
            "system_id": system_id,
            "device_id": disk.id,
            "filesystem": p.filesystem.json() if p.filesystem else None,
            "used_for": _used_for(p.filesystem),
            "resource_uri": f"{API}nodes/{system_id}/blockdevices/{disk.id}/partition/{p.id}",
        }
        for n, p in enumerate(disk.partitions, start=1)
    ]
    count = len(disk.partitions)
    if count:
        used_for = f"GPT partitioned with {count} partition{'' if count == 1 else 's'}"
    else:
        used_for = _used_for(disk.filesystem) or "Unused"
    return {
        "id": disk.id,
        "system_id": system_id,
        "name": disk.name,
        "id_path": f"/dev/disk/by-id/wwn-0x5000c500{disk.id:08x}",
        "path": f"/dev/disk/by-dname/{disk.name}",
        "model": disk.model,
        "serial": disk.serial,
        "size": disk.size,
        "block_size": 512,
        "tags": list(disk.tags),
        "type": "physical",
        "uuid": None,
        "storage_pool": None,
        "available_size": disk.size - used,
        "used_size": used,
        "used_for": used_for,
        "partition_table_type": "GPT" if disk.partitions else None,
        "filesystem": disk.filesystem.json() if disk.filesystem else None,
        "partitions": partitions,
        "numa_node": 0,
        "firmware_version": "SN05",
        "serial_number": disk.serial,
        "resource_uri": f"{API}nodes/{system_id}/blockdevices/{disk.id}/",
    }


def _used_for(fs: Filesystem | None) -> str:
    if fs is None:
        return ""
    if fs.mount_point:
        return f"{fs.fstype} formatted filesystem mounted at {fs.mount_point}"
    return {
        "lvm-pv": "LVM volume",
        "bcache-backing": "Backing device for bcache",
        "bcache-cache": "Cache device for bcache",
    }.get(fs.fstype, f"Unmounted {fs.fstype} formatted filesystem")
