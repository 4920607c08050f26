"""MAAS calls that configure a machine before it is deployed: its storage layout and its
network interfaces (bonds and their subnet links). Mixed into `MaasClient`.

MAAS allows these to administrators only. `set_storage_layout` needs a Ready machine; the
interface calls a New, Ready, Allocated or Broken one. Devices are named by MAAS's ids on the
wire (`root_device`, `parents`), which the caller looks up by name in the machine object.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from teuthology_maas.errors import MaasError
from teuthology_maas.maas.wire import path_segment
from teuthology_maas.machine_parts import Interface
from teuthology_maas.models import Machine

if TYPE_CHECKING:
    from teuthology_maas.maas.transport import Transport

# The bond_* parameters of create_bond besides bond_mode, by the name a lab writes them.
BOND_OPTIONS = ("miimon", "downdelay", "updelay", "lacp_rate", "xmit_hash_policy", "num_grat_arp")


class MachineSetupCalls:
    _transport: Transport

    def set_storage_layout(
        self,
        system_id: str,
        layout: str,
        *,
        params: Mapping[str, str | int | bool | None] | None = None,
    ) -> Machine:
        """POST machines/<id>/?op=set_storage_layout: replace the machine's whole storage
        configuration with `layout` (flat, lvm, bcache, blank, custom). `params` are the
        layout's fields (root_device as a block-device id, root_size, boot_size, vg_name,
        lv_name, lv_size, cache_device, cache_mode, cache_size, cache_no_part)."""
        fields: list[tuple[str, Any]] = [("storage_layout", layout)]
        fields.extend((str(name), value) for name, value in (params or {}).items())
        data = self._transport.call(
            "POST",
            f"machines/{path_segment(system_id)}/",
            op="set_storage_layout",
            params=fields,
            system_id=system_id,
        )
        if not isinstance(data, Mapping):
            raise MaasError(
                f"MAAS set_storage_layout on {system_id} returned {type(data).__name__} "
                "instead of a machine object",
                system_id=system_id,
            )
        return Machine.from_json(data)

    def interfaces(self, system_id: str) -> list[Interface]:
        """GET nodes/<id>/interfaces/."""
        data = self._transport.call(
            "GET", f"nodes/{path_segment(system_id)}/interfaces/", system_id=system_id
        )
        if not isinstance(data, Sequence) or isinstance(data, str):
            raise MaasError(
                f"MAAS listed the interfaces of {system_id} as {type(data).__name__}, not a list",
                system_id=system_id,
            )
        return [Interface.from_json(item) for item in data]

    def create_bond(
        self,
        system_id: str,
        *,
        name: str,
        parents: Sequence[int],
        mode: str,
        options: Mapping[str, str | int] | None = None,
        mtu: int | None = None,
        tags: Sequence[str] = (),
    ) -> Interface:
        """POST nodes/<id>/interfaces/?op=create_bond. `options` use the names without the
        `bond_` prefix (miimon, lacp_rate, xmit_hash_policy ...); `tags` go comma-separated."""
        fields: list[tuple[str, Any]] = [("name", name), ("parents", list(parents))]
        fields.append(("bond_mode", mode))
        for option, value in (options or {}).items():
            fields.append((f"bond_{option}", value))
        fields.append(("mtu", mtu))
        fields.append(("tags", ",".join(tags) if tags else None))
        return self._interface_call(system_id, "create_bond", None, fields)

    def link_subnet(
        self,
        system_id: str,
        interface_id: int,
        *,
        mode: str,
        subnet: int | None = None,
        ip_address: str | None = None,
        force: bool = False,
    ) -> Interface:
        """POST nodes/<id>/interfaces/<n>/?op=link_subnet (mode auto, dhcp, static, link_up)."""
        fields: list[tuple[str, Any]] = [
            ("mode", mode),
            ("subnet", subnet),
            ("ip_address", ip_address),
            ("force", True if force else None),
        ]
        return self._interface_call(system_id, "link_subnet", interface_id, fields)

    def delete_interface(self, system_id: str, interface_id: int) -> None:
        """DELETE nodes/<id>/interfaces/<n>/ (a bond's parents keep no links afterwards)."""
        self._transport.call(
            "DELETE",
            f"nodes/{path_segment(system_id)}/interfaces/{int(interface_id)}/",
            system_id=system_id,
        )

    def _interface_call(
        self, system_id: str, op: str, interface_id: int | None, fields: list[tuple[str, Any]]
    ) -> Interface:
        path = f"nodes/{path_segment(system_id)}/interfaces/"
        if interface_id is not None:
            path += f"{int(interface_id)}/"
        data = self._transport.call("POST", path, op=op, params=fields, system_id=system_id)
        try:
            return Interface.from_json(data)
        except ValueError as exc:
            raise MaasError(
                f"MAAS {op} on {system_id} returned no usable interface object: {exc}",
                system_id=system_id,
            ) from None
