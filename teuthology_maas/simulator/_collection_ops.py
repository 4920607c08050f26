"""The machines collection (list, allocate, bulk release) and the permission rules.

Permissions follow MAAS without RBAC: a non-admin sees unowned machines and their own; editing
needs that and an unlocked machine (locked -> 403 with an empty body, even for admins).
"""

from __future__ import annotations

from typing import Any

from teuthology_maas.models import NodeStatus
from teuthology_maas.simulator._deploy_form import allocation_options, string_bool
from teuthology_maas.simulator._errors import ApiError, bad_request, conflict, forbidden
from teuthology_maas.simulator._query import Universe, build_predicate, no_match_message
from teuthology_maas.simulator._records import MachineRecord
from teuthology_maas.simulator.faults import FaultSet
from teuthology_maas.simulator.forms import Body, Params
from teuthology_maas.simulator.inventory import UserSpec
from teuthology_maas.simulator.state import StateMachine

RELEASABLE = frozenset(
    {
        NodeStatus.ALLOCATED,
        NodeStatus.RESERVED,
        NodeStatus.BROKEN,
        NodeStatus.DEPLOYING,
        NodeStatus.DEPLOYED,
        NodeStatus.FAILED_DEPLOYMENT,
        NodeStatus.FAILED_DISK_ERASING,
        NodeStatus.FAILED_RELEASING,
    }
)
ABORTABLE = frozenset(
    {NodeStatus.DISK_ERASING, NodeStatus.COMMISSIONING, NodeStatus.DEPLOYING, NodeStatus.TESTING}
)


def django_bool(params: Params, name: str) -> bool:
    """Django BooleanField, used by release: anything but '', 'false' (any case) is true."""
    value = params.get(name)
    return value is not None and value != "" and value.strip().lower() != "false"


class CollectionOps:
    """Permissions, and the operations on the machines collection."""

    def __init__(self, state: StateMachine, faults: FaultSet, users: dict[str, UserSpec]) -> None:
        self.state = state
        self.faults = faults
        self.users = users

    # -- permissions ----------------------------------------------------------------------

    @staticmethod
    def can_view(user: UserSpec, machine: MachineRecord) -> bool:
        return user.is_superuser or machine.owner in (None, user.username)

    def for_view(self, user: UserSpec, ident: str) -> MachineRecord:
        machine = self.state.find(ident)
        if not self.can_view(user, machine):
            raise forbidden()
        return machine

    def for_edit(self, user: UserSpec, ident: str) -> MachineRecord:
        machine = self.for_view(user, ident)
        if machine.locked:
            raise forbidden()
        return machine

    def for_admin(self, user: UserSpec, ident: str) -> MachineRecord:
        machine = self.state.find(ident)
        if not user.is_superuser or machine.locked:
            raise forbidden()
        return machine

    def _universe(self) -> Universe:
        machines = list(self.state.machines.values())
        return Universe(
            tags={t for m in machines for t in m.tags},
            zones=set(self.state.catalog.zones),
            pools=set(self.state.catalog.pools),
            owners=set(self.users),
            arches=self.state.images.usable_arches() | {m.arch for m in machines},
        )

    def _render(self, machine: MachineRecord) -> dict[str, Any]:
        return self.state.render(machine)

    # -- collection -----------------------------------------------------------------------

    def list_machines(self, user: UserSpec, query: Params) -> list[dict[str, Any]]:
        predicate = build_predicate(query, self._universe(), for_allocate=False)
        return [
            self._render(m)
            for m in self.state.machines.values()
            if self.can_view(user, m) and predicate(m)
        ]

    def list_allocated(self, user: UserSpec, query: Params) -> list[dict[str, Any]]:
        ids = query.getlist("id")
        return [
            self._render(m)
            for m in self.state.machines.values()
            if m.owner == user.username
            and m.status == NodeStatus.ALLOCATED
            and (not ids or m.system_id in ids)
        ]

    def allocate(self, user: UserSpec, body: Body) -> dict[str, Any]:
        if body.is_json:
            # piston hands allocate a plain dict, and the form calls .lists() on it.
            raise ApiError(500, "'dict' object has no attribute 'lists'")
        form = body.form
        options = allocation_options(form)
        string_bool(form, "verbose")
        dry_run = string_bool(form, "dry_run")
        predicate = build_predicate(form, self._universe(), for_allocate=True)
        candidates = sorted(
            (
                m
                for m in self.state.machines.values()
                if m.status == NodeStatus.READY
                and m.owner in (None, user.username)
                and not m.locked
                and predicate(m)
            ),
            key=lambda m: (m.cost(), m.index),
        )
        if not candidates:
            raise conflict(no_match_message(form))
        chosen = candidates[0]
        if not dry_run:
            self.state.allocate(
                chosen,
                user.username,
                agent_name=options.agent_name,
                comment=options.comment,
                at=self.state.clock.now(),
            )
        result = self._render(chosen)
        result["constraints_by_type"] = {}
        return result

    def release_many(self, user: UserSpec, body: Body) -> list[str]:
        form = body.form
        ids = form.getlist("machines")
        known = {m.system_id: m for m in self.state.machines.values()}
        unknown = [i for i in ids if i not in known]
        if unknown:
            raise bad_request(f"Unknown machine(s): {', '.join(unknown)}.")
        denied = [i for i in ids if known[i].locked or not self.can_view(user, known[i])]
        if denied:
            raise forbidden(
                "You don't have the required permission to release the following "
                f"machine(s): {', '.join(denied)}."
            )
        stuck = [
            known[i]
            for i in ids
            if known[i].status != NodeStatus.READY and known[i].status not in RELEASABLE
        ]
        if stuck:
            described = ", ".join(f"{m.system_id} ('{m.status.label}')" for m in stuck)
            raise conflict(f"Machine(s) cannot be released in their current state: {described}.")
        released = []
        for system_id in ids:
            machine = known[system_id]
            if machine.status == NodeStatus.READY:
                continue
            self._start_release(
                machine,
                user,
                erase_mode=None,
                scripts=(),
                script_params={},
                comment=form.get("comment") or "",
            )
            released.append(system_id)
        return released

    def _start_release(
        self,
        machine: MachineRecord,
        user: UserSpec,
        *,
        erase_mode: str | None,
        scripts: tuple[str, ...],
        script_params: dict[str, dict[str, str]],
        comment: str,
    ) -> None:
        kinds = {"release_stuck", "release_fail"} | ({"erase_fail"} if scripts else set())
        fault = self.faults.behaviour(kinds, machine_names=machine.names(), user=user.username)
        self.state.releases.start(
            machine,
            user.username,
            erase_mode=erase_mode,
            scripts=scripts,
            script_params=script_params,
            comment=comment,
            fault=fault,
        )
