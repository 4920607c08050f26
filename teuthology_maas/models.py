"""MAAS objects as the API returns them, parsed into typed values. No I/O here.

Parsing is where MAAS's answers are validated: a field of the wrong type, a required field
missing, or a list where an object belongs is a `MaasProtocolError` naming the field and
showing a short excerpt, never a raw KeyError/TypeError/ValueError.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, TypedDict

from teuthology_maas.answers import Fields, malformed


class NodeStatus(IntEnum):
    """MAAS NODE_STATUS: the numbers, list-filter keywords and labels of the real server."""

    NEW = 0
    COMMISSIONING = 1
    FAILED_COMMISSIONING = 2
    MISSING = 3
    READY = 4
    RESERVED = 5
    DEPLOYED = 6
    RETIRED = 7
    BROKEN = 8
    DEPLOYING = 9
    ALLOCATED = 10
    FAILED_DEPLOYMENT = 11
    RELEASING = 12
    FAILED_RELEASING = 13
    DISK_ERASING = 14
    FAILED_DISK_ERASING = 15
    RESCUE_MODE = 16
    ENTERING_RESCUE_MODE = 17
    FAILED_ENTERING_RESCUE_MODE = 18
    EXITING_RESCUE_MODE = 19
    FAILED_EXITING_RESCUE_MODE = 20
    TESTING = 21
    FAILED_TESTING = 22

    @property
    def label(self) -> str:
        """The exact `status_name` MAAS shows (note 'Releasing failed')."""
        return _LABELS[self]

    @property
    def keyword(self) -> str:
        """The lower-case keyword accepted by the `status` filter of GET machines/."""
        return self.name.lower()

    @property
    def is_failure(self) -> bool:
        return self in FAILURE_STATUSES

    @property
    def is_transitional(self) -> bool:
        return self in TRANSITIONAL_STATUSES

    @classmethod
    def from_label(cls, label: str) -> NodeStatus:
        """Parse a status_name or keyword, case-insensitively."""
        wanted = label.strip().lower()
        for status in cls:
            if wanted in (status.label.lower(), status.keyword):
                return status
        raise ValueError(f"unknown MAAS status {label!r}")


_LABELS: dict[NodeStatus, str] = {
    NodeStatus.NEW: "New",
    NodeStatus.COMMISSIONING: "Commissioning",
    NodeStatus.FAILED_COMMISSIONING: "Failed commissioning",
    NodeStatus.MISSING: "Missing",
    NodeStatus.READY: "Ready",
    NodeStatus.RESERVED: "Reserved",
    NodeStatus.DEPLOYED: "Deployed",
    NodeStatus.RETIRED: "Retired",
    NodeStatus.BROKEN: "Broken",
    NodeStatus.DEPLOYING: "Deploying",
    NodeStatus.ALLOCATED: "Allocated",
    NodeStatus.FAILED_DEPLOYMENT: "Failed deployment",
    NodeStatus.RELEASING: "Releasing",
    NodeStatus.FAILED_RELEASING: "Releasing failed",
    NodeStatus.DISK_ERASING: "Disk erasing",
    NodeStatus.FAILED_DISK_ERASING: "Failed disk erasing",
    NodeStatus.RESCUE_MODE: "Rescue mode",
    NodeStatus.ENTERING_RESCUE_MODE: "Entering rescue mode",
    NodeStatus.FAILED_ENTERING_RESCUE_MODE: "Failed to enter rescue mode",
    NodeStatus.EXITING_RESCUE_MODE: "Exiting rescue mode",
    NodeStatus.FAILED_EXITING_RESCUE_MODE: "Failed to exit rescue mode",
    NodeStatus.TESTING: "Testing",
    NodeStatus.FAILED_TESTING: "Failed testing",
}

FAILURE_STATUSES: frozenset[NodeStatus] = frozenset(
    {
        NodeStatus.FAILED_COMMISSIONING,
        NodeStatus.FAILED_DEPLOYMENT,
        NodeStatus.FAILED_RELEASING,
        NodeStatus.FAILED_DISK_ERASING,
        NodeStatus.FAILED_ENTERING_RESCUE_MODE,
        NodeStatus.FAILED_EXITING_RESCUE_MODE,
        NodeStatus.FAILED_TESTING,
    }
)

TRANSITIONAL_STATUSES: frozenset[NodeStatus] = frozenset(
    {
        NodeStatus.COMMISSIONING,
        NodeStatus.DEPLOYING,
        NodeStatus.RELEASING,
        NodeStatus.DISK_ERASING,
        NodeStatus.ENTERING_RESCUE_MODE,
        NodeStatus.EXITING_RESCUE_MODE,
        NodeStatus.TESTING,
    }
)

# -- status sets the node lifecycle decides and waits with (written here only) ----------------

# Nobody holds the machine: where a release ends.
FREE: frozenset[NodeStatus] = frozenset({NodeStatus.READY, NodeStatus.NEW})
# A release under way, with or without erasing disks.
RELEASE_IN_PROGRESS: frozenset[NodeStatus] = frozenset(
    {NodeStatus.RELEASING, NodeStatus.DISK_ERASING}
)
# A release (or its erase) MAAS gave up on. Often fine the second time (a BMC hiccup, an erase
# that failed once), so the lifecycle releases it again rather than refusing the node.
RELEASE_FAILED: frozenset[NodeStatus] = frozenset(
    {NodeStatus.FAILED_RELEASING, NodeStatus.FAILED_DISK_ERASING}
)
# What release() sends a release for (Deploying is aborted first; Broken is left to an operator).
RELEASABLE: frozenset[NodeStatus] = RELEASE_FAILED | {
    NodeStatus.ALLOCATED, NodeStatus.RESERVED, NodeStatus.DEPLOYED, NodeStatus.FAILED_DEPLOYMENT
}
# What abort stops: a deployment or a disk erase in flight.
ABORTABLE: frozenset[NodeStatus] = frozenset({NodeStatus.DEPLOYING, NodeStatus.DISK_ERASING})
# A deploy / release request took effect once MAAS shows one of these.
DEPLOY_STARTED: frozenset[NodeStatus] = frozenset(
    {NodeStatus.DEPLOYING, NodeStatus.DEPLOYED, NodeStatus.FAILED_DEPLOYMENT}
)
RELEASE_STARTED: frozenset[NodeStatus] = RELEASE_IN_PROGRESS | FREE
# What a failed create() must not leave behind: it releases a machine of ours in these (or,
# with keep_on_failure, keeps it as it is).
CLEANABLE: frozenset[NodeStatus] = DEPLOY_STARTED | {NodeStatus.ALLOCATED}
# Where MAAS accepts a lock (its lock form: Deployed, or a deployment in flight).
LOCKABLE: frozenset[NodeStatus] = frozenset({NodeStatus.DEPLOYED, NodeStatus.DEPLOYING})

# Where a wait for a deployment stops: the target, or anything MAAS can end a deployment in.
DEPLOY_TARGET: frozenset[NodeStatus] = frozenset({NodeStatus.DEPLOYED})
DEPLOY_FAILURE: frozenset[NodeStatus] = frozenset(
    # A deployment whose BMC cannot be driven reverts to Allocated (MAAS aborts it).
    {NodeStatus.FAILED_DEPLOYMENT, NodeStatus.BROKEN, NodeStatus.ALLOCATED}
)
RELEASE_TARGET: frozenset[NodeStatus] = FREE
RELEASE_FAILURE: frozenset[NodeStatus] = RELEASE_FAILED | {NodeStatus.BROKEN}
ABORT_TARGET: frozenset[NodeStatus] = frozenset(
    {NodeStatus.ALLOCATED, NodeStatus.FAILED_DEPLOYMENT, NodeStatus.READY}
)
# Where an abort can end: Deploying -> Allocated (or Failed deployment when MAAS had already
# failed it, or Deployed when the deployment finished first), Disk erasing -> Failed disk
# erasing.
ABORT_ENDS: frozenset[NodeStatus] = ABORT_TARGET | {
    NodeStatus.FAILED_DISK_ERASING, NodeStatus.DEPLOYED
}
ABORT_FAILURE: frozenset[NodeStatus] = frozenset({NodeStatus.BROKEN})


class ErrorFields(TypedDict):
    """What every MaasError about one machine carries (see Machine.error_fields)."""

    machine: str
    system_id: str
    status: str


def _compact(f: Fields) -> str:
    """The object as compact JSON text (what a Machine keeps of it)."""
    try:
        return json.dumps(dict(f.data), separators=(",", ":"), ensure_ascii=False)
    except (TypeError, ValueError, RecursionError) as exc:  # not from JSON, or nested deeply
        raise malformed(f"{f.what} that cannot be kept as JSON ({type(exc).__name__})") from None


def _status(f: Fields) -> NodeStatus:
    value = f.data.get("status")
    if isinstance(value, bool) or not isinstance(value, int):
        raise f.bad("status", "a MAAS status number")
    try:
        return NodeStatus(value)
    except ValueError:
        raise f.bad("status", "a known MAAS status number (0 to 22)") from None


@dataclass(frozen=True)
class Machine:
    """One machine as MAAS returned it. `raw` is the whole JSON object, kept as compact text:
    decoded, a machine's object with its disks and interfaces takes about five times the
    memory, and a lock-many of 1000 nodes holds a few thousand machines while it waits."""

    system_id: str
    hostname: str
    status: NodeStatus
    status_name: str
    fqdn: str = ""
    status_message: str | None = None
    error_description: str = ""
    owner: str | None = None
    owner_data: Mapping[str, str] = field(default_factory=dict)
    locked: bool = False
    architecture: str = ""
    osystem: str = ""
    distro_series: str = ""
    hwe_kernel: str | None = None
    power_state: str = "unknown"
    power_type: str = ""
    tag_names: tuple[str, ...] = ()
    pool: str | None = None
    zone: str | None = None
    cpu_count: int = 0
    memory: int = 0
    ip_addresses: tuple[str, ...] = ()
    raw_json: str = field(default="{}", repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Any) -> Machine:
        """Parse and validate one machine object (MaasProtocolError when it is malformed)."""
        f = Fields(data, "a machine object")
        system_id = f.text("system_id", required=True)
        if len(system_id) > 64 or not system_id.isprintable() or system_id.strip() != system_id:
            raise f.bad("system_id", "a short printable identifier such as 'd8n3re'")
        status = _status(f)
        return cls(
            system_id=system_id,
            hostname=f.hostname("hostname"),
            status=status,
            status_name=f.text("status_name") or status.label,
            fqdn=f.hostname("fqdn"),
            status_message=f.optional_text("status_message"),
            error_description=f.text("error_description"),
            owner=f.optional_text("owner") or None,
            owner_data=f.text_map("owner_data", "workload_annotations"),
            locked=f.boolean("locked"),
            architecture=f.text("architecture"),
            osystem=f.text("osystem"),
            distro_series=f.text("distro_series"),
            hwe_kernel=f.optional_text("hwe_kernel"),
            power_state=f.text("power_state") or "unknown",
            power_type=f.text("power_type"),
            tag_names=f.text_list("tag_names"),
            pool=f.name_of("pool"),
            zone=f.name_of("zone"),
            cpu_count=f.integer("cpu_count"),
            memory=f.integer("memory"),
            ip_addresses=f.text_list("ip_addresses"),
            raw_json=_compact(f),
        )

    @property
    def raw(self) -> dict[str, Any]:
        """MAAS's whole object for this machine, decoded afresh on each call."""
        decoded: dict[str, Any] = json.loads(self.raw_json)
        return decoded

    @property
    def arch(self) -> str:
        """The primary architecture, e.g. `amd64` for `amd64/generic`."""
        return self.architecture.split("/", 1)[0]

    @property
    def subarch(self) -> str:
        parts = self.architecture.split("/", 1)
        return parts[1] if len(parts) == 2 else "generic"

    def describe(self) -> str:
        """`hostname (system_id)`: how every message names a machine."""
        return f"{self.hostname} ({self.system_id})"

    def error_fields(self) -> ErrorFields:
        """The `machine`, `system_id` and `status` every MaasError about this machine carries."""
        return ErrorFields(machine=self.hostname, system_id=self.system_id, status=self.status_name)


@dataclass(frozen=True)
class BootResource:
    id: int
    type: str
    name: str
    architecture: str
    subarches: tuple[str, ...] = ()

    @classmethod
    def from_json(cls, data: Any) -> BootResource:
        f = Fields(data, "a boot resource")
        subarches = f.text("subarches")
        return cls(
            id=f.integer("id"),
            type=f.text("type"),
            name=f.text("name", required=True),
            architecture=f.text("architecture"),
            subarches=tuple(s for s in subarches.split(",") if s),
        )

    @property
    def arch(self) -> str:
        return self.architecture.split("/", 1)[0]

    def serves(self, architecture: str) -> bool:
        """True when this image can deploy a machine of `architecture` (`amd64/generic`)."""
        arch, _, subarch = architecture.partition("/")
        subarch = subarch or "generic"
        res_arch, _, res_sub = self.architecture.partition("/")
        if res_arch != arch:
            return False
        return subarch in {res_sub, *self.subarches} or res_sub in ("generic", "")


@dataclass(frozen=True)
class Event:
    id: int
    node: str | None
    hostname: str
    level: str
    created: str
    type: str
    description: str
    username: str = "unknown"

    @classmethod
    def from_json(cls, data: Any) -> Event:
        f = Fields(data, "an event")
        return cls(
            id=f.integer("id"),
            node=f.optional_text("node"),
            hostname=f.text("hostname", "unknown"),
            level=f.text("level", "INFO"),
            created=f.text("created"),
            type=f.text("type"),
            description=f.text("description"),
            username=f.text("username", "unknown"),
        )

    def line(self) -> str:
        text = f"{self.type} - {self.description}" if self.description else self.type
        return f"{self.created} {self.level}: {text}"
