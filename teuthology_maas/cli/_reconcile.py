"""Compare MAAS with paddles: leaks, drift, and machines stuck past MAAS's own timeouts.

Pure classification: the caller fetches the machines, the paddles nodes and (for machines in
a transitional status) the newest event, and decides what to do with the findings."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from teuthology_maas.models import FREE, Event, Machine, NodeStatus
from teuthology_maas.node.keep import KeptMark
from teuthology_maas.node.ownership import Stamp
from teuthology_maas.node.quarantine import quarantine_text
from teuthology_maas.teuthology.paddles import PaddlesNode

Kind = Literal["leak", "kept", "drift", "stuck", "quarantined"]
KINDS: tuple[Kind, ...] = ("leak", "kept", "drift", "stuck", "quarantined")

# MAAS's own bounds. node_timeout (config, minutes; 30 by default) bounds deploying,
# commissioning, testing and disk erasing; a release whose power-off is not seen within five
# minutes is marked "Releasing failed".
RELEASING_TIMEOUT = 300.0
DEFAULT_NODE_TIMEOUT_MINUTES = 30.0

# A machine owned by our MAAS user in any of these is held by teuthology (not Ready/New).
HELD = frozenset(NodeStatus) - FREE


@dataclass
class Finding:
    kind: Kind
    hostname: str
    system_id: str
    status: str
    owner: str | None
    detail: str
    action: str | None = None  # what --apply did (or why it did nothing)
    extra: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        payload = {
            "kind": self.kind,
            "hostname": self.hostname,
            "system_id": self.system_id,
            "status": self.status,
            "owner": self.owner,
            "detail": self.detail,
            "action": self.action,
        }
        payload.update(self.extra)
        return payload


def status_timeout(status: NodeStatus, node_timeout_minutes: float) -> float | None:
    """Seconds after which MAAS itself would have failed a machine in `status`."""
    if status == NodeStatus.RELEASING:
        return RELEASING_TIMEOUT
    if status.is_transitional:
        return node_timeout_minutes * 60.0
    return None


# How close the region's newest event must be to our UTC clock for the region's clock to be
# taken as UTC (MAAS stamps events in the region host's local time zone, unlabelled).
SAME_CLOCK_TOLERANCE = timedelta(minutes=10)


def parse_event_time(created: str) -> datetime | None:
    """MAAS's `created` ("Fri, 07 Dec. 2018 20:11:08", the region's local time, unlabelled);
    returned labelled UTC so it compares with other event times."""
    text = created.strip().replace(".", "", 1) if created else ""
    for pattern in ("%a, %d %b %Y %H:%M:%S", "%Y-%m-%dT%H:%M:%S.%f", "%Y-%m-%dT%H:%M:%S"):
        try:
            return datetime.strptime(text, pattern).replace(tzinfo=UTC)
        except ValueError:
            continue
    return None


def format_duration(seconds: float) -> str:
    minutes = int(seconds // 60)
    if minutes < 60:
        return f"{minutes}m"
    return f"{minutes // 60}h{minutes % 60:02d}m"


def find_leaks_and_drift(
    machines: Sequence[Machine], paddles: Mapping[str, PaddlesNode], maas_user: str
) -> list[Finding]:
    findings: list[Finding] = []
    for machine in machines:
        node = paddles.get(machine.hostname)
        reason = quarantine_text(machine)
        if reason is not None:  # Broken on purpose: not a leak, whoever holds it
            held = node.describe_lock() if node is not None else "not in paddles"
            findings.append(Finding(
                "quarantined", machine.hostname, machine.system_id, machine.status_name,
                machine.owner, f"quarantined ({held}): {reason}",
                extra={"paddles_name": node.name if node is not None else None,
                       "quarantine": reason},
            ))
            continue
        if node is None:
            continue
        kept = KeptMark.of(machine)
        if machine.owner == maas_user and machine.status in HELD and not node.locked and kept:
            findings.append(
                Finding(
                    "kept",
                    machine.hostname,
                    machine.system_id,
                    machine.status_name,
                    machine.owner,
                    f"{machine.status_name}, {kept.describe()}; unlocked in paddles",
                    extra={"paddles_name": node.name, "kept_by": kept.by,
                           "kept_at": kept.at, "kept_reason": kept.reason},
                )
            )
        elif machine.owner == maas_user and machine.status in HELD and not node.locked:
            stamp = Stamp.read(machine)
            made = f" ({stamp.describe()})" if stamp is not None else ""
            findings.append(
                Finding(
                    "leak",
                    machine.hostname,
                    machine.system_id,
                    machine.status_name,
                    machine.owner,
                    f"{machine.status_name} for MAAS user {maas_user!r}{made} but unlocked in "
                    f"paddles",
                    extra={
                        "paddles_name": node.name,
                        "deployment": stamp.token if stamp is not None else None,
                    },
                )
            )
        elif node.locked and machine.status == NodeStatus.READY:
            who = node.locked_by or "?"
            desc = f" ({node.description})" if node.description else ""
            findings.append(
                Finding(
                    "drift",
                    machine.hostname,
                    machine.system_id,
                    machine.status_name,
                    machine.owner,
                    f"locked in paddles by {who}{desc} but Ready in MAAS",
                    extra={"paddles_name": node.name, "locked_by": node.locked_by},
                )
            )
    return findings


def region_now(newest_region_event: Event | None, utc_now: datetime) -> datetime:
    """"Now" on the region's event clock.

    Event times carry no time zone, so our own clock is only usable when the region's newest
    event agrees with it (a busy region on UTC). Otherwise the region's newest event itself is
    the reference: time has passed at least that far on the region's clock, so a machine whose
    own newest event is older than that by more than MAAS's timeout is certainly stuck."""
    newest = parse_event_time(newest_region_event.created) if newest_region_event else None
    if newest is None or abs(newest - utc_now) <= SAME_CLOCK_TOLERANCE:
        return utc_now
    return newest


def stuck_finding(
    machine: Machine,
    newest_event: Event | None,
    *,
    node_timeout_minutes: float,
    now: datetime,
) -> Finding | None:
    """A machine whose status is transitional and has shown no activity for longer than MAAS
    allows the whole operation. The newest event is never older than the start of the
    operation, so its age is a lower bound on the time in status: no false alarms."""
    bound = status_timeout(machine.status, node_timeout_minutes)
    if bound is None or newest_event is None:
        return None
    since = parse_event_time(newest_event.created)
    if since is None:
        return None
    age = (now - since).total_seconds()
    if age <= bound:
        return None
    return Finding(
        "stuck",
        machine.hostname,
        machine.system_id,
        machine.status_name,
        machine.owner,
        f"{machine.status_name} with no MAAS event for {format_duration(age)} (MAAS gives up "
        f"after {format_duration(bound)}); last event: {newest_event.line()}",
        extra={"idle_seconds": round(age), "maas_timeout_seconds": round(bound)},
    )
