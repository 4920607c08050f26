"""Release as MAAS runs it: power off, or run the release scripts (wipe-disks erases the disks),
then Ready; or a scripted failure (stuck, Releasing failed, Failed disk erasing)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from teuthology_maas.models import NodeStatus
from teuthology_maas.simulator import _events as ev
from teuthology_maas.simulator._records import MachineRecord
from teuthology_maas.simulator.faults import Fault
from teuthology_maas.simulator.inventory import WIPE_DISKS_SCRIPT

if TYPE_CHECKING:
    from teuthology_maas.simulator.state import StateMachine, Step

ERASE_FAILED_REASON = "Failed to erase disks."
RELEASE_FAILED_REASON = "Failed to release machine."


class ReleaseFlow:
    def __init__(self, sm: StateMachine) -> None:
        self.sm = sm

    def start(
        self,
        record: MachineRecord,
        username: str,
        *,
        erase_mode: str | None,
        scripts: tuple[str, ...],
        script_params: dict[str, dict[str, str]],
        comment: str,
        fault: Fault | None,
    ) -> None:
        """Release `record`, running the release `scripts` (wipe-disks when erasing)."""
        now = self.sm.clock.now()
        self.sm.supersede(record)
        self.sm.event(record, ev.USER_RELEASING, now, comment, username=username, action="release")
        record.agent_name = ""
        record.osystem = ""
        record.distro_series = ""
        record.hwe_kernel = None
        record.erase_mode = erase_mode
        record.release_scripts = scripts
        record.release_script_params = script_params
        kind = fault.kind if fault else None
        powered_off = record.power_state == "off" or record.power_type == "manual"
        if not scripts and powered_off and kind != "release_stuck":
            self._released(record, now)
            return
        if scripts:
            duration = self._scripts_duration(record, erase_mode, scripts)
            self._run_scripts(record, now, scripts, duration)
            if record.power_type == "manual":
                # MAAS cannot power it on to run the scripts: they wait for someone to boot it.
                def booted(at: float) -> None:
                    self._finish(record, at, duration, scripts, kind)

                record.awaiting_boot = booted
                return
        else:
            self.sm.set_status(record, NodeStatus.RELEASING, now)
            self.sm.event(record, ev.RELEASING, now)
            duration = record.timings.releasing
            self.sm.schedule(
                record, now, min(record.timings.power, duration), self.sm.power_off_step
            )
        self._finish(record, now, duration, scripts, kind)

    def _finish(
        self,
        record: MachineRecord,
        now: float,
        duration: float,
        scripts: tuple[str, ...],
        kind: str | None,
    ) -> None:
        if kind == "release_stuck":
            return
        if kind == "erase_fail" and scripts:
            # MAAS: Disk erasing fails to Failed disk erasing only when wipe-disks is the
            # only script; any other script set runs under Releasing and fails to Releasing
            # failed.
            only_wipe = scripts == (WIPE_DISKS_SCRIPT,)
            failed = NodeStatus.FAILED_DISK_ERASING if only_wipe else NodeStatus.FAILED_RELEASING
            reason = ERASE_FAILED_REASON if WIPE_DISKS_SCRIPT in scripts else RELEASE_FAILED_REASON
            self.sm.schedule(record, now, duration, self._failure(failed, reason))
        elif kind == "release_fail":
            self.sm.schedule(
                record,
                now,
                duration,
                self._failure(NodeStatus.FAILED_RELEASING, RELEASE_FAILED_REASON),
            )
        else:
            self.sm.schedule(record, now, duration, self._released)

    def resume(self, record: MachineRecord, fault: Fault | None) -> None:
        """Carry on with a release (Releasing, or Disk erasing with a full erase) the machine
        was already in when it was added."""
        now = self.sm.clock.now()
        erasing = record.status == NodeStatus.DISK_ERASING
        scripts = (WIPE_DISKS_SCRIPT,) if erasing else ()
        record.erase_mode = "full" if erasing else None
        record.release_scripts = scripts
        kind = fault.kind if fault else None
        if erasing:
            duration = self._scripts_duration(record, "full", scripts)
            self.sm.event(record, ev.ERASING_DISK, now)
            self.sm.schedule(
                record, now, min(record.timings.power, duration * 0.05), self.sm.power_on_step
            )
        else:
            duration = record.timings.releasing
            self.sm.event(record, ev.RELEASING, now)
            self.sm.schedule(
                record, now, min(record.timings.power, duration), self.sm.power_off_step
            )
        self._finish(record, now, duration, scripts, kind)

    @staticmethod
    def _scripts_duration(
        record: MachineRecord, erase_mode: str | None, scripts: tuple[str, ...]
    ) -> float:
        timings = record.timings
        erasing = 0.0
        if WIPE_DISKS_SCRIPT in scripts:
            erasing = {
                "quick": timings.disk_erasing_quick,
                "secure": timings.disk_erasing_secure,
            }.get(erase_mode or "full", timings.disk_erasing)
        others = sum(1 for s in scripts if s != WIPE_DISKS_SCRIPT)
        return erasing + others * timings.release_script

    def _run_scripts(
        self, record: MachineRecord, now: float, scripts: tuple[str, ...], duration: float
    ) -> None:
        # The machine boots an ephemeral environment that runs the scripts, then powers off.
        only_wipe = scripts == (WIPE_DISKS_SCRIPT,)
        status = NodeStatus.DISK_ERASING if only_wipe else NodeStatus.RELEASING
        self.sm.set_status(record, status, now)
        self.sm.event(
            record, ev.ERASING_DISK if WIPE_DISKS_SCRIPT in scripts else ev.RELEASING, now
        )
        self.sm.schedule(
            record, now, min(record.timings.power, duration * 0.05), self.sm.power_on_step
        )

    def _failure(self, status: NodeStatus, reason: str) -> Step:
        def step(record: MachineRecord, at: float) -> None:
            self.sm.fail(record, status, reason, at)

        return step

    def _released(self, record: MachineRecord, at: float) -> None:
        self.sm.supersede(record)
        self.sm.set_power(record, "off", at)
        record.owner = None
        record.workload_annotations.clear()
        record.user_data = None
        record.error_description = ""
        record.erase_mode = None
        record.locked = False
        record.netboot = True
        record.ephemeral_deploy = False
        self.sm.deployed_images.pop(record.system_id, None)
        self.sm.event(record, ev.RELEASED, at)
        self.sm.set_status(record, NodeStatus.READY, at)
