"""Who is unlocking a node, when teuthology's unlock is what calls release().

teuthology's `lock.ops.unlock_one(name, user, description, status)` calls
`stop_node(name, status)`, which calls `MAAS(name).release()` with neither the user nor the
description, *before* it asks paddles to unlock. Paddles then refuses an unlock by anyone but
the holder, or with another job's description; by that time the node would have been released
in MAAS under a job that still holds it. No teuthology 1.3 interface passes the unlock's user
and description on (checked: the provisioner API, `teuthology.config`, the lock record, which
only knows the holder), so this one function reads them from `unlock_one`'s frame: the only
frame-reading left in the package, limited to the teuthology versions whose `unlock_one` it
was checked against, and saying in the log whenever it cannot tell.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from importlib import metadata
from types import FrameType

__all__ = ["CHECKED_VERSIONS", "UnlockRequest", "unlock_request"]

log = logging.getLogger("teuthology_maas.teuthology")

# teuthology releases whose lock/ops.py unlock_one(name, user, description=None, status=None)
# sets `description` from `status` before calling stop_node(name, status).
CHECKED_VERSIONS = ("1.3.",)
_UNLOCK_ONE = ("teuthology.lock.ops", "unlock_one")
_warned: set[str] = set()


@dataclass(frozen=True)
class UnlockRequest:
    """What teuthology is about to send paddles: `locked_by` and `description` (None when
    the unlock sends none, which paddles accepts for any description)."""

    user: str
    description: str | None


def _warn_once(text: str) -> None:
    if text not in _warned:
        _warned.add(text)
        log.warning("%s", text)


def _teuthology_version() -> str | None:
    try:
        return metadata.version("teuthology")
    except metadata.PackageNotFoundError:
        return None


def unlock_request(name: str, *, canonical: str | None = None) -> UnlockRequest | None:
    """The unlock teuthology is performing on node `name` when release() was called from its
    `unlock_one()`; None when it was not (or when that cannot be told, which is logged).

    `canonical` is `name` as unlock_one spells it (teuthology's canonicalize_hostname), to
    make sure the frame found is the unlock of this very node."""
    version = _teuthology_version()
    checked = version is not None and version.startswith(CHECKED_VERSIONS)
    frame = _unlock_one_frame()
    if frame is None:
        if not checked:
            _warn_once(
                f"teuthology {version or '(unknown version)'} is not a version whose unlock "
                f"path this library was checked against ({', '.join(CHECKED_VERSIONS)}x): "
                "cannot tell who is unlocking; a release checks only that the deployment is "
                "the one paddles' lock holder made"
            )
        return None
    local = frame.f_locals
    user, description, node = local.get("user"), local.get("description"), local.get("name")
    wanted = {name, canonical} - {None}
    if not user or (node is not None and str(node) not in wanted):
        _warn_once(
            f"teuthology {version or '(unknown version)'}: unlock_one() has no usable 'user' "
            f"(or unlocks another node) here; cannot tell who is unlocking {name}; a release "
            "checks only that the deployment is the one paddles' lock holder made"
        )
        return None
    if not checked:
        _warn_once(
            f"teuthology {version or '(unknown version)'} is not a version whose unlock_one() "
            f"this library was checked against ({', '.join(CHECKED_VERSIONS)}x); reading its "
            "'user' and 'description' anyway"
        )
    return UnlockRequest(str(user), str(description) if description else None)


def _unlock_one_frame() -> FrameType | None:
    try:
        frame: FrameType | None = sys._getframe(1)
    except (AttributeError, ValueError):  # an interpreter without frame support
        _warn_once("this Python cannot show call frames: cannot tell who is unlocking")
        return None
    while frame is not None:
        if (frame.f_globals.get("__name__"), frame.f_code.co_name) == _UNLOCK_ONE:
            return frame
        frame = frame.f_back
    return None
