"""The state-changing steps of the node lifecycle, each checked against the deployment token
and safe against an uncertain outcome.

`NodeActions` acts on one machine for one caller, and only on one deployment: `deployment`,
the token it may act on (its own attempt's, or the one its caller was allowed to undo; None
for a machine that carries no token). Before every state-changing call it makes sure it
has a fresh read of the machine (the answer to its own previous call, or a new GET; never a
shared poll) and stops with `TakenOver` when the token on the machine is not that one (the
checks are `Custody`'s, custody.py).

Every POST either succeeds, fails with MAAS's reason, or, when its outcome is uncertain (a
dropped connection, a timeout, a 502/503/504, a 409 MAAS asks to retry, a 409 refusing the
state), is resolved by re-reading the machine: it is sent again only when MAAS shows it did
not apply, the token is still the one acted on, and the client's retry budget allows.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Mapping
from typing import Any

from teuthology_maas import metrics
from teuthology_maas.errors import (
    MaasConflict,
    MaasError,
    MaasOutcomeUnknown,
    MaasPermissionDenied,
    MaasTimeout,
    MaasUnavailable,
    ReleaseFailed,
)
from teuthology_maas.models import (
    ABORT_ENDS,
    ABORT_FAILURE,
    ABORTABLE,
    DEPLOY_FAILURE,
    DEPLOY_STARTED,
    DEPLOY_TARGET,
    FREE,
    RELEASE_FAILURE,
    RELEASE_STARTED,
    RELEASE_TARGET,
    Machine,
    NodeStatus,
)
from teuthology_maas.node import forensics
from teuthology_maas.node.custody import Custody
from teuthology_maas.node.erase import release_params
from teuthology_maas.node.ownership import Stamp
from teuthology_maas.node.recovery import recover_stuck_release

log = logging.getLogger("teuthology_maas.node.provisioner")

Applied = Callable[[Machine], bool]


class NodeActions(Custody):
    """MAAS actions for one machine, on behalf of one MAAS user and one deployment."""

    # The metrics phase of the wait for a release: "erase" once a release erasing disks is sent.
    release_phase = "release"
    # A free sign that our deployment finished (the node answering over SSH with our key and
    # cloud-init's sentinel): only a reason to read MAAS sooner, never believed by itself.
    probe: Callable[[], bool] | None = None
    machine_type = _series = _erase = ""  # what the poller learns the waits as

    # -- actions -------------------------------------------------------------------------------

    def allocate(self, *, comment: str) -> Machine:
        def applied(m: Machine) -> bool:
            return (
                m.owner == self.username
                and m.status not in FREE
                and self.holder(m).token == self.own
            )

        with metrics.phase("allocate"):
            machine = self._act(
                "allocate",
                lambda: self.client.allocate(
                    system_id=self.system_id, agent_name=self.config.agent_name,
                    comment=comment,
                ),
                applied,
                guarded=False,
            )
        self._acquired = machine
        self.deployment = self.own
        self._released = False  # a deployment of ours begins
        return machine

    def stamp(self, stamp: Stamp) -> Machine:
        """Write our token (and who we are) into the owner data: from now on the machine says
        it is this attempt's deployment. A takeover does this before anything else, so the
        attempt it takes over sees at its next look that the machine is no longer its own."""
        machine = self._act(
            "set_owner_data",
            lambda: self.client.set_owner_data(self.system_id, stamp.owner_data()),
            stamp.applied_to,
        )
        self.deployment = stamp.token
        self._released = False
        return machine

    def mark(self, data: Mapping[str, str]) -> Machine:
        """Add `data` to the owner data of the deployment we act on (its token stays)."""

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

        def applied(m: Machine) -> bool:
            if m.status not in DEPLOY_STARTED or self.holder(m).token != self.own:
                return False
            started = forensics.newest_tag(self.events(), forensics.START_DEPLOY)
            return started is not None and started[1] is not None and started[1] == self.tag

        self._series = distro_series
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
            applied,
        )
        if self.holder(machine).token != self.deployment:
            # Another attempt stamped the machine while our deploy was on its way.
            raise self.taken_over(machine, self.holder(machine), "deploy")
        return machine

    def abort(self, *, comment: str | None = None) -> Machine:
        # MAAS aborts asynchronously (its answer shows the machine before): after an uncertain
        # outcome its event log says whether our request got through.
        return self._act(
            "abort",
            lambda: self.client.abort(self.system_id, comment=comment),
            lambda m: m.status not in ABORTABLE or self._requested(forensics.ABORTS),
        )

    def lock(self) -> Machine:
        """Lock our deployment and return MAAS's answer; "already locked" is success when MAAS
        shows it locked with our token on it. Locking undoes nothing, so MAAS's answer is
        checked instead of a read before it: another token there means the machine changed
        hands (TakenOver; the one who took it unlocks it as part of taking it over)."""

        def applied(m: Machine) -> bool:
            return m.locked and self.holder(m).token == self.deployment

        with metrics.phase("lock"):
            machine = self._act(
                "lock",
                lambda: self.client.lock(self.system_id, comment=self.comment("lock")),
                applied,
                guarded=False,
            )
        holder = self.holder(machine)
        if holder.token != self.deployment:
            raise self.taken_over(machine, holder, "lock")
        return machine

    def unlock(self) -> Machine:
        return self._act(
            "unlock",
            lambda: self.client.unlock(self.system_id, comment=self.comment("unlock")),
            lambda m: not m.locked,
        )

    def unlock_if_locked(self) -> None:
        if self.fresh().locked:
            self.unlock()

    def release(self, *, erase: str | None = None) -> Machine:
        self._erase = erase if erase is not None else self.config.erase
        params = release_params(self._erase)
        machine = self._act(
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
        self._released = True
        self.release_phase = "erase" if params.erases else "release"
        return machine

    def power_off(self, *, comment: str) -> Machine:
        def call() -> Machine:
            answer = self.client.power_off(self.system_id, comment=comment)
            return answer if answer is not None else self.client.get_machine(self.system_id)

        return self._act(
            "power_off",
            call,
            lambda m: m.power_state == "off" or self._requested({forensics.POWER_OFF}),
        )

    def mark_broken(self, *, comment: str) -> Machine:
        return self._act(
            "mark_broken",
            lambda: self.client.mark_broken(self.system_id, comment=comment),
            lambda m: m.status is NodeStatus.BROKEN,
        )

    def mark_fixed(self, *, comment: str) -> Machine:
        return self._act(
            "mark_fixed",
            lambda: self.client.mark_fixed(self.system_id, comment=comment),
            lambda m: m.status is not NodeStatus.BROKEN,
        )

    # -- waits ---------------------------------------------------------------------------------

    def wait(
        self,
        targets: Collection[NodeStatus],
        failures: Collection[NodeStatus],
        timeout: float,
        *,
        expected: Collection[NodeStatus] | None = None,
        kind: str | None = None,
        long_job: bool = False,
    ) -> Machine:
        """Wait through the shared poller until MAAS shows a target or failure status (raises
        MaasTimeout). With `expected`, the wait also ends at once (TakenOver) when the machine
        leaves those statuses or another token appears on it. `kind` names the wait for the
        timings the poller learns; a `long_job` (a deployment) is read for failures every
        `install_poll_interval` and, near its finish, watched through `probe`."""
        poller = self.endpoint.status_poller(self.config)
        probe = self.probe if long_job and self.config.ssh_probe else None
        extra: dict[str, Any] = (
            {"failure_interval": self.config.install_poll_interval} if long_job else {}
        )
        machine = poller.wait(
            self.system_id,
            targets=frozenset(targets),
            failures=frozenset(failures),
            timeout=timeout,
            on_change=self._observe if expected is None else self.watch(expected),
            check=self.check_interrupt,
            kind=kind,
            probe=probe,
            **extra,
        )
        self.last = machine
        self._fresh = False  # a shared poll: never the basis of a destructive action
        if expected is not None:
            self._still_ours(machine, expected, "wait")
        return machine

    def wait_deployed(self) -> Machine:
        with metrics.phase("deploy_wait") as phase:
            machine = self.wait(
                DEPLOY_TARGET,
                DEPLOY_FAILURE,
                self.config.deploy_timeout,
                expected=DEPLOY_TARGET | DEPLOY_FAILURE | {NodeStatus.DEPLOYING},
                kind=f"deploy {self.machine_type or '-'} {self._series or '-'}",
                long_job=True,
            )
            if machine.status not in DEPLOY_TARGET:
                phase.failed()
        return machine

    def wait_released(self) -> Machine:
        return self.wait(
            RELEASE_TARGET,
            RELEASE_FAILURE,
            self.config.release_timeout,
            kind=f"release {self.machine_type or '-'} {self._erase or '-'}",
        )

    def wait_aborted(self) -> Machine:
        # A create() attempt aborting its own deployment stops at once when it changes hands;
        # anyone else (an operator's abort, a release) only waits for it to leave flight.
        expected = ABORT_ENDS | ABORT_FAILURE | ABORTABLE if self.own is not None else None
        with metrics.phase("abort"):
            return self.wait(
                ABORT_ENDS, ABORT_FAILURE, self.config.abort_timeout, expected=expected,
                kind=f"abort {self.machine_type or '-'}",
            )  # fmt: skip

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
            with metrics.phase(self.release_phase) as phase:
                machine = self.wait_released()
                if machine.status not in RELEASE_TARGET:
                    phase.failed()
        except MaasTimeout as exc:
            with metrics.phase("recovery"):
                recovery = recover_stuck_release(self)
            raise forensics.failure(
                ReleaseFailed, f"releasing {self.name}",
                f"timed out: {exc}; {recovery.describe()}",
                forensics.collect(self.client, recovery.machine),
            ) from exc  # fmt: skip
        self.check_released(machine)
        return machine

    # -- plumbing ------------------------------------------------------------------------------

    def _act(
        self, op: str, call: Callable[[], Machine], applied: Applied, *, guarded: bool = True
    ) -> Machine:
        """POST `op` for our deployment. After an uncertain outcome, and after a 409, re-read
        the machine: done if MAAS shows it applied; stop (TakenOver) if the token changed;
        else (uncertain only) send again after the wait MAAS asked for, or the policy's
        back-off, within the client's retry budget."""
        policy = self.client.retry_policy
        started = self.client.retry_clock()
        sends = 0
        while True:
            self.check_interrupt()
            if guarded:
                self.guard(op)
            sends += 1
            log.debug("%s: %s", self.name, op)
            try:
                machine = call()
            except MaasOutcomeUnknown as exc:
                self.touched = True
                if self._resolved(op, applied, exc):
                    return self.last
                wait = exc.retry_after if exc.retry_after is not None else policy.backoff(sends)
                elapsed = self.client.retry_clock() - started
                if sends >= policy.max_attempts or elapsed + wait > policy.max_total:
                    raise self._gave_up(op, exc, sends, elapsed) from exc
                log.warning(
                    "%s: %s did not take effect (%s); sending it again in %.1fs (attempt %d "
                    "of %d)",
                    self.name, op, exc, wait, sends + 1, policy.max_attempts,
                )  # fmt: skip
                self.client.retry_sleep(wait)
                continue
            except MaasConflict as exc:
                if self._resolved(op, applied, exc):
                    return self.last
                raise
            except MaasPermissionDenied:
                # 403: locked. If it is still our deployment (someone locked it under us),
                # unlock it and send once more; otherwise it is not ours to act on.
                if op in ("lock", "unlock") or sends > 1 or not self.refresh().locked:
                    raise
                self.unlock()
                continue
            break
        self.touched = True
        self.last = machine
        self._fresh = True
        self._kick()
        return machine

    def _resolved(self, op: str, applied: Applied, exc: MaasError) -> bool:
        """Re-read after an uncertain answer: True when MAAS shows `op` applied; TakenOver
        when the machine no longer carries the deployment we act on."""
        machine = self.refresh()
        if applied(machine):
            log.info("%s: %s went through despite %s", self.name, op, exc)
            self._kick()
            return True
        if op != "allocate":
            holder = self.holder(machine)
            if not self.carries_ours(holder):
                raise self.taken_over(machine, holder, op) from exc
            if self.own is not None and op != "release" and self._released_by_another(machine):
                raise self.taken_over(machine, holder, op) from exc
        return False

    def _gave_up(self, op: str, exc: MaasOutcomeUnknown, sends: int, elapsed: float) -> MaasError:
        if exc.http_status in (503, 409):
            return MaasUnavailable(
                f"MAAS kept refusing {op} on {self.name}: sent {sends} time(s) in "
                f"{elapsed:.1f}s, each time answered HTTP {exc.http_status} and the machine "
                f"showed it had not applied; last answer: {exc.maas_message or exc}",
                **self.last.error_fields(),
                http_status=exc.http_status,
                maas_message=exc.maas_message,
            )
        return exc

    def _kick(self) -> None:
        self.endpoint.status_poller(self.config).kick()


def status_text(machine: Machine) -> str:
    return machine.status_name + (f" ({machine.status_message})" if machine.status_message else "")


def ended_in(machine: Machine, what: str) -> str:
    """Why a wait ended short of its target, when MAAS's events cannot be read (what they
    say is `forensics.explain_end`'s)."""
    return f"MAAS ended {what} in {machine.status_name}"


def describe_error(exc: BaseException) -> str:
    """Short text for an exception, in the words MAAS (or the library) used."""
    if isinstance(exc, MaasError):
        return str(exc)
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
