"""Describe entries for configuring a machine before deployment: storage layouts and the
interfaces API (bonds and subnet links)."""

from __future__ import annotations

from teuthology_maas.simulator._describe_types import Action, Handler, crud

SET_STORAGE_LAYOUT = Action(
    "set_storage_layout",
    "POST",
    "Change the storage layout of a Ready machine (admin).",
    tuple(
        (name, kind, f"{'Required' if name == 'storage_layout' else 'Optional'}. {text}")
        for name, kind, text in (
            ("storage_layout", "String", "flat, lvm, bcache, vmfs6, vmfs7, custom or blank."),
            ("boot_size", "String", "Size of the boot partition (e.g. 512M, 1G)."),
            ("root_size", "String", "Size of the root partition (e.g. 24G)."),
            ("root_device", "String", "Block device id for the root partition."),
            ("vg_name", "String", "LVM only. Name of the volume group."),
            ("lv_name", "String", "LVM only. Name of the logical volume."),
            ("lv_size", "String", "LVM only. Size of the logical volume."),
            ("cache_device", "String", "Bcache only. Block device id of the cache device."),
            ("cache_mode", "String", "Bcache only. writeback, writethrough or writearound."),
            ("cache_size", "String", "Bcache only. Size of the cache partition."),
            ("cache_no_part", "Boolean", "Bcache only. Use the whole cache device."),
        )
    ),
)

DEPLOY_BRIDGE_PARAMS = (
    ("bridge_all", "Boolean", "Optional. Bridge every interface (when deploy allocates)."),
    ("bridge_type", "String", "Optional. standard or ovs."),
    ("bridge_stp", "Boolean", "Optional. Spanning tree protocol on the bridges."),
    ("bridge_fd", "Int", "Optional. Forward delay of the bridges, in seconds."),
)

_BOND_PARAMS = (
    ("name", "String", "Required. Name of the interface."),
    ("parents", "Int", "Required. Parent interface ids (repeatable)."),
    ("mac_address", "String", "Optional. MAC address (default: the first parent's)."),
    ("tags", "String", "Optional. Comma-separated tags."),
    ("bond_mode", "String", "Optional. balance-rr, active-backup, 802.3ad ..."),
    ("bond_miimon", "Int", "Optional. Link monitoring frequency in ms."),
    ("bond_downdelay", "Int", "Optional. Delay before disabling a failed slave, in ms."),
    ("bond_updelay", "Int", "Optional. Delay before enabling a recovered slave, in ms."),
    ("bond_lacp_rate", "String", "Optional. fast or slow."),
    ("bond_xmit_hash_policy", "String", "Optional. layer2, layer2+3, layer3+4 ..."),
    ("bond_num_grat_arp", "Int", "Optional. Peer notifications after a failover."),
    ("mtu", "Int", "Optional. Maximum transmission unit."),
)

HANDLERS: tuple[tuple[Handler | None, Handler | None], ...] = (
    (
        None,
        Handler(
            "InterfacesHandler",
            "Manage interfaces on a node.",
            "nodes/{system_id}/interfaces/",
            (
                crud("read", "List all interfaces belonging to a node."),
                Action(
                    "create_bond", "POST", "Create a bond interface on a machine.", _BOND_PARAMS
                ),
            ),
        ),
    ),
    (
        None,
        Handler(
            "InterfaceHandler",
            "Manage a node's or device's interface.",
            "nodes/{system_id}/interfaces/{id}/",
            (
                crud("read", "Read an interface."),
                crud("delete", "Delete an interface."),
                Action(
                    "link_subnet",
                    "POST",
                    "Link an interface to a subnet.",
                    (
                        ("mode", "String", "Required. auto, dhcp, static or link_up."),
                        ("subnet", "Int", "Optional. Subnet id (required for auto and static)."),
                        ("ip_address", "String", "Optional. IP address for static mode."),
                        ("force", "Boolean", "Optional. Link up even with other links."),
                    ),
                ),
            ),
        ),
    ),
)
