"""`teuthology-maas reconcile`: what MAAS holds that paddles has forgotten, and vice versa."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from teuthology_maas.cli._common import Context, ExitCode, add_common_options
from teuthology_maas.cli._inventory import (
    add_machine_type_option,
    machines_by_type,
    requested_types,
)
from teuthology_maas.cli._paddles import PaddlesReader, lock_server_from_config
from teuthology_maas.cli._reconcile import (
    DEFAULT_NODE_TIMEOUT_MINUTES,
    Finding,
    find_leaks_and_drift,
    region_now,
    status_timeout,
    stuck_finding,
)
from teuthology_maas.cli._table import paint
from teuthology_maas.errors import MaasError

if TYPE_CHECKING:
    from teuthology_maas.endpoint import Endpoint

_KIND_COLOURS = {"leak": "\x1b[31m", "drift": "\x1b[33m", "stuck": "\x1b[35m"}


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "reconcile",
        help="find leaks, drift and stuck machines between MAAS and paddles",
        description="Compare MAAS with teuthology's lock server. LEAK: a machine allocated "
        "or deployed to our MAAS user but unlocked in paddles (nobody will release it). "
        "DRIFT: locked in paddles but Ready in MAAS. STUCK: in a transitional status with no "
        "MAAS event for longer than MAAS's own timeout (node_timeout; 5 minutes for "
        "Releasing). A dry run by default; --apply releases the leaks through the "
        "provisioner (only machines our MAAS user owns, and only if still unlocked in "
        "paddles). Exit status 4 when findings remain.",
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
    wanted = requested_types(args.machine_type) or list(cfg.machine_types)
    client = ctx.client(interactive=True)
    maas_user = str(client.whoami().get("username", ""))
    grouped = machines_by_type(client.list_machines(), wanted)
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
            failed = apply_leaks(ctx, cfg, ctx.endpoint(), paddles, findings)
    finally:
        paddles.close()

    remaining = [f for f in findings if not (f.kind == "leak" and f.action == "released")]
    if ctx.json:
        ctx.emit_json(
            {
                "dry_run": not args.apply,
                "maas_user": maas_user,
                "lock_server": paddles.url,
                "findings": [f.as_json() for f in findings],
                "counts": count_by_kind(findings),
            }
        )
    else:
        render(ctx, findings, dry_run=not args.apply, checked=len(machines))
    if failed:
        return int(ExitCode.FAILURE)
    return int(ExitCode.FINDINGS if remaining else ExitCode.OK)


def apply_leaks(
    ctx: Context, cfg: Any, endpoint: Endpoint, paddles: PaddlesReader, findings: list[Finding]
) -> bool:
    """Release every leak through the provisioner (which enforces ownership). Returns True when
    any release failed."""
    from teuthology_maas.node.provisioner import MaasProvisioner

    failed = False
    for finding in findings:
        if finding.kind != "leak":
            continue
        node_name = str(finding.extra.get("paddles_name") or cfg.fqdn(finding.hostname))
        try:
            # paddles may have locked it since we looked: then it is in use, not leaked
            if paddles.node(node_name).locked:
                finding.action = "skipped: locked in paddles since the check"
                continue
        except MaasError as exc:
            finding.action = f"skipped: cannot re-check paddles: {exc}"
            failed = True
            continue
        try:
            MaasProvisioner(finding.hostname, config=cfg, endpoint=endpoint).release()
        except MaasError as exc:
            finding.action = f"release failed: {type(exc).__name__}: {exc}"
            failed = True
        else:
            finding.action = "released"
    return failed


def render(ctx: Context, findings: list[Finding], *, dry_run: bool, checked: int) -> None:
    for finding in findings:
        tag = paint(f"{finding.kind.upper():<5}", _KIND_COLOURS.get(finding.kind), ctx.colour)
        ctx.out(f"{tag}  {finding.hostname}  {finding.detail}")
        if finding.action:
            ctx.out(f"       -> {finding.action}")
        elif finding.kind == "leak" and dry_run:
            ctx.out("       -> would release (run with --apply)")
    if not findings:
        ctx.out(f"{checked} machine(s) checked: MAAS and paddles agree, nothing stuck")
        return
    summary = ", ".join(f"{n} {k}" for k, n in count_by_kind(findings).items())
    suffix = " (dry run: nothing changed)" if dry_run else ""
    ctx.out()
    ctx.out(f"{checked} machine(s) checked: {summary}{suffix}")


def count_by_kind(findings: list[Finding]) -> dict[str, int]:
    """How many findings of each kind, every kind present (the JSON counts, the summary)."""
    return {k: sum(1 for f in findings if f.kind == k) for k in ("leak", "drift", "stuck")}
