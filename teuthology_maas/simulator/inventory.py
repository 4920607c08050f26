"""The simulator's inventory: users, machines, images, timings and faults.

An inventory is plain data (YAML or a dict); `Inventory.from_mapping` validates it and names
the offending key and value when something is wrong. docs/simulator.md documents the format.
"""

from __future__ import annotations

import secrets
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import yaml

from teuthology_maas.models import NodeStatus
from teuthology_maas.simulator._inventory_parts import (
    DiskSpec,
    InterfaceSpec,
    PartError,
    as_names,
    disk_specs,
    image_specs,
    interface_specs,
)
from teuthology_maas.simulator._inventory_parts import (
    ImageSpec as ImageSpec,
)

# Django's random-password alphabet (no look-alikes), as MAAS uses for API keys.
_KEY_ALPHABET = "".join(c for c in string.ascii_letters + string.digits if c not in "iIlLoO01")

DEFAULT_USERS: tuple[tuple[str, bool], ...] = (
    ("teuthology", False),
    ("admin", True),
    ("alice", False),
)

# (name, architecture): the images a fresh region has synced when the inventory names none.
DEFAULT_IMAGES: tuple[tuple[str, str], ...] = (
    ("ubuntu/focal", "amd64/generic"),
    ("ubuntu/jammy", "amd64/generic"),
    ("ubuntu/noble", "amd64/generic"),
    ("centos/centos9-stream", "amd64/generic"),
    ("rocky/9", "amd64/generic"),
    ("rhel/9", "amd64/generic"),
    ("ubuntu/jammy", "arm64/generic"),
)

# MAAS's built-in release script that erases disks (run by erase/quick_erase/secure_erase).
WIPE_DISKS_SCRIPT = "wipe-disks"


class InventoryError(ValueError):
    """The inventory is malformed; the message names the key, the value and what was expected."""


def generate_api_key() -> str:
    def part(length: int) -> str:
        return "".join(secrets.choice(_KEY_ALPHABET) for _ in range(length))

    return f"{part(18)}:{part(18)}:{part(32)}"


@dataclass(frozen=True)
class UserSpec:
    username: str
    api_key: str
    is_superuser: bool = False
    email: str = ""


_OPTIONAL_TIMINGS = frozenset({"node_timeout", "rebooting"})


@dataclass(frozen=True)
class Timings:
    """Simulated seconds each asynchronous step takes (MAAS-like magnitudes by default)."""

    deploying: float = 600.0
    releasing: float = 60.0
    disk_erasing: float = 900.0
    disk_erasing_quick: float = 120.0
    disk_erasing_secure: float = 300.0
    aborting: float = 10.0
    # Each release script other than wipe-disks (which takes one of the disk_erasing times).
    release_script: float = 60.0
    power: float = 5.0
    # When a scripted deployment failure strikes, as a fraction of `deploying`.
    deploy_failure_at: float = 0.75
    # How long MAAS takes to give up on an unreachable BMC and revert to Allocated.
    bmc_failure: float = 60.0
    # A deployment to memory (ephemeral_deploy): no disk to write, so faster.
    deploying_ephemeral: float = 300.0
    # MAAS's node_timeout in simulated seconds; None: the region's `node_timeout` config
    # (minutes, 30 by default). How it fails a deployment depends on maas_version.
    node_timeout: float | None = None
    # The reboot at the end of a deployment to disk, from "Rebooting" to Deployed (part of
    # `deploying`); None: the last 10 % of `deploying`.
    rebooting: float | None = None
    # 0-1: how far each earlier progress message moves from its fixed place, as a share of half
    # the gap to its neighbours (drawn per deployment; 0: exactly at the fixed fractions).
    progress_jitter: float = 0.0

    def merged(self, overrides: Mapping[str, Any], where: str) -> Timings:
        known = {f.name for f in fields(self)}
        values: dict[str, Any] = {}
        for key, value in overrides.items():
            if key not in known:
                raise InventoryError(
                    f"{where}: unknown timing {key!r}; expected one of {sorted(known)}"
                )
            if value is None and key in _OPTIONAL_TIMINGS:
                values[key] = None
                continue
            try:
                number = float(value)
            except (TypeError, ValueError):
                raise InventoryError(
                    f"{where}.{key}: expected a number of seconds, got {value!r}"
                ) from None
            if number < 0:
                raise InventoryError(f"{where}.{key}: must be >= 0, got {value!r}")
            if key == "progress_jitter" and number > 1:
                raise InventoryError(f"{where}.{key}: must be between 0 and 1, got {value!r}")
            values[key] = number
        return replace(self, **values)


@dataclass(frozen=True)
class MachineSpec:
    hostname: str
    system_id: str | None = None
    architecture: str = "amd64/generic"
    tags: tuple[str, ...] = ()
    pool: str = "default"
    zone: str = "default"
    domain: str = "maas"
    status: NodeStatus = NodeStatus.READY
    owner: str | None = None
    power_type: str = "ipmi"
    power_state: str | None = None
    cpu_count: int = 8
    cpu_speed: int = 2400
    memory: int = 16384
    storage_gb: float = 1000.0
    locked: bool = False
    osystem: str = ""
    distro_series: str = ""
    agent_name: str = ""
    description: str = ""
    mac_address: str | None = None
    ssh_port: int | None = None
    timings: Mapping[str, Any] = field(default_factory=dict)
    min_hwe_kernel: str = ""
    # Physical disks (default: one `sda` of storage_gb) and interfaces (default: one `eno1`).
    disks: tuple[DiskSpec, ...] = ()
    interfaces: tuple[InterfaceSpec, ...] = ()


_MACHINE_KEYS = {f.name for f in fields(MachineSpec)}


def _as_tuple(value: Any, where: str) -> tuple[str, ...]:
    try:
        return as_names(value, where)
    except PartError as exc:
        raise InventoryError(str(exc)) from None


def parse_status(value: Any, where: str) -> NodeStatus:
    try:
        if isinstance(value, int) and not isinstance(value, bool):
            return NodeStatus(value)
        return NodeStatus.from_label(str(value))
    except ValueError:
        raise InventoryError(
            f"{where}: unknown MAAS status {value!r}; expected a status keyword "
            "(ready, allocated, deployed, ...), label or number"
        ) from None


def _machine_spec(raw: Any, index: int) -> MachineSpec:
    where = f"machines[{index}]"
    if not isinstance(raw, Mapping):
        raise InventoryError(f"{where}: expected a mapping, got {raw!r}")
    unknown = set(raw) - _MACHINE_KEYS
    if unknown:
        raise InventoryError(
            f"{where}: unknown key(s) {sorted(unknown)}; expected some of {sorted(_MACHINE_KEYS)}"
        )
    if not raw.get("hostname"):
        raise InventoryError(f"{where}: 'hostname' is required")
    values: dict[str, Any] = dict(raw)
    values["hostname"] = str(raw["hostname"])
    values["tags"] = _as_tuple(raw.get("tags"), f"{where}.tags")
    if "status" in raw:
        values["status"] = parse_status(raw["status"], f"{where}.status")
    for key in ("cpu_count", "cpu_speed", "memory", "ssh_port"):
        if raw.get(key) is not None:
            try:
                values[key] = int(raw[key])
            except (TypeError, ValueError):
                raise InventoryError(
                    f"{where}.{key}: expected an integer, got {raw[key]!r}"
                ) from None
    if "architecture" in raw and "/" not in str(raw["architecture"]):
        values["architecture"] = f"{raw['architecture']}/generic"
    if raw.get("timings") is not None and not isinstance(raw["timings"], Mapping):
        raise InventoryError(f"{where}.timings: expected a mapping, got {raw['timings']!r}")
    values["timings"] = dict(raw.get("timings") or {})
    Timings().merged(values["timings"], f"{where}.timings")  # validate early
    try:
        values["disks"] = disk_specs(raw.get("disks"), f"{where}.disks")
        values["interfaces"] = interface_specs(raw.get("interfaces"), f"{where}.interfaces")
    except PartError as exc:
        raise InventoryError(str(exc)) from None
    if values["disks"]:
        if "storage_gb" in raw:
            raise InventoryError(f"{where}: give either storage_gb or disks, not both")
        values["storage_gb"] = sum(d.size_gb for d in values["disks"])
    values["min_hwe_kernel"] = str(raw.get("min_hwe_kernel") or "")
    return MachineSpec(**values)


def _user_spec(raw: Any, index: int) -> UserSpec:
    where = f"users[{index}]"
    if not isinstance(raw, Mapping) or not raw.get("username"):
        raise InventoryError(f"{where}: expected a mapping with a 'username'")
    api_key = str(raw.get("api_key") or generate_api_key())
    if len(api_key.split(":")) != 3:
        raise InventoryError(
            f"{where}.api_key: expected 'consumer_key:token_key:token_secret' (three fields)"
        )
    return UserSpec(
        username=str(raw["username"]),
        api_key=api_key,
        is_superuser=bool(raw.get("is_superuser", False)),
        email=str(raw.get("email") or f"{raw['username']}@example.com"),
    )


def _release_scripts(raw: Any) -> tuple[str, ...]:
    names = _as_tuple(raw, "release_scripts")
    if any(not name.strip() or "," in name for name in names):
        raise InventoryError(
            f"release_scripts: expected a list of script names like 'wipe-ceph-bluestore', "
            f"got {raw!r}"
        )
    return (WIPE_DISKS_SCRIPT, *dict.fromkeys(n for n in names if n != WIPE_DISKS_SCRIPT))


@dataclass(frozen=True)
class Inventory:
    users: tuple[UserSpec, ...]
    machines: tuple[MachineSpec, ...]
    images: tuple[ImageSpec, ...]
    timings: Timings = Timings()
    faults: tuple[Mapping[str, Any], ...] = ()
    config: Mapping[str, Any] = field(default_factory=dict)
    maas_version: str = "3.5.4"
    seed: int | None = None
    # The region's release scripts (MAAS 3.5+). The built-in wipe-disks is always there; a lab
    # adds its own (e.g. wipe-ceph-bluestore) with `maas node-scripts create`.
    release_scripts: tuple[str, ...] = (WIPE_DISKS_SCRIPT,)

    _TOP_KEYS = frozenset(
        {
            "users",
            "machines",
            "images",
            "timings",
            "faults",
            "config",
            "maas_version",
            "seed",
            "release_scripts",
        }
    )

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any] | None) -> Inventory:
        data = data or {}
        if not isinstance(data, Mapping):
            raise InventoryError(f"inventory: expected a mapping at the top level, got {data!r}")
        unknown = set(data) - cls._TOP_KEYS
        if unknown:
            raise InventoryError(
                f"inventory: unknown key(s) {sorted(unknown)}; "
                f"expected some of {sorted(cls._TOP_KEYS)}"
            )
        raw_users = data.get("users") or [
            {"username": name, "is_superuser": su} for name, su in DEFAULT_USERS
        ]
        users = tuple(_user_spec(u, i) for i, u in enumerate(raw_users))
        raw_images = data.get("images")
        if raw_images is None:
            raw_images = [{"name": n, "architecture": a} for n, a in DEFAULT_IMAGES]
        try:
            images = tuple(img for i, raw in enumerate(raw_images) for img in image_specs(raw, i))
        except PartError as exc:
            raise InventoryError(str(exc)) from None
        machines = tuple(_machine_spec(m, i) for i, m in enumerate(data.get("machines") or []))
        timings_raw = data.get("timings") or {}
        if not isinstance(timings_raw, Mapping):
            raise InventoryError(f"timings: expected a mapping, got {timings_raw!r}")
        faults = data.get("faults") or []
        if not isinstance(faults, Sequence) or not all(isinstance(f, Mapping) for f in faults):
            raise InventoryError("faults: expected a list of mappings (see docs/simulator.md)")
        config = data.get("config") or {}
        if not isinstance(config, Mapping):
            raise InventoryError(f"config: expected a mapping, got {config!r}")
        inventory = cls(
            users=users,
            machines=machines,
            images=images,
            timings=Timings().merged(timings_raw, "timings"),
            faults=tuple(dict(f) for f in faults),
            config=dict(config),
            maas_version=str(data.get("maas_version") or "3.5.4"),
            seed=int(data["seed"]) if data.get("seed") is not None else None,
            release_scripts=_release_scripts(data.get("release_scripts")),
        )
        inventory._check_references()
        return inventory

    def _check_references(self) -> None:
        usernames = {u.username for u in self.users}
        seen: set[str] = set()
        for machine in self.machines:
            if machine.hostname in seen:
                raise InventoryError(f"machines: hostname {machine.hostname!r} appears twice")
            seen.add(machine.hostname)
            if machine.owner is not None and machine.owner not in usernames:
                raise InventoryError(
                    f"machines: {machine.hostname} is owned by unknown user {machine.owner!r}; "
                    f"known users: {sorted(usernames)}"
                )

    @classmethod
    def from_yaml(cls, path: str | Path) -> Inventory:
        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise InventoryError(f"cannot read inventory {path}: {exc.strerror}") from exc
        except yaml.YAMLError as exc:
            raise InventoryError(f"inventory {path} is not valid YAML: {exc}") from exc
        return cls.from_mapping(data)

    @classmethod
    def generated(
        cls, n: int, machine_type: str = "smithi", *, extra: Mapping[str, Any] | None = None
    ) -> Inventory:
        """`n` Ready machines named `<machine_type>001...`, tagged and pooled `machine_type`."""
        if n < 0:
            raise InventoryError(f"machine count must be >= 0, got {n}")
        machines = [
            {"hostname": f"{machine_type}{i:03d}", "tags": [machine_type], "pool": machine_type}
            for i in range(1, n + 1)
        ]
        return cls.from_mapping({**(extra or {}), "machines": machines})

    def with_machines(self, *machines: MachineSpec) -> Inventory:
        return replace(self, machines=self.machines + machines)
