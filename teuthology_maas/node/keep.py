"""Keeping a failed deployment for debugging (`keep_on_failure`, `deploy --keep-on-failure`).

Instead of the clean-up, the machine is left as MAAS ended it, still allocated to us: marked in
its owner data with who kept it, when and why, then locked in MAAS (when MAAS allows a lock:
Deployed or Deploying) so nobody redeploys it by hand. The mark is what the rest of the library
reads: teuthology's unlock (`release()`) leaves a kept machine alone, the next `create()`
refuses it, and `reconcile` reports it as KEPT rather than as a leak. An explicit release (the
command's `release NAME`) ends the keep; MAAS wipes owner data when a release completes.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from teuthology_maas.errors import MachineStateError, OwnershipError
from teuthology_maas.models import CLEANABLE, LOCKABLE, Machine

if TYPE_CHECKING:
    from teuthology_maas.node.actions import NodeActions

__all__ = ["KEPT_AT", "KEPT_BY", "KEPT_REASON", "KeptMark", "keep_failed", "refuse_if_kept"]

KEPT_BY = "teuthology_kept_by"
KEPT_AT = "teuthology_kept_at"
KEPT_REASON = "teuthology_kept_reason"
_REASON_LIMIT = 500  # owner data is shown in MAAS's UI: the gist, not the whole forensics


@dataclass(frozen=True)
class KeptMark:
    by: str
    at: str
    reason: str

    @classmethod
    def of(cls, machine: Machine) -> KeptMark | None:
        """The mark on `machine`, None when it is not kept."""
        return cls.from_owner_data(machine.owner_data)

    @classmethod
    def from_owner_data(cls, data: Mapping[str, str]) -> KeptMark | None:
        by = data.get(KEPT_BY)
        if not by:
            return None
        return cls(by, data.get(KEPT_AT, "?"), data.get(KEPT_REASON, ""))

    def describe(self) -> str:
        reason = f": {self.reason}" if self.reason else ""
        return f"kept for debugging by {self.by} since {self.at}{reason}"


def keep_failed(node: NodeActions, *, who: str, reason: str) -> str:
    """Keep the machine of a failed create() as it is. Returns what happened; never raises
    (the original failure must surface)."""
    try:
        machine = node.refresh()
        if machine.owner != node.username:
            holder = f"MAAS user {machine.owner!r}" if machine.owner else "nobody"
            return f"not kept: {holder} holds it now"
        if machine.status not in CLEANABLE:
            return f"nothing to keep ({machine.status_name})"
        stamp = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
        # MAAS refuses every change to a locked machine, owner data too: mark, then lock
        node.unlock_if_locked()
        node.mark({KEPT_BY: who, KEPT_AT: stamp, KEPT_REASON: reason[:_REASON_LIMIT]})
        locked = ""
        if machine.status in LOCKABLE:
            node.lock()
            locked = "locked in MAAS, "
        return (
            f"skipped, kept for debugging as MAAS left it ({node.last.status_name}; "
            f"keep_on_failure): {locked}marked kept by {who}; `teuthology-maas release "
            f"{machine.hostname}` releases it"
        )
    except OwnershipError as exc:  # another deployment is on it now: not ours to keep
        return f"not kept, left alone: {exc.message}"
    except Exception as exc:  # report, never hide the original failure
        return f"keeping it failed ({type(exc).__name__}: {exc}); it is left as MAAS shows it"


def refuse_if_kept(machine: Machine, username: str) -> None:
    """MachineStateError for a machine of ours kept for debugging: redeploying it would
    destroy what someone kept it for."""
    mark = KeptMark.of(machine)
    if mark is None or machine.owner != username:
        return
    raise MachineStateError(
        f"{machine.describe()} is {mark.describe()}; release it first "
        f"(teuthology-maas release {machine.hostname}) to deploy it again",
        **machine.error_fields(),
    )
