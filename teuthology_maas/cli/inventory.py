"""`teuthology-maas inventory`: paddles' node records from MAAS's machines.

A dry run by default: one line per node saying what --apply would do. --apply creates the
missing nodes (POST /nodes/) and updates the others (PUT /nodes/<name>/), each after reading
the node again (a node locked since the plan keeps its job's fields). It never deletes a
node, never locks or unlocks one, and never writes a description."""

from __future__ import annotations

import argparse
from collections import Counter
from typing import TYPE_CHECKING, Any

from teuthology_maas.cli._common import Context, ExitCode, add_common_options
from teuthology_maas.cli._inventory import add_machine_type_option, check_types, requested_types
from teuthology_maas.cli._inventory_plan import ACTIONS, NodePlan, make_plan, plan_node
from teuthology_maas.cli._paddles import add_lock_server_option, lock_server_from_config
from teuthology_maas.cli._regions import each_region, report_failures, several_regions
from teuthology_maas.cli._table import printable
from teuthology_maas.errors import MaasError
from teuthology_maas.models import Machine
from teuthology_maas.teuthology.paddles import PaddlesReader
from teuthology_maas.teuthology.paddles_nodes import PaddlesRefused, PaddlesWriter
from teuthology_maas.type_match import type_of

if TYPE_CHECKING:
    from teuthology_maas.config import MaasConfig


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "inventory",
        help="create or update paddles' node records from MAAS's machines",
        description="Compare the MAAS machines of the configured machine types with paddles' "
        "node records and say, per node, what would change: CREATE (not in paddles), UPDATE "
        "(fields old -> new), UNCHANGED, SKIP (with the reason), ORPHAN (in paddles, not in "
        "MAAS: never deleted). Fields: machine_type, arch, mac_address (the boot interface), "
        "is_vm, up (MAAS can deploy it) and, for a Deployed machine, os_type and os_version. "
        "A node locked in paddles only gets arch, mac_address, is_vm and up -> down; its "
        "lock and description are never touched. A dry run by default; --apply writes. Exit "
        "status 4 when a dry run finds changes to make, 1 when a write failed, 5 when a MAAS "
        "region (maas: regions:) could not be listed (the others' nodes are planned).",
    )
    add_common_options(parser, top_level=False)
    add_lock_server_option(parser)
    add_machine_type_option(
        parser, help="only these configured machine types (repeatable, or comma-separated)"
    )
    parser.add_argument(
        "--apply", action="store_true", help="create and update the nodes (default: only report)"
    )
    parser.set_defaults(handler=run)


def run(ctx: Context, args: argparse.Namespace) -> int:
    cfg = ctx.config()
    url = args.lock_server or lock_server_from_config(ctx.config_file())
    requested = requested_types(args.machine_type)
    wanted = requested or list(cfg.machine_types)
    several = several_regions(cfg)
    known = list(dict.fromkeys([*cfg.machine_types, *requested]))

    def listed(region: MaasConfig) -> list[Machine]:
        return ctx.client(interactive=True, config=region).list_machines()

    # each MAAS installation (maas: regions:) on its own: one that fails fails its types only
    found = each_region(cfg, listed, wanted_types=requested)
    check_types(requested, [m for _, ms in found.done for m in ms], cfg.machine_types)
    typed: list[tuple[Machine, str]] = []
    region_of: dict[tuple[str, str], str] = {}
    for region, listing in found.done:
        # a region's machines are of its own types (or of a requested type no region names),
        # sorted by its own type_match
        mine = [t for t in known if cfg.for_type(t) in (None, region)]
        for machine in listing:
            kind = type_of(machine, mine, region.type_match)
            if kind is not None and kind in wanted:
                typed.append((machine, kind))
                region_of[(machine.hostname, machine.system_id)] = region.region
    # a region that could not be listed: its nodes in paddles are not orphans, only unchecked
    unchecked = {t for failure in found.failures for t in failure.machine_types}
    with PaddlesReader(url, timeout=cfg.http_timeout) as reader:
        nodes = {str(n.get("name")): n for n in reader.records()}
        plans = make_plan(typed, nodes, cfg.fqdn, [t for t in wanted if t not in unchecked])
        # system ids are unique only within one MAAS installation
        machines = {(m.hostname, m.system_id): m for m, _ in typed}
        failed = False
        if args.apply:
            with PaddlesWriter(url, timeout=cfg.http_timeout) as writer:
                for plan in plans:
                    if plan.action in ("create", "update"):
                        machine = machines[(plan.hostname, str(plan.system_id))]
                        failed |= _apply(plan, machine, reader, writer)
    if several:
        for plan in plans:
            plan.region = region_of.get((plan.hostname, str(plan.system_id)))
    counts = Counter(p.action for p in plans)
    pending = not args.apply and (counts["create"] or counts["update"])
    if ctx.json:
        extra = {"region_errors": [f.as_json() for f in found.failures]} if several else {}
        ctx.emit_json({
            "dry_run": not args.apply, "lock_server": reader.url,
            "nodes": [p.as_json() for p in plans],
            "counts": {action: counts[action] for action in ACTIONS},
            **extra,
        })
    else:
        _render(ctx, plans, dry_run=not args.apply)
    if found.failures:
        report_failures(ctx, found.failures, what="its nodes were not planned nor written")
    if failed:
        return int(ExitCode.FAILURE)
    if found.failures:
        return int(ExitCode.UNREACHABLE)
    return int(ExitCode.FINDINGS if pending else ExitCode.OK)


def _apply(plan: NodePlan, machine: Machine, reader: PaddlesReader,
           writer: PaddlesWriter) -> bool:
    """Write one node, planned again on a fresh read; True when it failed."""
    kind = plan.machine_type or ""
    try:
        fresh = reader.record(plan.name)
    except MaasError as exc:
        if exc.http_status != 404:
            plan.result = f"failed: cannot re-read paddles: {exc}"
            return True
        fresh = None
    again = plan_node(plan.name, machine, kind, fresh)
    plan.changes, plan.held, plan.reason = again.changes, again.held, again.reason
    try:
        if again.action == "create":
            try:
                writer.create(plan.name, again.fields)
            except PaddlesRefused as exc:
                if "already exists" not in exc.message:
                    raise
                # created by someone else since our read: plan it as an update instead
                again = plan_node(plan.name, machine, kind, reader.record(plan.name))
                plan.changes, plan.held, plan.reason = again.changes, again.held, again.reason
                writer.update(plan.name, {k: new for k, (_, new) in again.changes.items()})
                plan.result = "updated (created meanwhile by someone else)"
                return False
            plan.result = "created"
        elif again.action == "update":
            writer.update(plan.name, {k: new for k, (_, new) in again.changes.items()})
            plan.result = "updated"
        else:
            plan.result = f"nothing to do now ({again.action})"
    except (MaasError, ValueError) as exc:
        plan.result = f"failed: {exc}"
        return True
    return False


def _show(value: Any) -> str:
    if value is None:
        return "null"
    return str(value).lower() if isinstance(value, bool) else printable(value)


def _render(ctx: Context, plans: list[NodePlan], *, dry_run: bool) -> None:
    for plan in plans:
        kind = printable(plan.machine_type or "-")
        kind += f", region {printable(plan.region)}" if plan.region else ""
        ctx.out(f"{plan.action.upper():<9}  {printable(plan.name)}  ({kind})")
        if plan.action == "create":
            ctx.out("           " + ", ".join(f"{k}={_show(v)}" for k, v in plan.fields.items()))
        for key, (old, new) in plan.changes.items():
            ctx.out(f"           {key}: {_show(old)} -> {_show(new)}")
        for key, (old, new) in plan.held.items():
            ctx.out(f"           {key}: {_show(old)} -> {_show(new)} (held back)")
        if plan.reason:
            ctx.out(f"           {printable(plan.reason)}")
        if plan.result:
            ctx.out(f"           -> {printable(plan.result)}")
    counts = Counter(p.action for p in plans)
    parts = [f"{counts[a]} {a if a != 'update' else 'to update'}" for a in ACTIONS if counts[a]]
    head = f"{len(plans)} node(s): " + (", ".join(parts) if parts else "nothing")
    if dry_run and (counts["create"] or counts["update"]):
        head += " (dry run: nothing changed; --apply writes them)"
    if plans:
        ctx.out()
    ctx.out(head)
