"""The URL table: which handler answers which (resource, method, op)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from teuthology_maas.models import NodeStatus
from teuthology_maas.simulator import _misc_api as misc
from teuthology_maas.simulator._errors import bad_request, forbidden, not_found
from teuthology_maas.simulator.app import Call, Reply, Resource, json_reply, resource, text_reply
from teuthology_maas.simulator.describe import describe_document

if TYPE_CHECKING:
    from teuthology_maas.simulator.core import Simulator


CURTIN_STATES = frozenset({NodeStatus.DEPLOYING, NodeStatus.DEPLOYED, NodeStatus.FAILED_DEPLOYMENT})


def build_resources(sim: Simulator) -> list[Resource]:
    ops = sim.ops
    interfaces = sim.interface_ops
    state = sim.state

    def describe(call: Call) -> Reply:
        reply = json_reply(describe_document(call.base_url), content_type="application/json")
        reply.piston = False
        return reply

    def is_registered(call: Call) -> bool:
        mac = call.query.get("mac_address")
        if not mac:
            raise bad_request("No provided mac_address!")
        return any(m.mac_address == mac.lower() for m in state.machines.values())

    def node_results(call: Call) -> Any:
        machine = ops.for_view(call.authed, call.args[0])
        return misc.results_list(machine, call.query, state.clock.now())

    def node_result(call: Call) -> Any:
        machine = ops.for_view(call.authed, call.args[0])
        script_set = misc.find_script_set(machine, call.args[1])
        include = "include_output" in call.query
        return misc.script_set_json(
            machine, script_set, include_output=include, now=state.clock.now()
        )

    def node_result_download(call: Call) -> Reply:
        machine = ops.for_view(call.authed, call.args[0])
        script_set = misc.find_script_set(machine, call.args[1])
        output = call.query.get("output") or "combined"
        data = b"" if output in ("stderr", "result") else script_set.output
        return Reply(200, data, "text/plain")

    def user_read(call: Call) -> Any:
        user = sim.users.get(call.args[0])
        if user is None:
            raise not_found("No User matches the given query.")
        return misc.user_json(user)

    def tokens(call: Call) -> Any:
        return [{"name": "MAAS consumer", "token": call.authed.api_key}]

    def boot_resource(call: Call) -> Any:
        try:
            index = int(call.args[0])
            if not 1 <= index <= len(state.images.images):
                raise ValueError
        except ValueError:
            raise not_found("No BootResource matches the given query.") from None
        data = state.images.resource_json(index)
        data["sets"] = {}
        return data

    def get_config(call: Call) -> Reply:
        reply = json_reply(
            misc.get_config(state.config, call.query), content_type="application/json"
        )
        return reply

    def set_config(call: Call) -> Reply:
        if not call.authed.is_superuser:
            raise forbidden()
        misc.set_config(state.config, call.body.form)
        return text_reply("OK")

    def curtin_config(call: Call) -> Reply:
        machine = ops.for_view(call.authed, call.args[0])
        if machine.status not in CURTIN_STATES:
            raise bad_request(f"Machine {machine.hostname} is not in a deployment state.")
        return Reply(200, misc.curtin_config(machine).encode(), "text/plain; charset=utf-8")

    def machine_delete(call: Call) -> Reply:
        ops.delete(call.authed, call.args[0])
        return Reply(204, b"", "text/plain")

    def power_off(call: Call) -> Any:
        return ops.power_off(call.authed, call.args[0], call.body)

    def machines_create(call: Call) -> Any:
        raise bad_request("The MAAS simulator does not enlist machines; add them to the inventory.")

    def tags(call: Call) -> Any:
        names = sorted({t for m in state.machines.values() for t in m.tags})
        return [
            {
                "name": n,
                "definition": "",
                "comment": "",
                "kernel_opts": "",
                "resource_uri": f"/MAAS/api/2.0/tags/{n}/",
            }
            for n in names
        ]

    def events(call: Call) -> Any:
        user = call.authed
        return misc.events_query(state, call.query, lambda m: ops.can_view(user, m))

    def interface_delete(call: Call) -> Reply:
        interfaces.delete(call.authed, call.args[0], call.args[1])
        return Reply(204, b"", "text/plain")

    def nodes_read(call: Call) -> Any:
        ops.state.find(call.args[0])
        return ops.read(call.authed, call.args[0])

    machine_ops = {
        ("GET", None): lambda c: ops.read(c.authed, c.args[0]),
        ("PUT", None): lambda c: ops.update(c.authed, c.args[0], c.body),
        ("DELETE", None): machine_delete,
        ("POST", "deploy"): lambda c: ops.deploy(c.authed, c.args[0], c.body),
        ("POST", "release"): lambda c: ops.release(c.authed, c.args[0], c.body),
        ("POST", "abort"): lambda c: ops.abort(c.authed, c.args[0], c.body),
        ("POST", "lock"): lambda c: ops.lock(c.authed, c.args[0], c.body),
        ("POST", "unlock"): lambda c: ops.unlock(c.authed, c.args[0], c.body),
        ("POST", "mark_broken"): lambda c: ops.mark_broken(c.authed, c.args[0], c.body),
        ("POST", "mark_fixed"): lambda c: ops.mark_fixed(c.authed, c.args[0], c.body),
        ("POST", "power_on"): lambda c: ops.power_on(c.authed, c.args[0], c.body),
        ("POST", "power_off"): power_off,
        ("GET", "query_power_state"): lambda c: ops.query_power_state(c.authed, c.args[0]),
        ("GET", "get_curtin_config"): curtin_config,
        ("POST", "set_workload_annotations"): lambda c: ops.set_workload_annotations(
            c.authed, c.args[0], c.body
        ),
        ("POST", "set_owner_data"): lambda c: ops.set_workload_annotations(
            c.authed, c.args[0], c.body
        ),
        ("POST", "set_storage_layout"): lambda c: ops.set_storage_layout(
            c.authed, c.args[0], c.body
        ),
    }
    return [
        resource(r"describe/", None, {("GET", None): describe}),
        resource(
            r"version/",
            None,
            {("GET", None): lambda c: misc.version_json(sim.inventory.maas_version)},
        ),
        resource(
            r"machines/",
            {
                ("GET", None): lambda c: ops.list_machines(c.authed, c.query),
                ("POST", None): machines_create,
                ("POST", "allocate"): lambda c: ops.allocate(c.authed, c.body),
                ("GET", "list_allocated"): lambda c: ops.list_allocated(c.authed, c.query),
                ("POST", "release"): lambda c: ops.release_many(c.authed, c.body),
            },
            {("GET", "is_registered"): is_registered, ("POST", None): machines_create},
        ),
        resource(r"machines/([^/]+)/", machine_ops, machine=True),
        resource(
            r"nodes/",
            {("GET", None): lambda c: ops.list_machines(c.authed, c.query)},
            {("GET", "is_registered"): is_registered},
        ),
        resource(r"nodes/([^/]+)/", {("GET", None): nodes_read}, machine=True),
        resource(
            r"nodes/([^/]+)/interfaces/",
            {
                ("GET", None): lambda c: interfaces.read_all(c.authed, c.args[0]),
                ("POST", "create_bond"): lambda c: interfaces.create_bond(
                    c.authed, c.args[0], c.body
                ),
            },
            machine=True,
        ),
        resource(
            r"nodes/([^/]+)/interfaces/([^/]+)/",
            {
                ("GET", None): lambda c: interfaces.read(c.authed, c.args[0], c.args[1]),
                ("DELETE", None): interface_delete,
                ("POST", "link_subnet"): lambda c: interfaces.link_subnet(
                    c.authed, c.args[0], c.args[1], c.body
                ),
            },
            machine=True,
        ),
        resource(r"nodes/([^/]+)/results/", {("GET", None): node_results}, machine=True),
        resource(
            r"nodes/([^/]+)/results/([^/]+)/",
            {("GET", None): node_result, ("GET", "download"): node_result_download},
            machine=True,
        ),
        resource(r"events/", {("GET", "query"): events}),
        resource(
            r"boot-resources/",
            {
                ("GET", None): lambda c: state.images.resources_json(c.query.get("type")),
                ("GET", "is_importing"): lambda c: False,
            },
        ),
        resource(r"boot-resources/([^/]+)/", {("GET", None): boot_resource}),
        resource(
            r"users/",
            {
                ("GET", None): lambda c: [misc.user_json(u) for _, u in sorted(sim.users.items())],
                ("GET", "whoami"): lambda c: misc.user_json(c.authed),
            },
        ),
        resource(r"users/([^/]+)/", {("GET", None): user_read}),
        resource(r"account/", {("GET", "list_authorisation_tokens"): tokens}),
        resource(r"maas/", {("GET", "get_config"): get_config, ("POST", "set_config"): set_config}),
        resource(
            r"zones/",
            {
                ("GET", None): lambda c: [
                    state.catalog.zone_json(z) for z in sorted(state.catalog.zones)
                ]
            },
        ),
        resource(
            r"resourcepools/",
            {
                ("GET", None): lambda c: [
                    state.catalog.pool_json(p) for p in sorted(state.catalog.pools)
                ]
            },
        ),
        resource(r"tags/", {("GET", None): tags}),
    ]


__all__ = ["build_resources"]
