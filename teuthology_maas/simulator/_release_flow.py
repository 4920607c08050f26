"""Release as MAAS runs it: power off (or erase the disks), then Ready; or a scripted
failure (stuck, Releasing failed, Failed disk erasing)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from teuthology_maas.models import NodeStatus
from teuthology_maas.simulator import _events as ev
from teuthology_maas.simulator._records import MachineRecord
from teuthology_maas.simulator.faults import Fault

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
        other_scripts: bool,
        comment: str,
        fault: Fault | None,
    ) -> None:
        now = self.sm.clock.now()
        self.sm.supersede(record)
        self.sm.event(record, ev.USER_RELEASING, now, comment, username=username, action="release")
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
            self.sm.set_status(record, status, now)
            self.sm.event(record, ev.ERASING_DISK, now)
            duration = {
                "quick": record.timings.disk_erasing_quick,
                "secure": record.timings.disk_erasing_secure,
            }.get(erase_mode, record.timings.disk_erasing)
            self.sm.schedule(
                record, now, min(record.timings.power, duration * 0.05), self.sm.power_on_step
            )
        else:
            self.sm.set_status(record, NodeStatus.RELEASING, now)
            self.sm.event(record, ev.RELEASING, now)
            duration = record.timings.releasing
            self.sm.schedule(
                record, now, min(record.timings.power, duration), self.sm.power_off_step
            )
        if kind == "release_stuck":
            return
        if kind == "erase_fail" and erase_mode is not None:
            failed = (
                NodeStatus.FAILED_RELEASING if other_scripts else NodeStatus.FAILED_DISK_ERASING
            )
            self.sm.schedule(record, now, duration, self._failure(failed, ERASE_FAILED_REASON))
        elif kind == "release_fail":
            self.sm.schedule(
                record,
                now,
                duration,
                self._failure(NodeStatus.FAILED_RELEASING, RELEASE_FAILED_REASON),
            )
        else:
            self.sm.schedule(record, now, duration, self._released)

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
