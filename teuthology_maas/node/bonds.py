"""Network bonds a lab asks for, made on a machine before deploy and undone after release.

MAAS keeps a bond across deployments and releases: a bond made for one job would otherwise
stay for whoever gets the machine next. A bond made here carries the tag `teuthology-maas`
plus one `teuthology-maas-was:<member>=<mode>[:<subnet id>[:<ip>]]` tag per member that had a
link (MAAS clears the members' links when they join a bond), so any process can undo it from
what MAAS shows: delete the bond, then link each member as it was.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from teuthology_maas.deploy_config import Bond
from teuthology_maas.errors import MaasOutcomeUnknown
from teuthology_maas.maas.client import MaasClient
from teuthology_maas.machine_parts import Interface, Link, interfaces_of
from teuthology_maas.models import Machine

log = logging.getLogger("teuthology_maas.node.provisioner")

OUR_TAG = "teuthology-maas"
_WAS = "teuthology-maas-was:"
_ADDRESS_MODES = ("auto", "dhcp", "static")


@dataclass(frozen=True)
class WasLinked:
    member: str
    mode: str
    subnet_id: int | None = None
    ip_address: str | None = None

    def tag(self) -> str:
        parts = [self.mode]
        if self.subnet_id is not None:
            parts.append(str(self.subnet_id))
            if self.ip_address:
                parts.append(self.ip_address)
        return f"{_WAS}{self.member}={':'.join(parts)}"

    @classmethod
    def from_tag(cls, tag: str) -> WasLinked | None:
        if not tag.startswith(_WAS):
            return None
        member, _, link = tag[len(_WAS) :].partition("=")
        mode, _, rest = link.partition(":")
        subnet, _, ip = rest.partition(":")
        if not member or mode not in (*_ADDRESS_MODES, "link_up"):
            return None
        return cls(member, mode, int(subnet) if subnet.isdigit() else None, ip or None)


def ours(interface: Interface) -> bool:
    return interface.type == "bond" and OUR_TAG in interface.tags


def matches(existing: Interface, bond: Bond) -> bool:
    """Whether `existing` already is the bond asked for (same members, mode and options)."""
    params = existing.params or {}
    if existing.type != "bond" or existing.name != bond.name:
        return False
    if set(existing.parents) != set(bond.interfaces):
        return False
    if params.get("bond_mode") != bond.mode:
        return False
    if bond.mtu is not None and params.get("mtu") != bond.mtu:
        return False
    return all(str(params.get(f"bond_{k}")) == str(v) for k, v in bond.options)


def problems(machine: Machine, bonds: Sequence[Bond]) -> list[str]:
    """Why the bonds cannot be made on `machine` as it is now (empty when they can)."""
    interfaces = {i.name: i for i in interfaces_of(machine)}
    physical = sorted(n for n, i in interfaces.items() if i.type == "physical")
    found: list[str] = []
    for bond in bonds:
        existing = interfaces.get(bond.name)
        if existing is not None and not ours(existing) and not matches(existing, bond):
            found.append(
                f"{bond.name}: {machine.describe()} already has an interface named {bond.name} "
                f"({existing.type}) that teuthology-maas did not make"
            )
            continue
        for name in bond.interfaces:
            member = interfaces.get(name)
            if member is None:
                found.append(
                    f"{bond.name}: {machine.describe()} has no interface {name!r}; its "
                    f"interfaces: {', '.join(physical) or 'none'}"
                )
                continue
            users = [c for c in member.children if c != bond.name]
            if any(not ours(interfaces[c]) for c in users if c in interfaces):
                found.append(f"{bond.name}: {name} is already in use by {', '.join(users)}")
        vlans = {interfaces[n].vlan_id for n in bond.interfaces if n in interfaces}
        if len(vlans) > 1:
            found.append(f"{bond.name}: {', '.join(bond.interfaces)} are on different VLANs")
    return found


def _was_linked(interfaces: dict[str, Interface], bond: Bond) -> list[WasLinked]:
    records = []
    for name in bond.interfaces:
        for link in interfaces[name].links:
            if link.mode in (*_ADDRESS_MODES, "link_up") and (
                link.mode != "link_up" or link.subnet_id is not None
            ):
                ip = link.ip_address if link.mode == "static" else None
                records.append(WasLinked(name, link.mode, link.subnet_id, ip))
    return records


def _link_for(bond: Bond, records: list[WasLinked]) -> WasLinked | None:
    """How the new bond gets its address, from the members' former links."""
    addressed = [r for r in records if r.mode in _ADDRESS_MODES]
    if bond.link == "link_up":
        return None
    if bond.link == "inherit":
        return addressed[0] if addressed else None
    subnet = next((r.subnet_id for r in records if r.subnet_id is not None), None)
    return WasLinked(bond.name, bond.link, subnet)


def make(client: MaasClient, machine: Machine, bond: Bond) -> Machine:
    """Create `bond` (members by name), tagged with how to undo it, and give it its link."""
    interfaces = {i.name: i for i in interfaces_of(machine)}
    records = _was_linked(interfaces, bond)
    link = _link_for(bond, records)
    tags = [OUR_TAG, *(r.tag() for r in records)]
    sid = machine.system_id

    def present(m: Machine) -> Interface | None:
        return next((i for i in interfaces_of(m) if i.name == bond.name), None)

    made = _settled(
        client,
        sid,
        lambda: client.create_bond(
            sid,
            name=bond.name,
            parents=[interfaces[n].id for n in bond.interfaces],
            mode=bond.mode,
            options=dict(bond.options),
            mtu=bond.mtu,
            tags=tags,
        ),
        lambda m: present(m) is not None,
    )
    created = present(made) if isinstance(made, Machine) else made
    if link is not None and isinstance(created, Interface):
        _link(client, sid, created.id, link)
    log.info(
        "%s: made %s (%s of %s)",
        machine.describe(),
        bond.name,
        bond.mode,
        ", ".join(bond.interfaces),
    )
    return client.get_machine(sid)


def undo(client: MaasClient, machine: Machine, bond: Interface) -> Machine:
    """Delete one of our bonds and link its members as they were before it."""
    sid = machine.system_id
    records = [r for t in bond.tags if (r := WasLinked.from_tag(t)) is not None]
    _settled(
        client,
        sid,
        lambda: client.delete_interface(sid, bond.id),
        lambda m: all(i.id != bond.id for i in interfaces_of(m)),
    )
    after = {i.name: i for i in interfaces_of(client.get_machine(sid))}
    for record in records:
        member = after.get(record.member)
        if member is not None and not member.links:
            _link(client, sid, member.id, record)
    log.info(
        "%s: undid %s (members relinked: %s)",
        machine.describe(),
        bond.name,
        ", ".join(r.member for r in records) or "none",
    )
    return client.get_machine(sid)


def _link(client: MaasClient, system_id: str, interface_id: int, record: WasLinked) -> None:
    def linked(m: Machine) -> bool:
        found = next((i for i in interfaces_of(m) if i.id == interface_id), None)
        return found is not None and any(_same(link, record) for link in found.links)

    _settled(
        client,
        system_id,
        lambda: client.link_subnet(
            system_id,
            interface_id,
            mode=record.mode,
            subnet=record.subnet_id,
            ip_address=record.ip_address,
            force=record.mode == "link_up",
        ),
        linked,
    )


def _same(link: Link, record: WasLinked) -> bool:
    return link.mode == record.mode and (
        record.subnet_id is None or link.subnet_id == record.subnet_id
    )


def _settled(
    client: MaasClient,
    system_id: str,
    call: Callable[[], object],
    applied: Callable[[Machine], bool],
    attempts: int = 3,
) -> object:
    """Run an interface call; when its outcome is unknown, re-read the machine and send it
    again only if MAAS shows it did not apply."""
    for attempt in range(attempts):
        try:
            return call()
        except MaasOutcomeUnknown:
            machine = client.get_machine(system_id)
            if applied(machine):
                return machine
            if attempt + 1 == attempts:
                raise
    raise AssertionError("unreachable")
