"""Which kernels MAAS offers (from boot resources) and the refusals the library predicts,
in MAAS's words (get_working_kernel)."""

from __future__ import annotations

import pytest

from teuthology_maas.models import BootResource
from teuthology_maas.node import kernels


def resource(name, architecture, n=1):
    return BootResource(n, "Synced", name, architecture)


RESOURCES = [
    resource("ubuntu/jammy", "amd64/hwe-22.04-lowlatency"),
    resource("ubuntu/jammy", "amd64/hwe-22.04"),
    resource("ubuntu/jammy", "amd64/ga-22.04"),
    resource("ubuntu/jammy", "amd64/nvidia-ga-22.04"),  # a platform kernel: not for generic
    resource("ubuntu/jammy", "arm64/ga-22.04"),
    resource("ubuntu/noble", "amd64/ga-24.04"),
    resource("centos/centos9-stream", "amd64/generic"),
    resource("grub-efi-signed/uefi", "amd64/generic"),
]


def test_the_offered_kernels_are_the_image_s_generic_kernels_in_maas_s_order():
    assert kernels.offered(RESOURCES, "ubuntu/jammy", "amd64") == [
        "ga-22.04", "hwe-22.04", "hwe-22.04-lowlatency"
    ]  # fmt: skip
    assert kernels.offered(RESOURCES, "ubuntu/jammy", "arm64") == ["ga-22.04"]
    assert kernels.offered(RESOURCES, "centos/centos9-stream", "amd64") == []


@pytest.mark.parametrize(
    ("kernel", "minimum", "refusal"),
    [
        ("hwe-22.04", "", None),
        ("ga-99.99", "", "ga-99.99 is not available for ubuntu/jammy on amd64/generic."),
        ("ga-20.04", "", "ga-20.04 is too old to use on ubuntu/jammy."),
        ("ga-22.04", "hwe-22.04", "chosen kernel (ga-22.04) is older than minimal kernel "
                                  "required by the machine (hwe-22.04)."),
        ("hwe-22.04-lowlatency", "hwe-22.04", None),
    ],
)  # fmt: skip
def test_refusals_are_maas_s_own(kernel, minimum, refusal):
    offered = ["ga-20.04", "ga-22.04", "hwe-22.04", "hwe-22.04-lowlatency"]
    assert kernels.refusal(kernel, offered_kernels=offered, image="ubuntu/jammy",
                           series="jammy", architecture="amd64/generic",
                           minimum=minimum) == refusal  # fmt: skip


@pytest.mark.parametrize(
    ("name", "is_kernel", "platform"),
    [("ga-22.04", True, ""), ("hwe-22.04-edge", True, ""), ("hwe-edge-22.04", True, ""),
     ("nvidia-ga-22.04", True, "nvidia"), ("generic", False, ""), ("hwe", False, "")],
)  # fmt: skip
def test_kernel_names(name, is_kernel, platform):
    assert kernels.is_kernel(name) is is_kernel
    assert kernels.platform_of(name) == platform


def test_kernels_order_by_release_then_channel_then_flavour():
    names = ["hwe-24.04", "ga-22.04-lowlatency", "hwe-22.04-edge", "ga-24.04", "ga-22.04",
             "hwe-22.04"]  # fmt: skip
    assert sorted(names, key=kernels.kernel_key) == [
        "ga-22.04", "ga-22.04-lowlatency", "hwe-22.04", "hwe-22.04-edge", "ga-24.04",
        "hwe-24.04",
    ]
