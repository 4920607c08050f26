"""The shape of every MAAS answer the client reads, checked as it is parsed.

Each function takes decoded JSON and returns typed values, or raises `MaasProtocolError`
naming the field (the transport adds the endpoint; for a state-changing call it turns the
error into an unknown outcome, since MAAS did apply the call).
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from teuthology_maas.answers import Fields, expect_list, json_kind, malformed
from teuthology_maas.models import BootResource, Event, Machine
from teuthology_maas.redact import excerpt


def machine(data: Any) -> Machine:
    return Machine.from_json(data)


def machine_or_none(data: Any) -> Machine | None:
    """power_on/power_off answer `null` for a power type that cannot do it."""
    return Machine.from_json(data) if data else None


def machines(data: Any) -> list[Machine]:
    return [Machine.from_json(item) for item in expect_list(data, "machine objects")]


def whoami(data: Any) -> dict[str, Any]:
    user = Fields(data, "a whoami answer (the API key's user)")
    user.text("username", required=True)
    user.boolean("is_superuser")
    return dict(user.data)


def version(data: Any) -> dict[str, Any]:
    info = Fields(data, "a version answer")
    info.text("version")
    info.text("subversion")
    info.text_list("capabilities")
    return dict(info.data)


def config_value(data: Any) -> str | int | float | bool | None:
    if data is None or isinstance(data, str | int | float | bool):
        return data
    raise malformed(f"{json_kind(data)} as a config value: {excerpt(data)}; expected one value")


def power_state(data: Any) -> str:
    return Fields(data, "a power state answer").text("state") or "unknown"


def boot_resources(data: Any) -> list[BootResource]:
    return [BootResource.from_json(item) for item in expect_list(data, "boot resources")]


def events(data: Any) -> list[Event]:
    items = Fields({} if data is None else data, "an events answer").data.get("events")
    return [Event.from_json(item) for item in expect_list(items, "events")]


def script_outputs(data: Any) -> list[tuple[str, str]]:
    """(name, decoded output) of each result of an installation result set."""
    results = Fields({} if data is None else data, "an installation result").data.get("results")
    found: list[tuple[str, str]] = []
    for item in expect_list(results, "script results"):
        result = Fields(item, "a script result")
        text = _b64_text(result.text("output"))
        if text:
            found.append((result.text("name"), text))
    return found


def _b64_text(value: str) -> str | None:
    if not value:
        return None
    try:
        return base64.b64decode(value).decode("utf-8", errors="replace")
    except (binascii.Error, ValueError):
        return value
