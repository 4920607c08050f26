"""Quarantine: a node whose deployments keep failing on the node itself is taken out of service.

The count comes from MAAS's own event history of the node, so every process (each supervisor,
each restart) sees the same count and nothing is kept on our side. The history is cut into
deployments, each starting at a "User starting deployment" event, and each is judged by how
it ended:

- `deployed`: MAAS logged "Deployed". Ends a run of failures.
- `node`: MAAS marked it failed ("Marking node failed") after the node ran its install (an
  install event such as "Configuring storage", "Installing OS" or "Node installation failure"
  came first, or MAAS's reason is "Installation failed"). The only kind that counts.
- `other`: MAAS marked it failed before the install ran (power, PXE, network: not
  necessarily the node), `aborted`: a user (us or anyone) aborted, released or marked it broken
  while it ran, `open`: no outcome yet. None of these counts, and none ends a run: they say
  nothing about the node either way.

Only deployments since the node was last marked fixed count (an operator's repair starts
afresh). The attempt that quarantines is the one whose own deployment is the newest `node`
failure: one process, the create() that saw the Nth failure, so two never race to do it.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from teuthology_maas.errors import MaasError
from teuthology_maas.models import Event, Machine, NodeStatus
from teuthology_maas.node.forensics import ABORTS, START_DEPLOY
from teuthology_maas.node.ownership import Tag, parse_tag
from teuthology_maas.redact import redact

if TYPE_CHECKING:
    from teuthology_maas.node.actions import NodeActions

log = logging.getLogger(__name__)

Outcome = Literal["deployed", "node", "other", "aborted", "open"]
MARKER = "teuthology-maas quarantine"
DEPLOYED = "Deployed"
MARKED_FAILED = "Marking node failed"
MARKED_FIXED = "User marking node fixed"
_USER_ENDS = ABORTS | {"User releasing node", "User marking node broken"}
# Events that show the node booted MAAS's installer and ran the install on its own disks.
INSTALL_RAN = frozenset({
    "Configuring storage", "Installing OS", "Configuring OS", "Rebooting",
    "Node installation failure", "Node post-installation failure",
})
_INSTALL_REASON = re.compile(r"^\s*Installation failed", re.IGNORECASE)
REASON_CHARS = 100
COMMENT_CHARS = 600
_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\[\]`<>]")


@dataclass(frozen=True)
class Deployment:
    """One deployment of the node, as MAAS's events tell it."""

    start: Event
    outcome: Outcome
    end: Event | None = None

    @property
    def tag(self) -> Tag | None:
        return parse_tag(self.start.description)

    @property
    def reason(self) -> str:
        return self.end.description if self.end is not None else ""


def deployments(events: Sequence[Event]) -> list[Deployment]:
    """The node's deployments since it was last marked fixed, oldest first."""
    ordered = sorted(events, key=lambda e: e.id)
    for index in range(len(ordered) - 1, -1, -1):
        if ordered[index].type == MARKED_FIXED:
            ordered = ordered[index + 1:]
            break
    found: list[Deployment] = []
    start: Event | None = None
    ran = False
    done = False
    for event in ordered:
        if event.type == START_DEPLOY:
            if start is not None and not done:
                found.append(Deployment(start, "open"))
            start, ran, done = event, False, False
            continue
        if start is None or done:
            continue
        outcome: Outcome | None = None
        if event.type == DEPLOYED:
            outcome = "deployed"
        elif event.type in _USER_ENDS:
            outcome = "aborted"
        elif event.type == MARKED_FAILED:
            ran = ran or bool(_INSTALL_REASON.match(event.description))
            outcome = "node" if ran else "other"
        elif event.type in INSTALL_RAN:
            ran = True
        if outcome is not None:
            found.append(Deployment(start, outcome, event))
            done = True
    if start is not None and not done:
        found.append(Deployment(start, "open"))
    return found


def failure_run(history: Sequence[Deployment]) -> list[Deployment]:
    """The node failures in a row up to the newest deployment that ended, newest first:
    a successful deployment ends the run; aborted, open and `other` ones are passed over."""
    run: list[Deployment] = []
    for deployment in reversed(history):
        if deployment.outcome == "deployed":
            break
        if deployment.outcome == "node":
            run.append(deployment)
    return run


def clean(text: str, limit: int = REASON_CHARS) -> str:
    """MAAS's text made safe to repeat in a comment and a paddles description: secrets
    redacted, control characters and brackets (our comment tags) out, one line, bounded."""
    text = _UNSAFE.sub(" ", redact(text))
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def comment(run: Sequence[Deployment], after: int) -> str:
    """`teuthology-maas quarantine: 3 failed deployments in a row (quarantine_after 3): ...`,
    naming each failure (newest first) by MAAS's time and reason, bounded."""
    head = f"{MARKER}: {len(run)} failed deployments in a row (quarantine_after {after})"
    parts = [f"{clean(d.end.created, 40)} {clean(d.reason)}" for d in run if d.end is not None]
    text = head + (": " + "; ".join(parts) if parts else "")
    return text if len(text) <= COMMENT_CHARS else text[: COMMENT_CHARS - 3] + "..."


def quarantine_text(machine: Machine, events: Sequence[Event] = ()) -> str | None:
    """Why `machine` is quarantined (our mark_broken comment), or None when it is not: it is
    Broken and MAAS's error_description, or its newest "marking broken" event, carries it."""
    if machine.status is not NodeStatus.BROKEN:
        return None
    if MARKER in (machine.error_description or ""):
        return clean(_from_marker(machine.error_description), COMMENT_CHARS)
    for event in sorted(events, key=lambda e: e.id, reverse=True):
        if event.type == "User marking node broken":
            if MARKER in event.description:
                return clean(_from_marker(event.description), COMMENT_CHARS)
            return None
    return None


def _from_marker(text: str) -> str:
    return text[text.index(MARKER):]


def events_needed(after: int) -> int:
    """How many of the node's newest events hold `after` deployments (about 25 each, with
    their allocations, power changes and releases), within MAAS's limit of 1000."""
    return min(1000, 40 * after + 60)


def check(node: NodeActions, after: int) -> str | None:
    """After our deployment failed: when MAAS's history shows `after` node failures in a row
    ending with ours, mark the node broken with a comment naming them and return the comment;
    None otherwise (or when MAAS cannot tell us: the caller cleans up as usual)."""
    if after <= 0 or node.tag is None:
        return None
    try:
        events = node.client.events(id=[node.system_id], level="DEBUG",
                                    limit=events_needed(after))
    except MaasError as exc:
        log.warning("%s: quarantine check skipped, events unreadable: %s", node.name, exc)
        return None
    run = failure_run(deployments(events))
    if len(run) < after or run[0].tag is None or run[0].tag.token != node.tag.token:
        return None
    # "teuthology-maas quarantine for <actor> [deployment <token>]: 3 failed ...": our tag
    # first (the one parsed from this event), then MAAS's words, cleaned
    text = f"{node.comment('quarantine')}: {comment(run[:after], after)[len(MARKER) + 2:]}"
    node.mark_broken(comment=text)
    log.error("%s: quarantined: %s", node.name, text)
    return text
