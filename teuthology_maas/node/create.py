"""One create() attempt: from whatever the machine shows to our verified deployment.

The attempt has a token of its own (see `ownership`). It acts on another attempt's deployment
only when its authority allows taking it over (a paddles lock now held by its job, a
deployment whose process has ended, an operator's --take-over), and then claims it first:
it stamps its own token on the machine before it aborts or releases anything, so the attempt
it takes over sees at its next look that the machine is no longer its own and stands down.
From its own stamp on, every step acts only while the machine carries its token; waits stop
at once when it does not.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from teuthology_maas.errors import (
    DeploymentFailed,
    MaasConflict,
    MaasError,
    MaasTimeout,
    MachineStateError,
    NodeQuarantined,
    NoMachineAvailable,
    ReleaseFailed,
    SSHNotReady,
    TakenOver,
)
from teuthology_maas.models import DEPLOY_TARGET, Machine, NodeStatus
from teuthology_maas.node import decide as _decide
from teuthology_maas.node import forensics, keep, quarantine
from teuthology_maas.node.actions import NodeActions, describe_error
from teuthology_maas.node.attempts import running_tokens
from teuthology_maas.node.decide import CreateStep
from teuthology_maas.node.deploy_plan import DeployPlan, restore_network
from teuthology_maas.node.ownership import Authority, Holder, Stamp, Verdict, judge
from teuthology_maas.node.undo import clean_up

if TYPE_CHECKING:
    from collections.abc import Callable

    from teuthology_maas.node.attempts import Attempt

log = logging.getLogger("teuthology_maas.node.provisioner")

# A create() or release() that needs more steps than this is chasing a machine someone else
# keeps changing; stop and say so instead of looping.
MAX_STEPS = 8


class Ended(Exception):
    """A wait for our deployment ended short of its target (MAAS's events say why)."""

    metrics_reason = "deploy_failed"  # MAAS failed the deployment (teuthology_maas.metrics)

    def __init__(self, machine: Machine) -> None:
        super().__init__(f"MAAS ended the deployment in {machine.status_name}")
        self.machine = machine


def may_act(node: NodeActions, machine: Machine, authority: Authority, action: str) -> Verdict:
    """The verdict on acting on the deployment `machine` carries; TakenOver (nothing
    touched) when the caller may not."""
    holder = node.holder(machine)
    verdict = judge(holder, authority, running=running_tokens())
    if verdict.allowed:
        if holder.token is not None and holder.token not in authority.tokens:
            log.info("%s: may %s %s: %s", machine.describe(), action, holder.describe(),
                     verdict.reason)  # fmt: skip
        return verdict
    raise refusal(node, machine, holder, action, verdict.reason, ours=bool(authority.tokens))


def refusal(
    node: NodeActions,
    machine: Machine,
    holder: Holder,
    action: str,
    reason: str,
    *,
    ours: bool = False,
) -> TakenOver:
    """The error for a deployment the caller may not act on. `ours`: the caller had made a
    deployment of its own on the machine, which another has replaced."""
    try:
        others = forensics.other_actions(node.events(), node.tag)
    except MaasError as exc:  # the refusal stands whatever the events say; say they failed
        others = [f"(events unreadable: {exc})"]
    seen = f" MAAS events: {'; '.join(others)}." if others else ""
    what = "was taken over by another deployment" if ours else "carries another deployment"
    return TakenOver(
        f"{machine.describe()} ({machine.status_name}) {what}: {holder.describe()} "
        f"({reason}); refusing to {action} it. Nothing was touched.{seen} If that deployment "
        f"is no longer in use, release it (teuthology-maas release --force) or let "
        f"teuthology-maas reconcile find it.",
        **machine.error_fields(),
        maas_message=machine.status_message,
    )


class CreateAttempt:
    """The steps of one create(); `run` returns once the node is verified, or raises."""

    def __init__(
        self,
        node: NodeActions,
        stamp: Stamp,
        authority: Authority,
        attempt: Attempt,
        plan: DeployPlan | None = None,
        *,
        keep_as: str | None = None,
    ) -> None:
        self.node = node
        self.stamp = stamp
        self.authority = authority
        self.attempt = attempt
        # Deploy options applied when MAAS allows each (storage before allocate, bonds and
        # deploy fields before deploy).
        self.plan = plan
        # keep_on_failure: who keeps a failed deployment for debugging (None: clean it up).
        self.keep_as = keep_as

    def prepare(self) -> None:
        """Bring the machine to Allocated-to-us with our stamp on it, one decided step at a
        time."""
        node = self.node
        for _ in range(MAX_STEPS):
            step = _decide.next_create_step(node.last, node.username)  # each action re-reads first
            if step is CreateStep.ALLOCATE:
                if self.plan is not None:
                    self.plan.before_allocate(node)  # MAAS sets storage layouts on Ready machines
                try:
                    node.allocate(comment=node.comment("allocate"))
                except NoMachineAvailable:
                    # Someone else got it first: judge what they hold (the next step). MAAS
                    # refusing a machine it still shows Ready is its final word.
                    if node.refresh().status is NodeStatus.READY:
                        raise
                continue
            if step is CreateStep.WAIT_RELEASE:
                log.info("%s: waiting for the release in progress", node.name)
                node.finish_release()
                continue
            self.claim()
            if step is CreateStep.DEPLOY:
                if not self.stamp.applied_to(node.fresh()):
                    node.stamp(self.stamp)
                return
            node.unlock_if_locked()
            if step is CreateStep.ABORT:
                log.info("%s: aborting the deployment in progress", node.name)
                node.abort(comment=node.comment("abort before redeploy"))
                node.wait_aborted()
            else:
                # A failed release or erase is retried here too; if it fails again,
                # finish_release raises ReleaseFailed with MAAS's explanation.
                log.info("%s: releasing %s before the redeploy", node.name, node.last.status_name)
                node.release()
                node.finish_release()
        raise MachineStateError(
            f"{node.name} did not settle into a deployable state after {MAX_STEPS} steps "
            f"(last {node.last.status_name}); is someone else acting on it?",
            **node.last.error_fields(),
        )

    def claim(self) -> None:
        """Make the deployment on the machine ours before acting on it: nothing to do when it
        is; TakenOver when our authority does not cover it; else stamp our token over it."""
        node = self.node
        machine = node.fresh()
        holder = node.holder(machine)
        if holder.token is not None and holder.token == self.stamp.token:
            node.deployment = self.stamp.token
            return
        verdict = may_act(node, machine, self.authority, "redeploy")
        node.deployment = verdict.token
        if machine.owner == node.username:
            node.unlock_if_locked()  # MAAS refuses owner data on a locked machine
            node.stamp(self.stamp)

    def run(
        self, *, distro_series: str, user_data: str, os_text: str,
        verify: Callable[[], str | None],
    ) -> None:  # fmt: skip
        node = self.node
        for _ in range(MAX_STEPS):
            self.prepare()
            options = self.before_deploy()
            try:
                node.deploy(
                    distro_series=distro_series,
                    user_data=user_data,
                    comment=node.comment(f"deploy {os_text}"),
                    options=options,
                )
                break
            except MaasConflict as exc:
                # Another attempt's deploy got in between our stamp and ours (it stood down
                # when it saw our token): the machine is ours, its deployment is not. Prepare
                # again (abort it) and deploy ours. Any other refusal is MAAS's final word.
                if node.fresh().status is NodeStatus.ALLOCATED:
                    raise
                log.info("%s: deploy refused (%s); preparing again", node.name, exc)
        else:
            raise MachineStateError(
                f"{node.name}: deploy refused {MAX_STEPS} times; is someone else acting on it?",
                **node.last.error_fields(),
            )
        deployed = node.wait_deployed()
        if deployed.status not in DEPLOY_TARGET:
            raise Ended(deployed)
        try:
            problem = verify()
        except SSHNotReady:
            # A node released or taken over while we waited for SSH stops answering: say so,
            # rather than blame SSH.
            self.confirm(node.refresh())
            raise
        if problem:
            raise DeploymentFailed(problem, **deployed.error_fields())
        # The hand-over: the lock's answer is MAAS's last word on the machine (with
        # lock_after_deploy off, a read): Deployed, with our token, or not ours to hand over.
        if node.config.lock_after_deploy:
            self.confirm(node.lock())
        else:
            self.confirm(node.refresh())

    def before_deploy(self) -> dict[str, object]:
        """The deploy plan's last steps on our stamped, allocated machine; the extra deploy
        fields. Setting a storage layout releases and allocates the machine again, which
        wipes the stamp: it is written again before the deploy."""
        if self.plan is None:
            return {}
        node = self.node
        node.guard("configure")
        options = self.plan.before_deploy(node)
        if not self.stamp.applied_to(node.fresh()):
            node.stamp(self.stamp)
        return options

    def confirm(self, machine: Machine) -> None:
        """`machine`, read from MAAS just now, is Deployed with our token (else TakenOver)."""
        holder = self.node.holder(machine)
        if machine.status is not NodeStatus.DEPLOYED or holder.token != self.stamp.token:
            raise self.node.taken_over(machine, holder, "hand over")

    def ssh_watch(self) -> Callable[[], None]:
        """For the SSH wait: stop at once when asked to, and (at most every poll_interval)
        re-read the machine and stop when it left Deployed or carries another token."""
        node = self.node
        every = max(node.config.poll_min_interval, min(node.config.poll_interval, 5.0))
        last = [time.monotonic()]

        def watch() -> None:
            node.check_interrupt()
            now = time.monotonic()
            if now - last[0] < every:
                return
            last[0] = now
            machine = node.refresh()
            holder = node.holder(machine)
            if machine.status is not NodeStatus.DEPLOYED or holder.token != self.stamp.token:
                raise node.taken_over(machine, holder, "verify")

        return watch

    def failed(self, exc: BaseException, what: str) -> DeploymentFailed:
        """Clean up after a failure (or, with keep_on_failure, keep the deployment as MAAS
        left it) and build the exception that explains it."""
        node = self.node
        self.attempt.cleaning_up()
        interrupted = not isinstance(exc, Exception)
        # MAAS's story of the failure first: the clean-up adds events of its own.
        found = forensics.collect(node.client, node.last)
        cause = _cause(exc, interrupted)
        if isinstance(exc, Ended):
            cause = forensics.explain_end(found.events, exc.machine, "the deployment", node.tag)
        quarantined: str | None = None
        if not node.touched:
            outcome = "nothing was changed in MAAS"
        elif self.keep_as is not None and not interrupted and not isinstance(exc, TakenOver):
            outcome = keep.keep_failed(node, who=self.keep_as, reason=cause)
        elif (quarantined := self.quarantine(exc)) is not None:
            outcome = f"quarantined: marked broken in MAAS ({quarantined})"
        else:
            outcome = clean_up(node, wait=not interrupted)
            if not interrupted:
                outcome += restore_network(node)
        error = forensics.failure(
            DeploymentFailed if quarantined is None else NodeQuarantined,
            what, cause, found, then=f"Clean-up: {outcome}",
            # a ReleaseFailed already carries MAAS's account
            with_summary=not isinstance(exc, ReleaseFailed),
        )  # fmt: skip
        if isinstance(error, NodeQuarantined):
            error.quarantine = quarantined or ""
        log.error("%s", error)
        return error

    def quarantine(self, exc: BaseException) -> str | None:
        """When MAAS failed our deployment on the node and that makes `quarantine_after`
        failures in a row, mark the node broken (node/quarantine.py); the comment, or None
        (then the usual clean-up runs)."""
        if not isinstance(exc, Ended) or exc.machine.status is not NodeStatus.FAILED_DEPLOYMENT:
            return None
        try:
            return quarantine.check(self.node, self.node.config.quarantine_after)
        except MaasError as exc2:
            log.warning("%s: could not quarantine it (%s); cleaning up instead",
                        self.node.name, exc2)
            return None


def _cause(exc: BaseException, interrupted: bool) -> str:
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted (Ctrl-C)"
    if interrupted:
        return "stopped: the process is exiting"
    if isinstance(exc, MaasTimeout):
        return f"timed out: {exc}"
    return describe_error(exc)
