"""What to do with a machine, decided from its MAAS status and owner alone (no I/O).

The lifecycle asks these functions before every step, so a machine found in any state is
either brought forward one safe step at a time or refused before anything is touched.
"""

from __future__ import annotations

from enum import Enum

from teuthology_maas.errors import MachineStateError, OwnershipError
from teuthology_maas.models import (
    FREE,
    RELEASABLE,
    RELEASE_FAILED,
    RELEASE_IN_PROGRESS,
    Machine,
    NodeStatus,
)


class CreateStep(Enum):
    ALLOCATE = "allocate"  # Ready: allocate by system_id, then deploy
    DEPLOY = "deploy"  # Allocated to us
    # Deployed / Failed deployment of ours, or a failed release or erase of ours (or nobody's):
    # release first (fresh reimage; erase as configured)
    RELEASE = "release"
    ABORT = "abort"  # Deploying, ours: abort, then deploy
    WAIT_RELEASE = "wait for release"  # Releasing / Disk erasing: wait for Ready


class ReleaseStep(Enum):
    NOTHING = "nothing"  # already free
    ABORT = "abort"  # Deploying: abort first
    WAIT = "wait"  # Releasing / Disk erasing already under way
    RELEASE = "release"


def check_ownership(machine: Machine, username: str, action: str) -> None:
    """Refuse (OwnershipError, nothing touched) a machine another MAAS user holds or locked."""
    if machine.owner and machine.owner != username:
        raise OwnershipError(
            f"{machine.describe()} is {machine.status_name} and owned by MAAS user "
            f"{machine.owner!r}, not by {username!r} (the configured API key's user); "
            f"refusing to {action} it. Nothing was touched.",
            **machine.error_fields(),
        )
    if machine.locked and machine.owner != username:
        raise OwnershipError(
            f"{machine.describe()} is locked in MAAS by someone other than {username!r}; "
            f"refusing to {action} it. Nothing was touched.",
            **machine.error_fields(),
        )


def next_create_step(machine: Machine, username: str) -> CreateStep:
    """The next step towards a fresh deployment, or a refusal naming the state."""
    check_ownership(machine, username, "deploy")
    status = machine.status
    ours = machine.owner == username
    if status is NodeStatus.READY:
        return CreateStep.ALLOCATE
    if status in RELEASE_IN_PROGRESS:
        return CreateStep.WAIT_RELEASE
    if ours and status is NodeStatus.ALLOCATED:
        return CreateStep.DEPLOY
    if ours and status in (NodeStatus.DEPLOYED, NodeStatus.FAILED_DEPLOYMENT):
        return CreateStep.RELEASE
    if ours and status is NodeStatus.DEPLOYING:
        return CreateStep.ABORT
    if status in RELEASE_FAILED and (ours or not machine.owner):
        return CreateStep.RELEASE
    raise _refusal(machine, "deploy", _advice(machine))


def next_release_step(machine: Machine, username: str) -> ReleaseStep:
    """The next step towards Ready, or a refusal naming the state."""
    check_ownership(machine, username, "release")
    status = machine.status
    if status in FREE or (status is NodeStatus.ALLOCATED and not machine.owner):
        return ReleaseStep.NOTHING
    if status is NodeStatus.DEPLOYING:
        return ReleaseStep.ABORT
    if status in RELEASE_IN_PROGRESS:
        return ReleaseStep.WAIT
    if status in RELEASABLE:
        return ReleaseStep.RELEASE
    raise _refusal(machine, "release", _advice(machine))


def _advice(machine: Machine) -> str:
    status = machine.status
    if status is NodeStatus.BROKEN:
        return "an operator must investigate and mark it fixed in MAAS"
    if status is NodeStatus.NEW:
        return "it has never been commissioned; an operator must commission it first"
    if status in (NodeStatus.COMMISSIONING, NodeStatus.TESTING):
        return "an operator is commissioning or testing it; wait until it is Ready"
    if status in (
        NodeStatus.RESCUE_MODE,
        NodeStatus.ENTERING_RESCUE_MODE,
        NodeStatus.EXITING_RESCUE_MODE,
    ):
        return "an operator has it in rescue mode"
    if status in RELEASE_FAILED:
        return "release it (teuthology-maas release) or have an operator check it"
    if status is NodeStatus.ALLOCATED and not machine.owner:
        return "MAAS shows it Allocated without an owner"
    return "this state is not one the lifecycle acts on"


def _refusal(machine: Machine, action: str, advice: str) -> MachineStateError:
    detail = f": {machine.status_message}" if machine.status_message else ""
    return MachineStateError(
        f"{machine.describe()} is {machine.status_name}{detail}; refusing to {action} it "
        f"({advice}). Nothing was touched.",
        **machine.error_fields(),
    )
