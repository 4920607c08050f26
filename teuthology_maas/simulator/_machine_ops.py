"""The handlers of one machine: parameter parsing and MAAS's exact refusals."""

from __future__ import annotations

import copy
from typing import Any

from teuthology_maas.models import NodeStatus
from teuthology_maas.simulator import _events as ev
from teuthology_maas.simulator._collection_ops import ABORTABLE, RELEASABLE, CollectionOps
from teuthology_maas.simulator._deploy_form import allocation_options, check_vm_host_options
from teuthology_maas.simulator._errors import bad_request, conflict, forbidden, form_errors
from teuthology_maas.simulator._kernels import KernelError, working_kernel
from teuthology_maas.simulator._records import MachineRecord
from teuthology_maas.simulator._release_form import parse_release
from teuthology_maas.simulator._storage import layout_params
from teuthology_maas.simulator.forms import Body
from teuthology_maas.simulator.inventory import UserSpec


class MachineOps(CollectionOps):
    # -- one machine ----------------------------------------------------------------------

    def read(self, user: UserSpec, ident: str) -> dict[str, Any]:
        return self._render(self.for_view(user, ident))

    def deploy(self, user: UserSpec, ident: str, body: Body) -> dict[str, Any]:
        machine = self.for_edit(user, ident)
        form = body.form
        options = allocation_options(form)
        check_vm_host_options(options, is_admin=user.is_superuser)
        if machine.status == NodeStatus.READY:
            if machine.owner not in (None, user.username):
                raise conflict("Can't allocate a machine belonging to another user.")
        elif machine.status != NodeStatus.ALLOCATED:
            raise conflict(f"Can't deploy a machine that is in the '{machine.status.label}' state")
        config = self.state.config
        osystem, release = self.state.images.resolve(
            form.get("distro_series") or "",
            default_os=str(config["default_osystem"]),
            default_series=str(config["default_distro_series"]),
        )
        hwe_kernel = self._working_kernel(machine, osystem, release, form.get("hwe_kernel"))
        names = machine.names()
        missing = self.faults.behaviour(
            {"missing_image"}, machine_names=names, user=user.username, image=f"{osystem}/{release}"
        )
        if missing is not None:
            arch, _, subarch = machine.architecture.partition("/")
            raise bad_request(
                f"Deployment operating system {osystem}/{release} is unavailable for "
                f"{arch}/{subarch or 'generic'}."
            )
        image = self.state.images.check_deployable(
            osystem, release, machine.architecture, str(config["commissioning_distro_series"])
        )
        if not options.ephemeral_deploy and (issues := machine.disks.deploy_issues(osystem)):
            raise form_errors({"storage": issues})
        if not machine.interfaces.has_address():
            raise form_errors({"network": ["Node has no address family in common with the server"]})
        # Everything is valid: only now change state (MAAS rolls back a failed request).
        now = self.state.clock.now()
        if machine.status == NodeStatus.READY:
            self.state.allocate(
                machine,
                user.username,
                agent_name=options.agent_name,
                comment=options.comment,
                at=now,
            )
        user_data = form.get("user_data")
        fault = self.faults.behaviour(
            {"deploy_fail", "deploy_stuck", "deploy_revert"},
            machine_names=names,
            user=user.username,
        )
        self.state.deploys.start(
            machine,
            user.username,
            image=image,
            hwe_kernel=hwe_kernel,
            user_data=user_data.encode("utf-8") if user_data is not None else None,
            comment=options.comment,
            ephemeral=options.ephemeral_deploy,
            fault=fault,
        )
        return self._render(machine)

    def _working_kernel(
        self, machine: MachineRecord, osystem: str, release: str, requested: str | None
    ) -> str | None:
        """MachineForm.clean: a machine that still has a kernel keeps it unchecked (as after an
        aborted deployment); otherwise the request is checked against the image's kernels
        (the commissioning release's for other OSes) and the machine's min_hwe_kernel."""
        if machine.hwe_kernel:
            return requested or machine.hwe_kernel
        if osystem != "ubuntu":
            osystem, release = "ubuntu", str(self.state.config["commissioning_distro_series"])
        try:
            return working_kernel(
                requested,
                machine.min_hwe_kernel,
                available=self.state.images.kernels(osystem, release, machine.architecture),
                os_release=f"{osystem}/{release}",
                architecture=machine.architecture,
            )
        except KernelError as exc:
            raise form_errors({"hwe_kernel": [str(exc)]}) from None

    def release(self, user: UserSpec, ident: str, body: Body) -> dict[str, Any]:
        machine = self.for_edit(user, ident)
        config = self.state.config
        request = parse_release(
            body,
            self.state.release_scripts,
            erase_on_release=bool(config.get("enable_disk_erasing_on_release")),
            secure_default=bool(config.get("disk_erase_with_secure_erase")),
            quick_default=bool(config.get("disk_erase_with_quick_erase")),
        )
        if machine.status in (NodeStatus.READY, NodeStatus.RELEASING):
            return self._render(machine)
        if machine.status not in RELEASABLE:
            raise conflict(
                f"Machine cannot be released in its current state ('{machine.status.label}')."
            )
        self._start_release(
            machine,
            user,
            erase_mode=request.erase_mode,
            scripts=request.scripts,
            script_params=request.script_params,
            comment=request.comment,
        )
        return self._render(machine)

    def set_storage_layout(self, user: UserSpec, ident: str, body: Body) -> dict[str, Any]:
        machine = self.for_admin(user, ident)
        if machine.status != NodeStatus.READY:
            raise conflict("Cannot change the storage layout on a machine that is not Ready.")
        form = body.form
        machine.disks.apply(form.get("storage_layout"), layout_params(form.items()))
        return self._render(machine)

    def abort(self, user: UserSpec, ident: str, body: Body) -> dict[str, Any]:
        machine = self.for_edit(user, ident)
        if machine.status not in ABORTABLE:
            raise conflict(
                f"Cannot abort in current state: node {machine.system_id} is in state "
                f"{machine.status.label}."
            )
        # The answer shows the machine before the asynchronous abort completes.
        before = copy.deepcopy(self._render(machine))
        self.state.deploys.abort(machine, user.username, body.form.get("comment") or "")
        return before

    def lock(self, user: UserSpec, ident: str, body: Body) -> dict[str, Any]:
        machine = self.for_view(user, ident)
        if machine.locked:
            raise conflict("Machine is already locked")
        if machine.status not in (NodeStatus.DEPLOYED, NodeStatus.DEPLOYING):
            raise conflict("Can't lock, node is not deployed or deploying")
        return self._set_locked(machine, user, body, locked=True)

    def unlock(self, user: UserSpec, ident: str, body: Body) -> dict[str, Any]:
        machine = self.for_view(user, ident)
        if not machine.locked:
            raise conflict("Machine is not locked")
        return self._set_locked(machine, user, body, locked=False)

    def _set_locked(
        self, machine: MachineRecord, user: UserSpec, body: Body, *, locked: bool
    ) -> dict[str, Any]:
        """Lock or unlock, recording the user's event with the request's comment."""
        machine.locked = locked
        self.state.event(
            machine,
            ev.USER_LOCK if locked else ev.USER_UNLOCK,
            self.state.clock.now(),
            body.form.get("comment") or "",
            username=user.username,
            action="lock" if locked else "unlock",
        )
        return self._render(machine)

    def mark_broken(self, user: UserSpec, ident: str, body: Body) -> dict[str, Any]:
        machine = self.for_edit(user, ident)
        if machine.owner != user.username:
            raise forbidden()
        form = body.form
        comment = form.get("comment") or form.get("error_description") or ""
        self.state.mark_broken(machine, user.username, comment)
        return self._render(machine)

    def mark_fixed(self, user: UserSpec, ident: str, body: Body) -> dict[str, Any]:
        machine = self.for_admin(user, ident)
        if machine.status != NodeStatus.BROKEN:
            raise conflict("Can't mark a non-broken node as 'Ready'.")
        self.state.mark_fixed(machine, user.username, body.form.get("comment") or "")
        return self._render(machine)

    def power_on(self, user: UserSpec, ident: str, body: Body) -> dict[str, Any]:
        machine = self.for_edit(user, ident)
        if machine.owner is None:
            raise conflict("Can't start node: it hasn't been allocated.")
        if machine.status == NodeStatus.ALLOCATED:
            # Powering on an allocated machine is how MAAS starts a deployment.
            return self.deploy(user, ident, body)
        self.state.request_power(machine, user.username, True, body.form.get("comment") or "")
        return self._render(machine)

    def power_off(self, user: UserSpec, ident: str, body: Body) -> dict[str, Any] | None:
        machine = self.for_edit(user, ident)
        if machine.power_type == "manual":
            return None
        self.state.request_power(machine, user.username, False, body.form.get("comment") or "")
        return self._render(machine)

    def query_power_state(self, user: UserSpec, ident: str) -> dict[str, Any]:
        machine = self.for_view(user, ident)
        return {"state": machine.power_state}

    def set_workload_annotations(self, user: UserSpec, ident: str, body: Body) -> dict[str, Any]:
        machine = self.for_edit(user, ident)
        if machine.owner != user.username:
            raise conflict("Cannot set workload annotation: it hasn't been acquired.")
        for key, value in body.form.without("op").lists():
            if value[-1] == "":
                machine.workload_annotations.pop(key, None)
            else:
                machine.workload_annotations[key] = value[-1]
        return self._render(machine)

    def update(self, user: UserSpec, ident: str, body: Body) -> dict[str, Any]:
        machine = self.for_admin(user, ident)
        form = body.form
        for name in ("hostname", "description", "power_type"):
            if (value := form.get(name)) is not None:
                setattr(machine, name, value)
        for name in ("cpu_count", "memory"):
            if (value := form.get(name)) is not None:
                try:
                    setattr(machine, name, int(value))
                except ValueError:
                    raise bad_request(f"Invalid {name}: {value!r} is not an integer") from None
        for name in ("zone", "pool"):
            if (value := form.get(name)) is not None:
                setattr(machine, name, value)
        self.state.catalog.add(machine)
        return self._render(machine)

    def delete(self, user: UserSpec, ident: str) -> None:
        machine = self.for_admin(user, ident)
        if self.state.ssh is not None:
            self.state.ssh.cleared(machine.hostname)
        del self.state.machines[machine.system_id]
