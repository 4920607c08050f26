"""MAAS 3.7's ReleaseForm: what a single-machine release reads, and when it refuses.

The handler builds the form from `request.data` and validates it before it looks at the
machine's status, so a bad `scripts` value is a 400 even on a Ready machine (whose release is
otherwise a no-op). `request.data` is the form body, or for an `application/json` body the
decoded document: `{"erase": true}` erases like `erase=true` does.

Field rules (Django): booleans are true unless absent, empty or "false" (so "0" is true; JSON
`false`/`0`/`null` are false); `scripts` is the LAST `scripts` value split on commas, each a
release script name or `none`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from teuthology_maas.simulator._errors import ApiError, form_errors
from teuthology_maas.simulator.forms import Body
from teuthology_maas.simulator.inventory import WIPE_DISKS_SCRIPT

NO_SCRIPTS = "none"


@dataclass(frozen=True)
class ReleaseRequest:
    erase_mode: str | None  # None, "full", "quick" or "secure"
    scripts: tuple[str, ...]  # the release scripts to run, wipe-disks included when erasing
    script_params: dict[str, dict[str, str]]
    comment: str
    force: bool


def release_data(body: Body) -> Mapping[str, Any]:
    """`request.data` as the form sees it: the last value of each field, or the JSON object."""
    if not body.is_json:
        data: dict[str, Any] = {}
        for name, value in body.form.items():
            data[name] = value
        return data
    document = body.json_data
    if not document:
        return {}
    if isinstance(document, dict):
        return document
    missing = "get" if isinstance(document, list) else "copy"
    raise ApiError(500, f"'{type(document).__name__}' object has no attribute '{missing}'")


def _boolean(data: Mapping[str, Any], name: str) -> bool:
    value = data.get(name)
    if isinstance(value, str):
        return value.lower() != "false" and value != ""
    return bool(value)


def _script_names(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return value.split(",")
    if isinstance(value, Sequence):
        return [str(v) for v in value]
    raise form_errors({"scripts": ["Enter a list of values."]})


def parse_release(
    body: Body,
    available: Sequence[str],
    *,
    erase_on_release: bool,
    secure_default: bool,
    quick_default: bool,
) -> ReleaseRequest:
    """Validate a release request (400 with MAAS's field errors) and say what it asks for.
    `erase_on_release` and the defaults are the region's disk-erasing settings."""
    data = release_data(body)
    requested = _script_names(data.get("scripts"))
    choices = (NO_SCRIPTS, *available)
    unknown = next((s for s in requested if s not in choices), None)
    if unknown is not None:
        raise form_errors(
            {"scripts": [f"Select a valid choice. {unknown} is not one of the available choices."]}
        )
    secure = _boolean(data, "secure_erase")
    quick = _boolean(data, "quick_erase")
    erase = _boolean(data, "erase") or secure or quick or WIPE_DISKS_SCRIPT in requested
    if not erase and erase_on_release:
        erase, secure, quick = True, secure_default, quick_default
    scripts = tuple(dict.fromkeys(s for s in requested if s != NO_SCRIPTS))
    if erase and WIPE_DISKS_SCRIPT not in scripts:
        scripts += (WIPE_DISKS_SCRIPT,)
    mode = None if not erase else "secure" if secure else "quick" if quick else "full"
    comment = data.get("comment")
    return ReleaseRequest(
        erase_mode=mode,
        scripts=scripts,
        script_params=_script_params(data, scripts),
        comment="" if comment is None else str(comment),
        force=_boolean(data, "force"),
    )


def _script_params(data: Mapping[str, Any], scripts: tuple[str, ...]) -> dict[str, dict[str, str]]:
    """Fields named `<script>_<parameter>` for the scripts that run (MAAS's convention; fields
    for scripts that do not run are ignored like any extra form field)."""
    params: dict[str, dict[str, str]] = {}
    for name, value in data.items():
        for script in scripts:
            if name.startswith(script + "_") and len(name) > len(script) + 1:
                text = value if isinstance(value, str) else str(value)
                params.setdefault(script, {})[name[len(script) + 1 :]] = text
    return params
