"""`teuthology-maas machines`: the fleet as MAAS sees it, one row per machine, or counts."""

from __future__ import annotations

import argparse
import dataclasses
from collections import Counter
from typing import TYPE_CHECKING, Any

from teuthology_maas.cli._common import Context, ExitCode, UsageError, add_common_options
from teuthology_maas.cli._inventory import (
    add_machine_type_option,
    check_types,
    requested_types,
)
from teuthology_maas.cli._machine_rows import (
    COLUMNS,
    Row,
    choose_columns,
    seconds_in_status,
)
from teuthology_maas.cli._paddles import paddles_nodes
from teuthology_maas.cli._regions import each_region, report_failures, several_regions
from teuthology_maas.cli._table import label_colour, paint, render_table, status_colour
from teuthology_maas.models import Machine, NodeStatus
from teuthology_maas.suggest import did_you_mean
from teuthology_maas.teuthology.paddles import PaddlesNode
from teuthology_maas.type_match import type_of

if TYPE_CHECKING:
    from teuthology_maas.config import MaasConfig
    from teuthology_maas.maas.client import MaasClient


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "machines",
        help="list the MAAS machines of the configured machine types",
        description="List the machines of the configured machine types as MAAS sees them: "
        "hostname, type, status and how long it has been in it, owner, MAAS lock, deployed "
        "OS, IP addresses, power state and MAAS's latest status message (choose others with "
        "--columns), then a count per status; with --paddles, also who holds each in paddles "
        "and the job's description. --summary counts machines by type, status and owner "
        "instead. A non-admin API key only sees free machines and its own.",
    )
    add_common_options(parser, top_level=False)
    add_machine_type_option(parser, help="only this machine type (repeatable, or comma-separated)")
    parser.add_argument(
        "--all",
        action="store_true",
        help="also list machines that belong to no configured machine type",
    )
    parser.add_argument(
        "--status",
        action="append",
        metavar="STATUS",
        help="only machines in this MAAS status, e.g. deployed, ready, failed_deployment "
        "(repeatable, or comma-separated)",
    )
    parser.add_argument(
        "--owner",
        metavar="WHO",
        help="only machines held by WHO: the MAAS user, the teuthology owner stamped at "
        "deployment, or (with --paddles) the paddles lock owner",
    )
    parser.add_argument(
        "--free",
        action="store_true",
        help="only free machines: Ready, owned by nobody, not locked (nor in paddles, with "
        "--paddles)",
    )
    parser.add_argument(
        "--summary",
        action="store_true",
        help="counts by type, status and owner instead of one row per machine",
    )
    parser.add_argument(
        "--columns",
        metavar="LIST",
        help=f"the columns to show, comma-separated (+LIST adds to the defaults): "
        f"{', '.join(COLUMNS)}",
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


def wanted_statuses(values: list[str] | None) -> set[NodeStatus]:
    statuses: set[NodeStatus] = set()
    for value in values or ():
        for text in (t.strip() for t in value.split(",")):
            if not text:
                continue
            try:
                statuses.add(NodeStatus.from_label(text.replace("-", "_")))
            except ValueError:
                known = [s.keyword for s in NodeStatus] + [s.label for s in NodeStatus]
                hint = did_you_mean(text, known)
                raise UsageError(
                    f"no MAAS status {text!r}" + (f" ({hint})" if hint else "")
                    + "; expected a keyword such as ready, deployed or failed_deployment"
                ) from None
    return statuses


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
    statuses = wanted_statuses(args.status)
    with_paddles = bool(args.paddles or args.lock_server)
    several = several_regions(cfg)
    columns = choose_columns(args.columns, paddles=with_paddles, regions=several)
    if not wanted and not cfg.machine_types and not args.all:
        raise UsageError(
            f"maas.machine_types is empty in {cfg.source}, so no machine has a configured "
            "type: set machine_types, or name types with -m TYPE, or list every machine with "
            "--all"
        )
    known = list(dict.fromkeys([*cfg.machine_types, *wanted]))

    def listed(region: MaasConfig) -> tuple[MaasClient, list[Machine]]:
        client = ctx.client(interactive=True, config=region)
        return client, client.list_machines()

    # each MAAS installation (maas: regions:) on its own: one that fails fails its types only
    found = each_region(cfg, listed, wanted_types=wanted)
    visible = sorted((m for _, (_, ms) in found.done for m in ms), key=lambda m: m.hostname)
    check_types(wanted, visible, cfg.machine_types)
    locks: dict[str, PaddlesNode] = (
        paddles_nodes(ctx, args.lock_server, known) if with_paddles else {}
    )
    rows: list[Row] = []
    for region, (client, machines) in found.done:
        mine: list[Row] = []
        for machine in machines:
            kind = type_of(machine, known, region.type_match)
            if (wanted and kind not in wanted) or (not wanted and kind is None and not args.all):
                continue
            if statuses and machine.status not in statuses:
                continue
            mine.append(Row(machine, kind, paddles=locks.get(machine.hostname),
                            paddles_known=with_paddles,
                            region=region.region if several else None))
        if args.owner:
            mine = [r for r in mine if args.owner in (r.machine.owner, r.teuthology_owner,
                                                      r.paddles.locked_by if r.paddles else None)]
        if args.free:
            mine = [r for r in mine if r.free]
        if not args.summary and ("since" in columns or ctx.json):
            since = seconds_in_status(client, [r.machine for r in mine])
            mine = [dataclasses.replace(r, since=since.get(r.machine.system_id)) for r in mine]
        rows.extend(mine)
    rows.sort(key=lambda r: r.machine.hostname)
    extra = {"region_errors": [f.as_json() for f in found.failures]} if several else {}
    code = _summary(ctx, rows, extra) if args.summary else _listing(ctx, rows, columns, extra)
    if found.failures:
        report_failures(ctx, found.failures, what="its machines are not listed")
        return int(ExitCode.UNREACHABLE)
    return code


def _listing(
    ctx: Context, rows: list[Row], columns: list[str], extra: dict[str, Any] | None = None
) -> int:
    counts: Counter[str] = Counter(r.machine.status_name for r in rows)
    # statuses in MAAS's own numeric order, so summaries read the same every time
    order = sorted(counts, key=_status_rank)
    if ctx.json:
        ctx.emit_json(
            {
                "machines": [r.as_json() for r in rows],
                "summary": {label: counts[label] for label in order},
                "total": len(rows),
                **(extra or {}),
            }
        )
        return int(ExitCode.OK)
    table = [[COLUMNS[name].cell(r) for name in columns] for r in rows]
    colours = [
        [status_colour(r.machine.status) if name == "status" else None for name in columns]
        for r in rows
    ]
    if table:
        headers = [COLUMNS[name].header for name in columns]
        for line in render_table(headers, table, colours=colours, colour=ctx.colour):
            ctx.out(line)
        ctx.out()
    ctx.out(summary_line(counts, order, colour=ctx.colour))
    return int(ExitCode.OK)


def _summary(ctx: Context, rows: list[Row], extra: dict[str, Any] | None = None) -> int:
    """Like teuthology-lock --summary: how many machines of each type are in each status, for
    whom."""
    groups: Counter[tuple[str, str, str]] = Counter(
        (r.kind or "-", r.machine.status_name, r.holder) for r in rows
    )
    keys = sorted(groups, key=lambda g: (g[0], _status_rank(g[1]), g[2]))
    if ctx.json:
        ctx.emit_json(
            {
                "groups": [
                    {"type": t, "status": s, "owner": o, "count": groups[(t, s, o)]}
                    for t, s, o in keys
                ],
                "total": len(rows),
                **(extra or {}),
            }
        )
        return int(ExitCode.OK)
    table = [[t, s, o, str(groups[(t, s, o)])] for t, s, o in keys]
    colours = [[None, label_colour(s), None, None] for _, s, _ in keys]
    if table:
        for line in render_table(["TYPE", "STATUS", "OWNER", "COUNT"], table, colours=colours,
                                 colour=ctx.colour):
            ctx.out(line)
        ctx.out()
    noun = "machine" if len(rows) == 1 else "machines"
    ctx.out(f"{len(rows)} {noun}")
    return int(ExitCode.OK)


def _status_rank(label: str) -> int:
    try:
        return int(NodeStatus.from_label(label))
    except ValueError:
        return 1000
