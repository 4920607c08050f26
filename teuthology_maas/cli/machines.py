"""`teuthology-maas machines`: the fleet as MAAS sees it, one row per machine."""

from __future__ import annotations

import argparse
from collections import Counter
from typing import Any

from teuthology_maas.cli._common import Context, ExitCode, add_common_options
from teuthology_maas.cli._inventory import (
    add_machine_type_option,
    machine_type_of,
    requested_types,
)
from teuthology_maas.cli._paddles import lock_server_from_config
from teuthology_maas.cli._table import label_colour, paint, render_table, status_colour
from teuthology_maas.models import Machine, NodeStatus
from teuthology_maas.teuthology.paddles import PaddlesNode, PaddlesReader

HEADERS = ("HOSTNAME", "TYPE", "STATUS", "OWNER", "LOCKED", "OS", "POWER", "MESSAGE")


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "machines",
        help="list the MAAS machines of the configured machine types",
        description="List the machines of the configured machine types as MAAS sees them: "
        "hostname, type, status, owner, MAAS lock, deployed OS, power state and MAAS's "
        "latest status message, then a count per status; with --paddles, also who holds "
        "each in paddles. A non-admin API key only sees free machines and its own.",
    )
    add_common_options(parser, top_level=False)
    add_machine_type_option(parser, help="only this machine type (repeatable, or comma-separated)")
    parser.add_argument(
        "--all",
        action="store_true",
        help="also list machines that belong to no configured machine type",
    )
    parser.add_argument(
        "--paddles",
        action="store_true",
        help="add who holds each machine in paddles (lock_server from the config file)",
    )
    parser.add_argument(
        "--lock-server", metavar="URL", help="like --paddles, with this paddles URL"
    )
    parser.set_defaults(handler=run)


def os_of(machine: Machine) -> str:
    if machine.osystem and machine.distro_series:
        return f"{machine.osystem}/{machine.distro_series}"
    return machine.distro_series or machine.osystem


def describe(machine: Machine, kind: str | None) -> dict[str, Any]:
    return {
        "hostname": machine.hostname,
        "system_id": machine.system_id,
        "type": kind,
        "status": machine.status_name,
        "owner": machine.owner,
        "locked": machine.locked,
        "os": os_of(machine) or None,
        "power": machine.power_state,
        "status_message": machine.status_message,
    }


def summary_line(counts: Counter[str], order: list[str], *, colour: bool = False) -> str:
    total = sum(counts.values())
    noun = "machine" if total == 1 else "machines"
    parts = [
        paint(f"{counts[label]} {label}", label_colour(label), colour) for label in order
    ]
    return f"{total} {noun}" + (": " + ", ".join(parts) if parts else "")


def run(ctx: Context, args: argparse.Namespace) -> int:
    cfg = ctx.config()
    wanted = requested_types(args.machine_type)
    known = list(dict.fromkeys([*cfg.machine_types, *wanted]))
    client = ctx.client(interactive=True)
    selected: list[tuple[Machine, str | None]] = []
    for machine in sorted(client.list_machines(), key=lambda m: m.hostname):
        kind = machine_type_of(machine, known)
        if wanted and kind not in wanted:
            continue
        if not wanted and kind is None and not args.all:
            continue
        selected.append((machine, kind))

    locks = _paddles_locks(ctx, args, known) if args.paddles or args.lock_server else None
    counts: Counter[str] = Counter(m.status_name for m, _ in selected)
    # statuses in MAAS's own numeric order, so summaries read the same every time
    order = sorted(counts, key=lambda label: _status_rank(label))
    if ctx.json:
        described = [describe(m, kind) for m, kind in selected]
        if locks is not None:
            for entry in described:
                node = locks.get(entry["hostname"])
                entry["paddles"] = (
                    None if node is None
                    else {"locked": node.locked, "locked_by": node.locked_by}
                )  # fmt: skip
        ctx.emit_json(
            {
                "machines": described,
                "summary": {label: counts[label] for label in order},
                "total": len(selected),
            }
        )
        return int(ExitCode.OK)

    rows = []
    colours = []
    for machine, kind in selected:
        rows.append(
            [
                machine.hostname,
                kind or "-",
                machine.status_name,
                machine.owner or "-",
                "yes" if machine.locked else "no",
                os_of(machine) or "-",
                machine.power_state,
                machine.status_message or "",
            ]
        )
        colours.append([None, None, status_colour(machine.status), None, None, None, None, None])
        if locks is not None:
            rows[-1].insert(5, _paddles_cell(locks, machine.hostname))
            colours[-1].insert(5, None)
    headers = list(HEADERS)
    if locks is not None:
        headers.insert(5, "PADDLES")
    if rows:
        for line in render_table(headers, rows, colours=colours, colour=ctx.colour):
            ctx.out(line)
        ctx.out()
    ctx.out(summary_line(counts, order, colour=ctx.colour))
    return int(ExitCode.OK)


def _paddles_locks(
    ctx: Context, args: argparse.Namespace, machine_types: list[str]
) -> dict[str, PaddlesNode]:
    url = args.lock_server or lock_server_from_config(ctx.config_file())
    reader = PaddlesReader(url, timeout=ctx.config().http_timeout)
    try:
        return {node.hostname: node for node in reader.nodes(machine_types)}
    finally:
        reader.close()


def _paddles_cell(locks: dict[str, PaddlesNode], hostname: str) -> str:
    """Who holds the node in paddles: `-` free, `?` unknown to paddles."""
    node = locks.get(hostname)
    if node is None:
        return "?"
    return (node.locked_by or "locked") if node.locked else "-"


def _status_rank(label: str) -> int:
    try:
        return int(NodeStatus.from_label(label))
    except ValueError:
        return 1000
