"""Undoing a deployment after a failed create().

The clean-up acts through `NodeActions`, so every step is checked against the deployment
token: it undoes only its own attempt's deployment, and says who has the machine when it is
not its own any more.
"""

from __future__ import annotations

from teuthology_maas.errors import MaasTimeout, TakenOver
from teuthology_maas.models import (
    CLEANABLE,
    FREE,
    RELEASE_FAILED,
    RELEASE_FAILURE,
    RELEASE_IN_PROGRESS,
    NodeStatus,
)
from teuthology_maas.node.actions import NodeActions, describe_error, status_text
from teuthology_maas.node.recovery import recover_stuck_release


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
        if machine.status in CLEANABLE:
            node.unlock_if_locked()
            node.release()
        elif machine.status in RELEASE_FAILED:
            return f"needs an operator: the release ended in {status_text(machine)}"
        elif machine.status not in RELEASE_IN_PROGRESS:
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
