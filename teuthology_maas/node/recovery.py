"""The recovery ladder for a release MAAS cannot finish.

MAAS completes a release once it sees the node powered off; with a BMC that never reports
"off" the node sits in Releasing (or Disk erasing) until MAAS's own 5-minute check marks it
Releasing failed, or forever. Past `release_timeout` we try, in order, what an operator would:

1. power the node off (hard): MAAS finishes the release as soon as it sees "off";
2. abort a disk erase that is not moving (it ends in Failed disk erasing);
3. mark the node broken, then fixed: that returns it to Ready through MAAS's own path.
   mark_fixed needs an admin key; with a non-admin key the node stays Broken for an operator.

Each step is waited for at most `min(abort_timeout, release_timeout)`. Every step taken (or
refused by MAAS) is recorded, so the caller's error says exactly what was tried.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from teuthology_maas.errors import MaasError, MaasTimeout, OwnershipError
from teuthology_maas.models import (
    RELEASE_FAILURE,
    RELEASE_IN_PROGRESS,
    RELEASE_TARGET,
    Machine,
    NodeStatus,
)

if TYPE_CHECKING:
    from teuthology_maas.config import MaasConfig

log = logging.getLogger("teuthology_maas.node.provisioner")


class StuckNode(Protocol):
    """What the ladder needs of the machine whose release is stuck (node.actions.NodeActions
    is one; recovery does not import it, so the two modules do not import each other)."""

    config: MaasConfig
    system_id: str
    last: Machine

    @property
    def name(self) -> str: ...

    def refresh(self) -> Machine: ...

    def wait(
        self,
        targets: Collection[NodeStatus],
        failures: Collection[NodeStatus],
        timeout: float,
    ) -> Machine: ...

    def comment(self, action: str) -> str: ...

    # Each checked against the deployment the caller acts on (TakenOver when it changed).
    def power_off(self, *, comment: str) -> Machine: ...
    def abort(self, *, comment: str | None = None) -> Machine: ...
    def mark_broken(self, *, comment: str) -> Machine: ...
    def mark_fixed(self, *, comment: str) -> Machine: ...


@dataclass
class Recovery:
    machine: Machine
    tried: list[str] = field(default_factory=list)

    @property
    def released(self) -> bool:
        return self.machine.status in RELEASE_TARGET

    def describe(self) -> str:
        steps = ", ".join(self.tried) if self.tried else "nothing MAAS allowed"
        text = f"recovery tried: {steps}; MAAS now shows {self.machine.status_name}"
        if self.released:
            return text + " (check its power control: MAAS never saw it power off)"
        if self.machine.status is NodeStatus.BROKEN:
            return text + (
                "; needs an operator: check its power control, then mark it fixed in MAAS"
            )
        return text + "; needs an operator: check its power control and release it in MAAS"


def recover_stuck_release(node: StuckNode) -> Recovery:
    """Climb the ladder for `node`, whose release outlasted release_timeout."""
    config = node.config
    grace = min(config.abort_timeout, config.release_timeout)
    recovery = Recovery(node.refresh())

    def settle(targets: Collection[NodeStatus], failures: Collection[NodeStatus]) -> Machine:
        try:
            return node.wait(targets, failures, grace)
        except MaasTimeout:
            return node.refresh()

    def attempt(step: str, call: Callable[[], object]) -> bool:
        try:
            call()
        except OwnershipError:
            raise  # not our deployment any more: stop climbing, say who has it
        except MaasError as exc:
            recovery.tried.append(f"{step} (refused: {_short(exc)})")
            log.warning("%s: %s refused: %s", node.name, step, exc)
            return False
        recovery.tried.append(step)
        log.warning("%s: stuck release: %s", node.name, step)
        return True

    if recovery.machine.status in RELEASE_IN_PROGRESS and attempt(
        "power_off", lambda: node.power_off(comment=node.comment("power off a stuck release"))
    ):
        recovery.machine = settle(RELEASE_TARGET, RELEASE_FAILURE)
    aborted = False
    if recovery.machine.status is NodeStatus.DISK_ERASING:
        aborted = attempt("abort", lambda: node.abort(comment=node.comment("abort a stuck erase")))
        if aborted:
            recovery.machine = settle(
                {NodeStatus.FAILED_DISK_ERASING, *RELEASE_TARGET}, {NodeStatus.BROKEN}
            )
    stuck = recovery.machine.status in RELEASE_IN_PROGRESS or (
        aborted and recovery.machine.status is NodeStatus.FAILED_DISK_ERASING
    )
    if stuck and attempt(
        "mark_broken",
        lambda: node.mark_broken(
            comment=node.comment(f"release stuck in {recovery.machine.status_name}")
        ),
    ):
        recovery.machine = node.refresh()
        if attempt(
            "mark_fixed", lambda: node.mark_fixed(comment=node.comment("recovered a stuck release"))
        ):
            recovery.machine = settle(RELEASE_TARGET, {NodeStatus.BROKEN})
    node.last = recovery.machine
    return recovery


def _short(exc: MaasError) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 120 else text[:117] + "..."
