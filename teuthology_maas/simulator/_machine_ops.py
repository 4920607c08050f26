"""The handlers of one machine: parameter parsing and MAAS's exact refusals."""

from __future__ import annotations

import copy
import json
from typing import Any

from teuthology_maas.models import NodeStatus
from teuthology_maas.simulator import _events as ev
from teuthology_maas.simulator._collection_ops import (
    ABORTABLE,
    RELEASABLE,
    REMOVED_DEPLOY_OPTIONS,
    CollectionOps,
    django_bool,
    string_bool,
)
from teuthology_maas.simulator._errors import ApiError, bad_request, conflict, forbidden
from teuthology_maas.simulator._images import hwe_kernel_for
from teuthology_maas.simulator._records import MachineRecord
from teuthology_maas.simulator.forms import Body, Params
from teuthology_maas.simulator.inventory import WIPE_DISKS_SCRIPT, UserSpec


class MachineOps(CollectionOps):
    # -- one machine ----------------------------------------------------------------------

    def read(self, user: UserSpec, ident: str) -> dict[str, Any]:
        return self._render(self.for_view(user, ident))

    def deploy(self, user: UserSpec, ident: str, body: Body) -> dict[str, Any]:
        machine = self.for_edit(user, ident)
        form = body.form
        if machine.status == NodeStatus.READY:
            if machine.owner not in (None, user.username):
                raise conflict("Can't allocate a machine belonging to another user.")
        elif machine.status != NodeStatus.ALLOCATED:
            raise conflict(f"Can't deploy a machine that is in the '{machine.status.label}' state")
        for option in REMOVED_DEPLOY_OPTIONS:
            if string_bool(form, option):
                raise bad_request(f"Support for {option} allocation parameter has been removed.")
        ephemeral = string_bool(form, "ephemeral_deploy")
        string_bool(form, "enable_hw_sync")
        config = self.state.config
        osystem, release = self.state.images.resolve(
            form.get("distro_series") or "",
            default_os=str(config["default_osystem"]),
            default_series=str(config["default_distro_series"]),
        )
        hwe_kernel = form.get("hwe_kernel") or None
        if hwe_kernel is not None and not hwe_kernel.startswith(("ga-", "hwe-")):
            raise ApiError(
                400,
                '{"hwe_kernel": ["'
                + hwe_kernel
                + " is not available for "
                + f'{osystem}/{release} on {machine.architecture}."]}}',
                content_type="application/json; charset=utf-8",
            )
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
        # Everything is valid: only now change state (MAAS rolls back a failed request).
        now = self.state.clock.now()
        if machine.status == NodeStatus.READY:
            self.state.allocate(
                machine,
                user.username,
                agent_name=form.get("agent_name") or "",
                comment=form.get("comment") or "",
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
            hwe_kernel=hwe_kernel or hwe_kernel_for(osystem, release),
            user_data=user_data.encode("utf-8") if user_data is not None else None,
            comment=form.get("comment") or "",
            ephemeral=ephemeral,
            fault=fault,
        )
        return self._render(machine)

    def release(self, user: UserSpec, ident: str, body: Body) -> dict[str, Any]:
        machine = self.for_edit(user, ident)
        form = body.form
        if machine.status in (NodeStatus.READY, NodeStatus.RELEASING):
            return self._render(machine)
        if machine.status not in RELEASABLE:
            raise conflict(
                f"Machine cannot be released in its current state ('{machine.status.label}')."
            )
        requested = [s.strip() for v in form.getlist("scripts") for s in v.split(",") if s.strip()]
        unknown = next((s for s in requested if s not in self.state.release_scripts), None)
        if unknown is not None:
            # ReleaseForm's `scripts` is a MultipleChoiceField over the region's release
            # scripts: Django names the first invalid choice.
            raise ApiError(
                400,
                json.dumps(
                    {
                        "scripts": [
                            f"Select a valid choice. {unknown} is not one of the available choices."
                        ]
                    }
                ),
                content_type="application/json; charset=utf-8",
            )
        secure = django_bool(form, "secure_erase")
        quick = django_bool(form, "quick_erase")
        erase = django_bool(form, "erase") or secure or quick or WIPE_DISKS_SCRIPT in requested
        if not erase and self.state.config.get("enable_disk_erasing_on_release"):
            erase = True
            secure = bool(self.state.config.get("disk_erase_with_secure_erase"))
            quick = bool(self.state.config.get("disk_erase_with_quick_erase"))
        mode = None if not erase else "secure" if secure else "quick" if quick else "full"
        scripts = tuple(dict.fromkeys(requested))
        if erase and WIPE_DISKS_SCRIPT not in scripts:
            scripts += (WIPE_DISKS_SCRIPT,)
        self._start_release(
            machine,
            user,
            erase_mode=mode,
            scripts=scripts,
            script_params=_script_params(form, scripts),
            form=form,
        )
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


def _script_params(form: Params, scripts: tuple[str, ...]) -> dict[str, dict[str, str]]:
    """Form fields named `<script>_<parameter>` for the scripts that run (MAAS's convention;
    fields for scripts that do not run are ignored like any extra form field)."""
    params: dict[str, dict[str, str]] = {}
    for name, values in form.lists():
        for script in scripts:
            if name.startswith(script + "_") and len(name) > len(script) + 1:
                params.setdefault(script, {})[name[len(script) + 1 :]] = values[-1]
    return params
