"""Which handlers and operations the simulator describes (only implemented ones)."""

from __future__ import annotations

from teuthology_maas.simulator import _describe_config
from teuthology_maas.simulator._describe_config import DEPLOY_BRIDGE_PARAMS, SET_STORAGE_LAYOUT
from teuthology_maas.simulator._describe_types import Action, Handler, crud

_COMMENT = ("comment", "String", "Optional. Optional comment for the event log.")
_MACHINE_FILTERS = tuple(
    (name, "String", f"Optional. Only machines matching {name} (repeatable).")
    for name in (
        "id",
        "hostname",
        "agent_name",
        "owner",
        "pool",
        "zone",
        "tags",
        "not_tags",
        "status",
    )
)
_ALLOCATE_PARAMS = tuple(
    (name, kind, f"Optional. {text}")
    for name, kind, text in (
        ("name", "String", "Hostname or FQDN of the desired machine."),
        ("system_id", "String", "system_id of the desired machine."),
        ("arch", "String", "Architecture of the returned machine (e.g. 'amd64/generic')."),
        ("cpu_count", "Int", "Minimum number of CPUs."),
        ("mem", "Int", "Minimum memory in MiB."),
        ("tags", "String", "Tags the machine must match (repeatable)."),
        ("not_tags", "String", "Tags the machine must NOT match (repeatable)."),
        ("zone", "String", "Physical zone name the machine must be located in."),
        ("not_in_zone", "String", "Zones the machine must NOT be in."),
        ("pool", "String", "Resource pool name the machine must belong to."),
        ("not_in_pool", "String", "Resource pools the machine must NOT belong to."),
        ("storage", "String", "Storage constraint, 'label:size(tag,...),...' with sizes in GB."),
        ("agent_name", "String", "An optional agent name to attach to the acquired machine."),
        ("comment", "String", "Comment for the event log."),
        ("dry_run", "Boolean", "Do not actually allocate the machine."),
        ("verbose", "Boolean", "Return verbose constraint matches."),
    )
)

HANDLERS: tuple[tuple[Handler | None, Handler | None], ...] = (
    (
        Handler(
            "AnonMachinesHandler",
            "Anonymous access to Machines.",
            "machines/",
            (
                Action(
                    "is_registered",
                    "GET",
                    "Check that the given MAC address is registered to a machine.",
                    (("mac_address", "String", "Required. The MAC address to be checked."),),
                ),
            ),
        ),
        Handler(
            "MachinesHandler",
            "Manage the collection of all the machines in the MAAS.",
            "machines/",
            (
                crud(
                    "read",
                    "List machines visible to the user, optionally filtered.",
                    *_MACHINE_FILTERS,
                ),
                Action(
                    "allocate",
                    "POST",
                    "Allocate an available machine for deployment.",
                    _ALLOCATE_PARAMS,
                ),
                Action("list_allocated", "GET", "List machines allocated to the current user."),
                Action(
                    "release",
                    "POST",
                    "Release multiple machines.",
                    (
                        ("machines", "String", "Required. A list of system_ids (repeatable)."),
                        _COMMENT,
                    ),
                ),
            ),
        ),
    ),
    (
        None,
        Handler(
            "MachineHandler",
            "Manage an individual machine.",
            "machines/{system_id}/",
            (
                crud("read", "Read a machine."),
                crud(
                    "update",
                    "Update a machine (admin).",
                    ("hostname", "String", "Optional. The new hostname."),
                    ("description", "String", "Optional. The new description."),
                ),
                crud("delete", "Delete a machine (admin)."),
                Action(
                    "deploy",
                    "POST",
                    "Deploy an operating system to a machine.",
                    (
                        (
                            "user_data",
                            "String",
                            "Optional. Base64-encoded user data for cloud-init.",
                        ),
                        (
                            "distro_series",
                            "String",
                            "Optional. The OS release to deploy, e.g. 'jammy'.",
                        ),
                        (
                            "hwe_kernel",
                            "String",
                            "Optional. The kernel to deploy, e.g. 'ga-22.04'.",
                        ),
                        (
                            "agent_name",
                            "String",
                            "Optional. Agent name, used when deploy allocates.",
                        ),
                        ("ephemeral_deploy", "Boolean", "Optional. Deploy to memory."),
                        *DEPLOY_BRIDGE_PARAMS,
                        _COMMENT,
                    ),
                ),
                SET_STORAGE_LAYOUT,
                Action(
                    "release",
                    "POST",
                    "Release a machine.",
                    (
                        _COMMENT,
                        ("erase", "Boolean", "Optional. Erase the disks when releasing."),
                        ("secure_erase", "Boolean", "Optional. Use the drive's secure erase."),
                        (
                            "quick_erase",
                            "Boolean",
                            "Optional. Wipe the start and end of each disk.",
                        ),
                        ("force", "Boolean", "Optional. Force the release."),
                    ),
                ),
                Action("abort", "POST", "Abort a machine's current operation.", (_COMMENT,)),
                Action("lock", "POST", "Mark a machine as locked.", (_COMMENT,)),
                Action("unlock", "POST", "Mark a machine as unlocked.", (_COMMENT,)),
                Action("mark_broken", "POST", "Mark a machine as broken.", (_COMMENT,)),
                Action(
                    "mark_fixed", "POST", "Mark a broken machine as fixed (admin).", (_COMMENT,)
                ),
                Action(
                    "power_on",
                    "POST",
                    "Turn on a machine.",
                    (("user_data", "String", "Optional. Base64-encoded user data."), _COMMENT),
                ),
                Action(
                    "power_off",
                    "POST",
                    "Power off a machine.",
                    (("stop_mode", "String", "Optional. 'soft' or 'hard'."), _COMMENT),
                ),
                Action("query_power_state", "GET", "Query the power state of a machine."),
                Action("get_curtin_config", "GET", "Return the rendered curtin configuration."),
                Action(
                    "set_workload_annotations",
                    "POST",
                    "Set key=value workload annotations on a machine.",
                    (("key", "String", "Optional. Any key=value pair; an empty value deletes."),),
                ),
                Action(
                    "set_owner_data",
                    "POST",
                    "Deprecated alias of set_workload_annotations.",
                    (("key", "String", "Optional. Any key=value pair; an empty value deletes."),),
                ),
            ),
        ),
    ),
    (
        Handler("AnonNodesHandler", "Anonymous access to nodes.", "nodes/", ()),
        Handler(
            "NodesHandler",
            "Manage the collection of all the nodes in the MAAS.",
            "nodes/",
            (crud("read", "List nodes visible to the user.", *_MACHINE_FILTERS),),
        ),
    ),
    (
        None,
        Handler(
            "NodeHandler",
            "Manage an individual node.",
            "nodes/{system_id}/",
            (crud("read", "Read a node."),),
        ),
    ),
    (
        None,
        Handler(
            "NodeScriptResultsHandler",
            "Manage node script results.",
            "nodes/{system_id}/results/",
            (
                crud(
                    "read",
                    "Return a list of script results grouped by run.",
                    ("type", "String", "Optional. Only results of this type, e.g. 'installation'."),
                ),
            ),
        ),
    ),
    (
        None,
        Handler(
            "NodeScriptResultHandler",
            "Manage node script results.",
            "nodes/{system_id}/results/{id}/",
            (
                crud(
                    "read",
                    "View a set of test results.",
                    ("include_output", "String", "Optional. Include base64-encoded output."),
                ),
                Action(
                    "download",
                    "GET",
                    "Download script results.",
                    (("output", "String", "Optional. combined, stdout, stderr or result."),),
                ),
            ),
        ),
    ),
    (
        None,
        Handler(
            "EventsHandler",
            "Retrieve filtered node events.",
            "events/",
            (
                Action(
                    "query",
                    "GET",
                    "List node events, newest first, optionally filtered.",
                    (
                        ("id", "String", "Optional. Node system_id (repeatable)."),
                        ("hostname", "String", "Optional. Node hostname (repeatable)."),
                        (
                            "level",
                            "String",
                            "Optional. Minimum level: DEBUG, INFO, WARNING, ERROR.",
                        ),
                        ("limit", "Int", "Optional. Number of events to return (max 1000)."),
                        ("before", "Int", "Optional. Events older than this event id."),
                        ("after", "Int", "Optional. Events newer than this event id."),
                    ),
                ),
            ),
        ),
    ),
    (
        None,
        Handler(
            "BootResourcesHandler",
            "Manage the boot resources.",
            "boot-resources/",
            (
                crud(
                    "read",
                    "List all boot resources.",
                    ("type", "String", "Optional. all, synced or uploaded."),
                ),
                Action("is_importing", "GET", "Return import status."),
            ),
        ),
    ),
    (
        None,
        Handler(
            "BootResourceHandler",
            "Manage a boot resource.",
            "boot-resources/{id}/",
            (crud("read", "Read a boot resource."),),
        ),
    ),
    (
        None,
        Handler(
            "UsersHandler",
            "Manage the user accounts of this MAAS.",
            "users/",
            (
                crud("read", "List users."),
                Action("whoami", "GET", "Returns the currently logged in user."),
            ),
        ),
    ),
    (
        None,
        Handler(
            "UserHandler",
            "Manage a user account.",
            "users/{username}/",
            (crud("read", "Retrieve a user."),),
        ),
    ),
    (
        None,
        Handler(
            "AccountHandler",
            "Manage the current logged-in user.",
            "account/",
            (Action("list_authorisation_tokens", "GET", "List authorisation tokens."),),
        ),
    ),
    (
        None,
        Handler(
            "MaasHandler",
            "Manage the MAAS server.",
            "maas/",
            (
                Action(
                    "get_config",
                    "GET",
                    "Get a config value.",
                    (("name", "String", "Required. The name of the config item."),),
                ),
                Action(
                    "set_config",
                    "POST",
                    "Set a config value (admin).",
                    (
                        ("name", "String", "Required. The name of the config item."),
                        ("value", "String", "Required. The value of the config item."),
                    ),
                ),
            ),
        ),
    ),
    (
        Handler(
            "VersionHandler",
            "Information about this MAAS instance.",
            "version/",
            (crud("read", "Version and capabilities of this MAAS instance."),),
        ),
        None,
    ),
    (
        None,
        Handler("ZonesHandler", "Manage physical zones.", "zones/", (crud("read", "List zones."),)),
    ),
    (
        None,
        Handler(
            "ResourcePoolsHandler",
            "Manage resource pools.",
            "resourcepools/",
            (crud("read", "List resource pools."),),
        ),
    ),
    (
        None,
        Handler(
            "TagsHandler", "Manage all tags known to MAAS.", "tags/", (crud("read", "List tags."),)
        ),
    ),
    *_describe_config.HANDLERS,
)
