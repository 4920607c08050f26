"""Synced boot resources: what can be deployed, and how `distro_series` resolves to an image."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from teuthology_maas.simulator import _kernels
from teuthology_maas.simulator._errors import ApiError, bad_request, form_errors
from teuthology_maas.simulator._kernels import UBUNTU_VERSIONS
from teuthology_maas.simulator.inventory import ImageSpec

_UBUNTU_POINT_RELEASES = {"focal": "20.04.6", "jammy": "22.04.5", "noble": "24.04.3"}
_UBUNTU_NAMES = {"focal": "Focal Fossa", "jammy": "Jammy Jellyfish", "noble": "Noble Numbat"}

_OS_RELEASE_DEFAULTS: dict[str, dict[str, str]] = {
    "centos": {
        "NAME": "CentOS Stream",
        "ID": "centos",
        "ID_LIKE": "rhel fedora",
        "VERSION_ID": "9",
        "VERSION": "9",
        "PRETTY_NAME": "CentOS Stream 9",
    },
    "rocky": {
        "NAME": "Rocky Linux",
        "ID": "rocky",
        "ID_LIKE": "rhel centos fedora",
        "VERSION_ID": "9.7",
        "VERSION": "9.7 (Blue Onyx)",
        "PRETTY_NAME": "Rocky Linux 9.7 (Blue Onyx)",
    },
    "rhel": {
        "NAME": "Red Hat Enterprise Linux",
        "ID": "rhel",
        "ID_LIKE": "fedora",
        "VERSION_ID": "9.4",
        "VERSION": "9.4 (Plow)",
        "PRETTY_NAME": "Red Hat Enterprise Linux 9.4 (Plow)",
    },
}


def os_release_for(image: ImageSpec) -> dict[str, str]:
    """The /etc/os-release a machine deployed with `image` would have."""
    if image.os_release:
        return dict(image.os_release)
    if image.osystem == "ubuntu" and image.release in UBUNTU_VERSIONS:
        version = UBUNTU_VERSIONS[image.release]
        point = _UBUNTU_POINT_RELEASES.get(image.release, version)
        lts = " LTS" if version.endswith(".04") and int(version[:2]) % 2 == 0 else ""
        nickname = _UBUNTU_NAMES.get(image.release, image.release.capitalize())
        return {
            "PRETTY_NAME": f"Ubuntu {point}{lts}",
            "NAME": "Ubuntu",
            "VERSION_ID": version,
            "VERSION": f"{point}{lts} ({nickname})",
            "VERSION_CODENAME": image.release,
            "ID": "ubuntu",
            "ID_LIKE": "debian",
            "UBUNTU_CODENAME": image.release,
        }
    if image.osystem in _OS_RELEASE_DEFAULTS:
        return dict(_OS_RELEASE_DEFAULTS[image.osystem])
    return {"NAME": image.osystem, "ID": image.osystem, "VERSION_ID": image.release}


def format_os_release(values: Mapping[str, str]) -> str:
    lines = []
    for key, value in values.items():
        needs_quotes = key != "ID" or any(c in value for c in " \"'")
        lines.append(f'{key}="{value}"' if needs_quotes else f"{key}={value}")
    return "\n".join(lines) + "\n"


def default_kernels(image: ImageSpec) -> tuple[str, ...]:
    """The kernels an image offers: its inventory `kernels`, else for a known Ubuntu release
    the GA and HWE kernels of that release (what a stock MAAS region syncs)."""
    if image.kernels:
        return image.kernels
    if image.osystem == "ubuntu" and image.release in UBUNTU_VERSIONS:
        version = UBUNTU_VERSIONS[image.release]
        return (f"ga-{version}", f"hwe-{version}")
    return ()


class ImageCatalog:
    """The boot resources of the region (one per name and architecture)."""

    def __init__(self, images: Sequence[ImageSpec]) -> None:
        self.images = list(images)
        # One boot resource per image, and per kernel for Ubuntu images as MAAS lists them.
        self.resources: list[tuple[ImageSpec, str | None]] = [
            (image, kernel)
            for image in self.images
            for kernel in (_listed_kernels(image) or (None,))
        ]

    def releases(self) -> list[tuple[str, str]]:
        return sorted({(i.osystem, i.release) for i in self.images})

    def usable_arches(self) -> set[str]:
        return {i.architecture.split("/", 1)[0] for i in self.images}

    def resolve(self, value: str, *, default_os: str, default_series: str) -> tuple[str, str]:
        """`distro_series` as deploy accepts it -> (osystem, release); 400 if not offered."""
        releases = self.releases()
        text = value.strip()
        if not text:
            return default_os, default_series
        os_part, _, release_part = text.rpartition("/")
        candidates = [r for r in releases if not os_part or r[0] == os_part]
        if not os_part and any(r[0] == text for r in releases):
            # An OS name alone picks its alphabetically last release.
            return max(r for r in releases if r[0] == text)
        for osystem, release in candidates:
            if release == release_part:
                return osystem, release
            if osystem == "ubuntu" and UBUNTU_VERSIONS.get(release) == release_part:
                return osystem, release
        prefixed = [r for r in candidates if r[0] != "ubuntu" and r[1].startswith(release_part)]
        if prefixed:
            return max(prefixed)
        choices = ", ".join(repr(c) for c in ["", *(f"{o}/{r}" for o, r in releases)])
        raise form_errors(
            {
                "distro_series": [
                    f"'{text}' is not a valid distro_series.  It should be one of: {choices}."
                ]
            }
        )

    def find(self, osystem: str, release: str, architecture: str) -> ImageSpec | None:
        name = f"{osystem}/{release}" if osystem != "custom" else release
        arch, _, subarch = architecture.partition("/")
        for image in self.images:
            if image.name != name:
                continue
            res_arch, _, res_sub = image.architecture.partition("/")
            if res_arch != arch:
                continue
            if (
                res_sub in ("generic", subarch or "generic")
                or (subarch or "generic") in image.subarches
            ):
                return image
        return None

    def kernels(self, osystem: str, release: str, architecture: str) -> list[str]:
        """The kernels synced for `<osystem>/<release>` on the machine's architecture (generic
        platform), in MAAS's order."""
        arch = architecture.partition("/")[0]
        return _kernels.ordered(
            kernel
            for image, kernel in self.resources
            if kernel is not None
            and image.osystem == osystem
            and image.release == release
            and image.architecture.partition("/")[0] == arch
            and not _kernels.parse(kernel).platform
        )

    def check_deployable(
        self, osystem: str, release: str, architecture: str, commissioning_series: str
    ) -> ImageSpec:
        image = self.find(osystem, release, architecture)
        arch, _, subarch = architecture.partition("/")
        if image is None:
            raise bad_request(
                f"Deployment operating system {osystem}/{release} is unavailable for "
                f"{arch}/{subarch or 'generic'}."
            )
        if osystem != "ubuntu" and self.find("ubuntu", commissioning_series, architecture) is None:
            raise bad_request(
                f"Ephemeral operating system ubuntu/{commissioning_series} for "
                f"{arch}/{subarch or 'generic'} is unavailable."
            )
        return image

    def resources_json(self, type_filter: str | None) -> list[dict[str, Any]]:
        if type_filter not in (None, "", "all", "synced", "uploaded"):
            raise ApiError(
                400,
                f"'{type_filter}' is not a valid boot resource type. "
                "Available types: ['synced', 'uploaded']",
            )
        if type_filter == "uploaded":
            return []
        return [self.resource_json(i) for i in range(1, len(self.resources) + 1)]

    def resource_json(self, resource_id: int) -> dict[str, Any]:
        image, kernel = self.resources[resource_id - 1]
        arch = image.architecture.partition("/")[0]
        architecture = image.architecture
        subarches = list(image.subarches) or ["generic"]
        if kernel is not None:
            # Ubuntu resources are listed per kernel; each kernel also serves the generic
            # subarchitecture and the kernels before it.
            architecture = f"{arch}/{kernel}"
            offered = _listed_kernels(image)
            subarches = ["generic", *offered[: offered.index(kernel) + 1]]
        title = image.title or os_release_for(image).get("PRETTY_NAME", image.name)
        return {
            "id": resource_id,
            "type": "Synced",
            "name": image.name,
            "architecture": architecture,
            "resource_uri": f"/MAAS/api/2.0/boot-resources/{resource_id}/",
            "last_deployed": None,
            "subarches": ",".join(subarches),
            "title": title,
        }


def _listed_kernels(image: ImageSpec) -> tuple[str, ...]:
    """Kernels get resources of their own only for images of the generic subarchitecture."""
    if image.architecture.partition("/")[2] not in ("", "generic"):
        return ()
    return tuple(_kernels.ordered(default_kernels(image)))
