"""Deployment (and its abort) as MAAS runs it: progress events on the clock, then Deployed,
or one of the failures a fault scripts (installation failure, stuck, BMC failure, timeout)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from teuthology_maas.models import NodeStatus
from teuthology_maas.simulator import _events as ev
from teuthology_maas.simulator._records import MachineRecord, ScriptSet, ScriptStatus
from teuthology_maas.simulator.faults import Fault
from teuthology_maas.simulator.inventory import ImageSpec

if TYPE_CHECKING:
    from teuthology_maas.simulator.state import StateMachine, Step

INSTALL_FAILED_REASON = "Installation failed (refer to the installation log for more information)."
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


class DeployFlow:
    def __init__(self, sm: StateMachine) -> None:
        self.sm = sm

    def start(
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
        now = self.sm.clock.now()
        self.sm.supersede(record)
        record.osystem = image.osystem
        record.distro_series = image.release
        record.hwe_kernel = hwe_kernel
        record.user_data = user_data
        record.ephemeral_deploy = ephemeral
        record.error_description = ""
        self.sm.deployed_images[record.system_id] = image
        record.installation = ScriptSet(next(self.sm.script_ids), record.system_id, started=now)
        self.sm.event(
            record, ev.USER_DEPLOYING, now, comment, username=username, action="start deployment"
        )
        self.sm.set_status(record, NodeStatus.DEPLOYING, now)
        self.sm.event(record, ev.DEPLOYING, now)
        self._run(record, now, fault)

    def resume(self, record: MachineRecord, image: ImageSpec | None, fault: Fault | None) -> None:
        """Carry on with a deployment the machine was already in when it was added."""
        now = self.sm.clock.now()
        if image is not None:
            record.osystem = record.osystem or image.osystem
            record.distro_series = record.distro_series or image.release
            self.sm.deployed_images[record.system_id] = image
        record.installation = ScriptSet(next(self.sm.script_ids), record.system_id, started=now)
        self.sm.event(record, ev.DEPLOYING, now)
        self._run(record, now, fault)

    def _run(self, record: MachineRecord, now: float, fault: Fault | None) -> None:
        duration = record.timings.deploying
        kind = fault.kind if fault else None

        if kind == "deploy_revert":
            self.sm.schedule(record, now, record.timings.bmc_failure, self._revert_to_allocated)
            return
        self.sm.schedule(
            record, now, min(record.timings.power, duration * 0.05), self.sm.power_on_step
        )
        for fraction, progress in _DEPLOY_PROGRESS:
            if kind == "deploy_stuck" and fraction > 0.45:
                break
            if kind == "deploy_fail" and fraction >= record.timings.deploy_failure_at:
                break
            self.sm.schedule(record, now, duration * fraction, self._progress(progress))
        if kind == "deploy_fail":
            reason = fault.reason if fault and fault.reason else INSTALL_FAILED_REASON
            self.sm.schedule(
                record,
                now,
                duration * record.timings.deploy_failure_at,
                self._install_failed(reason),
            )
        elif kind != "deploy_stuck":
            self.sm.schedule(record, now, duration, self._deployed)
        if record.timings.node_timeout is not None:
            self.sm.schedule(record, now, record.timings.node_timeout, self._deploy_timed_out)

    def _progress(self, kind: tuple[str, str]) -> Step:
        def step(record: MachineRecord, at: float) -> None:
            self.sm.event(record, kind, at)

        return step

    def _deployed(self, record: MachineRecord, at: float) -> None:
        self.sm.supersede(record)
        self.sm.set_power(record, "on", at)
        if record.installation is not None:
            record.installation.end(
                ScriptStatus.PASSED, at, exit_status=0, output=_install_log(record, failed=False)
            )
        self.sm.event(record, ev.DEPLOYED, at)
        self.sm.set_status(record, NodeStatus.DEPLOYED, at)

    def _install_failed(self, reason: str) -> Step:
        def step(record: MachineRecord, at: float) -> None:
            if record.installation is not None:
                record.installation.end(
                    ScriptStatus.FAILED, at, exit_status=3, output=_install_log(record, failed=True)
                )
            self.sm.event(
                record,
                ev.INSTALL_FAILED,
                at,
                "Command ['curtin', 'install'] returned non-zero exit status 3",
            )
            self.sm.fail(record, NodeStatus.FAILED_DEPLOYMENT, reason, at)

        return step

    def _deploy_timed_out(self, record: MachineRecord, at: float) -> None:
        if record.status != NodeStatus.DEPLOYING:
            return
        minutes = round(record.timings.node_timeout or 0) // 60
        reason = f"Node operation 'Deploying' timed out after {minutes} minutes."
        if record.installation is not None:
            record.installation.end(ScriptStatus.TIMED_OUT, at)
        self.sm.fail(record, NodeStatus.FAILED_DEPLOYMENT, reason, at)

    def _revert_to_allocated(self, record: MachineRecord, at: float) -> None:
        self.sm.supersede(record)
        record.power_state = "error"
        if record.installation is not None:
            record.installation.end(ScriptStatus.ABORTED, at)
        self.sm.event(record, ev.BMC_QUERY_FAILED, at, BMC_FAILURE_TEXT)
        self.sm.set_status(record, NodeStatus.ALLOCATED, at)

    def abort(self, record: MachineRecord, username: str, comment: str) -> None:
        now = self.sm.clock.now()
        status = record.status
        self.sm.supersede(record)
        if status == NodeStatus.DISK_ERASING:
            self.sm.event(
                record, ev.USER_ABORT_ERASE, now, comment, username=username, action="abort"
            )

            def erase_aborted(rec: MachineRecord, at: float) -> None:
                self.sm.event(rec, ev.ABORTED_ERASING, at)
                self.sm.set_status(rec, NodeStatus.FAILED_DISK_ERASING, at)

            self.sm.schedule(record, now, record.timings.aborting, erase_aborted)
            return
        self.sm.event(record, ev.USER_ABORT_DEPLOY, now, comment, username=username, action="abort")
        target = {
            NodeStatus.DEPLOYING: NodeStatus.ALLOCATED,
            NodeStatus.COMMISSIONING: NodeStatus.NEW,
            NodeStatus.TESTING: record.previous_status or NodeStatus.READY,
        }[status]

        def aborted(rec: MachineRecord, at: float) -> None:
            self.sm.set_power(rec, "off", at)
            if status == NodeStatus.DEPLOYING:
                if rec.installation is not None and rec.installation.status == ScriptStatus.RUNNING:
                    rec.installation.end(ScriptStatus.ABORTED, at)
                self.sm.event(rec, ev.ABORTED_DEPLOYMENT, at)
            self.sm.set_status(rec, target, at)

        self.sm.schedule(record, now, record.timings.aborting, aborted)


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
