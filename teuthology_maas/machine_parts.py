"""A machine's network interfaces and block devices as MAAS returns them, parsed into typed
values. No I/O here. A machine object carries both (`interface_set`, `blockdevice_set`); the
interfaces API returns the same interface objects."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from teuthology_maas.models import Machine


def _int(data: Mapping[str, Any], key: str, what: str) -> int:
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{what} without an integer {key}: {dict(data)!r:.200}")
    return value


def _names(value: Any) -> tuple[str, ...]:
    if not isinstance(value, Sequence) or isinstance(value, str):
        return ()
    return tuple(str(v) for v in value)


@dataclass(frozen=True)
class Link:
    """One `links` entry: how an interface gets its address on a subnet."""

    id: int
    mode: str  # auto, dhcp, static, link_up
    subnet_id: int | None = None
    subnet_cidr: str = ""
    ip_address: str | None = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Link:
        subnet = data.get("subnet")
        subnet_id = subnet.get("id") if isinstance(subnet, Mapping) else None
        return cls(
            id=_int(data, "id", "link"),
            mode=str(data.get("mode") or ""),
            subnet_id=subnet_id if isinstance(subnet_id, int) else None,
            subnet_cidr=str(subnet.get("cidr") or "") if isinstance(subnet, Mapping) else "",
            ip_address=str(data["ip_address"]) if data.get("ip_address") else None,
        )


@dataclass(frozen=True)
class Interface:
    id: int
    name: str
    type: str  # physical, bond, bridge, vlan, unknown
    mac_address: str = ""
    vlan_id: int | None = None
    parents: tuple[str, ...] = ()
    children: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    links: tuple[Link, ...] = ()
    params: Mapping[str, Any] | None = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Interface:
        if not isinstance(data, Mapping):
            raise ValueError(f"interface object is not a mapping: {data!r:.200}")
        vlan = data.get("vlan")
        vlan_id = vlan.get("id") if isinstance(vlan, Mapping) else None
        links = data.get("links")
        params = data.get("params")
        return cls(
            id=_int(data, "id", "interface"),
            name=str(data.get("name") or ""),
            type=str(data.get("type") or ""),
            mac_address=str(data.get("mac_address") or ""),
            vlan_id=vlan_id if isinstance(vlan_id, int) else None,
            parents=_names(data.get("parents")),
            children=_names(data.get("children")),
            tags=_names(data.get("tags")),
            links=tuple(
                Link.from_json(link)
                for link in (links if isinstance(links, Sequence) else ())
                if isinstance(link, Mapping)
            ),
            params=dict(params) if isinstance(params, Mapping) else None,
        )

    def describe(self) -> str:
        return f"{self.name} ({self.type}, id {self.id})"


@dataclass(frozen=True)
class BlockDevice:
    id: int
    name: str
    type: str  # physical, virtual
    size: int
    tags: tuple[str, ...] = ()
    in_use: bool = False  # partitioned or formatted

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> BlockDevice:
        if not isinstance(data, Mapping):
            raise ValueError(f"block device object is not a mapping: {data!r:.200}")
        size = data.get("size")
        return cls(
            id=_int(data, "id", "block device"),
            name=str(data.get("name") or ""),
            type=str(data.get("type") or ""),
            size=size if isinstance(size, int) and not isinstance(size, bool) else 0,
            tags=_names(data.get("tags")),
            in_use=bool(data.get("partitions")) or bool(data.get("filesystem")),
        )


def _items(machine: Machine, key: str) -> list[Mapping[str, Any]]:
    value = machine.raw.get(key)
    if not isinstance(value, Sequence) or isinstance(value, str):
        return []
    return [item for item in value if isinstance(item, Mapping)]


def interfaces_of(machine: Machine) -> list[Interface]:
    """The machine's interfaces (`interface_set`), in MAAS's order."""
    return [Interface.from_json(item) for item in _items(machine, "interface_set")]


def physical_disks_of(machine: Machine) -> list[BlockDevice]:
    """The machine's physical disks (`physicalblockdevice_set`, else the physical ones of
    `blockdevice_set`); the first is normally the boot disk."""
    items = _items(machine, "physicalblockdevice_set") or [
        item for item in _items(machine, "blockdevice_set") if item.get("type") == "physical"
    ]
    return [BlockDevice.from_json(item) for item in items]
