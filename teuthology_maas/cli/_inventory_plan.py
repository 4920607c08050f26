"""`inventory`'s plan: what paddles' node records should say, from what MAAS knows.

Pure: the caller reads MAAS's machines and paddles' nodes; this decides, per node, to create
it, update some fields (old -> new), leave it unchanged, or skip it (with the reason). A node
paddles has locked belongs to a job: only fields that cannot disturb that job are updated
(`LOCKED_SAFE`, and `up` only towards down); the others are listed as held back.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from teuthology_maas.errors import InvalidNodeName, InvalidOSName
from teuthology_maas.machine_parts import interfaces_of
from teuthology_maas.models import Machine, NodeStatus
from teuthology_maas.names import check_os, parse_node_name
from teuthology_maas.node.images import canonical_version
from teuthology_maas.redact import excerpt
from teuthology_maas.teuthology.paddles_nodes import check_record

Action = Literal["create", "update", "unchanged", "skip", "orphan"]
ACTIONS: tuple[Action, ...] = ("create", "update", "unchanged", "skip", "orphan")

# MAAS's architecture names -> the ones teuthology and paddles use (`uname -m`).
ARCH_NAMES = {"amd64": "x86_64", "arm64": "aarch64", "ppc64el": "ppc64le", "s390x": "s390x",
              "i386": "i686", "armhf": "armv7l", "riscv64": "riscv64"}
# Power drivers that drive virtual machines, not hardware.
VM_POWER_TYPES = frozenset({"virsh", "lxd", "vmware", "proxmox", "hmcz", "webhook-vm"})
# MAAS statuses in which teuthology can use the machine (up in paddles); any other is down:
# new, commissioning, broken, testing, rescue, retired, missing ... need an operator first.
SERVING = frozenset({
    NodeStatus.READY, NodeStatus.ALLOCATED, NodeStatus.DEPLOYING, NodeStatus.DEPLOYED,
    NodeStatus.FAILED_DEPLOYMENT, NodeStatus.RELEASING, NodeStatus.DISK_ERASING,
    NodeStatus.FAILED_RELEASING, NodeStatus.FAILED_DISK_ERASING,
})
# Fields updated on a node paddles has locked: they describe the hardware, which a job's run
# does not change. machine_type, os_type and os_version are the job's (teuthology records the
# OS it reimaged), and `up` only goes down (lock_many stops handing the node out; the job
# holding it keeps it). description, locked and locked_by are never written.
LOCKED_SAFE = frozenset({"arch", "mac_address", "is_vm"})
_MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
_ARCH = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


@dataclass
class NodePlan:
    name: str  # the paddles name (FQDN)
    hostname: str
    action: Action
    system_id: str | None = None
    machine_type: str | None = None
    fields: dict[str, Any] = field(default_factory=dict)  # what a create sends
    changes: dict[str, tuple[Any, Any]] = field(default_factory=dict)  # update: old, new
    held: dict[str, tuple[Any, Any]] = field(default_factory=dict)  # locked: left alone
    reason: str = ""
    result: str | None = None  # what --apply did
    region: str | None = None  # the MAAS installation (maas: regions:) it was found in

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name, "hostname": self.hostname, "system_id": self.system_id,
            "machine_type": self.machine_type, "action": self.action,
            "fields": self.fields,
            "changes": {k: {"old": o, "new": n} for k, (o, n) in self.changes.items()},
            "held": {k: {"old": o, "new": n} for k, (o, n) in self.held.items()},
            "reason": self.reason or None, "result": self.result,
            **({"region": self.region} if self.region else {}),
        }


def mac_of(machine: Machine) -> str | None:
    """The boot interface's MAC (paddles keeps one, 17 characters), else the first physical
    interface's."""
    boot = machine.raw.get("boot_interface")
    if isinstance(boot, Mapping):
        mac = str(boot.get("mac_address") or "").lower()
        if _MAC.match(mac):
            return mac
    for interface in interfaces_of(machine):
        mac = interface.mac_address.lower()
        if interface.type == "physical" and _MAC.match(mac):
            return mac
    return None


def is_vm(machine: Machine) -> bool:
    raw = machine.raw
    return bool(raw.get("pod") or raw.get("virtualmachine_id") is not None
                or machine.power_type in VM_POWER_TYPES)


def record_of(machine: Machine, kind: str) -> dict[str, Any]:
    """The node record MAAS's view of `machine` gives (only what MAAS knows)."""
    record: dict[str, Any] = {"machine_type": kind, "is_vm": is_vm(machine),
                              "up": machine.status in SERVING}
    if machine.arch:
        arch = ARCH_NAMES.get(machine.arch, machine.arch)
        if not _ARCH.match(arch):
            raise ValueError(f"MAAS's architecture {excerpt(machine.architecture, 60)} is not "
                             "an architecture name")
        record["arch"] = arch
    mac = mac_of(machine)
    if mac:
        record["mac_address"] = mac
    if machine.status is NodeStatus.DEPLOYED and machine.osystem and machine.distro_series:
        os_type, _ = check_os(machine.osystem, machine.distro_series)  # plain names only
        record["os_type"] = os_type
        record["os_version"] = canonical_version(os_type, machine.distro_series)
    return record


def plan_node(name: str, machine: Machine, kind: str, node: Mapping[str, Any] | None
              ) -> NodePlan:
    plan = NodePlan(name, machine.hostname, "unchanged", machine.system_id, kind)
    try:
        parse_node_name(name)
        wanted = record_of(machine, kind)
        check_record(wanted)
    except (InvalidNodeName, InvalidOSName, ValueError) as exc:
        plan.action, plan.reason = "skip", str(exc)
        return plan
    if node is None:
        plan.action, plan.fields = "create", wanted
        return plan
    locked = bool(node.get("locked"))
    for key, new in wanted.items():
        old = node.get(key)
        if old == new or (key == "mac_address" and str(old).lower() == new):
            continue
        if not locked or key in LOCKED_SAFE or (key == "up" and new is False):
            plan.changes[key] = (old, new)
        else:
            plan.held[key] = (old, new)
    if plan.changes:
        plan.action = "update"
    if plan.held:
        who = node.get("locked_by") or "?"
        plan.reason = f"locked by {who}: {', '.join(plan.held)} left to its job"
    return plan


def paddles_name(hostname: str, nodes: Mapping[str, Mapping[str, Any]], fqdn: Any) -> str:
    """The node's name in paddles: the hostname with lab_domain, as teuthology names it; when
    paddles has no such node but exactly one whose short name is the hostname (a lab_domain
    not configured here), that one, so a node is never registered twice."""
    name = str(fqdn(hostname))
    if name in nodes:
        return name
    same = [n for n in nodes if n.split(".", 1)[0] == hostname]
    return same[0] if len(same) == 1 else name


def make_plan(
    typed: Sequence[tuple[Machine, str]],
    nodes: Mapping[str, Mapping[str, Any]],
    fqdn: Any,
    wanted_types: Sequence[str],
) -> list[NodePlan]:
    """One plan per MAAS machine of a wanted type (`typed`: machine, type), plus an `orphan`
    line for each paddles node of those types that MAAS does not show (never deleted)."""
    by_name: dict[str, list[tuple[Machine, str]]] = {}
    for machine, kind in typed:
        by_name.setdefault(paddles_name(machine.hostname, nodes, fqdn), []).append(
            (machine, kind))
    plans: list[NodePlan] = []
    for name, found in sorted(by_name.items()):
        if len(found) > 1:
            ids = ", ".join(m.system_id for m, _ in found)
            for machine, kind in found:
                plans.append(NodePlan(name, machine.hostname, "skip", machine.system_id, kind,
                                      reason=f"{len(found)} MAAS machines ({ids}) have this "
                                      "name; rename all but one in MAAS"))
            continue
        machine, kind = found[0]
        plans.append(plan_node(name, machine, kind, nodes.get(name)))
    for name, node in sorted(nodes.items()):
        if name not in by_name and node.get("machine_type") in wanted_types:
            plans.append(NodePlan(name, name.split(".", 1)[0], "orphan",
                                  machine_type=node.get("machine_type"),
                                  reason="in paddles, not among MAAS's machines of its type; "
                                  "left as it is (inventory never deletes a node)"))
    return plans
