"""The node event log, with MAAS's event types, levels and query semantics."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass

from teuthology_maas.simulator._errors import bad_request

# Logging levels as MAAS stores them; AUDIT sits apart (queried on its own).
LEVELS: dict[str, int] = {
    "AUDIT": 0,
    "DEBUG": 10,
    "INFO": 20,
    "WARNING": 30,
    "ERROR": 40,
    "CRITICAL": 50,
}

# Event type descriptions (what `type` shows) and their levels.
USER_ACQUIRING = ("User acquiring node", "DEBUG")
USER_DEPLOYING = ("User starting deployment", "DEBUG")
USER_RELEASING = ("User releasing node", "DEBUG")
USER_ABORT_DEPLOY = ("User aborting deployment", "DEBUG")
USER_ABORT_ERASE = ("User aborting disk erasing", "DEBUG")
USER_MARK_BROKEN = ("User marking node broken", "DEBUG")
USER_MARK_FIXED = ("User marking node fixed", "DEBUG")
USER_LOCK = ("User locking node", "DEBUG")
USER_UNLOCK = ("User unlocking node", "DEBUG")
USER_POWER_ON = ("User powering up node", "DEBUG")
USER_POWER_OFF = ("User powering down node", "DEBUG")
POWERED_ON = ("Node powered on", "DEBUG")
POWERED_OFF = ("Node powered off", "DEBUG")
CHANGED_STATUS = ("Node changed status", "DEBUG")
DEPLOYING = ("Deploying", "INFO")
PXE_BOOT = ("Performing PXE boot", "INFO")
LOADING_EPHEMERAL = ("Loading ephemeral", "INFO")
CONFIGURING_STORAGE = ("Configuring storage", "INFO")
INSTALLING_OS = ("Installing OS", "INFO")
CONFIGURING_OS = ("Configuring OS", "INFO")
REBOOTING = ("Rebooting", "INFO")
DEPLOYED = ("Deployed", "INFO")
RELEASING = ("Releasing", "INFO")
RELEASED = ("Released", "INFO")
ERASING_DISK = ("Erasing disk", "INFO")
ABORTED_DEPLOYMENT = ("Aborted deployment", "INFO")
ABORTED_ERASING = ("Aborted disk erasing", "INFO")
BMC_QUERY_FAILED = ("Failed to query node's BMC", "WARNING")
INSTALL_FAILED = ("Node installation failure", "ERROR")
MARKING_FAILED = ("Marking node failed", "ERROR")

CREATED_FORMAT = "%a, %d %b. %Y %H:%M:%S"


@dataclass(frozen=True)
class EventRecord:
    id: int
    system_id: str | None
    hostname: str
    username: str
    level: str
    created: float
    type: str
    description: str
    action: str = ""

    @property
    def status_message(self) -> str:
        return f"{self.type} - {self.description}" if self.description else self.type

    def to_json(self) -> dict[str, object]:
        return {
            "username": self.username or "unknown",
            "node": self.system_id,
            "hostname": self.hostname or "unknown",
            "id": self.id,
            "level": self.level,
            "created": time.strftime(CREATED_FORMAT, time.gmtime(self.created)),
            "type": self.type,
            "description": self.description,
        }


class EventLog:
    """Append-only, ids increase; queries answer newest first like the region."""

    def __init__(self) -> None:
        self._events: list[EventRecord] = []
        self._lock = threading.Lock()
        self._latest_info: dict[str, EventRecord] = {}

    def add(
        self,
        kind: tuple[str, str],
        *,
        system_id: str | None,
        hostname: str,
        at: float,
        description: str = "",
        username: str = "",
        action: str = "",
    ) -> EventRecord:
        type_name, level = kind
        with self._lock:
            event = EventRecord(
                id=len(self._events) + 1,
                system_id=system_id,
                hostname=hostname,
                username=username,
                level=level,
                created=at,
                type=type_name,
                description=description,
                action=action,
            )
            self._events.append(event)
            if system_id is not None and LEVELS[level] >= LEVELS["INFO"]:
                self._latest_info[system_id] = event
        return event

    def latest_info(self, system_id: str) -> EventRecord | None:
        """The event MAAS derives status_message / status_action from."""
        return self._latest_info.get(system_id)

    def for_node(self, system_id: str) -> list[EventRecord]:
        with self._lock:
            return [e for e in reversed(self._events) if e.system_id == system_id]

    def query(
        self,
        *,
        visible: Callable[[str | None], bool],
        system_ids: Collection[str] | None = None,
        hostnames: Collection[str] | None = None,
        level: str | None = None,
        limit: str | None = None,
        before: str | None = None,
        after: str | None = None,
        usernames: Collection[str] | None = None,
    ) -> list[EventRecord]:
        level = level or "INFO"
        if level not in LEVELS:
            raise bad_request(f"Unrecognised log level: {level}")
        if before is not None and after is not None:
            raise bad_request("There is not yet support for specifying both 'after' and 'before'.")
        count = _parse_limit(limit)
        cursor_before = _parse_id(before, "before")
        cursor_after = _parse_id(after, "after")
        with self._lock:
            events: Iterable[EventRecord] = reversed(self._events)
            selected: list[EventRecord] = []
            for event in events:
                if level == "AUDIT":
                    if event.level != "AUDIT":
                        continue
                elif event.level == "AUDIT" or LEVELS[event.level] < LEVELS[level]:
                    continue
                if cursor_before is not None and event.id >= cursor_before:
                    continue
                if cursor_after is not None and event.id <= cursor_after:
                    continue
                if system_ids and event.system_id not in system_ids:
                    continue
                if hostnames and event.hostname not in hostnames:
                    continue
                if usernames and event.username not in usernames:
                    continue
                if not visible(event.system_id):
                    continue
                selected.append(event)
        if cursor_after is not None:
            # The region takes the oldest `limit` events after the cursor, shown newest first.
            return selected[-count:]
        return selected[:count]


def _parse_limit(value: str | None) -> int:
    if value is None or value == "":
        return 100
    try:
        number = int(value)
    except ValueError:
        raise bad_request(f"Invalid limit: {value!r} is not an integer") from None
    if number > 1000:
        raise bad_request(f"Requested number of events {number} is greater than limit: 1000")
    return max(number, 1)


def _parse_id(value: str | None, name: str) -> int | None:
    if value is None or value == "":
        return None
    try:
        return int(value)
    except ValueError:
        raise bad_request(f"Invalid {name}: {value!r} is not an event id") from None
