"""The state-changing steps of the node lifecycle, each safe against an uncertain outcome.

`NodeActions` wraps one machine: every MAAS action here either succeeds, fails with MAAS's
reason, or (when the HTTP outcome is unknown) re-reads the machine to learn whether it took
effect, and repeats the POST only when MAAS shows it did not. Waiting goes through the shared
fleet poller. `touched` records whether we changed the machine's state, so a failure is only
cleaned up on a machine this process acted on.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection, Mapping
from typing import TYPE_CHECKING, Any

from teuthology_maas.errors import (
    MaasConflict,
    MaasError,
    MaasOutcomeUnknown,
    MaasTimeout,
    ReleaseFailed,
)
from teuthology_maas.models import (
    ABORT_ENDS,
    ABORT_FAILURE,
    ABORTABLE,
    CLEANABLE,
    DEPLOY_FAILURE,
    DEPLOY_STARTED,
    DEPLOY_TARGET,
    RELEASE_FAILED,
    RELEASE_FAILURE,
    RELEASE_IN_PROGRESS,
    RELEASE_STARTED,
    RELEASE_TARGET,
    Machine,
    NodeStatus,
)
from teuthology_maas.node import forensics
from teuthology_maas.node.erase import release_params
from teuthology_maas.node.recovery import recover_stuck_release

if TYPE_CHECKING:
    from teuthology_maas.config import MaasConfig
    from teuthology_maas.endpoint import Endpoint

log = logging.getLogger("teuthology_maas.node.provisioner")

class NodeActions:
    """MAAS actions and waits for one machine, on behalf of one MAAS user."""

    def __init__(
        self,
        endpoint: Endpoint,
        config: MaasConfig,
        username: str,
        machine: Machine,
        *,
        actor: str | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.client = endpoint.client
        self.config = config
        self.username = username
        # Who the actions are for (teuthology owner, run, job): goes into MAAS's event log.
        self.actor = actor or username
        self.system_id = machine.system_id
        self.last = machine
        self.touched = False

    @property
    def name(self) -> str:
        return self.last.describe()

    def refresh(self) -> Machine:
        self.last = self.client.get_machine(self.system_id)
        return self.last

    # -- actions -------------------------------------------------------------------------

    def allocate(self, *, comment: str) -> Machine:
        def applied(m: Machine) -> bool:
            return m.owner == self.username and m.status is not NodeStatus.READY

        return self._act(
            "allocate",
            lambda: self.client.allocate(
                system_id=self.system_id, agent_name=self.config.agent_name, comment=comment
            ),
            applied,
        )

    def stamp(self, data: Mapping[str, str]) -> Machine:
        def applied(m: Machine) -> bool:
            return all(m.owner_data.get(k) == v for k, v in data.items())

        return self._act(
            "set_owner_data", lambda: self.client.set_owner_data(self.system_id, data), applied
        )

    def deploy(
        self,
        *,
        distro_series: str,
        user_data: str,
        comment: str,
        options: Mapping[str, Any] | None = None,
    ) -> Machine:
        """`options`: further deploy fields (hwe_kernel, ephemeral_deploy; see deploy_plan)."""
        machine = self._act(
            "deploy",
            lambda: self.client.deploy(
                self.system_id,
                distro_series=distro_series,
                user_data=user_data,
                agent_name=self.config.agent_name,
                comment=comment,
                **(options or {}),
            ),
            lambda m: m.status in DEPLOY_STARTED,
        )
        return machine

    def abort(self, *, comment: str | None = None) -> Machine:
        def applied(m: Machine) -> bool:
            return m.status not in ABORTABLE

        try:
            return self._act(
                "abort", lambda: self.client.abort(self.system_id, comment=comment), applied
            )
        except MaasConflict:
            # MAAS refuses abort once the machine has left Deploying/Disk erasing by itself:
            # the goal (not in flight) is reached either way.
            machine = self.refresh()
            if applied(machine):
                return machine
            raise

    def lock(self) -> Machine:
        return self._act(
            "lock",
            lambda: self.client.lock(self.system_id, comment=self.comment("lock")),
            lambda m: m.locked,
        )

    def unlock(self) -> Machine:
        try:
            return self._act(
                "unlock",
                lambda: self.client.unlock(self.system_id, comment=self.comment("unlock")),
                lambda m: not m.locked,
            )
        except MaasConflict:
            # 409 "Machine is not locked": someone unlocked it meanwhile; that is what we wanted.
            machine = self.refresh()
            if not machine.locked:
                return machine
            raise

    def release(self, *, erase: str | None = None) -> Machine:
        params = release_params(erase if erase is not None else self.config.erase)
        return self._act(
            "release",
            lambda: self.client.release(
                self.system_id,
                erase=params.erase,
                quick_erase=params.quick_erase,
                secure_erase=params.secure_erase,
                scripts=params.scripts,
                script_params=dict(params.script_params) or None,
                comment=self.comment("release"),
            ),
            lambda m: m.status in RELEASE_STARTED,
        )

    def unlock_if_locked(self) -> None:
        if self.last.locked:
            self.unlock()

    # -- composite steps -----------------------------------------------------------------

    def check_released(self, machine: Machine) -> None:
        """ReleaseFailed, with MAAS's explanation, unless `machine` is back in the pool."""
        if machine.status in RELEASE_TARGET:
            return
        raise forensics.failure(
            ReleaseFailed, f"releasing {self.name}", ended_in(machine, "the release"),
            forensics.collect(self.client, machine),
        )  # fmt: skip

    def finish_release(self) -> Machine:
        """Wait for the release under way to reach Ready; ReleaseFailed (with MAAS's
        explanation) on a failure status, or after the recovery ladder when it is stuck."""
        try:
            machine = self.wait_released()
        except MaasTimeout as exc:
            recovery = recover_stuck_release(self)
            raise forensics.failure(
                ReleaseFailed, f"releasing {self.name}",
                f"timed out: {exc}; {recovery.describe()}",
                forensics.collect(self.client, recovery.machine),
            ) from exc  # fmt: skip
        self.check_released(machine)
        return machine

    def clean_up(self, *, wait: bool) -> str:
        """After a failed create(): leave the machine neither Deploying, Allocated nor Deployed
        to us. Returns what happened; never raises (the original failure must surface)."""
        try:
            machine = self.refresh()
            if machine.owner and machine.owner != self.username:
                return f"left alone: MAAS user {machine.owner!r} holds it now"
            if machine.status is NodeStatus.DEPLOYING:
                self.unlock_if_locked()
                self.abort(comment=self.comment("abort after failure"))
                try:
                    machine = self.wait_aborted()
                except MaasTimeout:
                    machine = self.refresh()  # MAAS also releases from Deploying
            if machine.status in CLEANABLE:
                self.unlock_if_locked()
                self.release()
            elif machine.status in RELEASE_FAILED:
                return f"needs an operator: the release ended in {status_text(machine)}"
            elif machine.status not in RELEASE_IN_PROGRESS:
                return f"nothing to undo ({machine.status_name})"
            if not wait:
                return f"release requested ({self.last.status_name})"
            try:
                machine = self.wait_released()
            except MaasTimeout as exc:
                recovery = recover_stuck_release(self)
                if recovery.released:
                    return f"released after it stuck ({exc}; {recovery.describe()})"
                return f"the release stuck ({exc}); {recovery.describe()}"
            if machine.status in RELEASE_FAILURE:
                return f"needs an operator: the release ended in {status_text(machine)}"
            return f"released ({machine.status_name})"
        except BaseException as exc:  # report, never hide the original failure
            return (
                f"needs an operator: clean-up failed ({describe_error(exc)}); MAAS last showed "
                f"{self.last.status_name}"
            )

    # -- waits ---------------------------------------------------------------------------

    def wait(
        self,
        targets: Collection[NodeStatus],
        failures: Collection[NodeStatus],
        timeout: float,
    ) -> Machine:
        """Wait until MAAS shows a target or failure status (raises MaasTimeout)."""
        poller = self.endpoint.status_poller(self.config)
        machine = poller.wait(
            self.system_id,
            targets=frozenset(targets),
            failures=frozenset(failures),
            timeout=timeout,
            on_change=self._log_change,
        )
        self.last = machine
        return machine

    def wait_deployed(self) -> Machine:
        return self.wait(DEPLOY_TARGET, DEPLOY_FAILURE, self.config.deploy_timeout)

    def wait_released(self) -> Machine:
        return self.wait(RELEASE_TARGET, RELEASE_FAILURE, self.config.release_timeout)

    def wait_aborted(self) -> Machine:
        return self.wait(ABORT_ENDS, ABORT_FAILURE, self.config.abort_timeout)

    # -- plumbing ------------------------------------------------------------------------

    def _act(
        self, op: str, call: Callable[[], Machine], applied: Callable[[Machine], bool]
    ) -> Machine:
        """POST; after each unknown outcome re-read the machine and send again only if MAAS
        shows it did not apply, within the client's retry budget (attempts and total time)."""
        policy = self.client.retry_policy
        started = time.monotonic()
        sends = 0
        while True:
            sends += 1
            log.debug("%s: %s", self.name, op)
            try:
                machine = call()
            except MaasOutcomeUnknown as exc:
                self.touched = True
                machine = self.refresh()
                if applied(machine):
                    log.info("%s: %s went through despite %s", self.name, op, exc)
                    self._kick()
                    return machine
                if sends >= policy.max_attempts or time.monotonic() - started > policy.max_total:
                    raise
                log.warning(
                    "%s: %s did not take effect (%s); sending it again (attempt %d of %d)",
                    self.name, op, exc, sends + 1, policy.max_attempts,
                )  # fmt: skip
                continue
            except MaasConflict:
                if sends == 1:
                    raise
                # A re-sent POST refused for the machine's state: an earlier send whose answer
                # was lost may have been applied after our re-read. MAAS's state decides.
                machine = self.refresh()
                if not applied(machine):
                    raise
                log.info("%s: %s had gone through (a re-send was refused)", self.name, op)
            break
        self.touched = True
        if isinstance(machine, Machine):
            self.last = machine
        self._kick()
        return self.last

    def _kick(self) -> None:
        self.endpoint.status_poller(self.config).kick()

    def comment(self, action: str) -> str:
        return f"teuthology-maas {action} for {self.actor}"

    def _log_change(self, machine: Machine) -> None:
        self.last = machine
        detail = f": {machine.status_message}" if machine.status_message else ""
        log.info("%s: %s%s", machine.describe(), machine.status_name, detail)


def status_text(machine: Machine) -> str:
    return machine.status_name + (f" ({machine.status_message})" if machine.status_message else "")


def ended_in(machine: Machine, what: str) -> str:
    """Why a wait ended short of its target (MAAS's status_message is left to forensics)."""
    if machine.status is NodeStatus.ALLOCATED:
        return f"MAAS reverted {what} to Allocated (usually: it could not power-control the node)"
    return f"MAAS ended {what} in {machine.status_name}"


def describe_error(exc: BaseException) -> str:
    """Short text for an exception, in the words MAAS (or the library) used."""
    if isinstance(exc, MaasError):
        return str(exc)
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
