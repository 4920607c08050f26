"""Kernels as MAAS 3.7 chooses and checks them at deploy time (`get_working_kernel`).

A kernel is named `[platform-](ga|hwe[-edge])-<release>[-flavour][-edge]` (`ga-22.04`,
`hwe-22.04-lowlatency`). The kernels an image offers are the subarchitectures of the boot
resources synced for that `<os>/<release>` and architecture. A requested kernel must be one of
them, must not be older than the release it runs on, and must not be older than the machine's
`min_hwe_kernel`. A value naming neither `ga` nor `hwe` is not a kernel request at all: MAAS
ignores it and picks the first suitable kernel, as it does when none is given.

Kernels compare by (year, month, weight): the weight puts flavoured, platform, HWE and
HWE-edge kernels of one release after its plain GA kernel, so "the first suitable kernel" of
jammy is ga-22.04.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

# Ubuntu releases MAAS knows (codename -> version), as distro-info lists them.
UBUNTU_VERSIONS: dict[str, str] = {
    "trusty": "14.04",
    "xenial": "16.04",
    "bionic": "18.04",
    "focal": "20.04",
    "jammy": "22.04",
    "noble": "24.04",
    "oracular": "24.10",
    "plucky": "25.04",
    "questing": "25.10",
    "resolute": "26.04",
}

_HWE_EDGE = 10_000_000
_HWE = 1_000_000
_PLATFORM = 100_000
_NEW_STYLE = 10_000
_OLD_STYLE_HWE = 1_000
_FLAVOURED = 10


class KernelError(ValueError):
    """The kernel cannot be used; the text is MAAS's form error for `hwe_kernel`."""


@dataclass(frozen=True)
class Kernel:
    channel: str  # "ga", "hwe", "hwe-edge", or "" for a bare platform/subarch name
    release: str
    platform: str
    flavour: str


def is_kernel_request(text: str) -> bool:
    """MAAS only treats values with a `ga` or `hwe` part as a kernel request."""
    parts = text.split("-")
    return "ga" in parts or "hwe" in parts


def parse(text: str) -> Kernel:
    parts = text.split("-")
    channels = [c for c in ("hwe", "ga") if c in parts]
    if len(parts) == 1 or not channels:
        return Kernel("", "", text, "")
    if len(channels) > 1:
        raise KernelError(f"Kernel {text} has multiple channels specified!")
    channel: str = channels[0]
    at = parts.index(channel)
    platform = "-".join(parts[:at])
    rest = parts[at:]
    if channel == "hwe" and len(rest) > 1 and rest[1] == "edge":
        channel, rest = "hwe-edge", rest[1:]
    elif channel == "hwe" and rest[-1] == "edge":
        channel, rest = "hwe-edge", rest[:-1]
    if len(rest) < 2:
        raise KernelError(f"Kernel {text} has no release specified")
    return Kernel(channel, rest[1], platform, "-".join(rest[2:]))


def _release_version(name: str) -> tuple[int, int] | None:
    version = UBUNTU_VERSIONS.get(name) or (name if name in UBUNTU_VERSIONS.values() else None)
    if version is None and len(name) == 1:
        # old-style kernels name a release by its first letter (hwe-x: xenial)
        version = next((v for n, v in UBUNTU_VERSIONS.items() if n.startswith(name)), None)
    if version is None:
        return None
    year, month = version.split(".")
    return int(year), int(month)


def sort_key(text: str) -> tuple[int, int, int]:
    """(year, month, weight) of a release name, release version or kernel."""
    if text == "rolling":
        return (999, 999, 0)
    weight = 0
    parts = text.split("-")
    if len(parts) == 1:
        version = _release_version(text)
        if version is not None:
            return (*version, 0)
        return (0, 0, _NEW_STYLE + (_PLATFORM if text != "generic" else 0))
    kernel = parse(text)
    if kernel.channel == "hwe":
        weight += _HWE if len(kernel.release) > 1 else _OLD_STYLE_HWE
    elif kernel.channel == "hwe-edge":
        weight += _HWE_EDGE
    if kernel.release and not (kernel.channel == "hwe" and len(kernel.release) == 1):
        weight += _NEW_STYLE
    if kernel.flavour and kernel.flavour != "generic":
        weight += _FLAVOURED
    if kernel.platform and kernel.platform != "generic":
        weight += _PLATFORM
    if kernel.release == "rolling":
        return (999, 999, weight)
    version = _release_version(kernel.release) if kernel.release else (0, 0)
    if version is None:
        raise KernelError(f"{text} not found amongst the known Ubuntu releases!")
    return (*version, weight)


def newer_or_same(a: str, b: str) -> bool:
    return sort_key(a) >= sort_key(b)


def ordered(kernels: Iterable[str]) -> list[str]:
    return sorted(set(kernels), key=sort_key)


def working_kernel(
    requested: str | None,
    minimum: str,
    *,
    available: list[str],
    os_release: str,
    architecture: str,
) -> str | None:
    """The kernel a deployment gets, or KernelError with MAAS's message. `available` are the
    kernels of `os_release` (`ubuntu/<series>`; the commissioning release for other OSes) for
    the machine's architecture, in MAAS's order."""
    series = os_release.split("/", 1)[1]
    if requested and is_kernel_request(requested):
        if requested not in available:
            raise KernelError(f"{requested} is not available for {os_release} on {architecture}.")
        if not newer_or_same(requested, series):
            raise KernelError(f"{requested} is too old to use on {os_release}.")
        if minimum and is_kernel_request(minimum) and not newer_or_same(requested, minimum):
            raise KernelError(
                f"chosen kernel ({requested}) is older than minimal kernel required by the "
                f"machine ({minimum})."
            )
        return requested
    if minimum and is_kernel_request(minimum):
        for kernel in available:
            if newer_or_same(kernel, minimum) and newer_or_same(kernel, series):
                return kernel
        raise KernelError(
            f"{series} has no kernels available which meet min_hwe_kernel({minimum})."
        )
    for kernel in available:
        if newer_or_same(kernel, series):
            return kernel
    raise KernelError(f"{series} has no kernels available.")
