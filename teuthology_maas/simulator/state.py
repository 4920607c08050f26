"""The machine state machine: MAAS's statuses, transitions, events and their timing.

Operations change a machine at once (the API response shows the transitional status) and
schedule the asynchronous rest on the simulated clock. `settle()` applies every step that is
due; each step is stamped with its own due time, so event times read as if MAAS ran them.
A later operation bumps the machine's `generation`, which cancels steps of the earlier one.
"""

from __future__ import annotations

import heapq
import itertools
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from teuthology_maas.models import NodeStatus
from teuthology_maas.simulator import _events as ev
from teuthology_maas.simulator._deploy_flow import DeployFlow
from teuthology_maas.simulator._errors import not_found
from teuthology_maas.simulator._events import EventLog
from teuthology_maas.simulator._images import ImageCatalog, os_release_for
from teuthology_maas.simulator._records import MachineRecord, system_id_for
from teuthology_maas.simulator._release_flow import ReleaseFlow
from teuthology_maas.simulator._render import Catalog, machine_json
from teuthology_maas.simulator._userdata import served_user_data
from teuthology_maas.simulator.clock import Clock
from teuthology_maas.simulator.faults import Fault
from teuthology_maas.simulator.inventory import (
    WIPE_DISKS_SCRIPT,
    ImageSpec,
    MachineSpec,
    Timings,
)
from teuthology_maas.simulator.ssh_backing import SshBacking

Step = Callable[[MachineRecord, float], None]


def version_tuple(text: str) -> tuple[int, ...]:
    """`3.5.4` or `3.6.0~beta2` -> (3, 5, 4) / (3, 6, 0); unparsable parts end the tuple."""
    numbers: list[int] = []
    for part in text.split("~", 1)[0].split("."):
        if not part.isdigit():
            break
        numbers.append(int(part))
    return tuple(numbers)


@dataclass(order=True)
class _Scheduled:
    due: float
    seq: int
    system_id: str
    generation: int
    step: Step


class StateMachine:
    def __init__(
        self,
        *,
        clock: Clock,
        timings: Timings,
        images: Iterable[ImageSpec],
        ssh: SshBacking | None,
        config: dict[str, Any],
        release_scripts: Iterable[str] = (WIPE_DISKS_SCRIPT,),
        maas_version: str = "3.5.4",
        seed: int | None = None,
    ) -> None:
        self.clock = clock
        self.seed = seed
        self.maas_version = version_tuple(maas_version)
        # MAAS 3.6 moved deployments into a workflow with its own timeout.
        self.workflow_deploys = self.maas_version >= (3, 6)
        self.release_scripts = tuple(release_scripts)
        self.timings = timings
        self.images = ImageCatalog(list(images))
        self.ssh = ssh
        self.config = config
        self.events = EventLog()
        self.catalog = Catalog()
        self.machines: dict[str, MachineRecord] = {}
        self.lock = threading.RLock()
        self._queue: list[_Scheduled] = []
        self._seq = itertools.count()
        self.script_ids = itertools.count(1)
        self.deployed_images: dict[str, ImageSpec] = {}
        self.deploys = DeployFlow(self)
        self.releases = ReleaseFlow(self)

    # -- machines -------------------------------------------------------------------------

    def add(self, spec: MachineSpec) -> MachineRecord:
        with self.lock:
            if any(m.hostname == spec.hostname for m in self.machines.values()):
                raise ValueError(f"a machine named {spec.hostname!r} already exists")
            system_id = spec.system_id or system_id_for(spec.hostname, set(self.machines))
            if system_id in self.machines:
                raise ValueError(f"system_id {system_id!r} is already used")
            record = MachineRecord.from_spec(spec, len(self.machines) + 1, system_id, self.timings)
            self.machines[system_id] = record
            self.catalog.add(record)
            if record.status == NodeStatus.DEPLOYED and self.ssh is not None and record.osystem:
                image = self.images.find(record.osystem, record.distro_series, record.architecture)
                if image is not None:
                    self.deployed_images[system_id] = image
                    self.ssh.deployed(
                        record.hostname,
                        user_data=None,
                        os_release=os_release_for(image),
                        at=self.clock.now(),
                    )
            return record

    def resume(self, record: MachineRecord, fault: Fault | None = None) -> None:
        """Start, on the clock, the transition a machine added in Deploying, Releasing or
        Disk erasing was in the middle of (otherwise it would stay there forever)."""
        with self.lock:
            if record.status == NodeStatus.DEPLOYING:
                self.deploys.resume(record, self._image_for(record), fault)
            elif record.status in (NodeStatus.RELEASING, NodeStatus.DISK_ERASING):
                self.releases.resume(record, fault)

    def _image_for(self, record: MachineRecord) -> ImageSpec | None:
        if record.osystem:
            return self.images.find(record.osystem, record.distro_series, record.architecture)
        return self.images.find(
            str(self.config["default_osystem"]),
            str(self.config["default_distro_series"]),
            record.architecture,
        )

    def find(self, ident: str) -> MachineRecord:
        """By system_id, hostname or FQDN; 404 text like MAAS when unknown."""
        with self.lock:
            record = self.machines.get(ident)
            if record is None:
                record = next((m for m in self.machines.values() if ident in m.names()), None)
            if record is None:
                raise not_found()
            return record

    def render(self, record: MachineRecord) -> dict[str, Any]:
        return machine_json(
            record, self.catalog, self.events, loopback_ip=record.ssh_port is not None
        )

    def served_user_data(self, record: MachineRecord) -> bytes | None:
        return None if record.user_data is None else served_user_data(record.user_data)

    # -- time -----------------------------------------------------------------------------

    def settle(self) -> None:
        """Apply every scheduled step that is due on the clock."""
        with self.lock:
            now = self.clock.now()
            while self._queue and self._queue[0].due <= now:
                item = heapq.heappop(self._queue)
                record = self.machines.get(item.system_id)
                if record is not None and record.generation == item.generation:
                    item.step(record, item.due)

    def next_due(self) -> float | None:
        """When the earliest scheduled step is due (simulated seconds), None when none is."""
        with self.lock:
            return self._queue[0].due if self._queue else None

    def schedule(self, record: MachineRecord, start: float, delay: float, step: Step) -> None:
        heapq.heappush(
            self._queue,
            _Scheduled(start + delay, next(self._seq), record.system_id, record.generation, step),
        )

    def event(
        self,
        record: MachineRecord,
        kind: tuple[str, str],
        at: float,
        description: str = "",
        *,
        username: str = "",
        action: str = "",
    ) -> None:
        self.events.add(
            kind,
            system_id=record.system_id,
            hostname=record.hostname,
            at=at,
            description=description,
            username=username,
            action=action,
        )

    def set_status(self, record: MachineRecord, status: NodeStatus, at: float) -> None:
        old = record.status
        if old == status:
            return
        record.status = status
        self.event(record, ev.CHANGED_STATUS, at, f"From '{old.label}' to '{status.label}'")
        if self.ssh is None:
            return
        if old == NodeStatus.DEPLOYED:
            self.ssh.cleared(record.hostname)
        if status == NodeStatus.DEPLOYED:
            image = self.deployed_images.get(record.system_id)
            if image is not None:
                self.ssh.deployed(
                    record.hostname,
                    user_data=self.served_user_data(record),
                    os_release=os_release_for(image),
                    at=at,
                )

    def set_power(self, record: MachineRecord, state: str, at: float) -> None:
        if record.power_state == state or record.power_type == "manual":
            return
        record.power_state = state
        if state in ("on", "off"):
            self.event(record, ev.POWERED_ON if state == "on" else ev.POWERED_OFF, at)

    def power_on_step(self, record: MachineRecord, at: float) -> None:
        self.set_power(record, "on", at)

    def power_off_step(self, record: MachineRecord, at: float) -> None:
        self.set_power(record, "off", at)

    def supersede(self, record: MachineRecord) -> None:
        """Cancel whatever asynchronous steps the machine still had scheduled."""
        record.generation += 1
        record.awaiting_boot = None
        record.status_expires = None

    def boot(self, record: MachineRecord) -> None:
        """Someone powered on a machine MAAS cannot power: what waited for it carries on."""
        waiting = record.awaiting_boot
        if waiting is None:
            raise ValueError(
                f"{record.hostname} is not waiting to be powered on "
                f"(status {record.status.label}, power_type {record.power_type})"
            )
        record.awaiting_boot = None
        waiting(self.clock.now())

    def fail(self, record: MachineRecord, status: NodeStatus, reason: str, at: float) -> None:
        self.supersede(record)
        record.error_description = reason
        self.event(record, ev.MARKING_FAILED, at, reason)
        self.set_status(record, status, at)

    # -- allocation -----------------------------------------------------------------------

    def allocate(
        self, record: MachineRecord, username: str, *, agent_name: str, comment: str, at: float
    ) -> None:
        record.owner = username
        record.agent_name = agent_name
        self.event(record, ev.USER_ACQUIRING, at, comment, username=username, action="acquire")
        self.set_status(record, NodeStatus.ALLOCATED, at)

    # -- power, broken/fixed ----------------------------------------------------------------

    def request_power(self, record: MachineRecord, username: str, on: bool, comment: str) -> None:
        now = self.clock.now()
        kind = ev.USER_POWER_ON if on else ev.USER_POWER_OFF
        self.event(record, kind, now, comment, username=username, action="power")
        self.schedule(
            record, now, record.timings.power, self.power_on_step if on else self.power_off_step
        )

    def mark_broken(self, record: MachineRecord, username: str, comment: str) -> None:
        now = self.clock.now()
        self.supersede(record)
        record.previous_status = record.status
        self.event(
            record, ev.USER_MARK_BROKEN, now, comment, username=username, action="mark broken"
        )
        if record.power_state == "off":
            # An allocated machine with its power off is released on the spot.
            record.owner = None
        else:
            self.schedule(record, now, record.timings.power, self.power_off_step)
        record.error_description = comment
        self.set_status(record, NodeStatus.BROKEN, now)

    def mark_fixed(self, record: MachineRecord, username: str, comment: str) -> None:
        now = self.clock.now()
        self.event(record, ev.USER_MARK_FIXED, now, comment, username=username, action="mark fixed")
        target = (
            NodeStatus.DEPLOYED
            if record.previous_status == NodeStatus.DEPLOYED
            else NodeStatus.READY
        )
        record.error_description = ""
        record.osystem = ""
        record.distro_series = ""
        record.hwe_kernel = None
        if target == NodeStatus.READY:
            record.owner = None
        self.set_status(record, target, now)
