"""Each deploy option checked against what MAAS offers, before anything changes in MAAS:
the kernel against the image's synced kernels, deploy to memory against MAAS's version,
storage devices and bond members against the machine, and the API key's admin rights for
the calls that need them. Shared by the provisioner and `teuthology-maas doctor`.
"""

from __future__ import annotations

import re
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from teuthology_maas.errors import DeploySettingError, MaasError
from teuthology_maas.maas.client import MaasClient
from teuthology_maas.machine_parts import physical_disks_of
from teuthology_maas.models import BootResource, Machine
from teuthology_maas.node import bonds as _bonds
from teuthology_maas.node import kernels
from teuthology_maas.node.deploy_options import DeployOptions
from teuthology_maas.node.images import ImageSpec

# MAAS 3.5 deploys to memory (ephemeral deployments) and shows it on the machine.
MEMORY_DEPLOY_SINCE = (3, 5)
_STORAGE_CHECKED_OSES = ("ubuntu", "centos", "rhel")


_versions: weakref.WeakKeyDictionary[MaasClient, str] = weakref.WeakKeyDictionary()
_admins: weakref.WeakKeyDictionary[MaasClient, tuple[str, bool]] = weakref.WeakKeyDictionary()


def maas_version(client: MaasClient) -> str:
    """`version/`'s version string, asked once per client."""
    cached = _versions.get(client)
    if cached is None:
        cached = str(client.version().get("version", ""))
        _versions[client] = cached
    return cached


def version_tuple(text: str) -> tuple[int, ...] | None:
    match = re.match(r"(\d+)\.(\d+)", text)
    return (int(match.group(1)), int(match.group(2))) if match else None


def admin_user(client: MaasClient) -> tuple[str, bool]:
    """(MAAS username, is it an administrator), asked once per client."""
    cached = _admins.get(client)
    if cached is None:
        me = client.whoami()
        cached = (str(me.get("username", "?")), bool(me.get("is_superuser")))
        _admins[client] = cached
    return cached


@dataclass(frozen=True)
class Problem:
    key: str
    text: str
    available: tuple[str, ...] = ()


def kernel_problem(
    options: DeployOptions,
    resources: Sequence[BootResource],
    machine: Machine,
    spec: ImageSpec,
    commissioning: str = "jammy",
) -> Problem | None:
    kernel = options.hwe_kernel
    if kernel is None:
        return None
    series = spec.release if spec.osystem == "ubuntu" else commissioning
    image = f"ubuntu/{series}"
    offered = kernels.offered(resources, image, machine.arch)
    minimum = str(machine.raw.get("min_hwe_kernel") or "")
    why = kernels.refusal(
        kernel,
        offered_kernels=offered,
        image=image,
        series=series,
        architecture=machine.architecture,
        minimum=minimum,
    )
    if why is None:
        return None
    note = "" if spec.osystem == "ubuntu" else f" ({spec.distro_series} boots {image}'s kernel)"
    return Problem(
        options.key("hwe_kernel"),
        f"MAAS refuses {kernel} for {machine.describe()}: {why}{note} Kernels MAAS offers for "
        f"{image} on {machine.arch}: {', '.join(offered) or 'none'}.",
        tuple(offered),
    )


def memory_problem(options: DeployOptions, version: str) -> Problem | None:
    if not options.ephemeral:
        return None
    found = version_tuple(version)
    if found is not None and found >= MEMORY_DEPLOY_SINCE:
        return None
    shown = f"MAAS {version}" if found else f"MAAS (version {version!r} unknown)"
    return Problem(
        options.key("ephemeral"),
        f"{shown} cannot deploy to memory; that needs MAAS "
        f"{'.'.join(map(str, MEMORY_DEPLOY_SINCE))} or later",
    )


def storage_problems(options: DeployOptions, machine: Machine, osystem: str) -> list[Problem]:
    storage = options.storage
    if storage is None:
        return []
    key = options.key("storage")
    disks = physical_disks_of(machine)
    names = [d.name for d in disks]
    found = [
        Problem(
            f"{key}.{what}",
            f"{machine.describe()} has no disk {name!r}; its disks: {', '.join(names) or 'none'}",
            tuple(names),
        )
        for what, name in storage.devices().items()
        if name not in names
    ]
    if (
        storage.layout == "bcache"
        and storage.cache_device is None
        and not any("ssd" in d.tags for d in disks[1:])
    ):
        text = f"{machine.describe()} has no other disk tagged ssd for bcache's cache"
        found.append(Problem(f"{key}.cache_device", text + "; name one with cache_device"))
    if storage.layout == "blank" and osystem in _STORAGE_CHECKED_OSES:
        found.append(
            Problem(
                f"{key}.layout",
                f"layout blank leaves no root filesystem, and "
                f"MAAS refuses to deploy {osystem} to disk without one",
            )
        )
    return found


def bond_problems(options: DeployOptions, machine: Machine) -> list[Problem]:
    if not options.bonds:
        return []
    key = options.key("bonds")
    return [Problem(key, text) for text in _bonds.problems(machine, options.bonds)]


def admin_problem(options: DeployOptions, user: tuple[str, bool]) -> Problem | None:
    wanted = [n for n in ("storage", "bonds") if getattr(options, n)]
    if not wanted or user[1]:
        return None
    return Problem(
        options.key(wanted[0]),
        f"setting {' and '.join(wanted)} needs a MAAS administrator's API key; MAAS user "
        f"{user[0]!r} is not one (MAAS would answer 403 with an empty body)",
    )


def raise_problems(problems: Sequence[Problem]) -> None:
    if not problems:
        return
    first = problems[0]
    text = "; ".join(f"maas: {p.key}: {p.text.rstrip('.')}" for p in problems)
    raise DeploySettingError(
        f"{text}. Nothing was changed in MAAS.", key=first.key, available=first.available
    )


def problems_for(
    client: MaasClient,
    options: DeployOptions,
    machine: Machine,
    spec: ImageSpec,
    boot_resources: Callable[[], Sequence[BootResource]],
) -> list[Problem]:
    """Every reason MAAS would refuse `options` for deploying `spec` on `machine`; asks MAAS
    only what the options need (boot resources, commissioning release, version, whoami)."""
    found: list[Problem | None] = []
    try:
        if options.hwe_kernel:
            commissioning = "jammy"
            if spec.osystem != "ubuntu":
                commissioning = str(client.get_config("commissioning_distro_series"))
            found.append(kernel_problem(options, boot_resources(), machine, spec, commissioning))
        if options.ephemeral:
            found.append(memory_problem(options, maas_version(client)))
        if options.storage or options.bonds:
            found.append(admin_problem(options, admin_user(client)))
        found += storage_problems(options, machine, spec.osystem)
        found += bond_problems(options, machine)
    except ValueError as exc:  # a malformed interface or disk object from MAAS
        raise MaasError(f"MAAS described {machine.describe()} oddly: {exc}") from None
    return [problem for problem in found if problem is not None]
