"""The simulator's mutable per-machine state (what the region keeps in its database)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

from teuthology_maas.models import NodeStatus
from teuthology_maas.simulator._network import Interfaces
from teuthology_maas.simulator._storage import Storage
from teuthology_maas.simulator.inventory import MachineSpec, Timings

# MAAS system_ids: short strings over an alphabet without look-alikes.
_SYSTEM_ID_ALPHABET = "abcdefghjkmnpqrstwxy3456789"


def system_id_for(hostname: str, taken: set[str]) -> str:
    """A stable system_id derived from the hostname (so logs are comparable across runs)."""
    salt = 0
    while True:
        digest = hashlib.sha256(f"{hostname}:{salt}".encode()).digest()
        candidate = "".join(_SYSTEM_ID_ALPHABET[b % len(_SYSTEM_ID_ALPHABET)] for b in digest[:6])
        if candidate not in taken:
            return candidate
        salt += 1


class ScriptStatus(IntEnum):
    """MAAS's SCRIPT_STATUS values, as a result set reports them."""

    PENDING = 0
    RUNNING = 1
    PASSED = 2
    FAILED = 3
    TIMED_OUT = 4
    ABORTED = 5


@dataclass
class ScriptSet:
    """One installation result set (what /nodes/<id>/results/current-installation/ shows)."""

    id: int
    system_id: str
    started: float
    status: ScriptStatus = ScriptStatus.RUNNING
    ended: float | None = None
    output: bytes = b""
    exit_status: int | None = None

    def end(
        self,
        status: ScriptStatus,
        at: float,
        *,
        exit_status: int | None = None,
        output: bytes | None = None,
    ) -> None:
        self.status = status
        self.ended = at
        if exit_status is not None:
            self.exit_status = exit_status
        if output is not None:
            self.output = output


@dataclass
class MachineRecord:
    index: int
    system_id: str
    hostname: str
    domain: str
    architecture: str
    tags: list[str]
    pool: str
    zone: str
    status: NodeStatus
    owner: str | None
    power_type: str
    power_state: str
    cpu_count: int
    cpu_speed: int
    memory: int
    storage_gb: float
    locked: bool
    osystem: str
    distro_series: str
    agent_name: str
    description: str
    mac_address: str
    ssh_port: int | None
    timings: Timings
    hwe_kernel: str | None = None
    error_description: str = ""
    previous_status: NodeStatus | None = None
    workload_annotations: dict[str, str] = field(default_factory=dict)
    user_data: bytes | None = None
    ephemeral_deploy: bool = False
    netboot: bool = True
    # Bumped whenever an operation supersedes the scheduled steps of the previous one.
    generation: int = 0
    installation: ScriptSet | None = None
    erase_mode: str | None = None
    # The release scripts the last release ran and their parameters ({script: {param: value}}).
    release_scripts: tuple[str, ...] = ()
    release_script_params: dict[str, dict[str, str]] = field(default_factory=dict)
    min_hwe_kernel: str = ""
    storage: Storage | None = None
    nics: Interfaces | None = None
    # What carries on when someone powers on a machine MAAS cannot power (power_type manual).
    awaiting_boot: Callable[[float], None] | None = None
    # When MAAS's status monitor fails the current deployment (MAAS <= 3.5; None: never).
    status_expires: float | None = None

    @classmethod
    def from_spec(
        cls, spec: MachineSpec, index: int, system_id: str, defaults: Timings
    ) -> MachineRecord:
        power_state = spec.power_state or (
            "on" if spec.status in (NodeStatus.DEPLOYED, NodeStatus.DEPLOYING) else "off"
        )
        if spec.power_type == "manual" and spec.power_state is None:
            power_state = "unknown"
        mac = (
            spec.mac_address
            or f"52:54:00:{(index >> 16) & 0xFF:02x}:{(index >> 8) & 0xFF:02x}:{index & 0xFF:02x}"
        )
        return cls(
            index=index,
            system_id=system_id,
            hostname=spec.hostname,
            domain=spec.domain,
            architecture=spec.architecture,
            tags=list(spec.tags),
            pool=spec.pool,
            zone=spec.zone,
            status=spec.status,
            owner=spec.owner,
            power_type=spec.power_type,
            power_state=power_state,
            cpu_count=spec.cpu_count,
            cpu_speed=spec.cpu_speed,
            memory=spec.memory,
            storage_gb=spec.storage_gb,
            locked=spec.locked,
            osystem=spec.osystem,
            distro_series=spec.distro_series,
            agent_name=spec.agent_name,
            description=spec.description,
            mac_address=mac,
            ssh_port=spec.ssh_port,
            timings=defaults.merged(spec.timings, f"machines.{spec.hostname}.timings"),
            min_hwe_kernel=spec.min_hwe_kernel,
            storage=Storage.commissioned(index, spec.disks, spec.storage_gb),
            nics=Interfaces(index, spec.interfaces, mac),
        )

    @property
    def fqdn(self) -> str:
        return f"{self.hostname}.{self.domain}"

    @property
    def arch(self) -> str:
        return self.architecture.split("/", 1)[0]

    @property
    def subarch(self) -> str:
        return self.architecture.split("/", 1)[1] if "/" in self.architecture else "generic"

    @property
    def disks(self) -> Storage:
        assert self.storage is not None  # set by from_spec
        return self.storage

    @property
    def interfaces(self) -> Interfaces:
        assert self.nics is not None  # set by from_spec
        return self.nics

    def names(self) -> set[str]:
        return {self.hostname, self.system_id, self.fqdn}

    def cost(self) -> float:
        """MAAS picks the cheapest matching machine: cpu_count + memory / 1024."""
        return self.cpu_count + self.memory / 1024

    def snapshot(self) -> dict[str, Any]:
        return {"system_id": self.system_id, "status": int(self.status), "owner": self.owner}
