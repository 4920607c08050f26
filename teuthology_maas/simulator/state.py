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
from teuthology_maas.simulator._errors import not_found
from teuthology_maas.simulator._events import EventLog
from teuthology_maas.simulator._images import ImageCatalog, os_release_for
from teuthology_maas.simulator._records import MachineRecord, ScriptSet, system_id_for
from teuthology_maas.simulator._render import Catalog, machine_json
from teuthology_maas.simulator._userdata import served_user_data
from teuthology_maas.simulator.clock import Clock
from teuthology_maas.simulator.faults import Fault
from teuthology_maas.simulator.inventory import ImageSpec, MachineSpec, Timings
from teuthology_maas.simulator.ssh_backing import SshBacking

Step = Callable[[MachineRecord, float], None]

INSTALL_FAILED_REASON = "Installation failed (refer to the installation log for more information)."
ERASE_FAILED_REASON = "Failed to erase disks."
RELEASE_FAILED_REASON = "Failed to release machine."
BMC_FAILURE_TEXT = (
    "Power state could not be queried: Failed to login to virsh console. "
    "Aborting DEPLOYING and reverting to ALLOCATED. Unable to power control the node. "
    "Please check power credentials."
)
# When the deployment progress events appear, as fractions of the deploying time.
_DEPLOY_PROGRESS: tuple[tuple[float, tuple[str, str]], ...] = (
    (0.10, ev.PXE_BOOT),
    (0.20, ev.LOADING_EPHEMERAL),
    (0.35, ev.CONFIGURING_STORAGE),
    (0.45, ev.INSTALLING_OS),
    (0.80, ev.CONFIGURING_OS),
    (0.90, ev.REBOOTING),
)


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
    ) -> None:
        self.clock = clock
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
        self._script_ids = itertools.count(1)
        self._deployed_images: dict[str, ImageSpec] = {}

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
                    self._deployed_images[system_id] = image
                    self.ssh.deployed(
                        record.hostname,
                        user_data=None,
                        os_release=os_release_for(image),
                        at=self.clock.now(),
                    )
            return record

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

    def _schedule(self, record: MachineRecord, start: float, delay: float, step: Step) -> None:
        heapq.heappush(
            self._queue,
            _Scheduled(start + delay, next(self._seq), record.system_id, record.generation, step),
        )

    def pending_steps(self) -> int:
        with self.lock:
            return sum(
                1
                for item in self._queue
                if (m := self.machines.get(item.system_id)) is not None
                and m.generation == item.generation
            )

    # -- building blocks ------------------------------------------------------------------

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
            image = self._deployed_images.get(record.system_id)
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

    def supersede(self, record: MachineRecord) -> None:
        """Cancel whatever asynchronous steps the machine still had scheduled."""
        record.generation += 1

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

    # -- deployment -----------------------------------------------------------------------

    def start_deploy(
        self,
        record: MachineRecord,
        username: str,
        *,
        image: ImageSpec,
        hwe_kernel: str | None,
        user_data: bytes | None,
        comment: str,
        ephemeral: bool,
        fault: Fault | None,
    ) -> None:
        now = self.clock.now()
        self.supersede(record)
        record.osystem = image.osystem
        record.distro_series = image.release
        record.hwe_kernel = hwe_kernel
        record.user_data = user_data
        record.ephemeral_deploy = ephemeral
        record.error_description = ""
        self._deployed_images[record.system_id] = image
        record.installation = ScriptSet(next(self._script_ids), record.system_id, started=now)
        self.event(
            record, ev.USER_DEPLOYING, now, comment, username=username, action="start deployment"
        )
        self.set_status(record, NodeStatus.DEPLOYING, now)
        self.event(record, ev.DEPLOYING, now)
        duration = record.timings.deploying
        kind = fault.kind if fault else None

        if kind == "deploy_revert":
            self._schedule(record, now, record.timings.bmc_failure, self._revert_to_allocated)
            return
        self._schedule(record, now, min(record.timings.power, duration * 0.05), self._power_on)
        for fraction, progress in _DEPLOY_PROGRESS:
            if kind == "deploy_stuck" and fraction > 0.45:
                break
            if kind == "deploy_fail" and fraction >= record.timings.deploy_failure_at:
                break
            self._schedule(record, now, duration * fraction, self._progress(progress))
        if kind == "deploy_fail":
            reason = fault.reason if fault and fault.reason else INSTALL_FAILED_REASON
            self._schedule(
                record,
                now,
                duration * record.timings.deploy_failure_at,
                self._install_failed(reason),
            )
        elif kind != "deploy_stuck":
            self._schedule(record, now, duration, self._deployed)
        if record.timings.node_timeout is not None:
            self._schedule(record, now, record.timings.node_timeout, self._deploy_timed_out)

    def _power_on(self, record: MachineRecord, at: float) -> None:
        self.set_power(record, "on", at)

    def _power_off(self, record: MachineRecord, at: float) -> None:
        self.set_power(record, "off", at)

    def _progress(self, kind: tuple[str, str]) -> Step:
        def step(record: MachineRecord, at: float) -> None:
            self.event(record, kind, at)

        return step

    def _deployed(self, record: MachineRecord, at: float) -> None:
        self.supersede(record)
        self.set_power(record, "on", at)
        if record.installation is not None:
            record.installation.status = 2
            record.installation.ended = at
            record.installation.exit_status = 0
            record.installation.output = _install_log(record, failed=False)
        self.event(record, ev.DEPLOYED, at)
        self.set_status(record, NodeStatus.DEPLOYED, at)

    def _install_failed(self, reason: str) -> Step:
        def step(record: MachineRecord, at: float) -> None:
            if record.installation is not None:
                record.installation.status = 3
                record.installation.ended = at
                record.installation.exit_status = 3
                record.installation.output = _install_log(record, failed=True)
            self.event(
                record,
                ev.INSTALL_FAILED,
                at,
                "Command ['curtin', 'install'] returned non-zero exit status 3",
            )
            self.fail(record, NodeStatus.FAILED_DEPLOYMENT, reason, at)

        return step

    def _deploy_timed_out(self, record: MachineRecord, at: float) -> None:
        if record.status != NodeStatus.DEPLOYING:
            return
        minutes = round(record.timings.node_timeout or 0) // 60
        reason = f"Node operation 'Deploying' timed out after {minutes} minutes."
        if record.installation is not None:
            record.installation.status = 4
            record.installation.ended = at
        self.fail(record, NodeStatus.FAILED_DEPLOYMENT, reason, at)

    def _revert_to_allocated(self, record: MachineRecord, at: float) -> None:
        self.supersede(record)
        record.power_state = "error"
        if record.installation is not None:
            record.installation.status = 5
            record.installation.ended = at
        self.event(record, ev.BMC_QUERY_FAILED, at, BMC_FAILURE_TEXT)
        self.set_status(record, NodeStatus.ALLOCATED, at)

    # -- release --------------------------------------------------------------------------

    def start_release(
        self,
        record: MachineRecord,
        username: str,
        *,
        erase_mode: str | None,
        other_scripts: bool,
        comment: str,
        fault: Fault | None,
    ) -> None:
        now = self.clock.now()
        self.supersede(record)
        self.event(record, ev.USER_RELEASING, now, comment, username=username, action="release")
        record.agent_name = ""
        record.osystem = ""
        record.distro_series = ""
        record.hwe_kernel = None
        record.erase_mode = erase_mode
        kind = fault.kind if fault else None
        powered_off = record.power_state == "off" or record.power_type == "manual"
        if erase_mode is None and not other_scripts and powered_off and kind != "release_stuck":
            self._released(record, now)
            return
        if erase_mode is not None:
            status = NodeStatus.RELEASING if other_scripts else NodeStatus.DISK_ERASING
            self.set_status(record, status, now)
            self.event(record, ev.ERASING_DISK, now)
            duration = {
                "quick": record.timings.disk_erasing_quick,
                "secure": record.timings.disk_erasing_secure,
            }.get(erase_mode, record.timings.disk_erasing)
            self._schedule(record, now, min(record.timings.power, duration * 0.05), self._power_on)
        else:
            self.set_status(record, NodeStatus.RELEASING, now)
            self.event(record, ev.RELEASING, now)
            duration = record.timings.releasing
            self._schedule(record, now, min(record.timings.power, duration), self._power_off)
        if kind == "release_stuck":
            return
        if kind == "erase_fail" and erase_mode is not None:
            failed = (
                NodeStatus.FAILED_RELEASING if other_scripts else NodeStatus.FAILED_DISK_ERASING
            )
            self._schedule(record, now, duration, self._failure(failed, ERASE_FAILED_REASON))
        elif kind == "release_fail":
            self._schedule(
                record,
                now,
                duration,
                self._failure(NodeStatus.FAILED_RELEASING, RELEASE_FAILED_REASON),
            )
        else:
            self._schedule(record, now, duration, self._released)

    def _failure(self, status: NodeStatus, reason: str) -> Step:
        def step(record: MachineRecord, at: float) -> None:
            self.fail(record, status, reason, at)

        return step

    def _released(self, record: MachineRecord, at: float) -> None:
        self.supersede(record)
        self.set_power(record, "off", at)
        record.owner = None
        record.workload_annotations.clear()
        record.user_data = None
        record.error_description = ""
        record.erase_mode = None
        record.locked = False
        record.netboot = True
        record.ephemeral_deploy = False
        self._deployed_images.pop(record.system_id, None)
        self.event(record, ev.RELEASED, at)
        self.set_status(record, NodeStatus.READY, at)

    # -- abort ----------------------------------------------------------------------------

    def start_abort(self, record: MachineRecord, username: str, comment: str) -> None:
        now = self.clock.now()
        status = record.status
        self.supersede(record)
        if status == NodeStatus.DISK_ERASING:
            self.event(record, ev.USER_ABORT_ERASE, now, comment, username=username, action="abort")

            def erase_aborted(rec: MachineRecord, at: float) -> None:
                self.event(rec, ev.ABORTED_ERASING, at)
                self.set_status(rec, NodeStatus.FAILED_DISK_ERASING, at)

            self._schedule(record, now, record.timings.aborting, erase_aborted)
            return
        self.event(record, ev.USER_ABORT_DEPLOY, now, comment, username=username, action="abort")
        target = {
            NodeStatus.DEPLOYING: NodeStatus.ALLOCATED,
            NodeStatus.COMMISSIONING: NodeStatus.NEW,
            NodeStatus.TESTING: record.previous_status or NodeStatus.READY,
        }[status]

        def aborted(rec: MachineRecord, at: float) -> None:
            self.set_power(rec, "off", at)
            if status == NodeStatus.DEPLOYING:
                if rec.installation is not None and rec.installation.status == 1:
                    rec.installation.status = 5
                    rec.installation.ended = at
                self.event(rec, ev.ABORTED_DEPLOYMENT, at)
            self.set_status(rec, target, at)

        self._schedule(record, now, record.timings.aborting, aborted)

    # -- power, broken/fixed ----------------------------------------------------------------

    def request_power(self, record: MachineRecord, username: str, on: bool, comment: str) -> None:
        now = self.clock.now()
        kind = ev.USER_POWER_ON if on else ev.USER_POWER_OFF
        self.event(record, kind, now, comment, username=username, action="power")
        self._schedule(record, now, record.timings.power, self._power_on if on else self._power_off)

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
            self._schedule(record, now, record.timings.power, self._power_off)
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


def _install_log(record: MachineRecord, *, failed: bool) -> bytes:
    lines = [
        "curtin: Installation started. (23.1.1)",
        "start: cmd-install/stage-partitioning/builtin/cmd-block-meta: curtin command block-meta",
        "finish: cmd-install/stage-partitioning/builtin/cmd-block-meta: SUCCESS",
        f"start: cmd-install/stage-extract/builtin/cmd-extract: writing {record.osystem}/"
        f"{record.distro_series} image to /tmp/tmpxv1c9u/target",
    ]
    if failed:
        lines += [
            "finish: cmd-install/stage-extract/builtin/cmd-extract: FAIL: curtin command extract",
            "Traceback (most recent call last):",
            "  OSError: [Errno 28] No space left on device",
            "curtin: Installation failed with exception: Unexpected error while running command.",
            "Command: ['curtin', 'install'] Exit code: 3",
        ]
    else:
        lines += [
            "finish: cmd-install/stage-extract/builtin/cmd-extract: SUCCESS",
            "finish: cmd-install/stage-curthooks/builtin/cmd-curthooks: SUCCESS",
            "curtin: Installation finished.",
        ]
    return ("\n".join(lines) + "\n").encode()
