"""A machine's disks and their storage layout, as MAAS 3.7's `set_storage_layout` builds them.

Commissioning leaves the region's default layout (flat) on the boot disk, the first disk; every
other disk stays unconfigured. `set_storage_layout` (admin, Ready machines only) clears the whole
configuration and applies one of MAAS's layouts to the boot disk, or to `root_device`:

    flat    sda1 512M fat32 /boot/efi, sda2 ext4 /
    lvm     sda1 /boot/efi, sda2 LVM PV in vgroot, lvroot ext4 /
    bcache  sda1 /boot/efi, sda2 1G ext4 /boot, sda3 bcache backing; a cache partition on the
            cache device (an SSD); bcache0 ext4 /
    blank   nothing at all (MAAS then refuses to deploy Ubuntu, CentOS and RHEL)
    custom  from commissioning's storage-extra data, which the simulator never has

Parameters are checked like MAAS's layout forms: sizes are bytes with an optional SI suffix
(`100G` is 10^11 bytes) or a percentage, devices are given by block-device id.
"""

from __future__ import annotations

import math
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

from teuthology_maas.simulator._errors import bad_request, form_errors
from teuthology_maas.simulator._inventory_parts import DiskSpec

API = "/MAAS/api/2.0/"
EFI_SIZE = 512 * 1024**2
MIN_BOOT_SIZE = 512 * 1024**2
MIN_ROOT_SIZE = 3 * 1024**3
MIN_CACHE_SIZE = 4 * 1024**2
BCACHE_BOOT_SIZE = 1024**3
LAYOUTS = ("bcache", "blank", "custom", "flat", "lvm", "vmfs6", "vmfs7")
CACHE_MODES = ("writeback", "writethrough", "writearound")
_SIZE = re.compile(r"^(\d+(\.\d*)?%|-?[0-9]+[KkMmGgTtPpEe]?)$")
_SI = {"k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12, "p": 10**15, "e": 10**18}
_STORAGE_CHECKED_OSES = ("ubuntu", "centos", "rhel")


@dataclass
class Filesystem:
    fstype: str
    label: str = ""
    mount_point: str | None = None
    uuid: str = field(default_factory=lambda: str(uuid.uuid4()))

    def json(self) -> dict[str, Any]:
        return {
            "fstype": self.fstype,
            "label": self.label,
            "uuid": self.uuid,
            "mount_point": self.mount_point,
            "mount_options": None,
        }


@dataclass
class Partition:
    id: int
    size: int
    bootable: bool = False
    filesystem: Filesystem | None = None


@dataclass
class Disk:
    id: int
    name: str
    size: int
    tags: list[str]
    model: str
    serial: str
    partitions: list[Partition] = field(default_factory=list)
    filesystem: Filesystem | None = None  # a whole-disk use (bcache cache without partition)


@dataclass
class Virtual:
    """A logical volume or a bcache device, with the filesystem on it."""

    id: int
    name: str
    kind: str  # "lvm" or "bcache"
    size: int
    group_id: int
    filesystem: Filesystem | None = None


@dataclass
class Storage:
    """The block devices of one machine and the layout last applied to them."""

    index: int
    disks: list[Disk]
    layout: str = "flat"
    virtual: list[Virtual] = field(default_factory=list)
    volume_groups: list[int] = field(default_factory=list)
    bcaches: list[int] = field(default_factory=list)
    cache_sets: list[int] = field(default_factory=list)
    _next: int = 0

    @classmethod
    def commissioned(cls, index: int, specs: tuple[DiskSpec, ...], storage_gb: float) -> Storage:
        specs = specs or (DiskSpec("sda", storage_gb),)
        disks = [
            Disk(
                id=index * 1000 + n,
                name=spec.name,
                size=int(spec.size_gb * 1_000_000_000),
                tags=list(spec.tags),
                model=spec.model,
                serial=f"ZBS{index:05d}{n:02d}",
            )
            for n, spec in enumerate(specs, start=1)
        ]
        storage = cls(index, disks, _next=index * 1000 + 500)
        storage._flat(storage.boot_disk, {})
        return storage

    @property
    def boot_disk(self) -> Disk:
        return self.disks[0]

    def _id(self) -> int:
        self._next += 1
        return self._next

    # -- set_storage_layout -------------------------------------------------------------------

    def apply(self, layout: str | None, params: dict[str, str]) -> None:
        """Validate and apply a layout the way `set_storage_layout` does (400 on errors)."""
        if not layout:
            raise form_errors({"storage_layout": ["This field is required."]})
        if layout not in LAYOUTS:
            choices = ", ".join(f"'{name}'" for name in LAYOUTS)
            raise form_errors(
                {
                    "storage_layout": [
                        f"'{layout}' is not a valid storage_layout.  It should be one of: "
                        f"{choices}."
                    ]
                }
            )
        if layout in ("vmfs6", "vmfs7"):
            raise bad_request(f"The MAAS simulator does not model the {layout} storage layout.")
        cleaned = self._clean(layout, params)
        if layout == "custom":
            raise bad_request(
                "Failed to configure storage layout 'custom': No custom storage layout "
                "configuration found"
            )
        cache = None
        if layout == "bcache":
            cache = self._cache_device(cleaned)
            if cache is None:
                raise bad_request(
                    "Failed to configure storage layout 'bcache': Node doesn't have an "
                    "available cache device to setup bcache."
                )
        self._clear()
        root_disk = self._root_disk(cleaned)
        if layout == "flat":
            self._flat(root_disk, cleaned)
        elif layout == "lvm":
            self._lvm(root_disk, cleaned)
        elif layout == "bcache" and cache is not None:
            self._bcache(root_disk, cache, cleaned)
        self.layout = layout

    def _clean(self, layout: str, params: dict[str, str]) -> dict[str, Any]:
        errors: dict[str, list[str]] = {}
        cleaned: dict[str, Any] = {}
        boot = self.boot_disk
        limits = {
            "boot_size": (MIN_BOOT_SIZE, boot.size - EFI_SIZE - MIN_ROOT_SIZE),
            "root_size": (MIN_ROOT_SIZE, boot.size - EFI_SIZE - MIN_BOOT_SIZE),
        }
        for name, (low, high) in limits.items():
            size = self._size(name, params.get(name), boot.size - EFI_SIZE, errors)
            if size is None:
                continue
            if size < low:
                errors.setdefault(name, []).append(f"Size is too small. Minimum size is {low}.")
            elif size > high:
                errors.setdefault(name, []).append(f"Size is too large. Maximum size is {high}.")
            cleaned[name] = size
        ids = [str(d.id) for d in self.disks]
        self._choice("root_device", params.get("root_device"), ids, errors, cleaned)
        if layout == "lvm":
            for name in ("vg_name", "lv_name"):
                if params.get(name):
                    cleaned[name] = params[name]
        if layout == "bcache":
            others = [str(d.id) for d in self.disks[1:]]
            self._choice("cache_device", params.get("cache_device"), others, errors, cleaned)
            mode = params.get("cache_mode")
            if mode and mode not in CACHE_MODES:
                errors.setdefault("cache_mode", []).append(
                    f"Select a valid choice. {mode} is not one of the available choices."
                )
            elif mode:
                cleaned["cache_mode"] = mode
            cleaned["cache_no_part"] = _django_bool(params.get("cache_no_part"))
        if errors:
            raise form_errors(errors)
        root_size = cleaned.get("root_size")
        if root_size is not None and EFI_SIZE + cleaned.get("boot_size", 0) + root_size > boot.size:
            raise form_errors(
                {
                    "__all__": [
                        "Size of the boot partition and root partition are larger than the "
                        "available space on the boot disk."
                    ]
                }
            )
        if layout == "lvm":
            self._clean_lv_size(params.get("lv_size"), cleaned)
        if layout == "bcache":
            self._clean_cache_size(params.get("cache_size"), cleaned)
        return cleaned

    @staticmethod
    def _size(name: str, value: str | None, whole: int, errors: dict[str, list[str]]) -> int | None:
        if value is None or value == "":
            return None
        if not _SIZE.match(value):
            errors.setdefault(name, []).append("Enter a valid value.")
            return None
        if value.endswith("%"):
            return math.ceil(whole * float(value[:-1]) / 100)
        suffix = value[-1].lower()
        return int(value[:-1]) * _SI[suffix] if suffix in _SI else int(value)

    @staticmethod
    def _choice(
        name: str,
        value: str | None,
        choices: list[str],
        errors: dict[str, list[str]],
        cleaned: dict[str, Any],
    ) -> None:
        if not value:
            return
        if value not in choices:
            listed = ", ".join(f"'{c}'" for c in choices)
            errors.setdefault(name, []).append(
                f"'{value}' is not a valid {name}.  It should be one of: {listed}."
            )
        else:
            cleaned[name] = int(value)

    def _clean_lv_size(self, value: str | None, cleaned: dict[str, Any]) -> None:
        root_size = cleaned.get("root_size") or (
            self.boot_disk.size - EFI_SIZE - cleaned.get("boot_size", 0)
        )
        errors: dict[str, list[str]] = {}
        size = self._size("lv_size", value, root_size, errors)
        if size is not None:
            if size < MIN_ROOT_SIZE:
                errors["lv_size"] = [f"Size is too small. Minimum size is {MIN_ROOT_SIZE}."]
            elif size > root_size:
                errors["lv_size"] = [f"Size is too large. Maximum size is {root_size}."]
            cleaned["lv_size"] = size
        if errors:
            raise form_errors(errors)

    def _clean_cache_size(self, value: str | None, cleaned: dict[str, Any]) -> None:
        cache = self._cache_device(cleaned)
        if value and cleaned["cache_no_part"]:
            text = "Cannot use cache_size and cache_no_part at the same time."
            raise form_errors({"cache_size": [text], "cache_no_part": [text]})
        if not value or cache is None:
            return
        errors: dict[str, list[str]] = {}
        size = self._size("cache_size", value, cache.size, errors)
        if size is not None:
            if size < MIN_CACHE_SIZE:
                errors["cache_size"] = [f"Size is too small. Minimum size is {MIN_CACHE_SIZE}."]
            elif size > cache.size:
                errors["cache_size"] = [f"Size is too large. Maximum size is {cache.size}."]
            cleaned["cache_size"] = size
        if errors:
            raise form_errors(errors)

    def _cache_device(self, cleaned: dict[str, Any]) -> Disk | None:
        if "cache_device" in cleaned:
            return next(d for d in self.disks if d.id == cleaned["cache_device"])
        # MAAS picks the smallest other disk tagged ssd.
        ssds = sorted((d for d in self.disks[1:] if "ssd" in d.tags), key=lambda d: d.size)
        return ssds[0] if ssds else None

    def _root_disk(self, cleaned: dict[str, Any]) -> Disk:
        wanted = cleaned.get("root_device")
        return next((d for d in self.disks if d.id == wanted), self.boot_disk)

    # -- building layouts ---------------------------------------------------------------------

    def _clear(self) -> None:
        for disk in self.disks:
            disk.partitions.clear()
            disk.filesystem = None
        self.virtual.clear()
        self.volume_groups.clear()
        self.bcaches.clear()
        self.cache_sets.clear()

    def _partition(
        self, disk: Disk, size: int | None, fs: Filesystem | None, boot: bool = False
    ) -> Partition:
        used = sum(p.size for p in disk.partitions)
        part = Partition(self._id(), size if size is not None else disk.size - used, boot, fs)
        disk.partitions.append(part)
        return part

    def _basic(self, root_disk: Disk, cleaned: dict[str, Any], boot_size: int = 0) -> Disk:
        """EFI (and /boot) partitions on the boot disk; returns where the root partition goes."""
        boot = self.boot_disk
        self._partition(boot, EFI_SIZE, Filesystem("fat32", "efi", "/boot/efi"), boot=True)
        size = boot_size or cleaned.get("boot_size", 0)
        if size:
            self._partition(boot, size, Filesystem("ext4", "boot", "/boot"), boot=True)
        return root_disk

    def _flat(self, root_disk: Disk, cleaned: dict[str, Any]) -> None:
        disk = self._basic(root_disk, cleaned)
        self._partition(disk, cleaned.get("root_size"), Filesystem("ext4", "root", "/"))
        self.layout = "flat"

    def _lvm(self, root_disk: Disk, cleaned: dict[str, Any]) -> None:
        disk = self._basic(root_disk, cleaned)
        pv = self._partition(disk, cleaned.get("root_size"), Filesystem("lvm-pv"))
        group = self._id()
        self.volume_groups.append(group)
        lv = Virtual(
            self._id(),
            f"{cleaned.get('vg_name') or 'vgroot'}-{cleaned.get('lv_name') or 'lvroot'}",
            "lvm",
            cleaned.get("lv_size") or pv.size,
            group,
            Filesystem("ext4", "root", "/"),
        )
        self.virtual.append(lv)

    def _bcache(self, root_disk: Disk, cache: Disk, cleaned: dict[str, Any]) -> None:
        disk = self._basic(
            root_disk, cleaned, boot_size=cleaned.get("boot_size") or BCACHE_BOOT_SIZE
        )
        backing = self._partition(disk, cleaned.get("root_size"), Filesystem("bcache-backing"))
        if cleaned["cache_no_part"]:
            cache.filesystem = Filesystem("bcache-cache")
        else:
            self._partition(cache, cleaned.get("cache_size"), Filesystem("bcache-cache"))
        cache_set, group = self._id(), self._id()
        self.cache_sets.append(cache_set)
        self.bcaches.append(group)
        mode = cleaned.get("cache_mode") or "writethrough"
        self.virtual.append(
            Virtual(self._id(), "bcache0", f"bcache-{mode}", backing.size, group,
                    Filesystem("ext4", "root", "/"))
        )  # fmt: skip

    # -- deployment checks and rendering ------------------------------------------------------

    def deploy_issues(self, osystem: str) -> list[str]:
        """MAAS's storage_layout_issues for a disk deployment of `osystem`."""
        if osystem not in _STORAGE_CHECKED_OSES:
            return []
        filesystems = [p.filesystem for d in self.disks for p in d.partitions]
        filesystems += [v.filesystem for v in self.virtual]
        if not any(fs is not None and fs.mount_point == "/" for fs in filesystems):
            return ["Mount the root '/' filesystem to be able to deploy this node."]
        if osystem in ("centos", "rhel") and self.bcaches:
            return [
                "This node cannot be deployed because the selected deployment OS, "
                f"{osystem}, does not support Bcache."
            ]
        return []

    def total_mb(self) -> float:
        return sum(d.size for d in self.disks) / 1_000_000


def _django_bool(value: str | None) -> bool:
    return value is not None and value != "" and value.strip().lower() != "false"


def layout_params(form_items: list[tuple[str, str]]) -> dict[str, str]:
    """The layout form's data: the last value of each field (Django QueryDict.get)."""
    return {name: value for name, value in form_items}


__all__ = ["LAYOUTS", "Storage", "layout_params"]
