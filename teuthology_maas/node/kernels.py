"""Which kernels MAAS offers for an image, and whether a requested kernel will be accepted.

MAAS lists a synced Ubuntu image once per kernel: `ubuntu/jammy` as `amd64/ga-22.04`,
`amd64/hwe-22.04` ... The kernels of an image on an architecture are the subarchitectures of
those resources that name a `ga` or `hwe` channel. At deploy time MAAS refuses a kernel the
image does not offer, one older than the release, and one older than the machine's
`min_hwe_kernel`; a kernel for another OS is checked against the commissioning Ubuntu release,
whose kernel boots the installer.
"""

from __future__ import annotations

from collections.abc import Iterable

from teuthology_maas.models import BootResource
from teuthology_maas.node.images import UBUNTU_RELEASES

_VERSION_OF = {codename: version for version, codename in UBUNTU_RELEASES.items()}
_CHANNEL_RANK = {"ga": 0, "hwe": 1, "hwe-edge": 2}


def _channel(parts: list[str]) -> tuple[str, int] | None:
    """The channel and the index of the release part, or None for a non-kernel subarch."""
    for index, part in enumerate(parts):
        if part in ("ga", "hwe"):
            if part == "hwe" and index + 1 < len(parts) and parts[index + 1] == "edge":
                return "hwe-edge", index + 2
            channel = "hwe-edge" if part == "hwe" and parts[-1] == "edge" else part
            return channel, index + 1
    return None


def is_kernel(name: str) -> bool:
    parts = name.split("-")
    found = _channel(parts)
    return found is not None and found[1] < len(parts)


def platform_of(name: str) -> str:
    """`nvidia` for `nvidia-ga-22.04`; empty for generic kernels."""
    parts = name.split("-")
    for index, part in enumerate(parts):
        if part in ("ga", "hwe"):
            return "-".join(parts[:index])
    return ""


def _release_version(release: str) -> tuple[int, int] | None:
    version = _VERSION_OF.get(release, release)
    if release == "rolling":
        return (999, 999)
    try:
        year, month = version.split(".")
        return int(year), int(month)
    except ValueError:
        return None


def release_key(release: str) -> tuple[int, int] | None:
    """(year, month) of an Ubuntu codename or version; None when unknown."""
    return _release_version(release)


def kernel_key(name: str) -> tuple[int, int, int, int] | None:
    """How MAAS orders kernels: by release, then GA < HWE < HWE edge, then flavoured after
    plain. None for a name this cannot place (MAAS itself decides then)."""
    parts = name.split("-")
    found = _channel(parts)
    if found is None or found[1] >= len(parts):
        return None
    channel, at = found
    version = _release_version(parts[at])
    if version is None:
        return None
    rest = [p for p in parts[at + 1 :] if p != "edge"]
    flavoured = 1 if rest and rest != ["generic"] else 0
    return (*version, _CHANNEL_RANK[channel], flavoured)


def offered(resources: Iterable[BootResource], image: str, arch: str) -> list[str]:
    """The generic-platform kernels MAAS has synced for `image` (`ubuntu/jammy`) on `arch`
    (`amd64`), in MAAS's order."""
    kernels = {
        resource.architecture.partition("/")[2]
        for resource in resources
        if resource.name == image and resource.arch == arch
    }
    usable = [k for k in kernels if is_kernel(k) and not platform_of(k)]
    return sorted(usable, key=lambda k: (kernel_key(k) or (0, 0, 0, 0), k))


def refusal(
    kernel: str,
    *,
    offered_kernels: list[str],
    image: str,
    series: str,
    architecture: str,
    minimum: str = "",
) -> str | None:
    """Why MAAS would refuse `kernel` for `image` (`ubuntu/<series>`) on `architecture`, in
    its own words; None when it would accept it."""
    if kernel not in offered_kernels:
        return f"{kernel} is not available for {image} on {architecture}."
    key, release = kernel_key(kernel), release_key(series)
    if key is not None and release is not None and key[:2] < release:
        return f"{kernel} is too old to use on {image}."
    lowest = kernel_key(minimum) if minimum and is_kernel(minimum) else None
    if key is not None and lowest is not None and key < lowest:
        return (
            f"chosen kernel ({kernel}) is older than minimal kernel required by the machine "
            f"({minimum})."
        )
    return None
