"""What `machines` knows about each machine, and the columns it can show.

A row is one MAAS machine plus what was learned around it: its machine type, how long it has
been in its status (from MAAS's "Node changed status" events, on MAAS's own clock), and, with
--paddles, its paddles node. Each column is a name, a header and how to read the row."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from teuthology_maas.cli._common import UsageError
from teuthology_maas.cli._reconcile import parse_event_time, region_now
from teuthology_maas.errors import MaasError
from teuthology_maas.models import Machine, NodeStatus
from teuthology_maas.node.keep import KeptMark
from teuthology_maas.node.quarantine import quarantine_text
from teuthology_maas.suggest import did_you_mean
from teuthology_maas.teuthology.paddles import PaddlesNode

if TYPE_CHECKING:
    from teuthology_maas.maas.client import MaasClient

# The event MAAS records (at DEBUG) on every status change: "From 'Ready' to 'Allocated'".
STATUS_CHANGE_EVENT = "Node changed status"
# Machines per event query, and events per query (MAAS's maximum): recent enough to hold
# every machine's latest status change in a lab that is not churning furiously.
_EVENT_CHUNK = 25
_EVENT_LIMIT = 1000


@dataclass(frozen=True)
class Row:
    machine: Machine
    kind: str | None
    since: float | None = None  # seconds in the current status; None when unknown
    paddles: PaddlesNode | None = None
    paddles_known: bool = False  # --paddles was asked for
    region: str | None = None  # the MAAS installation (maas: regions:); None: the only one

    @property
    def teuthology_owner(self) -> str | None:
        """Who the deployment is for, as the provisioner stamped it in MAAS's owner data."""
        return self.machine.owner_data.get("teuthology_owner") or None

    @property
    def holder(self) -> str:
        """Who holds the machine, in teuthology's terms: paddles' locked_by, else the owner
        stamped at deployment, else the MAAS user, else `(free)`."""
        if self.paddles is not None and self.paddles.locked and self.paddles.locked_by:
            return self.paddles.locked_by
        return self.teuthology_owner or self.machine.owner or "(free)"

    @property
    def free(self) -> bool:
        m = self.machine
        in_paddles = self.paddles is not None and self.paddles.locked
        return m.status == NodeStatus.READY and not m.owner and not m.locked and not in_paddles

    def as_json(self) -> dict[str, Any]:
        m = self.machine
        kept = KeptMark.of(m)
        entry: dict[str, Any] = {
            "hostname": m.hostname,
            "system_id": m.system_id,
            "type": self.kind,
            "status": m.status_name,
            "seconds_in_status": None if self.since is None else round(self.since),
            "owner": m.owner,
            "teuthology_owner": self.teuthology_owner,
            "locked": m.locked,
            "os": os_of(m) or None,
            "ip_addresses": list(m.ip_addresses),
            "architecture": m.architecture or None,
            "pool": m.pool,
            "zone": m.zone,
            "tags": list(m.tag_names),
            "power": m.power_state,
            "status_message": m.status_message,
            "kept": None if kept is None else {"by": kept.by, "at": kept.at,
                                               "reason": kept.reason},
            "quarantine": quarantine_text(m),
        }
        if self.region is not None:
            entry["region"] = self.region
        if self.paddles_known:
            node = self.paddles
            entry["paddles"] = None if node is None else {
                "locked": node.locked, "locked_by": node.locked_by,
                "description": node.description,
            }
        return entry


def os_of(machine: Machine) -> str:
    if machine.osystem and machine.distro_series:
        return f"{machine.osystem}/{machine.distro_series}"
    return machine.distro_series or machine.osystem


def format_age(seconds: float | None) -> str:
    """`45s`, `12m`, `3h05m`, `2d04h`; `-` when unknown."""
    if seconds is None:
        return "-"
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h{minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours:02d}h"


def _paddles_cell(row: Row) -> str:
    """Who holds the node in paddles: `-` free, `?` unknown to paddles."""
    node = row.paddles
    if node is None:
        return "?"
    return (node.locked_by or "locked") if node.locked else "-"


@dataclass(frozen=True)
class Column:
    header: str
    cell: Callable[[Row], str]
    needs_paddles: bool = False


COLUMNS: dict[str, Column] = {
    "hostname": Column("HOSTNAME", lambda r: r.machine.hostname),
    "region": Column("REGION", lambda r: r.region or "-"),
    "system_id": Column("SYSTEM_ID", lambda r: r.machine.system_id),
    "type": Column("TYPE", lambda r: r.kind or "-"),
    "status": Column("STATUS", lambda r: r.machine.status_name + (
        " (quarantined)" if quarantine_text(r.machine) else "")),
    "since": Column("SINCE", lambda r: format_age(r.since)),
    "owner": Column("OWNER", lambda r: r.machine.owner or "-"),
    "for": Column("FOR", lambda r: r.teuthology_owner or "-"),
    "locked": Column("LOCKED", lambda r: "yes" if r.machine.locked else "no"),
    "paddles": Column("PADDLES", _paddles_cell, needs_paddles=True),
    "os": Column("OS", lambda r: os_of(r.machine) or "-"),
    "ip": Column("IP", lambda r: ",".join(r.machine.ip_addresses) or "-"),
    "arch": Column("ARCH", lambda r: r.machine.architecture or "-"),
    "pool": Column("POOL", lambda r: r.machine.pool or "-"),
    "zone": Column("ZONE", lambda r: r.machine.zone or "-"),
    "tags": Column("TAGS", lambda r: ",".join(r.machine.tag_names) or "-"),
    "power": Column("POWER", lambda r: r.machine.power_state),
    "description": Column(
        "DESCRIPTION",
        lambda r: (r.paddles.description or "-") if r.paddles is not None else "-",
        needs_paddles=True,
    ),
    "message": Column("MESSAGE", lambda r: r.machine.status_message or ""),
}
DEFAULT_COLUMNS = ("hostname", "type", "status", "since", "owner", "locked", "os", "ip",
                   "power", "message")
PADDLES_COLUMNS = ("paddles", "description")


def choose_columns(spec: str | None, *, paddles: bool, regions: bool = False) -> list[str]:
    """The columns to show: the defaults (plus paddles and description with --paddles, and
    region with several MAAS regions), or `spec`: `a,b,c` for exactly those, `+a,b` for the
    defaults and those."""
    defaults = list(DEFAULT_COLUMNS)
    if regions:
        defaults.insert(1, "region")
    if paddles:
        defaults[defaults.index("locked") + 1 : defaults.index("locked") + 1] = ["paddles"]
        defaults.insert(defaults.index("message"), "description")
    if not spec:
        return defaults
    adding = spec.startswith("+")
    names = [n.strip().lower() for n in spec.lstrip("+").split(",") if n.strip()]
    for name in names:
        if name not in COLUMNS:
            hint = did_you_mean(name, COLUMNS)
            raise UsageError(
                f"no column {name!r}" + (f" ({hint})" if hint else "")
                + f"; the columns are {', '.join(COLUMNS)}"
            )
        if COLUMNS[name].needs_paddles and not paddles:
            raise UsageError(f"column {name!r} comes from paddles: add --paddles")
    if not names:
        raise UsageError("--columns needs at least one column name")
    chosen = [*defaults, *(n for n in names if n not in defaults)] if adding else names
    return list(dict.fromkeys(chosen))


def seconds_in_status(
    client: MaasClient, machines: Sequence[Machine], *, utc_now: datetime | None = None
) -> dict[str, float]:
    """How long each machine has been in its status, from its newest "Node changed status"
    event among MAAS's recent events, measured on MAAS's clock (see reconcile's region_now).
    Machines whose change is older than what MAAS still lists are left out."""
    if not machines:
        return {}
    found: dict[str, datetime] = {}
    ids = [m.system_id for m in machines]
    try:
        region_newest = client.events(level="DEBUG", limit=1)
        for start in range(0, len(ids), _EVENT_CHUNK):
            chunk = ids[start : start + _EVENT_CHUNK]
            events = client.events(id=chunk, level="DEBUG", limit=_EVENT_LIMIT)
            for event in events:  # newest first: the first change seen per node is its last
                if event.type != STATUS_CHANGE_EVENT or not event.node or event.node in found:
                    continue
                when = parse_event_time(event.created)
                if when is not None:
                    found[event.node] = when
    except MaasError:
        return {}  # "since" is a convenience: the listing must not fail for it
    now = region_now(region_newest[0] if region_newest else None, utc_now or datetime.now(UTC))
    return {node: max(0.0, (now - when).total_seconds()) for node, when in found.items()}
