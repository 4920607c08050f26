"""The interfaces of a node: `nodes/<id>/interfaces/` and `nodes/<id>/interfaces/<n>/`.

Reading needs view permission. Changing (create_bond, link_subnet, DELETE) needs admin
permission on an unlocked machine that is New, Ready, Failed testing, Allocated or Broken
(MAAS 3.7's interface handlers); any other status is a 409 that names the operation.
"""

from __future__ import annotations

from typing import Any

from teuthology_maas.models import NodeStatus
from teuthology_maas.simulator._collection_ops import CollectionOps
from teuthology_maas.simulator._errors import conflict, not_found
from teuthology_maas.simulator._network import Nic
from teuthology_maas.simulator._records import MachineRecord
from teuthology_maas.simulator.forms import Body
from teuthology_maas.simulator.inventory import UserSpec

_EDITABLE = frozenset(
    {
        NodeStatus.NEW,
        NodeStatus.READY,
        NodeStatus.FAILED_TESTING,
        NodeStatus.ALLOCATED,
        NodeStatus.BROKEN,
    }
)


class InterfaceOps:
    def __init__(self, machines: CollectionOps) -> None:
        self.machines = machines

    def _editable(self, user: UserSpec, ident: str, operation: str) -> MachineRecord:
        machine = self.machines.for_admin(user, ident)
        if machine.status not in _EDITABLE:
            raise conflict(
                f"Cannot {operation} interface because the machine is not New, Ready, "
                "Allocated, or Broken."
            )
        return machine

    @staticmethod
    def _nic(machine: MachineRecord, ident: str) -> Nic:
        nic = machine.interfaces.find(ident)
        if nic is None:
            raise not_found("No Interface matches the given query.")
        return nic

    def read_all(self, user: UserSpec, ident: str) -> list[dict[str, Any]]:
        machine = self.machines.for_view(user, ident)
        return machine.interfaces.all_json(machine.system_id)

    def read(self, user: UserSpec, ident: str, nic_id: str) -> dict[str, Any]:
        machine = self.machines.for_view(user, ident)
        return machine.interfaces.json(machine.system_id, self._nic(machine, nic_id))

    def create_bond(self, user: UserSpec, ident: str, body: Body) -> dict[str, Any]:
        machine = self._editable(user, ident, "create bond")
        node = f"{machine.system_id} ({machine.hostname})"
        bond = machine.interfaces.create_bond(body.form, node)
        return machine.interfaces.json(machine.system_id, bond)

    def link_subnet(self, user: UserSpec, ident: str, nic_id: str, body: Body) -> dict[str, Any]:
        machine = self._editable(user, ident, "link subnet")
        nic = machine.interfaces.link_subnet(self._nic(machine, nic_id), body.form)
        return machine.interfaces.json(machine.system_id, nic)

    def delete(self, user: UserSpec, ident: str, nic_id: str) -> None:
        machine = self._editable(user, ident, "delete interface")
        machine.interfaces.delete(self._nic(machine, nic_id))
