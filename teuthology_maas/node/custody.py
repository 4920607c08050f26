"""Whose deployment is on one machine, as seen by one caller acting on it.

`Custody` keeps the freshest read of the machine, tells whose deployment it carries (the
stamp in its owner data; for an unstamped machine of ours, the attempt MAAS's events say
acquired it), checks before each state-changing call that it is still the deployment the
caller acts on, and builds the TakenOver error that says, from the owner data and MAAS's
events, who has the machine instead. `NodeActions` (actions.py) acts through it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection
from typing import TYPE_CHECKING

from teuthology_maas.errors import MaasError, TakenOver
from teuthology_maas.models import FREE, RELEASE_STARTED, Event, Machine, NodeStatus
from teuthology_maas.node import forensics
from teuthology_maas.node.ownership import Holder, Stamp, Tag

if TYPE_CHECKING:
    from teuthology_maas.config import MaasConfig
    from teuthology_maas.endpoint import Endpoint
    from teuthology_maas.node.attempts import Attempt

log = logging.getLogger("teuthology_maas.node.provisioner")


class Custody:
    """One machine, one caller, one deployment: `deployment` is the token it may act on."""

    def __init__(
        self,
        endpoint: Endpoint,
        config: MaasConfig,
        username: str,
        machine: Machine,
        *,
        actor: str | None = None,
        tag: Tag | None = None,
        deployment: str | None = None,
        attempt: Attempt | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.client = endpoint.client
        self.config = config
        self.username = username
        # Who the actions are for (teuthology owner, run, job): goes into MAAS's event log.
        self.actor = actor or username
        # Named in every comment: our create() attempt's deployment tag, or (any other
        # caller) a request tag, so that MAAS's events tell our requests from everyone else's.
        self.tag = tag
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
        if machine.owner != self.username or machine.status in FREE:
            return Holder()
        if machine is self._acquired and self.own is not None:
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
        elif self.carries_ours(holder) and machine.status in RELEASE_STARTED:
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
        return machine.status in RELEASE_STARTED and not self._released

    def comment(self, action: str) -> str:
        tag = f" {self.tag.text()}" if self.tag is not None else ""
        return f"teuthology-maas {action} for {self.actor}{tag}"

    def _log_change(self, machine: Machine) -> None:
        detail = f": {machine.status_message}" if machine.status_message else ""
        log.info("%s: %s%s", machine.describe(), machine.status_name, detail)
