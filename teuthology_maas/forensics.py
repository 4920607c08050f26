"""MAAS's own explanation of a failure: status_message, error_description, recent events and the
installation output, condensed into one line for exception text and a full report for logs.

Collecting is best effort by design: it runs while another error is already being raised, so
every problem met while collecting is recorded in `problems` and never raised.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from teuthology_maas.models import Event, Machine

if TYPE_CHECKING:
    from teuthology_maas.client import MaasClient

log = logging.getLogger(__name__)

EVENT_LIMIT = 25
SUMMARY_EVENTS = 3
SUMMARY_MAX_CHARS = 900
_LINE_MAX_CHARS = 200
_INFO_AND_ABOVE = frozenset({"INFO", "WARNING", "ERROR", "CRITICAL"})
# Lines of a curtin/cloud-init log that usually name the root cause of a failed install.
_TROUBLE = re.compile(r"error|fail|traceback|exception|fatal|denied|no such", re.IGNORECASE)


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

    @property
    def machine(self) -> str:
        return f"{self.hostname} ({self.system_id})"

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
        parts = [f"{self.machine}: {self.status_name}"]
        message = self.status_message or ""
        if message:
            parts[0] += f": {message}"
        if self.error_description and self.error_description not in message:
            parts[0] += f" ({self.error_description})"
        events = self.notable_events()
        if events:
            parts.append("last events: " + ", ".join(_event_text(e) for e in events))
        install = self.install_summary()
        if install:
            parts.append(f"installation output: {install}")
        if self.problems and not events and not install:
            parts.append("forensics incomplete: " + "; ".join(self.problems))
        return _clip("; ".join(parts), SUMMARY_MAX_CHARS)

    def report(self) -> str:
        """Everything collected, for a log file or an operator's terminal."""
        lines = [
            f"Machine: {self.machine}",
            f"Status: {self.status_name}",
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
    current = machine
    try:
        current = client.get_machine(machine.system_id)
    except Exception as exc:  # forensics must never mask the original failure
        problems.append(f"re-reading the machine: {_describe_error(exc)}")

    events: Sequence[Event] = ()
    try:
        events = client.events(id=[machine.system_id], level="DEBUG", limit=event_limit)
    except Exception as exc:
        problems.append(f"events: {_describe_error(exc)}")
    if since_event_id is not None:
        events = [e for e in events if e.id > since_event_id]
    events = sorted(events, key=lambda e: e.id, reverse=True)

    output: str | None = None
    try:
        output = client.installation_output(machine.system_id)
    except Exception as exc:
        problems.append(f"installation output: {_describe_error(exc)}")

    if problems:
        log.debug("forensics for %s incomplete: %s", current.describe(), "; ".join(problems))
    return Forensics(
        hostname=current.hostname,
        system_id=current.system_id,
        status_name=current.status_name,
        status_message=current.status_message,
        error_description=current.error_description,
        events=tuple(events),
        installation_output=output,
        problems=tuple(problems),
    )


def _event_text(event: Event) -> str:
    text = f"{event.type} - {event.description}" if event.description else event.type
    return _clip(text, _LINE_MAX_CHARS)


def _describe_error(exc: BaseException) -> str:
    return _clip(f"{type(exc).__name__}: {exc}", _LINE_MAX_CHARS)


def _clip(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
