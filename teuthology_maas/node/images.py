"""Map a teuthology os_type/os_version onto a MAAS boot image, and check MAAS has it synced.

MAAS names images `<osystem>/<release>` (`ubuntu/jammy`, `centos/centos9-stream`, `rocky/9`,
`rhel/9`); an uploaded image named without a slash is osystem `custom`. Labs add their own
images through the config's `image_map`, which wins over the built-in table so a lab can also
redirect a stock name (say, ubuntu 22.04) to an image of its own.

After the deployment, the same naming decides whether the node runs what was asked: its
/etc/os-release against os_type/os_version (`os_matches`, `os_mismatch`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from teuthology_maas.errors import ConfigError, ImageNotAvailable
from teuthology_maas.models import BootResource, Machine
from teuthology_maas.suggest import STRICT, did_you_mean

__all__ = [
    "UBUNTU_RELEASES",
    "ImageSpec",
    "canonical_version",
    "ensure_available",
    "known_images",
    "known_os_types",
    "known_versions",
    "os_matches",
    "os_mismatch",
    "resolve",
]

# Every Ubuntu release MAAS has published images for since 16.04: version -> codename.
UBUNTU_RELEASES: dict[str, str] = {
    "16.04": "xenial",
    "16.10": "yakkety",
    "17.04": "zesty",
    "17.10": "artful",
    "18.04": "bionic",
    "18.10": "cosmic",
    "19.04": "disco",
    "19.10": "eoan",
    "20.04": "focal",
    "20.10": "groovy",
    "21.04": "hirsute",
    "21.10": "impish",
    "22.04": "jammy",
    "22.10": "kinetic",
    "23.04": "lunar",
    "23.10": "mantic",
    "24.04": "noble",
    "24.10": "oracular",
    "25.04": "plucky",
    "25.10": "questing",
    "26.04": "resolute",
}
_UBUNTU_VERSION_OF: dict[str, str] = {name: version for version, name in UBUNTU_RELEASES.items()}

# Major versions MAAS publishes (or documents custom builds of) per RHEL-family OS.
_CENTOS_STREAMS = ("8", "9", "10")
_ROCKY_MAJORS = ("8", "9", "10")
_RHEL_MAJORS = ("7", "8", "9", "10")

# Boot resources that are bootloaders, not deployable operating systems.
_BOOTLOADER_OSES = frozenset(
    {"grub-efi-signed", "grub-efi", "grub-ieee1275", "pxelinux", "uboot", "open-firmware"}
)


class BootResourceSource(Protocol):
    """What ensure_available needs of a MAAS client."""

    def boot_resources(self) -> list[BootResource]: ...


@dataclass(frozen=True)
class ImageSpec:
    """The MAAS image a deployment asks for. `distro_series` is `osystem/release`, the form
    MAAS's deploy accepts (filled in when not given)."""

    osystem: str
    release: str
    distro_series: str = ""
    title: str = ""

    def __post_init__(self) -> None:
        if not self.distro_series:
            object.__setattr__(self, "distro_series", f"{self.osystem}/{self.release}")

    @property
    def resource_names(self) -> tuple[str, ...]:
        """Names the matching boot resource may carry (custom uploads may omit `custom/`)."""
        if self.osystem == "custom":
            return (self.release, self.distro_series)
        return (self.distro_series,)

    def __str__(self) -> str:
        return self.distro_series


def _normalise(text: object) -> str:
    return str(text).strip().lower()


def _major(version: str) -> str:
    return version.split(".", 1)[0]


def _strip_stream(version: str) -> str:
    """`9.stream`, `9-stream`, `stream9`, `stream-9` -> `9`; anything else unchanged."""
    match = re.fullmatch(r"(?:stream[-.]?)?(\d+)(?:[-.]?stream)?", version)
    return match.group(1) if match else version


def canonical_version(os_type: str, os_version: str) -> str:
    """The version as teuthology spells it: `jammy` -> `22.04`, `9` -> `9.stream` for centos,
    `9.4` -> `9` for rocky/rhel. Unknown combinations come back normalised but unchanged."""
    os_type, os_version = _normalise(os_type), _normalise(os_version)
    if os_type == "ubuntu":
        return _UBUNTU_VERSION_OF.get(os_version, os_version)
    if os_type == "centos":
        major = _strip_stream(os_version)
        return f"{major}.stream" if major in _CENTOS_STREAMS else os_version
    if os_type in ("rocky", "rhel"):
        return _major(os_version)
    return os_version


def _builtin(os_type: str, os_version: str) -> ImageSpec | None:
    if os_type == "ubuntu":
        version = _UBUNTU_VERSION_OF.get(os_version, os_version)
        codename = UBUNTU_RELEASES.get(version)
        if codename is None:
            return None
        lts = " LTS" if version.endswith(".04") and int(version[:2]) % 2 == 0 else ""
        return ImageSpec("ubuntu", codename, title=f"Ubuntu {version}{lts} ({codename})")
    if os_type == "centos":
        major = _strip_stream(os_version)
        if major in _CENTOS_STREAMS:
            return ImageSpec("centos", f"centos{major}-stream", title=f"CentOS Stream {major}")
        return None
    if os_type == "rocky" and _major(os_version) in _ROCKY_MAJORS:
        major = _major(os_version)
        return ImageSpec("rocky", major, title=f"Rocky Linux {major}")
    if os_type == "rhel" and _major(os_version) in _RHEL_MAJORS:
        major = _major(os_version)
        return ImageSpec("rhel", major, title=f"Red Hat Enterprise Linux {major}")
    return None


def _spec_from_name(name: object, *, where: str, title: str) -> ImageSpec:
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(
            f"maas.image_map[{where}] must be a MAAS image name such as 'ubuntu/jammy' or "
            f"'custom/myimage', got {name!r}",
            key="image_map",
        )
    name = name.strip()
    osystem, sep, release = name.partition("/")
    if not sep:
        # MAAS treats a boot resource named without a slash as a custom image.
        osystem, release = "custom", name
    if not osystem or not release or "/" in release:
        raise ConfigError(
            f"maas.image_map[{where}] = {name!r} is not '<os>/<release>' or '<custom name>'",
            key="image_map",
        )
    return ImageSpec(osystem, release, title=title)


def _from_image_map(
    os_type: str, os_version: str, image_map: Mapping[str, Any] | None
) -> ImageSpec | None:
    if not image_map:
        return None
    if not isinstance(image_map, Mapping):
        raise ConfigError(
            f"maas.image_map must be a mapping, got {type(image_map).__name__}", key="image_map"
        )
    versions = {os_version, canonical_version(os_type, os_version)}
    title = f"{os_type} {os_version} (from maas.image_map)"
    any_version: ImageSpec | None = None
    for key, value in image_map.items():
        parts = _normalise(key).split()
        if len(parts) not in (1, 2):
            raise ConfigError(
                f"maas.image_map key {key!r} must be '<os_type> <os_version>' or '<os_type>'",
                key="image_map",
            )
        if parts[0] != os_type:
            continue
        if isinstance(value, Mapping):
            for version, name in value.items():
                if _normalise(version) in versions:
                    return _spec_from_name(name, where=f"{key!r}][{version!r}", title=title)
        elif len(parts) == 2:
            if parts[1] in versions:
                return _spec_from_name(value, where=repr(key), title=title)
        else:
            # '<os_type>': '<image>' serves every version of an OS the lab has one image of.
            any_version = _spec_from_name(value, where=repr(key), title=title)
    return any_version


def known_images(image_map: Mapping[str, Any] | None = None) -> list[str]:
    """Human-readable list of every os_type/os_version resolve() accepts."""
    known = [
        f"ubuntu {', '.join(UBUNTU_RELEASES)} (or the codename)",
        f"centos {', '.join(f'{m}.stream' for m in _CENTOS_STREAMS)}",
        f"rocky {', '.join(_ROCKY_MAJORS)} (any minor)",
        f"rhel {', '.join(_RHEL_MAJORS)} (any minor)",
    ]
    for key, value in (image_map or {}).items():
        if isinstance(value, Mapping):
            known.extend(f"{key} {version} (image_map)" for version in value)
        elif len(str(key).split()) == 1:
            known.append(f"{key} any version (image_map)")
        else:
            known.append(f"{key} (image_map)")
    return known


def resolve(os_type: str, os_version: str, image_map: Mapping[str, Any] | None = None) -> ImageSpec:
    """The MAAS image for a teuthology os_type/os_version; `image_map` entries win.

    Raises ImageNotAvailable (whose `available` lists what is known) for an OS or version no
    table maps, and ConfigError for a malformed image_map.
    """
    wanted_type, wanted_version = _normalise(os_type), _normalise(os_version)
    spec = _from_image_map(wanted_type, wanted_version, image_map) or _builtin(
        wanted_type, wanted_version
    )
    if spec is not None:
        return spec
    known = known_images(image_map)
    typo = _nearest_known(wanted_type, wanted_version, image_map)
    advice = (
        f"Map other images with maas.image_map, e.g. '{wanted_type} {wanted_version}': "
        "'<os>/<release>'"
    )
    raise ImageNotAvailable(
        f"no MAAS image is known for os_type {os_type!r} os_version {os_version!r}"
        + (f" ({typo})" if typo else "")
        + f"; known: {'; '.join(known)}."
        + ("" if typo.startswith("unknown os_type") else f" {advice}"),
        available=known,
    )


def known_versions(os_type: str, image_map: Mapping[str, Any] | None = None) -> list[str]:
    """The versions resolve() accepts for `os_type` (empty for an OS it does not know)."""
    versions: list[str] = {
        "ubuntu": [*UBUNTU_RELEASES, *UBUNTU_RELEASES.values()],
        "centos": [f"{m}.stream" for m in _CENTOS_STREAMS],
        "rocky": list(_ROCKY_MAJORS),
        "rhel": list(_RHEL_MAJORS),
    }.get(os_type, [])
    for key, value in (image_map or {}).items():
        parts = _normalise(key).split()
        if not parts or parts[0] != os_type:
            continue
        if isinstance(value, Mapping):
            versions.extend(str(version) for version in value)
        elif len(parts) == 2:
            versions.append(parts[1])
    return versions


def known_os_types(image_map: Mapping[str, Any] | None = None) -> list[str]:
    types = ["ubuntu", "centos", "rocky", "rhel"]
    for key in image_map or {}:
        parts = _normalise(key).split()
        if parts and parts[0] not in types:
            types.append(parts[0])
    return types


def _nearest_known(os_type: str, os_version: str, image_map: Mapping[str, Any] | None) -> str:
    """What is probably a typo in an OS nobody maps: the nearest os_type, or the nearest
    versions of a known os_type; "" when nothing is close."""
    types = known_os_types(image_map)
    if os_type not in types:
        hint = did_you_mean(os_type, types, cutoff=STRICT)
        return f"unknown os_type {os_type!r}; {hint}" if hint else ""
    hint = did_you_mean(os_version, known_versions(os_type, image_map))
    return f"unknown {os_type} version {os_version!r}; {hint}" if hint else ""


def _deployable(resources: Iterable[BootResource], architecture: str) -> list[BootResource]:
    return [
        resource
        for resource in resources
        if resource.name.partition("/")[0] not in _BOOTLOADER_OSES
        and (not architecture or resource.serves(architecture))
    ]


def ensure_available(client: BootResourceSource, spec: ImageSpec, machine: Machine) -> None:
    """Raise ImageNotAvailable unless MAAS has `spec` synced for the machine's architecture.

    The message lists the images synced for that architecture, and where else the wanted image
    is synced, so the operator sees at once whether to import it or pick another OS.
    """
    resources = client.boot_resources()
    wanted = set(spec.resource_names)
    usable = _deployable(resources, machine.architecture)
    if any(resource.name in wanted for resource in usable):
        return
    available = sorted({resource.name for resource in usable})
    elsewhere = sorted({resource.architecture for resource in resources if resource.name in wanted})
    architecture = machine.architecture or "any architecture"
    message = (
        f"image {spec.distro_series}"
        + (f" ({spec.title})" if spec.title else "")
        + f" is not synced in MAAS for {machine.describe()} ({architecture}); "
        + f"synced for {architecture}: {', '.join(available) if available else 'nothing'}"
    )
    if elsewhere:
        message += f"; {spec.distro_series} is synced only for {', '.join(elsewhere)}"
    message += ". Import the image in MAAS (Images) or choose another os_type/os_version."
    raise ImageNotAvailable(
        message,
        available=available,
        **machine.error_fields(),
    )


# -- what a deployed node says it runs (its /etc/os-release) ------------------------------------


def _version_parts(os_type: str, version: str) -> list[str]:
    version = canonical_version(os_type, version) if os_type == "ubuntu" else version
    version = version.strip().lower().removesuffix(".stream").removesuffix("-stream")
    return [part for part in version.split(".") if part]


def os_matches(os_release: Mapping[str, str], os_type: str, os_version: str) -> bool:
    """Does the node run what was asked? The ID must equal os_type; the requested version may
    be less precise than VERSION_ID ("9" matches "9.4", centos "9.stream" matches "9") and an
    Ubuntu codename is as good as its number."""
    wanted_type = os_type.strip().lower()
    found_id = os_release.get("ID", "").strip().lower()
    if found_id != wanted_type and found_id.split("-", 1)[0] != wanted_type:
        return False
    wanted = _version_parts(wanted_type, os_version)
    if not wanted:
        return True
    codename = os_release.get("VERSION_CODENAME", "").strip().lower()
    if wanted_type == "ubuntu" and codename and UBUNTU_RELEASES.get(".".join(wanted)) == codename:
        return True
    found = _version_parts(wanted_type, os_release.get("VERSION_ID", ""))
    return found[: len(wanted)] == wanted


def os_mismatch(os_release: dict[str, str], os_type: str, os_version: str) -> str | None:
    """None when the node runs the requested OS, else what it runs instead."""
    if os_matches(os_release, os_type, os_version):
        return None
    found = f"{os_release.get('ID', '?')} {os_release.get('VERSION_ID', '?')}"
    return (
        f"runs {found} according to /etc/os-release over SSH, not the requested "
        f"{os_type} {os_version}"
    )
