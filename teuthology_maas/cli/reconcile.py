"""`teuthology-maas reconcile`: what MAAS holds that paddles has forgotten, and vice versa."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from teuthology_maas.cli._common import Context, ExitCode, add_common_options
from teuthology_maas.cli._inventory import (
    add_machine_type_option,
    check_types,
    machines_by_type,
    requested_types,
)
from teuthology_maas.cli._paddles import add_lock_server_option, lock_server_from_config
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
from teuthology_maas.cli._regions import each_region, report_failures, several_regions
from teuthology_maas.cli._table import paint
from teuthology_maas.errors import MaasError
from teuthology_maas.teuthology.paddles import PaddlesNode, PaddlesReader

if TYPE_CHECKING:
    from teuthology_maas.config import MaasConfig

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
    add_lock_server_option(parser)
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


@dataclass
class _RegionCheck:
    """What reconcile found in one MAAS installation."""

    maas_user: str
    findings: list[Finding]
    checked: int
    failed: bool = False


def run(ctx: Context, args: argparse.Namespace) -> int:
    cfg = ctx.config()
    url = args.lock_server or lock_server_from_config(ctx.config_file())
    requested = requested_types(args.machine_type)
    several = several_regions(cfg)
    paddles = PaddlesReader(url, timeout=cfg.http_timeout)
    try:
        # paddles first, once: a region's failure below is then that region's alone
        nodes = {node.hostname: node for node in paddles.nodes(requested or cfg.machine_types)}

        def check(region: MaasConfig) -> _RegionCheck:
            wanted = [t for t in requested if cfg.for_type(t) in (None, region)] if requested \
                else list(region.machine_types)  # fmt: skip
            return _check_region(ctx, args, region, wanted, paddles, nodes)

        found = each_region(cfg, check, wanted_types=requested)
    finally:
        paddles.close()

    checks = [result for _, result in found.done]
    findings = [f for result in checks for f in result.findings]
    remaining = [f for f in findings if f.kind != "kept" and f.action != "released"]
    maas_user = checks[0].maas_user if checks else ""
    if ctx.json:
        payload: dict[str, Any] = {
            "dry_run": not args.apply,
            "maas_user": maas_user,
            "lock_server": paddles.url,
            "findings": [f.as_json() for f in findings],
            "counts": count_summary(findings),
        }
        if several:
            payload["regions"] = [
                {"region": region.region, "maas_user": result.maas_user,
                 "checked": result.checked, "findings": [f.hostname for f in result.findings]}
                for region, result in found.done
            ]  # fmt: skip
            payload["region_errors"] = [f.as_json() for f in found.failures]
        ctx.emit_json(payload)
    else:
        render(ctx, findings, dry_run=not args.apply, checked=sum(r.checked for r in checks))
    if found.failures:
        report_failures(ctx, found.failures, what="its machines were not checked")
    if any(result.failed for result in checks):
        return int(ExitCode.FAILURE)
    if found.failures:
        return int(ExitCode.UNREACHABLE)
    return int(ExitCode.FINDINGS if remaining else ExitCode.OK)


def _check_region(
    ctx: Context,
    args: argparse.Namespace,
    region: MaasConfig,
    wanted: list[str],
    paddles: PaddlesReader,
    nodes: dict[str, PaddlesNode],
) -> _RegionCheck:
    """Leaks, drift and stuck machines of one MAAS installation (and --apply's releases)."""
    client = ctx.client(interactive=True, config=region)
    maas_user = str(client.whoami().get("username", ""))
    visible = client.list_machines()
    check_types(wanted, visible, region.machine_types)
    grouped = machines_by_type(visible, wanted, region.type_match)
    machines = [m for kind in wanted for m in grouped.get(kind, [])]
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
        failed = apply_leaks(region, ctx.endpoint(region), client, paddles, findings, stream)
        failed |= mark_quarantined_down(paddles.url, findings, region.http_timeout)
        if not ctx.json and any(f.kind == "leak" for f in findings):
            ctx.out()
    return _RegionCheck(maas_user, findings, len(machines), failed)


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
