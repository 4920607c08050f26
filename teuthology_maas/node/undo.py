"""Undoing a deployment: finishing a release, and cleaning up after a failed create().

Both act through `NodeActions`, so every step is checked against the deployment token: a
clean-up undoes only its own attempt's deployment, and says who has the machine when it is
not its own any more.
"""

from __future__ import annotations

from teuthology_maas.errors import MaasTimeout, ReleaseFailed, TakenOver
from teuthology_maas.models import RELEASE_FAILURE, RELEASE_TARGET, Machine, NodeStatus
from teuthology_maas.node import forensics
from teuthology_maas.node.actions import NodeActions, describe_error, sentence, status_text
from teuthology_maas.node.custody import FREE
from teuthology_maas.node.recovery import recover_stuck_release

# What a failed create() must not leave behind.
_CLEANABLE = frozenset(
    {
        NodeStatus.ALLOCATED,
        NodeStatus.DEPLOYING,
        NodeStatus.DEPLOYED,
        NodeStatus.FAILED_DEPLOYMENT,
    }
)
_RELEASE_FAILED = frozenset({NodeStatus.FAILED_RELEASING, NodeStatus.FAILED_DISK_ERASING})
_RELEASE_UNDER_WAY = frozenset({NodeStatus.RELEASING, NodeStatus.DISK_ERASING})


def ended_in(machine: Machine, what: str) -> str:
    """Why a wait ended short of its target, when MAAS's events cannot be read."""
    return f"MAAS ended {what} in {machine.status_name}"


def check_released(node: NodeActions, machine: Machine) -> None:
    """ReleaseFailed, with MAAS's explanation, unless `machine` is back in the pool."""
    if machine.status in RELEASE_TARGET:
        return
    found = forensics.collect(node.client, machine)
    raise ReleaseFailed(
        f"releasing {node.name} failed: {sentence(ended_in(machine, 'the release'))} "
        f"MAAS: {found.summary()}",
        **machine.error_fields(),
        maas_message=machine.status_message,
    )


def finish_release(node: NodeActions) -> Machine:
    """Wait for the release under way to reach Ready; ReleaseFailed (with MAAS's explanation)
    on a failure status, or after the recovery ladder when it is stuck."""
    try:
        machine = node.wait_released()
    except MaasTimeout as exc:
        recovery = recover_stuck_release(node)
        found = forensics.collect(node.client, recovery.machine)
        raise ReleaseFailed(
            f"releasing {node.name} timed out: {exc}; {sentence(recovery.describe())} "
            f"MAAS: {found.summary()}",
            machine=recovery.machine.hostname,
            system_id=node.system_id,
            status=recovery.machine.status_name,
            maas_message=recovery.machine.status_message,
        ) from exc
    check_released(node, machine)
    return machine


def clean_up(node: NodeActions, *, wait: bool) -> str:
    """After a failed create(): leave our deployment neither Deploying, Allocated nor
    Deployed. Only our own deployment is undone. Returns what happened; never raises (the
    original failure must surface)."""
    try:
        machine = node.refresh()
        if machine.owner and machine.owner != node.username:
            return f"left alone: MAAS user {machine.owner!r} holds it now"
        holder = node.holder(machine)
        if holder.token != node.deployment:
            if holder.token is None and machine.status in FREE:
                return f"nothing to undo ({machine.status_name})"
            return f"left alone: {node.taken_over(machine, holder, 'clean up').message}"
        if machine.status is NodeStatus.DEPLOYING:
            node.unlock_if_locked()
            node.abort(comment=node.comment("abort after failure"))
            try:
                machine = node.wait_aborted()
            except MaasTimeout:
                machine = node.refresh()  # MAAS also releases from Deploying
        if machine.status in _CLEANABLE:
            node.unlock_if_locked()
            node.release()
        elif machine.status in _RELEASE_FAILED:
            return f"needs an operator: the release ended in {status_text(machine)}"
        elif machine.status not in _RELEASE_UNDER_WAY:
            return f"nothing to undo ({machine.status_name})"
        if not wait:
            return f"release requested ({node.last.status_name})"
        try:
            machine = node.wait_released()
        except MaasTimeout as exc:
            recovery = recover_stuck_release(node)
            if recovery.released:
                return f"released after it stuck ({exc}; {recovery.describe()})"
            return f"the release stuck ({exc}); {recovery.describe()}"
        if machine.status in RELEASE_FAILURE:
            return f"needs an operator: the release ended in {status_text(machine)}"
        return f"released ({machine.status_name})"
    except TakenOver as exc:
        return f"left alone: {exc.message}"
    except BaseException as exc:  # report, never hide the original failure
        return (
            f"needs an operator: clean-up failed ({describe_error(exc)}); MAAS last showed "
            f"{node.last.status_name}"
        )
