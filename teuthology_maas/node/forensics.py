"""MAAS's own explanation of a failure: status_message, error_description, recent events and the
installation output, condensed into one line for exception text and a full report for logs.

Collecting is best effort by design: it runs while another error is already being raised, so
every problem met while collecting is recorded in `problems` and never raised. The status it
reports is re-read from MAAS; when that fails, the summary says the status is unknown and shows
the last one seen as such, never as current. Once MAAS is unreachable, the remaining fetches are
skipped (each would spend the client's whole retry budget on the same outage).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import TYPE_CHECKING, TypeVar

from teuthology_maas.errors import MaasError, MaasHTTPError, MaasUnavailable
from teuthology_maas.models import Event, Machine, NodeStatus
from teuthology_maas.node.ownership import Stamp, Tag, comment_actor, parse_tag

if TYPE_CHECKING:
    from teuthology_maas.maas.client import MaasClient

log = logging.getLogger(__name__)

EVENT_LIMIT = 25
SUMMARY_EVENTS = 3
SUMMARY_MAX_CHARS = 900
_LINE_MAX_CHARS = 200
_INFO_AND_ABOVE = frozenset({"INFO", "WARNING", "ERROR", "CRITICAL"})
# Lines of a curtin/cloud-init log that usually name the root cause of a failed install.
_TROUBLE = re.compile(r"error|fail|traceback|exception|fatal|denied|no such", re.IGNORECASE)
_CAUSE_MAX_CHARS = 80
_T = TypeVar("_T")


@dataclass(frozen=True)
class Forensics:
    """What MAAS knows about why a node is where it is."""

    hostname: str
    system_id: str
    status_name: str
    status_message: str | None = None
    error_description: str = ""
    events: tuple[Event, ...] = ()  # newest first, as MAAS returns them
    installation_output: str | None = None
    problems: tuple[str, ...] = field(default=())
    # False when MAAS could not be asked again: status_name/status_message are the last seen.
    status_current: bool = True
    # (what could not be fetched, short cause) for the one-clause summary; `problems` has detail.
    problem_causes: tuple[tuple[str, str], ...] = field(default=())

    @property
    def machine(self) -> str:
        return f"{self.hostname} ({self.system_id})"

    @property
    def current_status(self) -> str | None:
        """The status MAAS showed when collected; None when it could not be re-read."""
        return self.status_name if self.status_current else None

    def notable_events(self, count: int = SUMMARY_EVENTS) -> list[Event]:
        """The newest `count` events at INFO or above, oldest first (DEBUG ones are our own
        requests, which say nothing about the cause)."""
        picked = [e for e in self.events if e.level.upper() in _INFO_AND_ABOVE][:count]
        return list(reversed(picked))

    def install_summary(self, max_lines: int = 2) -> str | None:
        """The installation log lines most likely to name the cause, else its last line."""
        if not self.installation_output:
            return None
        lines = [ln.strip() for ln in self.installation_output.splitlines() if ln.strip()]
        if not lines:
            return None
        trouble = [ln for ln in lines if _TROUBLE.search(ln)]
        chosen = trouble[-max_lines:] if trouble else lines[-1:]
        return " | ".join(_clip(ln, _LINE_MAX_CHARS) for ln in chosen)

    def summary(self) -> str:
        """One line: machine, status, MAAS's message, last events, install log excerpt."""
        status = self.status_name
        message = self.status_message or ""
        if message:
            status += f": {message}"
        if self.error_description and self.error_description not in message:
            status += f" ({self.error_description})"
        if not self.status_current:
            status = f"status unknown (could not re-read it; last seen {status})"
        parts = [f"{self.machine}: {status}"]
        events = self.notable_events()
        if events:
            parts.append("last events: " + ", ".join(_event_text(e) for e in events))
        install = self.install_summary()
        if install:
            parts.append(f"installation output: {install}")
        if self.problems and not events and not install:
            parts.append("forensics incomplete: " + self._problems_clause())
        return _clip("; ".join(parts), SUMMARY_MAX_CHARS)

    def _problems_clause(self) -> str:
        """What could not be fetched, grouped by cause: "events, installation output: HTTP 403
        Forbidden" rather than one long error text per fetch."""
        if not self.problem_causes:
            return "; ".join(self.problems)
        grouped: dict[str, list[str]] = {}
        for what, cause in self.problem_causes:
            grouped.setdefault(cause, []).append(what)
        return "; ".join(f"{', '.join(whats)}: {cause}" for cause, whats in grouped.items())

    def report(self) -> str:
        """Everything collected, for a log file or an operator's terminal."""
        seen = "" if self.status_current else " (last seen; MAAS could not be asked again)"
        lines = [
            f"Machine: {self.machine}",
            f"Status: {self.status_name}{seen}",
            f"Status message: {self.status_message or '-'}",
        ]
        if self.error_description:
            lines.append(f"Error description: {self.error_description}")
        lines.append(f"Events (newest last, {len(self.events)}):")
        lines.extend(f"  {e.line()}" for e in reversed(self.events))
        if not self.events:
            lines.append("  (none)")
        lines.append("Installation output:")
        if self.installation_output:
            lines.extend(f"  {ln}" for ln in self.installation_output.rstrip().splitlines())
        else:
            lines.append("  (none)")
        if self.problems:
            lines.append("Could not collect:")
            lines.extend(f"  {p}" for p in self.problems)
        return "\n".join(lines)


def collect(
    client: MaasClient,
    machine: Machine,
    *,
    since_event_id: int | None = None,
    event_limit: int = EVENT_LIMIT,
) -> Forensics:
    """Gather MAAS's explanation for `machine` (re-read for the freshest status_message).

    `since_event_id` keeps only events newer than that id (the newest event before the action
    began), so an earlier deployment's story does not muddle this one's. Never raises for a
    MAAS problem: what could not be collected is listed in `problems`.
    """
    problems: list[str] = []
    causes: list[tuple[str, str]] = []
    unreachable = False

    def fetch(what: str, call: Callable[[], _T], default: _T) -> _T:
        nonlocal unreachable
        if unreachable:
            problems.append(f"{what}: skipped, MAAS unreachable")
            causes.append((what, "MAAS unreachable"))
            return default
        try:
            return call()
        except Exception as exc:  # forensics must never mask the original failure
            unreachable = isinstance(exc, MaasUnavailable)
            problems.append(f"{what}: {_describe_error(exc)}")
            causes.append((what, _short_cause(exc)))
            return default

    current = fetch("the machine", lambda: client.get_machine(machine.system_id), None)
    events: Sequence[Event] = fetch(
        "events",
        lambda: client.events(id=[machine.system_id], level="DEBUG", limit=event_limit),
        (),
    )
    if since_event_id is not None:
        events = [e for e in events if e.id > since_event_id]
    events = sorted(events, key=lambda e: e.id, reverse=True)
    output = fetch(
        "installation output", lambda: client.installation_output(machine.system_id), None
    )

    shown = current or machine
    if problems:
        log.debug("forensics for %s incomplete: %s", shown.describe(), "; ".join(problems))
    return Forensics(
        hostname=shown.hostname,
        system_id=shown.system_id,
        status_name=shown.status_name,
        status_message=shown.status_message,
        error_description=shown.error_description,
        events=tuple(events),
        installation_output=output,
        problems=tuple(problems),
        status_current=current is not None,
        problem_causes=tuple(causes),
    )


def failure[E: MaasError](
    error: type[E], what: str, cause: str, found: Forensics, *, then: str = "",
    with_summary: bool = True,
) -> E:
    """The one shape of a failure that MAAS can explain: "<what> failed: <cause>. MAAS:
    <summary>. <then>", carrying the machine, the status MAAS showed when `found` was
    collected (None when it could not be re-read: never a stale one) and MAAS's message.
    `with_summary=False` when `cause` already carries MAAS's account."""
    message = f"{what} failed: {sentence(cause)}"
    if with_summary:
        message += f" MAAS: {sentence(found.summary())}"
    if then:
        message += f" {then}"
    log.debug("forensics for %s:\n%s", found.machine, found.report())
    return error(
        message,
        machine=found.hostname,
        system_id=found.system_id,
        status=found.current_status,
        maas_message=found.status_message,
    )


def sentence(text: str) -> str:
    """`text` ending in exactly one full stop, for joining into a longer message: MAAS's own
    messages usually end with one already ("No machine with system ID x available.")."""
    text = text.rstrip()
    return text if text.endswith((".", "!", "?")) else text + "."
# MAAS's event types for requests a user made (DEBUG level; their description is the comment
# the request carried) and the verb each stands for.
ACQUIRE = "User acquiring node"
START_DEPLOY = "User starting deployment"
ABORTS = frozenset({"User aborting deployment", "User aborting disk erasing"})
POWER_OFF = "User powering down node"
USER_VERBS: dict[str, str] = {
    "User aborting deployment": "aborted",
    "User aborting disk erasing": "aborted",
    "User releasing node": "released",
    "User marking node broken": "marked broken",
    "User powering down node": "powered down",
    "User unlocking node": "unlocked",
    "User locking node": "locked",
    START_DEPLOY: "redeployed",
    ACQUIRE: "allocated",
}
# What ends a deployment against the user's will: a user action, or MAAS failing to drive
# the node's power.
_ENDING_ACTIONS = ("User aborting deployment", "User releasing node", "User marking node broken")
_PROBLEM_LEVELS = frozenset({"WARNING", "ERROR", "CRITICAL"})
_POWER_TROUBLE = re.compile(r"\bBMC\b|power[- ]?(on|off|cycle|control|state)", re.IGNORECASE)


def newest_tag(events: Sequence[Event], event_type: str) -> tuple[Event, Tag | None] | None:
    """The newest event of `event_type` (events newest first) and the attempt its comment
    names (None for a request that did not come from teuthology-maas)."""
    for event in sorted(events, key=lambda e: e.id, reverse=True):
        if event.type == event_type:
            return event, parse_tag(event.description)
    return None


def since_our_start(events: Sequence[Event], own: Tag | None) -> list[Event]:
    """The events after our own "User starting deployment" (all of them if it is not among
    `events`), newest first."""
    ordered = sorted(events, key=lambda e: e.id, reverse=True)
    if own is None:
        return ordered
    for index, event in enumerate(ordered):
        tag = parse_tag(event.description) if event.type == START_DEPLOY else None
        if tag is not None and tag.token == own.token:
            return ordered[:index]
    return ordered


def actor_text(event: Event, stamp: Stamp | None = None) -> str:
    """`MAAS user 'teuthology' (teuthology-maas abort for bob@ctl, deployment 1a2b...)`: who
    made a user request, from the event and, when its attempt is the one stamped on the
    machine, the stamp's teuthology owner."""
    who = f"MAAS user {event.username!r}"
    tag = parse_tag(event.description)
    details: list[str] = []
    parsed = comment_actor(event.description)
    if parsed is not None:
        details.append(f"teuthology-maas {parsed[0]} for {parsed[1]}")
    elif event.description:
        details.append(f"comment: {_clip(event.description, _LINE_MAX_CHARS)}")
    if tag is not None and tag.deployment:
        owner = (
            f", owner {stamp.owner}" if stamp and stamp.token == tag.token and stamp.owner else ""
        )
        details.append(f"deployment {tag.short()}{owner}")
    return who + (f" ({'; '.join(details)})" if details else "")


def explain_end(events: Sequence[Event], machine: Machine, what: str, own: Tag | None) -> str:
    """Why `what` (a deployment of ours) ended in `machine`'s status short of its target,
    from MAAS's own record: the user request that ended it, naming who made it, or the power
    failure MAAS logged. Only a power event is reported as a power problem."""
    recent = since_our_start(events, own)
    status = machine.status_name
    for event in recent:
        if event.type in _ENDING_ACTIONS:
            who = actor_text(event, Stamp.read(machine))
            return f"{what} was {USER_VERBS[event.type]} by {who}; MAAS shows it {status}"
        trouble = _POWER_TROUBLE.search(f"{event.type} {event.description}")
        if trouble and event.level.upper() in _PROBLEM_LEVELS:
            cause = f"it could not power-control the node ({_event_text(event)})"
            if machine.status is NodeStatus.ALLOCATED:
                return f"MAAS reverted {what} to Allocated: {cause}"
            return f"MAAS ended {what} in {status}: {cause}"
    if machine.status is NodeStatus.ALLOCATED:
        return (
            f"MAAS reverted {what} to Allocated; its events name no user request and no "
            f"power failure"
        )
    return f"MAAS ended {what} in {status}"


def other_actions(events: Sequence[Event], own: Tag | None, limit: int = 3) -> list[str]:
    """The newest user requests on the node not made by our attempt, as `<verb> by <who>`."""
    found: list[str] = []
    for event in sorted(events, key=lambda e: e.id, reverse=True):
        verb = USER_VERBS.get(event.type)
        if verb is None:
            continue
        tag = parse_tag(event.description)
        if own is not None and tag is not None and tag.token == own.token:
            continue
        found.append(f"{verb} by {actor_text(event)} at {event.created}")
        if len(found) >= limit:
            break
    return found


def _event_text(event: Event) -> str:
    text = f"{event.type} - {event.description}" if event.description else event.type
    return _clip(text, _LINE_MAX_CHARS)


def _short_cause(exc: BaseException) -> str:
    """A few words for the summary: the HTTP status, "MAAS unreachable", or the error type."""
    if isinstance(exc, MaasUnavailable):
        return "MAAS unreachable"
    if isinstance(exc, MaasHTTPError) and exc.http_status is not None:
        try:
            return f"HTTP {exc.http_status} {HTTPStatus(exc.http_status).phrase}"
        except ValueError:
            return f"HTTP {exc.http_status}"
    return _clip(f"{type(exc).__name__}: {exc}", _CAUSE_MAX_CHARS)


def _describe_error(exc: BaseException) -> str:
    return _clip(f"{type(exc).__name__}: {exc}", _LINE_MAX_CHARS)


def _clip(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
