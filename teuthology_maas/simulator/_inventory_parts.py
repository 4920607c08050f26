"""Parts of an inventory: a machine's disks and network interfaces, and synced images."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

# How an interface starts out linked to the region's subnet (MAAS link modes).
LINK_MODES = ("auto", "dhcp", "static", "link_up")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,14}$")


class PartError(ValueError):
    """An entry is malformed; the message names it, the value and what was expected."""


@dataclass(frozen=True)
class DiskSpec:
    name: str
    size_gb: float
    tags: tuple[str, ...] = ("rotary",)
    model: str = "ST1000NM0055"


@dataclass(frozen=True)
class InterfaceSpec:
    name: str
    mac_address: str | None = None
    link: str = "auto"  # how the interface is linked to the default subnet
    vid: int = 0  # the VLAN it is connected to (0: untagged)


def as_names(value: Any, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return tuple(v for v in value.replace(",", " ").split() if v)
    if isinstance(value, Sequence):
        return tuple(str(v) for v in value)
    raise PartError(f"{where}: expected a list of names, got {value!r}")


def _mapping(raw: Any, where: str, allowed: set[str]) -> Mapping[str, Any]:
    if isinstance(raw, str):
        raw = {"name": raw}
    if not isinstance(raw, Mapping) or not raw.get("name"):
        raise PartError(f"{where}: expected a mapping with a 'name'")
    unknown = set(raw) - allowed
    if unknown:
        raise PartError(f"{where}: unknown key(s) {sorted(unknown)}; expected {sorted(allowed)}")
    if not _NAME.match(str(raw["name"])):
        raise PartError(f"{where}.name: {raw['name']!r} is not a device name like sda or eno1")
    return raw


def disk_specs(raw: Any, where: str) -> tuple[DiskSpec, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, Sequence) or isinstance(raw, str):
        raise PartError(f"{where}: expected a list of disks")
    disks = []
    for index, item in enumerate(raw):
        here = f"{where}[{index}]"
        entry = _mapping(item, here, {"name", "size_gb", "tags", "model"})
        try:
            size = float(entry.get("size_gb", 1000))
        except (TypeError, ValueError):
            raise PartError(
                f"{here}.size_gb: expected a number, got {entry['size_gb']!r}"
            ) from None
        if size <= 0:
            raise PartError(f"{here}.size_gb: must be > 0, got {size:g}")
        tags = entry.get("tags", ["rotary"])
        if isinstance(tags, str):
            tags = tags.replace(",", " ").split()
        disks.append(
            DiskSpec(
                str(entry["name"]),
                size,
                tuple(str(t) for t in tags),
                str(entry.get("model") or "ST1000NM0055"),
            )
        )
    _unique([d.name for d in disks], where)
    return tuple(disks)


def interface_specs(raw: Any, where: str) -> tuple[InterfaceSpec, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, Sequence) or isinstance(raw, str):
        raise PartError(f"{where}: expected a list of interfaces")
    interfaces = []
    for index, item in enumerate(raw):
        here = f"{where}[{index}]"
        entry = _mapping(item, here, {"name", "mac_address", "link", "vid"})
        link = str(entry.get("link") or "auto")
        if link not in LINK_MODES:
            raise PartError(f"{here}.link: {link!r} is not one of {', '.join(LINK_MODES)}")
        try:
            vid = int(entry.get("vid") or 0)
        except (TypeError, ValueError):
            raise PartError(f"{here}.vid: expected a VLAN number, got {entry['vid']!r}") from None
        mac = entry.get("mac_address")
        interfaces.append(
            InterfaceSpec(str(entry["name"]), str(mac).lower() if mac else None, link, vid)
        )
    _unique([i.name for i in interfaces], where)
    return tuple(interfaces)


def _unique(names: list[str], where: str) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise PartError(f"{where}: {name!r} appears twice")
        seen.add(name)


@dataclass(frozen=True)
class ImageSpec:
    name: str  # "<os>/<release>"
    architecture: str  # "<arch>/<subarch>"
    subarches: tuple[str, ...] = ()
    title: str = ""
    os_release: Mapping[str, str] | None = None
    # The kernels synced for this image (Ubuntu: default GA and HWE kernel of the release).
    kernels: tuple[str, ...] = ()

    @property
    def osystem(self) -> str:
        return self.name.split("/", 1)[0] if "/" in self.name else "custom"

    @property
    def release(self) -> str:
        return self.name.split("/", 1)[1] if "/" in self.name else self.name


def image_specs(raw: Any, index: int) -> list[ImageSpec]:
    where = f"images[{index}]"
    if isinstance(raw, str):
        raw = {"name": raw}
    if not isinstance(raw, Mapping) or not raw.get("name"):
        raise PartError(f"{where}: expected a mapping with a 'name' like 'ubuntu/jammy'")
    allowed = {
        "name", "architecture", "architectures", "subarches", "title", "os_release", "kernels",
    }  # fmt: skip
    unknown = set(raw) - allowed
    if unknown:
        raise PartError(f"{where}: unknown key(s) {sorted(unknown)}; expected {sorted(allowed)}")
    arches = as_names(raw.get("architectures"), f"{where}.architectures") or (
        str(raw.get("architecture") or "amd64/generic"),
    )
    os_release = raw.get("os_release")
    if os_release is not None and not isinstance(os_release, Mapping):
        raise PartError(f"{where}.os_release: expected a mapping, got {os_release!r}")
    return [
        ImageSpec(
            name=str(raw["name"]),
            architecture=arch if "/" in arch else f"{arch}/generic",
            subarches=as_names(raw.get("subarches"), f"{where}.subarches"),
            title=str(raw.get("title") or ""),
            os_release={str(k): str(v) for k, v in os_release.items()} if os_release else None,
            kernels=_kernel_names(raw.get("kernels"), f"{where}.kernels"),
        )
        for arch in arches
    ]


def _kernel_names(raw: Any, where: str) -> tuple[str, ...]:
    names = as_names(raw, where)
    for name in names:
        parts = name.split("-")
        if not ({"ga", "hwe"} & set(parts)) or len(parts) < 2:
            raise PartError(
                f"{where}: {name!r} is not a kernel name like ga-22.04 or hwe-22.04-lowlatency"
            )
    return names
