"""The `deploy:` part of the `maas:` section: how machines are deployed, per machine type and
per OS. Read and validated here (no network); resolved for one node and checked against MAAS
by `teuthology_maas.node.deploy_options`.

    deploy:
      hwe_kernel: hwe-22.04          # every key optional, at every level
      ephemeral: false               # deploy to memory
      storage: {layout: flat, root_device: sda, root_size: 100G}
      bonds: [{name: bond0, interfaces: [eno1, eno2], mode: 802.3ad}]
      os: {"ubuntu 22.04": {...}, centos: {...}}
      machine_types:
        smithi: {..., os: {...}}

Every failure names the key by its path (`deploy.machine_types.smithi.storage.layout`), shows
the value and says what was expected.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from teuthology_maas import config_values as values

# MAAS's storage layouts this project applies (vmfs6/vmfs7 are for VMware ESXi only).
LAYOUTS = ("flat", "lvm", "bcache", "blank", "custom")
CACHE_MODES = ("writeback", "writethrough", "writearound")
# MAAS's bond modes, in MAAS's order (its own default is the first, balance-rr).
BOND_MODES = (
    "balance-rr",
    "active-backup",
    "balance-xor",
    "broadcast",
    "802.3ad",
    "balance-tlb",
    "balance-alb",
)
DEFAULT_BOND_MODE = "active-backup"
BOND_CHOICE_OPTIONS: Mapping[str, tuple[str, ...]] = {
    "lacp_rate": ("fast", "slow"),
    "xmit_hash_policy": ("layer2", "layer2+3", "layer3+4", "encap2+3", "encap3+4"),
}
BOND_NUMBER_OPTIONS: Mapping[str, tuple[int, int | None]] = {
    "miimon": (0, None),
    "downdelay": (0, None),
    "updelay": (0, None),
    "num_grat_arp": (0, 255),
}
# How a bond gets its address: inherit takes over the link its member interfaces had.
BOND_LINKS = ("inherit", "auto", "dhcp", "link_up")

SETTING_KEYS = ("hwe_kernel", "ephemeral", "storage", "bonds")
SECTION_KEYS = (*SETTING_KEYS, "os", "machine_types")
STORAGE_KEYS = (
    "layout",
    "root_device",
    "root_size",
    "boot_size",
    "vg_name",
    "lv_name",
    "lv_size",
    "cache_device",
    "cache_mode",
    "cache_size",
    "cache_no_part",
)
BOND_KEYS = ("name", "interfaces", "mode", "options", "mtu", "link")
_LAYOUT_ONLY = {
    "vg_name": "lvm",
    "lv_name": "lvm",
    "lv_size": "lvm",
    "cache_device": "bcache",
    "cache_mode": "bcache",
    "cache_size": "bcache",
    "cache_no_part": "bcache",
}
_ROOT_KEYS = ("root_device", "root_size", "boot_size")

_KERNEL = re.compile(r"^(?:[a-z0-9]+-)*(?:ga|hwe)(?:-edge)?-[0-9a-z][0-9a-z.]*(?:-[0-9a-z]+)*$")
_SIZE = re.compile(r"^(?:\d+(?:\.\d*)?%|\d+[KkMmGgTtPpEe]?)$")
_DEVICE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,62}$")
_INTERFACE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,14}$")
_LVM_NAME = re.compile(r"^[A-Za-z0-9+_.-]{1,64}$")


@dataclass(frozen=True)
class StorageLayout:
    """A MAAS storage layout and its parameters; devices by name (`sda`), sizes as MAAS
    reads them (`100G` is 10^11 bytes, `50%`)."""

    layout: str
    root_device: str | None = None
    root_size: str | None = None
    boot_size: str | None = None
    vg_name: str | None = None
    lv_name: str | None = None
    lv_size: str | None = None
    cache_device: str | None = None
    cache_mode: str | None = None
    cache_size: str | None = None
    cache_no_part: bool = False

    def sizes(self) -> dict[str, str]:
        """The size and name parameters as set_storage_layout takes them (devices apart)."""
        names = (
            "root_size",
            "boot_size",
            "vg_name",
            "lv_name",
            "lv_size",
            "cache_mode",
            "cache_size",
        )
        found: dict[str, str] = {n: v for n in names if (v := getattr(self, n)) is not None}
        return found

    def devices(self) -> dict[str, str]:
        """The device parameters by name: root_device and cache_device."""
        return {
            n: v for n in ("root_device", "cache_device") if (v := getattr(self, n)) is not None
        }


@dataclass(frozen=True)
class Bond:
    """A bond of the named interfaces, made before deploy and undone after release."""

    name: str
    interfaces: tuple[str, ...]
    mode: str = DEFAULT_BOND_MODE
    options: tuple[tuple[str, str | int], ...] = ()
    mtu: int | None = None
    link: str = "inherit"


@dataclass(frozen=True)
class DeploySettings:
    """One level of settings; `given` holds the keys this level sets (others inherit)."""

    hwe_kernel: str | None = None
    ephemeral: bool = False
    storage: StorageLayout | None = None
    bonds: tuple[Bond, ...] = ()
    given: frozenset[str] = frozenset()
    where: str = "deploy"  # the key path, for messages


@dataclass(frozen=True)
class TypeSettings:
    settings: DeploySettings
    os: Mapping[str, DeploySettings] = field(default_factory=dict)


@dataclass(frozen=True)
class DeployConfig:
    """The whole `deploy:` section. Empty (the default) changes nothing MAAS would do."""

    defaults: DeploySettings = field(default_factory=DeploySettings)
    os: Mapping[str, DeploySettings] = field(default_factory=dict)
    machine_types: Mapping[str, TypeSettings] = field(default_factory=dict)

    @property
    def configured(self) -> bool:
        return bool(self.defaults.given or self.os or self.machine_types)

    @classmethod
    def parse(cls, value: Any, *, machine_types: Sequence[str]) -> DeployConfig:
        if value is None:
            return cls()
        section = _mapping("deploy", value, "a mapping of deploy settings")
        _known("deploy", section, SECTION_KEYS)
        types: dict[str, TypeSettings] = {}
        raw_types = section.get("machine_types")
        if raw_types is not None:
            raw_types = _mapping("deploy.machine_types", raw_types, "machine type -> settings")
            for name, raw in raw_types.items():
                where = f"deploy.machine_types.{name}"
                if str(name) not in machine_types:
                    known = ", ".join(machine_types) or "none"
                    raise values.fail(
                        where,
                        values.Shown(repr(str(name))),
                        f"one of maas.machine_types ({known})",
                    )
                entry = _mapping(where, raw, "a mapping of deploy settings")
                types[str(name)] = TypeSettings(
                    parse_settings(entry, where, allowed=(*SETTING_KEYS, "os")),
                    _os_levels(entry.get("os"), f"{where}.os"),
                )
        return cls(
            defaults=parse_settings(section, "deploy", allowed=SECTION_KEYS),
            os=_os_levels(section.get("os"), "deploy.os"),
            machine_types=types,
        )


def parse_settings(
    raw: Any, where: str, *, allowed: Sequence[str] = SETTING_KEYS
) -> DeploySettings:
    """One level: the given keys of SETTING_KEYS, validated."""
    entry = _mapping(where, raw, "a mapping of deploy settings")
    _known(where, entry, allowed)
    given = frozenset(k for k in SETTING_KEYS if k in entry)
    kernel = entry.get("hwe_kernel")
    if kernel is not None:
        kernel = _kernel(f"{where}.hwe_kernel", kernel)
    ephemeral = values.boolean(f"{where}.ephemeral", entry.get("ephemeral", False))
    storage = _storage(f"{where}.storage", entry.get("storage"))
    bonds = _bonds(f"{where}.bonds", entry.get("bonds"))
    return DeploySettings(kernel, ephemeral, storage, bonds, given, where)


def _os_levels(raw: Any, where: str) -> dict[str, DeploySettings]:
    if raw is None:
        return {}
    levels = _mapping(where, raw, 'OS -> settings, e.g. {"ubuntu 22.04": {hwe_kernel: ...}}')
    result: dict[str, DeploySettings] = {}
    for key, entry in levels.items():
        parts = str(key).strip().lower().split()
        here = f"{where}['{key}']"
        if len(parts) not in (1, 2):
            raise values.fail(
                here, values.Shown(repr(str(key))), "'<os_type>' or '<os_type> <os_version>'"
            )
        result[" ".join(parts)] = parse_settings(entry, here)
    return result


def _mapping(where: str, value: Any, expected: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise values.fail(where, values.Shown(f"a value of type {type(value).__name__}"), expected)
    return value


def _known(where: str, entry: Mapping[str, Any], allowed: Sequence[str]) -> None:
    unknown = sorted(str(k) for k in entry if k not in allowed)
    if unknown:
        raise values.fail(
            f"{where}.{unknown[0]}", values.Shown("an unknown key"), f"one of {', '.join(allowed)}"
        )


def _kernel(where: str, value: Any) -> str:
    if not isinstance(value, str) or not _KERNEL.match(value.strip()):
        raise values.fail(
            where,
            value,
            "a MAAS kernel name such as ga-22.04, hwe-22.04 or hwe-22.04-lowlatency (MAAS "
            "silently ignores a value without ga or hwe), or null",
        )
    return value.strip()


def _text(where: str, value: Any, pattern: re.Pattern[str], expected: str) -> str:
    if isinstance(value, int | float) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not pattern.match(value.strip()):
        raise values.fail(where, value, expected)
    return value.strip()


def _storage(where: str, value: Any) -> StorageLayout | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = {"layout": value}
    entry = _mapping(where, value, "a layout name or a mapping with a layout")
    _known(where, entry, STORAGE_KEYS)
    layout = entry.get("layout")
    if layout not in LAYOUTS:
        raise values.fail(f"{where}.layout", layout, f"one of {', '.join(LAYOUTS)}")
    for key in entry:
        owner = _LAYOUT_ONLY.get(str(key))
        if owner is not None and owner != layout:
            raise values.fail(
                f"{where}.{key}",
                values.Shown(f"a {key} with layout {layout}"),
                f"{key} only with layout {owner}",
            )
        if key in _ROOT_KEYS and layout in ("blank", "custom"):
            raise values.fail(
                f"{where}.{key}",
                values.Shown(f"a {key} with layout {layout}"),
                "root_device, root_size and boot_size only with flat, lvm or bcache",
            )
    sizes = {}
    for key in ("root_size", "boot_size", "lv_size", "cache_size"):
        if entry.get(key) is not None:
            sizes[key] = _text(
                f"{where}.{key}",
                entry[key],
                _SIZE,
                "a size in bytes with an optional SI suffix (100G = 10^11 bytes) or a percentage",
            )
    devices = {}
    for key in ("root_device", "cache_device"):
        if entry.get(key) is not None:
            devices[key] = _text(f"{where}.{key}", entry[key], _DEVICE, "a disk name such as sda")
    names = {}
    for key in ("vg_name", "lv_name"):
        if entry.get(key) is not None:
            names[key] = _text(f"{where}.{key}", entry[key], _LVM_NAME, "an LVM name")
    mode = entry.get("cache_mode")
    if mode is not None and mode not in CACHE_MODES:
        raise values.fail(f"{where}.cache_mode", mode, f"one of {', '.join(CACHE_MODES)}")
    no_part = values.boolean(f"{where}.cache_no_part", entry.get("cache_no_part", False))
    if no_part and "cache_size" in sizes:
        raise values.fail(
            f"{where}.cache_size", sizes["cache_size"], "no cache_size with cache_no_part"
        )
    return StorageLayout(
        str(layout), cache_mode=mode, cache_no_part=no_part, **devices, **sizes, **names
    )


def _bonds(where: str, value: Any) -> tuple[Bond, ...]:
    if value is None:
        return ()
    if not isinstance(value, Sequence) or isinstance(value, str):
        raise values.fail(where, value, "a list of bonds")
    bonds: list[Bond] = []
    members: dict[str, str] = {}
    for index, raw in enumerate(value):
        here = f"{where}[{index}]"
        bond = _bond(here, raw)
        if any(b.name == bond.name for b in bonds):
            raise values.fail(f"{here}.name", bond.name, "a bond name used once")
        for name in bond.interfaces:
            if name in members:
                raise values.fail(
                    f"{here}.interfaces",
                    name,
                    f"interfaces in one bond only (also in {members[name]})",
                )
            members[name] = bond.name
        bonds.append(bond)
    return tuple(bonds)


def _bond(where: str, raw: Any) -> Bond:
    entry = _mapping(where, raw, "a mapping with name and interfaces")
    _known(where, entry, BOND_KEYS)
    interface_name = "an interface name such as bond0 or eno1 (at most 15 characters)"
    name = _text(f"{where}.name", entry.get("name"), _INTERFACE, interface_name)
    raw_members = entry.get("interfaces")
    if isinstance(raw_members, str) or not isinstance(raw_members, Sequence) or not raw_members:
        raise values.fail(f"{where}.interfaces", raw_members, "a list of interface names")
    members = tuple(
        _text(f"{where}.interfaces", m, _INTERFACE, interface_name) for m in raw_members
    )
    if len(set(members)) != len(members) or name in members:
        raise values.fail(f"{where}.interfaces", list(members), "distinct interfaces, not the bond")
    mode = entry.get("mode", DEFAULT_BOND_MODE)
    if mode not in BOND_MODES:
        raise values.fail(f"{where}.mode", mode, f"one of {', '.join(BOND_MODES)}")
    options = _bond_options(f"{where}.options", entry.get("options"))
    mtu = entry.get("mtu")
    if mtu is not None:
        mtu = values.integer(f"{where}.mtu", mtu, minimum=552)
    link = entry.get("link", "inherit")
    if link not in BOND_LINKS:
        raise values.fail(f"{where}.link", link, f"one of {', '.join(BOND_LINKS)}")
    return Bond(name, members, str(mode), options, mtu, str(link))


def _bond_options(where: str, raw: Any) -> tuple[tuple[str, str | int], ...]:
    if raw is None:
        return ()
    entry = _mapping(where, raw, "a mapping of bond options")
    known = (*BOND_CHOICE_OPTIONS, *BOND_NUMBER_OPTIONS)
    _known(where, entry, known)
    options: list[tuple[str, str | int]] = []
    for key in known:
        if key not in entry:
            continue
        value = entry[key]
        if key in BOND_CHOICE_OPTIONS:
            if value not in BOND_CHOICE_OPTIONS[key]:
                raise values.fail(
                    f"{where}.{key}", value, f"one of {', '.join(BOND_CHOICE_OPTIONS[key])}"
                )
            options.append((key, str(value)))
        else:
            low, high = BOND_NUMBER_OPTIONS[key]
            number = values.integer(f"{where}.{key}", value, minimum=low)
            if high is not None and number > high:
                raise values.fail(f"{where}.{key}", value, f"an integer from {low} to {high}")
            options.append((key, number))
    return tuple(options)
