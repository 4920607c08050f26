"""Handlers beyond machines: users, version, config, boot resources, events, script results."""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from teuthology_maas.simulator._errors import bad_request, form_errors, not_found
from teuthology_maas.simulator._events import CREATED_FORMAT
from teuthology_maas.simulator._records import MachineRecord, ScriptSet, ScriptStatus
from teuthology_maas.simulator.forms import Params
from teuthology_maas.simulator.inventory import UserSpec
from teuthology_maas.simulator.state import StateMachine

API = "/MAAS/api/2.0/"
CAPABILITIES = [
    "networks-management",
    "static-ipaddresses",
    "ipv6-deployment-ubuntu",
    "devices-management",
    "storage-deployment-ubuntu",
    "network-deployment-ubuntu",
    "bridging-interface-ubuntu",
    "bridging-automatic-ubuntu",
    "authenticate-api",
]
DEFAULT_CONFIG: dict[str, Any] = {
    "maas_name": "maas-simulator",
    "default_osystem": "ubuntu",
    "default_distro_series": "jammy",
    "default_min_hwe_kernel": "",
    "commissioning_distro_series": "jammy",
    "node_timeout": 30,
    "enable_disk_erasing_on_release": False,
    "disk_erase_with_secure_erase": False,
    "disk_erase_with_quick_erase": False,
    "enable_kernel_crash_dump": False,
    "default_storage_layout": "flat",
    "kernel_opts": None,
    "http_proxy": None,
    "upstream_dns": None,
    "ntp_servers": "ntp.ubuntu.com",
    "boot_images_auto_import": True,
}
_SCRIPT_STATUS = {
    ScriptStatus.PENDING: "Pending",
    ScriptStatus.RUNNING: "Running",
    ScriptStatus.PASSED: "Passed",
    ScriptStatus.FAILED: "Failed",
    ScriptStatus.TIMED_OUT: "Timed out",
    ScriptStatus.ABORTED: "Aborted",
}
_RESULT_TYPES = {"installation": 1, "install": 1, "1": 1}


def user_json(user: UserSpec) -> dict[str, Any]:
    return {
        "username": user.username,
        "email": user.email,
        "is_local": True,
        "is_superuser": user.is_superuser,
        "resource_uri": f"{API}users/{user.username}/",
    }


def version_json(version: str) -> dict[str, Any]:
    return {"capabilities": list(CAPABILITIES), "version": version, "subversion": ""}


def get_config(config: dict[str, Any], query: Params) -> Any:
    name = query.get("name")
    if not name:
        raise bad_request("No provided name!")
    if name == "ntp_server":
        name = "ntp_servers"
    if name not in config:
        valid = ", ".join(sorted(config))
        raise form_errors(
            {name: [f"{name} is not a valid config setting (valid settings are: {valid})."]}
        )
    return config[name]


def _stamp(at: float | None) -> str | None:
    return None if at is None else time.strftime(CREATED_FORMAT, time.gmtime(at))


def script_set_json(
    machine: MachineRecord, script_set: ScriptSet, *, include_output: bool, now: float
) -> dict[str, Any]:
    runtime_end = script_set.ended if script_set.ended is not None else now
    runtime = _runtime(runtime_end - script_set.started)
    result: dict[str, Any] = {
        "id": script_set.id,
        "name": "/tmp/install.log",
        "created": _stamp(script_set.started),
        "updated": _stamp(runtime_end),
        "status": script_set.status,
        "status_name": _SCRIPT_STATUS[script_set.status],
        "exit_status": script_set.exit_status,
        "started": _stamp(script_set.started),
        "ended": _stamp(script_set.ended),
        "runtime": runtime,
        "starttime": script_set.started,
        "endtime": script_set.ended or "",
        "estimated_runtime": "0:10:00",
        "parameters": {},
        "script_id": None,
        "script_revision_id": None,
        "suppressed": False,
    }
    if include_output:
        encoded = base64.b64encode(script_set.output).decode("ascii")
        result.update({"output": encoded, "stdout": encoded, "stderr": "", "result": ""})
    return {
        "id": script_set.id,
        "system_id": machine.system_id,
        "type": 1,
        "type_name": "Installation",
        "last_ping": _stamp(runtime_end),
        "status": script_set.status,
        "status_name": _SCRIPT_STATUS[script_set.status],
        "started": _stamp(script_set.started),
        "ended": _stamp(script_set.ended),
        "runtime": runtime,
        "suppressed": False,
        "results": [result],
        "resource_uri": f"{API}nodes/{machine.system_id}/results/{script_set.id}/",
    }


def _runtime(seconds: float) -> str:
    seconds = max(int(seconds), 0)
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def find_script_set(machine: MachineRecord, ident: str) -> ScriptSet:
    script_set = machine.installation
    if script_set is None or ident not in ("current-installation", str(script_set.id)):
        raise not_found("No ScriptSet matches the given query.")
    return script_set


def results_list(machine: MachineRecord, query: Params, now: float) -> list[dict[str, Any]]:
    wanted = query.get("type")
    if wanted and wanted not in _RESULT_TYPES:
        return []
    if machine.installation is None:
        return []
    return [script_set_json(machine, machine.installation, include_output=False, now=now)]


def events_query(
    state: StateMachine,
    query: Params,
    can_view: Callable[[MachineRecord], bool],
) -> dict[str, Any]:
    machines = state.machines
    system_ids = set(query.getlist("id"))
    for name, attr in (
        ("zone", "zone"),
        ("pool", "pool"),
        ("agent_name", "agent_name"),
        ("domain", "domain"),
    ):
        values = query.getlist(name)
        if values:
            matching = {m.system_id for m in machines.values() if getattr(m, attr) in values}
            system_ids = system_ids & matching if system_ids else matching or {"<none>"}

    def visible(system_id: str | None) -> bool:
        machine = machines.get(system_id) if system_id else None
        return machine is not None and can_view(machine)

    found = state.events.query(
        visible=visible,
        system_ids=system_ids or None,
        hostnames=set(query.getlist("hostname")) or None,
        level=query.get("level"),
        limit=query.get("limit"),
        before=query.get("before"),
        after=query.get("after"),
        usernames=set(query.getlist("owner")) or None,
    )
    kept = [(k, v) for k, vs in query.without("op", "after", "before").lists() for v in vs]
    base = f"{API}events/?" + urlencode([("op", "query"), *kept])
    newest = found[0].id if found else int(query.get("after") or 0)
    return {
        "count": len(found),
        "events": [e.to_json() for e in found],
        "next_uri": f"{base}&after={newest}",
        "prev_uri": f"{base}&before={found[-1].id}" if found else None,
    }


def set_config(config: dict[str, Any], form: Params) -> None:
    name = form.get("name")
    if not name:
        raise bad_request("No provided name!")
    if name not in config:
        raise form_errors({name: [f"{name} is not a valid config setting."]})
    raw = form.get("value") or ""
    current = config[name]
    value: Any = raw
    if isinstance(current, bool):
        value = raw.strip().lower() in ("true", "1", "yes", "on")
    elif isinstance(current, int):
        try:
            value = int(raw)
        except ValueError:
            raise form_errors({name: ["Enter a whole number."]}) from None
    config[name] = value


def curtin_config(machine: MachineRecord) -> str:
    """A curtin configuration shaped like the one MAAS renders (YAML text)."""
    return (
        "apply_net_commands: true\n"
        "install:\n  log_file: /tmp/install.log\n  error_tarfile: /tmp/curtin-logs.tar\n"
        "kernel:\n  package: linux-image-generic\n"
        "sources:\n  01_primary:\n    type: tgz\n"
        f"    uri: http://rack:5248/images/{machine.osystem}/{machine.arch}/"
        f"{machine.subarch}/{machine.distro_series}/squashfs\n"
        "storage:\n  version: 1\n  config:\n"
        "  - {id: sda, type: disk, ptable: gpt, path: /dev/sda, wipe: superblock}\n"
    )
