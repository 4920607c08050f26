"""The state-changing steps of the node lifecycle, each checked against the deployment token
and safe against an uncertain outcome.

`NodeActions` acts on one machine for one caller, and only on one deployment: `deployment`,
the token it may act on (its own attempt's, or the one its caller was allowed to undo; None
for a machine that carries no token). Before every state-changing call it makes sure it
has a fresh read of the machine (the answer to its own previous call, or a new GET; never a
shared poll) and stops with `TakenOver` when the token on the machine is not that one.

Every POST either succeeds, fails with MAAS's reason, or, when its outcome is uncertain (a
dropped connection, a timeout, a 502/503/504, a 409 MAAS asks to retry, a 409 refusing the
state), is resolved by re-reading the machine: it is sent again only when MAAS shows it did
not apply, the token is still the one acted on, and the client's retry budget allows.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection
from typing import TYPE_CHECKING

from teuthology_maas import fleet
from teuthology_maas.errors import (
    MaasConflict,
    MaasError,
    MaasOutcomeUnknown,
    MaasPermissionDenied,
    MaasUnavailable,
    TakenOver,
)
from teuthology_maas.models import (
    ABORT_TARGET,
    DEPLOY_FAILURE,
    DEPLOY_TARGET,
    RELEASE_FAILURE,
    RELEASE_TARGET,
    Event,
    Machine,
    NodeStatus,
)
from teuthology_maas.node import forensics
from teuthology_maas.node.erase import release_params
from teuthology_maas.node.ownership import Holder, Stamp, Tag

if TYPE_CHECKING:
    from teuthology_maas.config import MaasConfig
    from teuthology_maas.maas.client import MaasClient
    from teuthology_maas.node.attempts import Attempt

log = logging.getLogger("teuthology_maas.node.provisioner")

_FREE = frozenset({NodeStatus.READY, NodeStatus.NEW})
_DEPLOY_STARTED = frozenset(
    {NodeStatus.DEPLOYING, NodeStatus.DEPLOYED, NodeStatus.FAILED_DEPLOYMENT}
)
_RELEASE_STARTED = frozenset(
    {NodeStatus.RELEASING, NodeStatus.DISK_ERASING, NodeStatus.READY, NodeStatus.NEW}
)
_IN_FLIGHT = frozenset({NodeStatus.DEPLOYING, NodeStatus.DISK_ERASING})
# Where an abort can end: Deploying -> Allocated (or Failed deployment when MAAS had already
# failed it, or Deployed when the deployment finished first), Disk erasing -> Failed disk
# erasing.
ABORT_ENDS = ABORT_TARGET | {NodeStatus.FAILED_DISK_ERASING, NodeStatus.DEPLOYED}
ABORT_FAILURE = frozenset({NodeStatus.BROKEN})

Applied = Callable[[Machine], bool]


class NodeActions:
    """MAAS actions for one machine, on behalf of one MAAS user and one deployment."""

    def __init__(
        self,
        client: MaasClient,
        config: MaasConfig,
        username: str,
        machine: Machine,
        *,
        actor: str | None = None,
        tag: Tag | None = None,
        deployment: str | None = None,
        attempt: Attempt | None = None,
    ) -> None:
        self.client = client
        self.config = config
        self.username = username
        # Who the actions are for (teuthology owner, run, job): goes into MAAS's event log.
        self.actor = actor or username
        self.tag = tag  # our create() attempt, when we are one
        self.deployment = deployment  # the token we may act on
        self.attempt = attempt
        self.system_id = machine.system_id
        self.last = machine
        self.touched = False
        self._fresh = True  # `last` came from MAAS for us, not from a shared poll
        self._acquired: Machine | None = None  # the answer to our own allocate
        self._released = False  # our release of the deployment went through
        self._events_for: tuple[NodeStatus, str | None] | None = None
        self._unstamped: Tag | None = None

    @property
    def name(self) -> str:
        return self.last.describe()

    @property
    def own(self) -> str | None:
        """The deployment token of our create() attempt (None for other callers)."""
        return self.tag.token if self.tag is not None and self.tag.deployment else None

    def refresh(self) -> Machine:
        self.last = self.client.get_machine(self.system_id)
        self._fresh = True
        return self.last

    def fresh(self) -> Machine:
        """The machine as MAAS shows it now: our last answer if nothing came in between."""
        return self.last if self._fresh else self.refresh()

    # -- whose deployment --------------------------------------------------------------------

    def events(self) -> list[Event]:
        return self.client.events(id=[self.system_id], level="DEBUG", limit=forensics.EVENT_LIMIT)

    def holder(self, machine: Machine) -> Holder:
        """Who made the deployment on `machine`: its stamp; for a machine of ours that carries
        none, the attempt MAAS's events say acquired it (None: no teuthology-maas attempt)."""
        stamp = Stamp.read(machine)
        if stamp is not None:
            return Holder(stamp=stamp)
        if machine.owner != self.username or machine.status in _FREE:
            return Holder()
        if machine is self._acquired and self.tag is not None:
            return Holder(acquired=self.tag)
        key = (machine.status, machine.owner)
        if self._events_for != key:
            found = forensics.newest_tag(self.events(), forensics.ACQUIRE)
            tag = found[1] if found else None
            self._unstamped = tag if tag is not None and tag.deployment else None
            self._events_for = key
        return Holder(acquired=self._unstamped)

    def guard(self, action: str) -> Machine:
        """The machine, fresh, provided it still carries the deployment we act on."""
        machine = self.fresh()
        holder = self.holder(machine)
        if not self.carries_ours(holder):
            raise self.taken_over(machine, holder, action)
        return machine

    def carries_ours(self, holder: Holder) -> bool:
        """True when `holder` is the deployment we act on (or, once our own release went
        through, no deployment at all: MAAS wipes the stamp when the release completes)."""
        return holder.token == self.deployment or (self._released and holder.token is None)

    def taken_over(
        self, machine: Machine, holder: Holder, action: str, *, what: str | None = None
    ) -> TakenOver:
        """The error saying, from the owner data and MAAS's events, who has the machine (or,
        with `what`, what happened to it)."""
        try:
            others = forensics.other_actions(self.events(), self.tag)
        except MaasError as exc:
            others = [f"(events unreadable: {exc})"]
        mine = (
            f"deployment {self.tag.short()}"
            if self.tag is not None and self.tag.deployment
            else "the deployment acted on"
        )
        if what is not None:
            pass
        elif self.carries_ours(holder) and machine.status in _RELEASE_STARTED:
            what = f"was released ({machine.status_name}) by someone other than {mine}"
        elif self.carries_ours(holder):
            what = f"went {machine.status_name} under {mine}, which did not ask for that"
        elif holder.token is None:
            what = f"now carries {holder.describe()} instead of {mine}"
        else:
            what = f"was taken over by another deployment: {holder.describe()}"
        seen = f"; MAAS events: {'; '.join(others)}" if others else ""
        return TakenOver(
            f"{machine.describe()} {what}{seen}; stopped at {action}: nothing more was done to "
            f"it by this attempt.",
            **machine.error_fields(),
            maas_message=machine.status_message,
        )

    # -- actions -------------------------------------------------------------------------------

    def allocate(self, *, comment: str) -> Machine:
        def applied(m: Machine) -> bool:
            return (
                m.owner == self.username
                and m.status not in _FREE
                and self.holder(m).token == self.own
            )

        machine = self._act(
            "allocate",
            lambda: self.client.allocate(
                system_id=self.system_id, agent_name=self.config.agent_name, comment=comment
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

    def deploy(self, *, distro_series: str, user_data: str, comment: str) -> Machine:
        def applied(m: Machine) -> bool:
            if m.status not in _DEPLOY_STARTED or self.holder(m).token != self.own:
                return False
            started = forensics.newest_tag(self.events(), forensics.START_DEPLOY)
            return started is not None and started[1] is not None and started[1] == self.tag

        machine = self._act(
            "deploy",
            lambda: self.client.deploy(
                self.system_id,
                distro_series=distro_series,
                user_data=user_data,
                agent_name=self.config.agent_name,
                comment=comment,
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
            lambda m: m.status not in _IN_FLIGHT or self._requested(forensics.ABORTS),
        )

    def lock(self) -> Machine:
        """Lock our deployment; "already locked" is success when MAAS shows it locked with our
        token on it."""

        def applied(m: Machine) -> bool:
            return m.locked and self.holder(m).token == self.deployment

        machine = self._act(
            "lock",
            lambda: self.client.lock(self.system_id, comment=self.comment("lock")),
            applied,
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
        params = release_params(erase if erase is not None else self.config.erase)
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
            lambda m: m.status in _RELEASE_STARTED,
        )
        self._released = True
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
    ) -> Machine:
        """Wait through the shared poller until MAAS shows a target or failure status (raises
        MaasTimeout). With `expected`, the wait also ends at once (TakenOver) when the machine
        leaves those statuses or another token appears on it."""
        poller = fleet.poller_for(self.client, config=self.config)
        machine = poller.wait(
            self.system_id,
            targets=frozenset(targets),
            failures=frozenset(failures),
            timeout=timeout,
            on_change=self._observe if expected is None else self.watch(expected),
            check=self.check_interrupt,
        )
        self.last = machine
        self._fresh = False  # a shared poll: never the basis of a destructive action
        if expected is not None:
            self._still_ours(machine, expected, "wait")
        return machine

    def wait_deployed(self) -> Machine:
        return self.wait(
            DEPLOY_TARGET,
            DEPLOY_FAILURE,
            self.config.deploy_timeout,
            expected=DEPLOY_TARGET | DEPLOY_FAILURE | {NodeStatus.DEPLOYING},
        )

    def wait_released(self) -> Machine:
        return self.wait(RELEASE_TARGET, RELEASE_FAILURE, self.config.release_timeout)

    def wait_aborted(self) -> Machine:
        # A create() attempt aborting its own deployment stops at once when it changes hands;
        # anyone else (an operator's abort, a release) only waits for it to leave flight.
        expected = ABORT_ENDS | ABORT_FAILURE | _IN_FLIGHT if self.own is not None else None
        return self.wait(ABORT_ENDS, ABORT_FAILURE, self.config.abort_timeout, expected=expected)

    def watch(self, expected: Collection[NodeStatus]) -> Callable[[Machine], None]:
        """An on_change for waits of the deployment we act on: stop at once (TakenOver) when
        the machine leaves `expected` or carries another token."""

        def on_change(machine: Machine) -> None:
            self._observe(machine)
            self._still_ours(machine, expected, "wait")

        return on_change

    def _still_ours(self, machine: Machine, expected: Collection[NodeStatus], action: str) -> None:
        # Only the stamp is read here (no events): while a deployment of ours is in flight the
        # stamp is on it, and a machine that lost it has changed hands.
        stamp = Stamp.read(machine)
        token = stamp.token if stamp is not None else None
        if token != self.deployment or machine.status not in expected:
            raise self.taken_over(machine, Holder(stamp=stamp), action)

    def _observe(self, machine: Machine) -> None:
        self.last = machine
        self._fresh = False
        self._log_change(machine)

    def check_interrupt(self) -> None:
        if self.attempt is not None:
            self.attempt.check()

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

    def _requested(self, event_types: Collection[str]) -> bool:
        """True when MAAS's events show the newest request of those types was ours."""
        if self.tag is None:
            return False
        for event_type in event_types:
            found = forensics.newest_tag(self.events(), event_type)
            if found is not None and found[1] == self.tag:
                return True
        return False

    def _released_by_another(self, machine: Machine) -> bool:
        """Our deployment is being (or was) released, and not by us."""
        return machine.status in _RELEASE_STARTED and not self._released

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
        fleet.poller_for(self.client, config=self.config).kick()

    def comment(self, action: str) -> str:
        tag = f" {self.tag.text()}" if self.tag is not None else ""
        return f"teuthology-maas {action} for {self.actor}{tag}"

    def _log_change(self, machine: Machine) -> None:
        detail = f": {machine.status_message}" if machine.status_message else ""
        log.info("%s: %s%s", machine.describe(), machine.status_name, detail)


def status_text(machine: Machine) -> str:
    return machine.status_name + (f" ({machine.status_message})" if machine.status_message else "")


def sentence(text: str) -> str:
    """`text` ending in exactly one full stop, for joining into a longer message: MAAS's own
    messages usually end with one already ("No machine with system ID x available.")."""
    text = text.rstrip()
    return text if text.endswith((".", "!", "?")) else text + "."


def describe_error(exc: BaseException) -> str:
    """Short text for an exception, in the words MAAS (or the library) used."""
    if isinstance(exc, MaasError):
        return str(exc)
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
