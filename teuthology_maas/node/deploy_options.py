"""Deploy options for one node: the lab's `deploy:` settings resolved for the machine's type
and the requested OS. Checked against MAAS by `deploy_checks`, applied by `deploy_plan`.

Resolution, lowest to highest: `deploy:` itself, `deploy.os[<os_type>]`,
`deploy.os['<os_type> <os_version>']`, `deploy.machine_types.<type>` (and its own `os:` in the
same order), then the caller's per-job overrides. A level changes only the keys it sets. A
deployment to memory gets no storage layout (MAAS applies none to it).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from teuthology_maas.deploy_config import (
    Bond,
    DeployConfig,
    DeploySettings,
    StorageLayout,
    parse_settings,
)
from teuthology_maas.models import Machine
from teuthology_maas.node.images import canonical_version

_TRAILING_DIGITS = re.compile(r"\d+$")


@dataclass(frozen=True)
class DeployOptions:
    """The settings that apply to one deployment; `sources` names where each came from."""

    hwe_kernel: str | None = None
    ephemeral: bool = False
    storage: StorageLayout | None = None
    bonds: tuple[Bond, ...] = ()
    sources: Mapping[str, str] = field(default_factory=dict)

    def key(self, name: str) -> str:
        return f"{self.sources.get(name, 'deploy')}.{name}"

    def deploy_params(self) -> dict[str, Any]:
        """Extra fields for MAAS's deploy call."""
        return {"hwe_kernel": self.hwe_kernel, "ephemeral_deploy": True if self.ephemeral else None}


def machine_type_of(machine: Machine, machine_types: Sequence[str]) -> str | None:
    """The configured machine type a MAAS machine belongs to: a tag of that name, else a
    resource pool of that name, else a hostname made of it and digits (`smithi001`)."""
    for wanted in machine_types:
        if wanted in machine.tag_names:
            return wanted
    for wanted in machine_types:
        if machine.pool == wanted:
            return wanted
    prefix = hostname_prefix(machine.hostname)
    return next((wanted for wanted in machine_types if prefix == wanted), None)


def hostname_prefix(hostname: str) -> str:
    """The machine type a Sepia-style hostname is made of: `smithi` for `smithi001`."""
    return _TRAILING_DIGITS.sub("", hostname).rstrip("-_")


def resolve(
    config: DeployConfig,
    *,
    machine_type: str | None,
    os_type: str,
    os_version: str,
    overrides: DeploySettings | None = None,
) -> DeployOptions:
    os_type = os_type.strip().lower()
    versions = {os_version.strip().lower(), canonical_version(os_type, os_version)}

    def for_os(levels: Mapping[str, DeploySettings]) -> list[DeploySettings]:
        found = [levels[os_type]] if os_type in levels else []
        found += [
            levels[k]
            for k in levels
            if k.split()[0] == os_type and k.split()[1:2] and k.split()[1] in versions
        ]
        return found

    levels = [config.defaults, *for_os(config.os)]
    typed = config.machine_types.get(machine_type) if machine_type else None
    if typed is not None:
        levels += [typed.settings, *for_os(typed.os)]
    if overrides is not None:
        levels.append(overrides)
    chosen: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for level in levels:
        for name in level.given:
            chosen[name] = getattr(level, name)
            sources[name] = level.where
    ephemeral = bool(chosen.get("ephemeral", False))
    storage = chosen.get("storage")
    if ephemeral and storage is not None:
        # MAAS applies no storage configuration to a deployment in memory.
        storage = None
    return DeployOptions(
        chosen.get("hwe_kernel"), ephemeral, storage, tuple(chosen.get("bonds", ())), sources
    )


def parse_overrides(value: Mapping[str, Any] | None) -> DeploySettings | None:
    """Per-job deploy settings (same keys as one level of `deploy:`), e.g. from a library
    caller that knows the job; validated like the configuration."""
    if value is None:
        return None
    return parse_settings(value, "per-job deploy options")


def describe(options: DeployOptions) -> str:
    parts = []
    if options.hwe_kernel:
        parts.append(f"kernel {options.hwe_kernel}")
    if options.ephemeral:
        parts.append("in memory")
    if options.storage is not None:
        parts.append(f"storage {describe_storage(options.storage)}")
    for bond in options.bonds:
        parts.append(f"{bond.name} ({bond.mode} of {', '.join(bond.interfaces)})")
    return ", ".join(parts) or "MAAS defaults"


def describe_storage(storage: StorageLayout) -> str:
    details = [f"{k}={v}" for k, v in {**storage.devices(), **storage.sizes()}.items()]
    return storage.layout + (f" ({', '.join(details)})" if details else "")
