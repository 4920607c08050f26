"""Deployment (and its abort) as MAAS runs it: progress events on the clock, then Deployed,
or one of the failures a fault scripts (installation failure, stuck, BMC failure, timeout).

A machine whose power MAAS cannot drive (power_type manual) does nothing until someone powers
it on (`Simulator.boot`). A deployment that never finishes fails on MAAS's node_timeout, as
the region version does it: up to 3.5 the status monitor fails it `node_timeout` minutes after
the last sign of life (power-on, PXE boot, an installer milestone; never for a manual machine,
whose timer MAAS does not start), from 3.6 the deployment workflow gives up after twice
`node_timeout` minutes.
"""

from __future__ import annotations

import random
from collections import Counter
from typing import TYPE_CHECKING

from teuthology_maas.models import NodeStatus
from teuthology_maas.simulator import _events as ev
from teuthology_maas.simulator._records import MachineRecord, ScriptSet, ScriptStatus
from teuthology_maas.simulator.faults import Fault
from teuthology_maas.simulator.inventory import ImageSpec, Timings

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
# A deployment to memory boots the image and configures it: nothing is written to disk.
_EPHEMERAL_PROGRESS: tuple[tuple[float, tuple[str, str]], ...] = (
    (0.15, ev.PXE_BOOT),
    (0.35, ev.LOADING_EPHEMERAL),
    (0.75, ev.CONFIGURING_OS),
)
WORKFLOW_TIMEOUT_REASON = "time-out during deployment"
Progress = tuple[float, float, tuple[str, str]]  # (fixed fraction, simulated seconds, event)


def deploy_timeline(timings: Timings, rng: random.Random) -> list[Progress]:
    """When each progress message of a deployment to disk appears, in simulated seconds after
    its start. By default at fixed fractions of `deploying` (Rebooting at 90 %). With
    `rebooting` set, Rebooting comes that long before the end and the earlier messages keep
    their proportions over the rest; with `progress_jitter`, each earlier message moves by up
    to that share of half the gap to its neighbours (so they stay in order), drawn from `rng`:
    real nodes do not all spend the same share of their install in each step."""
    duration = timings.deploying
    *install, (last, reboot_event) = _DEPLOY_PROGRESS
    if timings.rebooting is None:
        reboot_at = duration * last
        places = [duration * fraction for fraction, _ in install]
    else:
        reboot_at = max(0.0, duration - timings.rebooting)
        places = [reboot_at * fraction / last for fraction, _ in install]
    if timings.progress_jitter:
        share = timings.progress_jitter / 2
        bounds = [0.0, *places, reboot_at]
        places = [
            at + rng.uniform(-share * (at - bounds[i]), share * (bounds[i + 2] - at))
            for i, at in enumerate(places)
        ]
    timeline = [(f, at, event) for (f, event), at in zip(install, places, strict=True)]
    return [*timeline, (last, reboot_at, reboot_event)]


class DeployFlow:
    def __init__(self, sm: StateMachine) -> None:
        self.sm = sm
        # Deployments started per machine: with the inventory's seed, what a noisy timeline is
        # drawn from, so a machine gets the same draws whatever order deployments arrive in.
        self._started: Counter[str] = Counter()

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
        self._started[record.hostname] += 1
        record.osystem = image.osystem
        record.distro_series = image.release
        record.hwe_kernel = hwe_kernel
        record.user_data = user_data
        record.ephemeral_deploy = ephemeral
        record.error_description = ""
        self.sm.deployed_images[record.system_id] = image
        if not ephemeral:  # MAAS keeps no installation result for a deployment to memory
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
        self._arm_timeout(record, now)
        if record.power_type == "manual":
            # MAAS cannot power it on: the deployment waits for someone to boot it.
            def booted(at: float) -> None:
                self._boot(record, at, fault)

            record.awaiting_boot = booted
            return
        self._boot(record, now, fault)

    def _boot(self, record: MachineRecord, now: float, fault: Fault | None) -> None:
        ephemeral = record.ephemeral_deploy
        duration = record.timings.deploying_ephemeral if ephemeral else record.timings.deploying
        kind = fault.kind if fault else None

        if kind == "deploy_revert":
            self.sm.schedule(record, now, record.timings.bmc_failure, self._revert_to_allocated)
            return
        self.sm.schedule(
            record, now, min(record.timings.power, duration * 0.05), self.sm.power_on_step
        )
        if ephemeral:
            timeline = [(f, duration * f, event) for f, event in _EPHEMERAL_PROGRESS]
        else:
            started = self._started[record.hostname]
            draws = random.Random(f"{self.sm.seed}:{record.hostname}:{started}")
            timeline = deploy_timeline(record.timings, draws)
        for fraction, at, progress in timeline:
            if kind == "deploy_stuck" and fraction > 0.45:
                break
            if kind == "deploy_fail" and fraction >= record.timings.deploy_failure_at:
                break
            self.sm.schedule(record, now, at, self._progress(progress))
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

    # -- node_timeout ---------------------------------------------------------------------

    def _node_timeout(self, record: MachineRecord) -> float:
        if record.timings.node_timeout is not None:
            return record.timings.node_timeout
        return float(self.sm.config.get("node_timeout") or 30) * 60

    def _arm_timeout(self, record: MachineRecord, now: float) -> None:
        timeout = self._node_timeout(record)
        if self.sm.workflow_deploys:
            self.sm.schedule(record, now, 2 * timeout, self._workflow_timed_out)
        elif record.power_type != "manual":
            record.status_expires = now + timeout
            self.sm.schedule(record, now, timeout, self._status_expired)

    def _status_expired(self, record: MachineRecord, at: float) -> None:
        expires = record.status_expires
        if record.status != NodeStatus.DEPLOYING or expires is None:
            return
        if expires > at:  # a sign of life re-armed it: look again then
            self.sm.schedule(record, at, expires - at, self._status_expired)
            return
        minutes = round(self._node_timeout(record) / 60)
        reason = f"Node operation 'Deploying' timed out after {minutes} minutes."
        if record.installation is not None:
            record.installation.end(ScriptStatus.ABORTED, at)
        self.sm.fail(record, NodeStatus.FAILED_DEPLOYMENT, reason, at)

    def _workflow_timed_out(self, record: MachineRecord, at: float) -> None:
        if record.status != NodeStatus.DEPLOYING:
            return
        if record.installation is not None:
            record.installation.end(ScriptStatus.FAILED, at)
        self.sm.fail(record, NodeStatus.FAILED_DEPLOYMENT, WORKFLOW_TIMEOUT_REASON, at)

    def _progress(self, kind: tuple[str, str]) -> Step:
        def step(record: MachineRecord, at: float) -> None:
            self.sm.event(record, kind, at)
            if record.status_expires is not None:
                # PXE boot and the installer's milestones reset MAAS's status timer.
                record.status_expires = at + self._node_timeout(record)

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
