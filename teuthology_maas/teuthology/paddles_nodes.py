"""Writing paddles' node records (never their locks): `inventory --apply` and quarantine.

paddles (ceph/paddles, models/nodes.py) keeps one row per node. `POST /nodes/` creates one
(`name` required; an existing name is refused with 400), `PUT /nodes/<name>/` updates one (404
for a missing node); both set any of the node columns and silently ignore other keys. A body
with `locked` in it goes through paddles' lock rules: this module never sends `locked`,
`locked_by`, `locked_since` or `description` unless the caller says so for a description, so
it can never lock, unlock, or take over a node. Column limits are paddles' (PostgreSQL
refuses a longer value, and paddles answers 500): checked here first, with a clear error.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import requests

from teuthology_maas.errors import MaasError
from teuthology_maas.teuthology.paddles import (
    DEFAULT_TIMEOUT,
    LockServerUnavailable,
    PaddlesReader,
    PaddlesSession,
)

__all__ = [
    "NODE_RECORD_FIELDS", "PaddlesRefused", "PaddlesWriter", "check_record", "mark_down", "mark_up",
]

# The node columns this project writes, with paddles' limits (String(n); None: Boolean).
NODE_RECORD_FIELDS: dict[str, int | None] = {
    "machine_type": 32, "arch": 16, "os_type": 32, "os_version": 16, "mac_address": 17,
    "is_vm": None, "up": None, "description": None,
}
# Lock columns: changing them is teuthology's business, through paddles' lock calls.
LOCK_FIELDS = frozenset({"locked", "locked_by", "locked_since"})
_NAME_MAX = 256


class PaddlesRefused(MaasError):
    """paddles answered a node write with an error (its status and message carried)."""


def check_record(fields: Mapping[str, Any]) -> None:
    """ValueError for a field paddles does not have, a lock field, or a value its column
    cannot hold: nothing is sent then."""
    for key, value in fields.items():
        if key in LOCK_FIELDS:
            raise ValueError(f"{key} is a lock field: only teuthology's lock calls change it")
        if key not in NODE_RECORD_FIELDS:
            raise ValueError(
                f"paddles has no node field {key!r} we write; expected one of "
                f"{', '.join(NODE_RECORD_FIELDS)}"
            )
        limit = NODE_RECORD_FIELDS[key]
        if value is None:
            if key in ("is_vm",):
                raise ValueError("is_vm cannot be null in paddles")
            continue
        if limit is None and key != "description":
            if not isinstance(value, bool):
                raise ValueError(f"{key} must be true or false, not {value!r}")
        elif not isinstance(value, str):
            raise ValueError(f"{key} must be text, not {type(value).__name__}")
        elif limit is not None and len(value) > limit:
            raise ValueError(f"{key} {value!r} is longer than paddles' {limit} characters")


class PaddlesWriter(PaddlesSession):
    """POST and PUT of node records against one paddles URL, with one session."""

    def create(self, name: str, fields: Mapping[str, Any]) -> None:
        """POST /nodes/ with `name` and `fields` (paddles refuses an existing name)."""
        check_record(fields)
        if not name or len(name) > _NAME_MAX:
            raise ValueError(f"a paddles node name is 1 to {_NAME_MAX} characters: {name!r}")
        self._send("POST", "nodes/", {"name": name, **fields})

    def update(self, name: str, fields: Mapping[str, Any]) -> None:
        """PUT /nodes/<name>/ with `fields` only."""
        check_record(fields)
        if not fields:
            return
        self._send("PUT", "nodes/" + quote(name, safe="@") + "/", dict(fields))

    def _send(self, method: str, path: str, body: Mapping[str, Any]) -> None:
        try:
            response = self._session.request(
                method, self.url + path, json=body, timeout=self._timeout
            )
        except requests.RequestException as exc:
            raise LockServerUnavailable(f"lock server {self.url} unreachable: {exc}") from exc
        if response.status_code == 200:
            return
        if response.status_code >= 500 and response.status_code != 500:
            raise LockServerUnavailable(
                f"lock server {self.url}: {method} {path} answered {response.status_code}",
                http_status=response.status_code,
            )
        try:
            message = response.json().get("message")
        except (ValueError, AttributeError):
            message = None
        shown = str(message) if message else response.text[:200]
        raise PaddlesRefused(
            f"paddles refused {method} {path}: HTTP {response.status_code}: {shown[:300]}",
            http_status=response.status_code,
        )


DESCRIPTION_CHARS = 1000


def mark_down(
    url: str, name: str, text: str, *, timeout: float = DEFAULT_TIMEOUT
) -> str:
    """Take a quarantined node out of paddles' service: `up` false (lock_many stops handing
    it out; a job holding it keeps it) and, only when nobody holds it, `text` as its
    description. A locked node's description is its job's (teuthology's unlock and
    teuthology-kill match on it): it is left alone. Returns what was done, in words."""
    with PaddlesReader(url, timeout=timeout) as reader, PaddlesWriter(url, timeout=timeout) as w:
        node = reader.record(name)
        fields: dict[str, Any] = {}
        if node.get("up") is not False:
            fields["up"] = False
        locked = bool(node.get("locked"))
        if not locked and node.get("description") != text[:DESCRIPTION_CHARS]:
            fields["description"] = text[:DESCRIPTION_CHARS]
        w.update(name, fields)
    if locked:
        return (f"marked down in paddles (locked by {node.get('locked_by')}: its description "
                "is its job's, left as it is)" if fields else "already down in paddles")
    return "marked down in paddles with the quarantine as description" if fields else \
        "already down in paddles"


def mark_up(url: str, name: str, marker: str, *, timeout: float = DEFAULT_TIMEOUT) -> str:
    """Put a released node back in paddles' service: `up` true, and a description that is
    our quarantine text (contains `marker`) cleared when nobody holds the node."""
    with PaddlesReader(url, timeout=timeout) as reader, PaddlesWriter(url, timeout=timeout) as w:
        node = reader.record(name)
        fields: dict[str, Any] = {}
        if node.get("up") is not True:
            fields["up"] = True
        description = node.get("description")
        if not node.get("locked") and isinstance(description, str) and marker in description:
            fields["description"] = None
        w.update(name, fields)
    return "marked up in paddles" if fields else "already up in paddles"
