"""`teuthology-maas quarantine list` and `quarantine release NODE`.

A quarantined node is Broken in MAAS with our quarantine comment (node/quarantine.py) and down
in paddles. `list` shows them with MAAS's account of the failures; `release` is for after the
repair: mark it fixed in MAAS (MAAS's admin action: Ready again) and up in paddles."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from teuthology_maas.cli._common import (
    Context,
    ExitCode,
    UsageError,
    add_common_options,
    short_hostname,
)
from teuthology_maas.cli._inventory import add_machine_type_option, check_types, requested_types
from teuthology_maas.cli._paddles import add_lock_server_option, lock_server_from_config
from teuthology_maas.cli._regions import each_region, report_failures, several_regions
from teuthology_maas.cli._table import printable
from teuthology_maas.cli.nodes import find_machine
from teuthology_maas.errors import (
    ConfigError,
    MaasError,
    MaasPermissionDenied,
    MachineStateError,
)
from teuthology_maas.models import Machine, NodeStatus
from teuthology_maas.node.provisioner import default_owner
from teuthology_maas.node.quarantine import MARKER, clean, quarantine_text
from teuthology_maas.node.region import node_region
from teuthology_maas.teuthology.paddles import PaddlesReader
from teuthology_maas.teuthology.paddles_nodes import mark_up
from teuthology_maas.type_match import type_of

if TYPE_CHECKING:
    from teuthology_maas.config import MaasConfig


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "quarantine",
        help="list quarantined nodes, or release one after its repair",
        description="Nodes whose deployments failed quarantine_after times in a row on the "
        "node itself are quarantined: marked broken in MAAS with a comment naming the "
        "failures, and down in paddles. `list` shows them; `release NODE` marks one fixed in "
        "MAAS (an admin action) and up in paddles.",
    )
    add_common_options(parser, top_level=False)
    parser.add_argument("action", choices=("list", "release"),
                        help="list: the quarantined nodes and why; release: mark NODE fixed "
                        "in MAAS and up in paddles after its repair")
    parser.add_argument("name", metavar="NODE", nargs="?",
                        help="release: the node (short hostname or FQDN)")
    add_machine_type_option(parser, help="list: only these machine types (repeatable, or "
                            "comma-separated)")
    parser.add_argument("--force", action="store_true",
                        help="release: also a Broken node that was not quarantined by "
                        "teuthology-maas (an operator's mark)")
    add_lock_server_option(parser, help="paddles URL (default: lock_server from the teuthology "
                           "config file; without one, paddles is left out)")
    parser.set_defaults(handler=run)


def run(ctx: Context, args: argparse.Namespace) -> int:
    if args.action == "list":
        if args.name or args.force:
            raise UsageError("quarantine list takes no NODE and no --force")
        return run_list(ctx, args)
    if not args.name:
        raise UsageError("quarantine release needs the NODE to release")
    if args.machine_type:
        raise UsageError("quarantine release takes a NODE, not -m TYPE")
    return run_release(ctx, args)


def _lock_server(ctx: Context, url: str | None) -> str | None:
    if url:
        return str(url)
    try:
        return lock_server_from_config(ctx.config_file())
    except ConfigError:
        return None


def quarantined(client: Any, machine: Machine) -> str | None:
    """Our quarantine comment on `machine`, from MAAS (None: not quarantined by us)."""
    if machine.status is not NodeStatus.BROKEN:
        return None
    text = quarantine_text(machine)
    if text is None and not machine.error_description:  # MAAS < 3.5: read the event
        events = client.events(id=[machine.system_id], level="DEBUG", limit=50)
        text = quarantine_text(machine, events)
    return text


def run_list(ctx: Context, args: argparse.Namespace) -> int:
    cfg = ctx.config()
    requested = requested_types(args.machine_type)
    wanted = requested or list(cfg.machine_types)
    several = several_regions(cfg)

    def listed(region: MaasConfig) -> tuple[list[Machine], list[dict[str, Any]]]:
        client = ctx.client(interactive=True, config=region)
        visible = client.list_machines()
        mine = [t for t in wanted if cfg.for_type(t) in (None, region)]
        rows: list[dict[str, Any]] = []
        for machine in (m for m in visible if m.status is NodeStatus.BROKEN):
            kind = type_of(machine, mine, region.type_match)
            text = quarantined(client, machine) if kind is not None else None
            if text is not None:
                rows.append({"hostname": machine.hostname, "system_id": machine.system_id,
                             "machine_type": kind, "name": region.fqdn(machine.hostname),
                             "reason": text, "paddles": None,
                             **({"region": region.region} if several else {})})
        return visible, rows

    # every MAAS installation (maas: regions:): one that cannot be asked fails its types only
    found = each_region(cfg, listed, wanted_types=requested)
    check_types(requested, [m for _, (ms, _) in found.done for m in ms], cfg.machine_types)
    rows = sorted((r for _, (_, rs) in found.done for r in rs), key=lambda r: r["hostname"])
    url = _lock_server(ctx, args.lock_server)
    if url and rows:
        with PaddlesReader(url, timeout=cfg.http_timeout) as reader:
            for row in rows:
                try:
                    node = reader.record(row["name"])
                except MaasError as exc:
                    row["paddles"] = {"error": str(exc)[:200]}
                    continue
                row["paddles"] = {k: node.get(k) for k in ("up", "locked", "locked_by")}
    if ctx.json:
        extra = {"region_errors": [f.as_json() for f in found.failures]} if several else {}
        ctx.emit_json({"quarantined": rows, "total": len(rows), **extra})
    else:
        for row in rows:
            where = f", region {row['region']}" if several else ""
            ctx.out(printable(f"{row['hostname']}  ({row['machine_type']}{where})  "
                              f"{_paddles_words(row['paddles'])}"))
            ctx.out(f"    {printable(row['reason'])}")
        ctx.out(f"{len(rows)} quarantined node(s)" + (
            "; `teuthology-maas quarantine release NODE` after the repair" if rows else ""))
    if found.failures:
        report_failures(ctx, found.failures, what="its quarantined nodes are not listed")
        return int(ExitCode.UNREACHABLE)
    return int(ExitCode.OK)


def _paddles_words(paddles: dict[str, Any] | None) -> str:
    if paddles is None:
        return "paddles: not checked"
    if "error" in paddles:
        return f"paddles: unreadable ({paddles['error']})"
    up = "up" if paddles.get("up") else "down"
    held = f", locked by {paddles.get('locked_by')}" if paddles.get("locked") else ""
    return f"paddles: {up}{held}"


def run_release(ctx: Context, args: argparse.Namespace) -> int:
    hostname = short_hostname(args.name)
    # through the node's own MAAS installation (maas: regions:), as deploy and release do
    cfg = node_region(ctx.config(), hostname)
    client = ctx.client(interactive=True, config=cfg)
    machine = find_machine(client, hostname)
    if machine.status is NodeStatus.BROKEN:
        text = quarantined(client, machine)
        if text is None and not args.force:
            raise MachineStateError(
                f"{machine.describe()} is Broken but was not quarantined by teuthology-maas "
                f"({clean(machine.error_description or 'no comment', 120)}); an operator "
                "marked it: pass --force to mark it fixed anyway", **machine.error_fields())
        try:
            machine = client.mark_fixed(
                machine.system_id,
                comment=f"teuthology-maas quarantine release for {default_owner()}")
        except MaasPermissionDenied as exc:
            raise MaasPermissionDenied(
                f"MAAS refused to mark {machine.hostname} fixed ({exc.message}): marking "
                "fixed is a MAAS administrator's action. Run this with an admin's API key "
                "(--config), or mark it fixed in the MAAS UI and run `teuthology-maas "
                f"quarantine release {machine.hostname}` again to put it up in paddles",
                **machine.error_fields(), http_status=exc.http_status) from None
        done = f"marked fixed in MAAS ({machine.status_name})"
    elif machine.status is NodeStatus.READY:
        done = "already fixed in MAAS (Ready)"  # by an admin in the UI: paddles is left
    else:
        raise MachineStateError(
            f"{machine.describe()} is {machine.status_name}, not Broken: not quarantined, "
            "nothing to release", **machine.error_fields())
    lines = [f"{machine.hostname}: {done}"]
    result: dict[str, Any] = {"hostname": machine.hostname, "system_id": machine.system_id,
                              "status": machine.status_name, "maas": done, "paddles": None}
    url = _lock_server(ctx, args.lock_server)
    failed = False
    if url:
        try:
            result["paddles"] = mark_up(url, cfg.fqdn(machine.hostname), MARKER,
                                        timeout=cfg.http_timeout)
        except (MaasError, ValueError) as exc:
            result["paddles"] = f"failed: {exc}"
            failed = True
        lines.append(f"{machine.hostname}: {result['paddles']}")
    if ctx.json:
        ctx.emit_json(result)
    else:
        for line in lines:
            ctx.out(printable(line))
    return int(ExitCode.FAILURE if failed else ExitCode.OK)
