"""images: teuthology os_type/os_version -> MAAS image names, and the synced-image check."""

from __future__ import annotations

import pytest

from teuthology_maas.errors import ConfigError, ImageNotAvailable
from teuthology_maas.models import BootResource, Machine
from teuthology_maas.node import images
from teuthology_maas.node.images import ImageSpec, ensure_available, resolve

# Written out independently of the module's table, so a typo on either side fails.
UBUNTU = [
    ("16.04", "xenial"),
    ("16.10", "yakkety"),
    ("17.04", "zesty"),
    ("17.10", "artful"),
    ("18.04", "bionic"),
    ("18.10", "cosmic"),
    ("19.04", "disco"),
    ("19.10", "eoan"),
    ("20.04", "focal"),
    ("20.10", "groovy"),
    ("21.04", "hirsute"),
    ("21.10", "impish"),
    ("22.04", "jammy"),
    ("22.10", "kinetic"),
    ("23.04", "lunar"),
    ("23.10", "mantic"),
    ("24.04", "noble"),
    ("24.10", "oracular"),
    ("25.04", "plucky"),
    ("25.10", "questing"),
    ("26.04", "resolute"),
]


@pytest.mark.parametrize(("version", "codename"), UBUNTU)
def test_every_ubuntu_release_maps_to_its_codename(version: str, codename: str) -> None:
    by_number = resolve("ubuntu", version)
    by_name = resolve("ubuntu", codename)
    assert (by_number.osystem, by_number.release) == ("ubuntu", codename)
    assert by_number.distro_series == f"ubuntu/{codename}"
    assert by_name == by_number
    assert version in by_number.title


def test_lts_releases_are_titled_lts() -> None:
    assert "LTS" in resolve("ubuntu", "22.04").title
    assert "LTS" not in resolve("ubuntu", "23.04").title


@pytest.mark.parametrize(
    ("os_type", "os_version", "expected"),
    [
        ("centos", "9.stream", "centos/centos9-stream"),
        ("centos", "9", "centos/centos9-stream"),
        ("centos", "stream9", "centos/centos9-stream"),
        ("centos", "8.stream", "centos/centos8-stream"),
        ("centos", "10.stream", "centos/centos10-stream"),
        ("rocky", "9", "rocky/9"),
        ("rocky", "9.4", "rocky/9"),
        ("rocky", "8.10", "rocky/8"),
        ("rhel", "9", "rhel/9"),
        ("rhel", "9.4", "rhel/9"),
        ("rhel", "8.8", "rhel/8"),
        ("Ubuntu", " 22.04 ", "ubuntu/jammy"),
        ("UBUNTU", "Noble", "ubuntu/noble"),
    ],
)
def test_rhel_family_and_spelling_variants(os_type: str, os_version: str, expected: str) -> None:
    assert resolve(os_type, os_version).distro_series == expected


def test_image_map_flat_nested_and_os_wide_entries() -> None:
    image_map = {
        "debian 12": "custom/debian12",
        "opensuse": {"15.5": "opensuse/leap-15.5"},
        "alma": "alma9-lab",
    }
    debian = resolve("debian", "12", image_map)
    assert (debian.osystem, debian.release, debian.distro_series) == (
        "custom",
        "debian12",
        "custom/debian12",
    )
    assert debian.resource_names == ("debian12", "custom/debian12")
    assert resolve("opensuse", "15.5", image_map).distro_series == "opensuse/leap-15.5"
    # A name without a slash is a custom image in MAAS.
    alma = resolve("alma", "9.3", image_map)
    assert (alma.osystem, alma.release) == ("custom", "alma9-lab")
    assert alma.resource_names == ("alma9-lab", "custom/alma9-lab")


def test_image_map_overrides_builtin_and_matches_canonical_versions() -> None:
    image_map = {"ubuntu 22.04": "custom/jammy-ceph", "centos": {"9.stream": "centos/c9-lab"}}
    assert resolve("ubuntu", "jammy", image_map).distro_series == "custom/jammy-ceph"
    assert resolve("ubuntu", "24.04", image_map).distro_series == "ubuntu/noble"
    assert resolve("centos", "9", image_map).distro_series == "centos/c9-lab"


def test_exact_version_in_image_map_wins_over_os_wide_entry() -> None:
    image_map = {"rocky": "custom/rocky-any", "rocky 8": "rocky/8-lab"}
    assert resolve("rocky", "8", image_map).distro_series == "rocky/8-lab"
    assert resolve("rocky", "9", image_map).distro_series == "custom/rocky-any"


@pytest.mark.parametrize(
    "image_map",
    [
        {"ubuntu 22.04": 42},
        {"ubuntu 22.04": "  "},
        {"ubuntu 22.04": "a/b/c"},
        {"ubuntu 22.04 extra": "ubuntu/jammy"},
        {"centos": {"9.stream": None}},
    ],
)
def test_malformed_image_map_is_a_config_error(image_map: dict[str, object]) -> None:
    requested = ("centos", "9") if "centos" in image_map else ("ubuntu", "22.04")
    with pytest.raises(ConfigError) as caught:
        resolve(*requested, image_map)
    assert caught.value.key == "image_map"
    assert "image_map" in str(caught.value)


@pytest.mark.parametrize(
    ("os_type", "os_version"),
    [("ubuntu", "15.04"), ("ubuntu", "hardy"), ("centos", "7.9"), ("rocky", "7"), ("suse", "15")],
)
def test_unknown_os_or_version_lists_what_is_known(os_type: str, os_version: str) -> None:
    with pytest.raises(ImageNotAvailable) as caught:
        resolve(os_type, os_version, {"debian 12": "custom/debian12"})
    message = str(caught.value)
    assert repr(os_type) in message and repr(os_version) in message
    for known in ("ubuntu 16.04", "26.04", "centos 8.stream", "rocky 8", "rhel 7", "debian 12"):
        assert known in message
    assert "image_map" in message
    assert any("debian 12" in entry for entry in caught.value.available)


def test_canonical_version() -> None:
    assert images.canonical_version("ubuntu", "jammy") == "22.04"
    assert images.canonical_version("centos", "9") == "9.stream"
    assert images.canonical_version("rocky", "9.4") == "9"
    assert images.canonical_version("debian", "12") == "12"


# ---- ensure_available --------------------------------------------------------------------


class FakeClient:
    """Just enough of MaasClient: boot_resources() from canned MAAS JSON."""

    def __init__(self, resources: list[dict[str, object]]) -> None:
        self.resources = [BootResource.from_json(r) for r in resources]
        self.calls = 0

    def boot_resources(self) -> list[BootResource]:
        self.calls += 1
        return list(self.resources)


def resource(rid: int, name: str, architecture: str, subarches: str = "", kind: str = "Synced"):
    return {
        "id": rid,
        "type": kind,
        "name": name,
        "architecture": architecture,
        "subarches": subarches,
    }


def machine(architecture: str = "amd64/generic") -> Machine:
    return Machine.from_json(
        {
            "system_id": "abc123",
            "hostname": "smithi001",
            "status": 4,
            "status_name": "Ready",
            "architecture": architecture,
        }
    )


LAB = [
    resource(1, "grub-efi-signed/uefi", "amd64/generic"),
    resource(2, "pxelinux/pxe", "i386/generic"),
    resource(3, "ubuntu/focal", "amd64/ga-20.04", "generic,hwe-20.04,ga-20.04"),
    resource(4, "ubuntu/jammy", "amd64/ga-22.04", "generic,hwe-22.04,ga-22.04"),
    resource(5, "centos/centos9-stream", "amd64/generic"),
    resource(6, "ubuntu/noble", "arm64/ga-24.04", "generic,ga-24.04"),
    resource(7, "rocky/9", "amd64/generic"),
    resource(8, "debian12", "amd64/generic", kind="Uploaded"),
]


@pytest.mark.parametrize(
    ("os_type", "os_version"),
    [("ubuntu", "22.04"), ("ubuntu", "focal"), ("centos", "9.stream"), ("rocky", "9.3")],
)
def test_synced_image_for_the_machine_architecture_passes(os_type: str, os_version: str) -> None:
    client = FakeClient(LAB)
    ensure_available(client, resolve(os_type, os_version), machine())
    assert client.calls == 1


def test_custom_image_matches_its_plain_resource_name() -> None:
    spec = resolve("debian", "12", {"debian 12": "debian12"})
    ensure_available(FakeClient(LAB), spec, machine())


def test_image_synced_for_another_architecture_only_is_refused_with_the_list() -> None:
    with pytest.raises(ImageNotAvailable) as caught:
        ensure_available(FakeClient(LAB), resolve("ubuntu", "24.04"), machine())
    error = caught.value
    message = str(error)
    assert "ubuntu/noble" in message and "amd64/generic" in message
    assert "smithi001 (abc123)" in message
    assert "synced only for arm64/ga-24.04" in message
    assert error.available == [
        "centos/centos9-stream",
        "debian12",
        "rocky/9",
        "ubuntu/focal",
        "ubuntu/jammy",
    ]
    # Bootloaders are not something a user can deploy, so they are not offered.
    assert "grub" not in message and "pxelinux" not in message
    assert (error.machine, error.system_id) == ("smithi001", "abc123")


def test_image_missing_everywhere_lists_what_the_architecture_has() -> None:
    with pytest.raises(ImageNotAvailable) as caught:
        ensure_available(FakeClient(LAB), resolve("rhel", "9"), machine("arm64/generic"))
    assert caught.value.available == ["ubuntu/noble"]
    assert "synced for arm64/generic: ubuntu/noble" in str(caught.value)
    assert "synced only" not in str(caught.value)


def test_nothing_synced_says_so() -> None:
    with pytest.raises(ImageNotAvailable) as caught:
        ensure_available(FakeClient([]), resolve("ubuntu", "22.04"), machine())
    assert "nothing" in str(caught.value)
    assert caught.value.available == []


def test_image_spec_fills_distro_series() -> None:
    assert ImageSpec("rocky", "9").distro_series == "rocky/9"
    assert str(ImageSpec("ubuntu", "jammy")) == "ubuntu/jammy"
