"""`teuthology-maas reconcile`: what MAAS holds that paddles has forgotten, and vice versa."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import Any

from teuthology_maas.cli._common import Context, ExitCode, add_common_options
from teuthology_maas.cli._inventory import (
    add_machine_type_option,
    check_types,
    machines_by_type,
    requested_types,
)
from teuthology_maas.cli._paddles import lock_server_from_config
from teuthology_maas.cli._reconcile import (
    DEFAULT_NODE_TIMEOUT_MINUTES,
    Finding,
    find_leaks_and_drift,
    region_now,
    status_timeout,
    stuck_finding,
)
from teuthology_maas.cli._reconcile_apply import (
    apply_leaks,
    count_summary,
    mark_quarantined_down,
    summary,
)
from teuthology_maas.cli._table import paint
from teuthology_maas.errors import MaasError
from teuthology_maas.teuthology.paddles import PaddlesReader

_KIND_COLOURS = {
    "leak": "\x1b[31m", "kept": "\x1b[36m", "drift": "\x1b[33m", "stuck": "\x1b[35m",
    "quarantined": "\x1b[31m",
}


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "reconcile",
        help="find leaks, drift and stuck machines between MAAS and paddles",
        description="Compare MAAS with teuthology's lock server. LEAK: a machine allocated "
        "or deployed to our MAAS user but unlocked in paddles (nobody will release it). "
        "KEPT: the same, but kept for debugging on purpose (deploy --keep-on-failure). "
        "DRIFT: locked in paddles but Ready in MAAS. STUCK: in a transitional status with no "
        "MAAS event for longer than MAAS's own timeout (node_timeout; 5 minutes for "
        "Releasing). A dry run by default; --apply releases the leaks through the "
        "provisioner (only machines our MAAS user owns, and only if still unlocked in "
        "paddles), a few at a time, with a line for every step. Exit status 4 when leaks, "
        "drift or stuck machines remain. QUARANTINED: Broken in MAAS by teuthology-maas's "
        "quarantine (repeated deployment failures on the node); --apply marks it down in "
        "paddles if it is not yet.",
    )
    add_common_options(parser, top_level=False)
    parser.add_argument(
        "--lock-server",
        metavar="URL",
        help="paddles URL (default: lock_server from the teuthology config file)",
    )
    add_machine_type_option(
        parser, help="only these configured machine types (repeatable, or comma-separated)"
    )
    parser.add_argument(
        "--apply", action="store_true", help="release the leaks (default: only report)"
    )
    parser.set_defaults(handler=run)


def _node_timeout_minutes(client: Any) -> float:
    try:
        value = client.get_config("node_timeout")
        return float(value) if value else DEFAULT_NODE_TIMEOUT_MINUTES
    except (MaasError, TypeError, ValueError):
        return DEFAULT_NODE_TIMEOUT_MINUTES


def run(ctx: Context, args: argparse.Namespace) -> int:
    cfg = ctx.config()
    url = args.lock_server or lock_server_from_config(ctx.config_file())
    requested = requested_types(args.machine_type)
    wanted = requested or list(cfg.machine_types)
    client = ctx.client(interactive=True)
    maas_user = str(client.whoami().get("username", ""))
    visible = client.list_machines()
    check_types(requested, visible, cfg.machine_types)
    grouped = machines_by_type(visible, wanted, cfg.type_match)
    machines = [m for kind in wanted for m in grouped.get(kind, [])]

    paddles = PaddlesReader(url, timeout=cfg.http_timeout)
    try:
        nodes = {node.hostname: node for node in paddles.nodes(wanted)}
        findings = find_leaks_and_drift(machines, nodes, maas_user)
        node_timeout = _node_timeout_minutes(client)
        moving = [m for m in machines if status_timeout(m.status, node_timeout) is not None]
        if moving:
            region_newest = client.events(level="DEBUG", limit=1)
            now = region_now(region_newest[0] if region_newest else None, datetime.now(UTC))
        for machine in moving:
            newest = client.events(id=machine.system_id, level="DEBUG", limit=1)
            stuck = stuck_finding(
                machine, newest[0] if newest else None, node_timeout_minutes=node_timeout, now=now
            )
            if stuck is not None:
                findings.append(stuck)
        failed = False
        if args.apply:
            # releases get the library's full retry budget, like any teuthology unlock
            stream = ctx.stderr if ctx.json else ctx.stdout
            failed = apply_leaks(cfg, ctx.endpoint(), client, paddles, findings, stream)
            failed |= mark_quarantined_down(paddles.url, findings, cfg.http_timeout)
            if not ctx.json and any(f.kind == "leak" for f in findings):
                ctx.out()
    finally:
        paddles.close()

    remaining = [f for f in findings if f.kind != "kept" and f.action != "released"]
    if ctx.json:
        ctx.emit_json(
            {
                "dry_run": not args.apply,
                "maas_user": maas_user,
                "lock_server": paddles.url,
                "findings": [f.as_json() for f in findings],
                "counts": count_summary(findings),
            }
        )
    else:
        render(ctx, findings, dry_run=not args.apply, checked=len(machines))
    if failed:
        return int(ExitCode.FAILURE)
    return int(ExitCode.FINDINGS if remaining else ExitCode.OK)


def render(ctx: Context, findings: list[Finding], *, dry_run: bool, checked: int) -> None:
    for finding in findings:
        tag = paint(f"{finding.kind.upper():<5}", _KIND_COLOURS.get(finding.kind), ctx.colour)
        ctx.out(f"{tag}  {finding.hostname}  {finding.detail}")
        if finding.action:
            ctx.out(f"       -> {finding.action}")
        elif finding.kind == "leak" and dry_run:
            ctx.out("       -> would release (run with --apply)")
        elif finding.kind == "quarantined":
            ctx.out(f"       -> `teuthology-maas quarantine release {finding.hostname}` after "
                    "the repair")
        elif finding.kind == "kept":
            ctx.out(f"       -> left as it is; `teuthology-maas release {finding.hostname}` "
                    "when done with it")
    if not findings:
        ctx.out(f"{checked} machine(s) checked: MAAS and paddles agree, nothing stuck")
        return
    ctx.out()
    ctx.out(summary(findings, checked=checked, dry_run=dry_run))
