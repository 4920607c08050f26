"""The deploy options of one deployment, checked, then applied when MAAS allows each.

A storage layout can only be set on a Ready machine, so it is set just before the machine is
allocated (`before_allocate`); a machine that was already allocated to us is released and
allocated again for it. Bonds can be made on an allocated machine (`before_deploy`). Both need
a MAAS administrator's key. MAAS keeps bonds across releases, so `restore_network` undoes ours
after a release.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

from teuthology_maas.config import MaasConfig
from teuthology_maas.deploy_config import DeploySettings
from teuthology_maas.errors import MaasError
from teuthology_maas.maas.client import MaasClient
from teuthology_maas.machine_parts import Interface, interfaces_of, physical_disks_of
from teuthology_maas.models import BootResource, Machine, NodeStatus
from teuthology_maas.node import bonds as _bonds
from teuthology_maas.node import deploy_checks as checks
from teuthology_maas.node.deploy_options import (
    DeployOptions,
    describe,
    describe_storage,
    resolve,
)
from teuthology_maas.node.images import ImageSpec
from teuthology_maas.type_match import type_of

log = logging.getLogger("teuthology_maas.node.provisioner")


class BootResourceSource(Protocol):
    def boot_resources(self) -> list[BootResource]: ...


class Node(Protocol):
    """What the plan needs of NodeActions: the machine as last seen and the state changes."""

    client: MaasClient
    last: Machine

    def allocate(self, *, comment: str) -> Machine: ...
    def release(self, *, erase: str | None = None) -> Machine: ...
    def finish_release(self) -> Machine: ...
    def refresh(self) -> Machine: ...
    def comment(self, action: str) -> str: ...


class DeployPlan:
    """Checked deploy options for one machine, applied at the right moments."""

    def __init__(self, client: MaasClient, options: DeployOptions) -> None:
        self.client = client
        self.options = options
        self._storage_done = options.storage is None

    @classmethod
    def checked(
        cls,
        client: MaasClient,
        config: MaasConfig,
        machine: Machine,
        spec: ImageSpec,
        *,
        os_type: str,
        os_version: str,
        machine_type: str | None = None,
        overrides: DeploySettings | None = None,
        resources: BootResourceSource,
    ) -> DeployPlan:
        """Resolve and check; DeploySettingError (nothing changed in MAAS) on a problem."""
        deploy = config.deploy
        kind = machine_type or type_of(
            machine, [*config.machine_types, *deploy.machine_types], config.type_match
        )
        options = resolve(
            deploy, machine_type=kind, os_type=os_type, os_version=os_version, overrides=overrides
        )
        problems = checks.problems_for(
            client, options, machine, spec, boot_resources=resources.boot_resources
        )
        checks.raise_problems(problems)
        if options != DeployOptions(sources=options.sources):
            log.info(
                "%s: deploy options (type %s): %s",
                machine.describe(),
                kind or "none",
                describe(options),
            )
        return cls(client, options)

    def before_allocate(self, node: Node) -> None:
        """The machine is Ready and about to be allocated to us: set its storage layout."""
        if self._storage_done or node.last.status is not NodeStatus.READY:
            return
        self._set_storage(node)

    def before_deploy(self, node: Node) -> dict[str, Any]:
        """The machine is allocated to us: finish what MAAS needs before deploy; returns the
        extra deploy fields."""
        if not self._storage_done:
            # It was allocated to us already: storage layouts need a Ready machine.
            log.info("%s: releasing it to set its storage layout", node.last.describe())
            node.release(erase="none")
            node.finish_release()
            self._set_storage(node)
            node.allocate(comment=node.comment("allocate after setting the storage layout"))
        self._reconcile_bonds(node)
        return self.options.deploy_params()

    def _set_storage(self, node: Node) -> None:
        storage = self.options.storage
        assert storage is not None
        disks = {d.name: d.id for d in physical_disks_of(node.last)}
        params: dict[str, str | int | bool | None] = {**storage.sizes()}
        params.update({what: disks[name] for what, name in storage.devices().items()})
        if storage.cache_no_part:
            params["cache_no_part"] = True
        node.last = self.client.set_storage_layout(
            node.last.system_id, storage.layout, params=params
        )
        self._storage_done = True
        log.info("%s: storage layout %s", node.last.describe(), describe_storage(storage))

    def _reconcile_bonds(self, node: Node) -> None:
        machine = node.refresh() if self.options.bonds or _has_ours(node.last) else node.last
        wanted = {b.name: b for b in self.options.bonds}
        for interface in [i for i in _interfaces(machine) if _bonds.ours(i)]:
            bond = wanted.get(interface.name)
            if bond is None or not _bonds.matches(interface, bond):
                machine = _bonds.undo(self.client, machine, interface)
        present = {i.name for i in _interfaces(machine)}
        for bond in self.options.bonds:
            if bond.name not in present:
                machine = _bonds.make(self.client, machine, bond)
        node.last = machine


def _interfaces(machine: Machine) -> list[Interface]:
    return interfaces_of(machine)


def _has_ours(machine: Machine) -> bool:
    try:
        return any(_bonds.ours(i) for i in _interfaces(machine))
    except ValueError:
        return False


def restore_network(node: Node) -> str:
    """After a release: undo the bonds we made (MAAS keeps them). The machine is held by
    allocating it while its interfaces change, so nobody else gets it half-restored. Returns
    what happened; never raises."""
    machine = node.last
    try:
        mine = [i for i in _interfaces(machine) if _bonds.ours(i)]
        if not mine or machine.status not in (NodeStatus.READY, NodeStatus.NEW):
            return ""
        if machine.owner is not None:
            return f" Bonds left: {machine.owner!r} holds it now."
        node.allocate(comment=node.comment("allocate to undo its bonds"))
        for interface in mine:
            machine = _bonds.undo(node.client, machine, interface)
        node.release(erase="none")
        node.finish_release()
        return f" Bonds undone: {', '.join(i.name for i in mine)}."
    except (MaasError, ValueError) as exc:
        log.warning("%s: could not undo its bonds: %s", machine.describe(), exc)
        return f" Bonds NOT undone ({exc}); `teuthology-maas doctor` lists them."
