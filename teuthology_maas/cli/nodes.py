"""`deploy`, `release` and `abort`: one machine at a time.

The lifecycle subcommands are thin front-ends on MaasProvisioner: every decision (what to do
from the current status, ownership, erase parameters, waiting, forensics) is the
provisioner's. This module only shows progress and the outcome."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from teuthology_maas.cli._common import (
    Context,
    ExitCode,
    add_common_options,
    error_payload,
    short_hostname,
)
from teuthology_maas.cli._progress import (
    MachineWatcher,
    Progress,
    format_elapsed,
    library_log_as_notes,
)
from teuthology_maas.errors import MaasError, MachineNotFound
from teuthology_maas.models import Machine

if TYPE_CHECKING:
    from teuthology_maas.config import MaasConfig
    from teuthology_maas.maas.client import MaasClient
    from teuthology_maas.node.provisioner import MaasProvisioner

ERASE_CHOICES = ("none", "quick", "full", "secure", "ceph")


def register(subparsers: Any) -> None:
    deploy = subparsers.add_parser(
        "deploy",
        help="deploy one machine with an OS, as teuthology's reimage would",
        description="Deploy NAME with the requested OS and wait until it is reachable over "
        "SSH, exactly as teuthology's reimage does (through MaasProvisioner.create). Shows "
        "each MAAS status change as it happens.",
    )
    deploy.add_argument("name", metavar="NAME", help="hostname (short name or FQDN)")
    deploy.add_argument("--os-type", default="ubuntu", help="OS type (default: ubuntu)")
    deploy.add_argument("--os-version", default="22.04", help="OS version (default: 22.04)")
    deploy.set_defaults(handler=run_deploy)

    release = subparsers.add_parser(
        "release",
        help="release one machine back to Ready",
        description="Release NAME (aborting or unlocking first when needed) and wait until "
        "MAAS shows it Ready, as teuthology's unlock does (MaasProvisioner.release). "
        "Machines owned by another MAAS user are refused.",
    )
    release.add_argument("name", metavar="NAME", help="hostname (short name or FQDN)")
    release.add_argument(
        "--erase",
        choices=ERASE_CHOICES,
        help="disk erase mode for this release (default: the configured `erase`)",
    )
    release.set_defaults(handler=run_release)

    abort = subparsers.add_parser(
        "abort",
        help="abort a machine's deployment (or disk erase)",
        description="Abort the deployment (or disk erase) in progress on NAME and wait until "
        "MAAS has stopped it (MaasProvisioner.abort).",
    )
    abort.add_argument("name", metavar="NAME", help="hostname (short name or FQDN)")
    abort.set_defaults(handler=run_abort)

    for parser in (deploy, release, abort):
        add_common_options(parser, top_level=False)


def find_machine(client: MaasClient, name: str) -> Machine:
    hostname = short_hostname(name)
    found = client.list_machines(hostname=hostname)
    if len(found) != 1:
        what = "no machine" if not found else f"{len(found)} machines"
        raise MachineNotFound(
            f"{what} named {hostname!r} visible to this API key "
            "(machines owned by another MAAS user are invisible to a non-admin key)",
            machine=hostname,
        )
    return found[0]


def _make_provisioner(
    ctx: Context, cfg: MaasConfig, name: str, os_type: str, os_version: str
) -> MaasProvisioner:
    from teuthology_maas.node.provisioner import MaasProvisioner

    return MaasProvisioner(
        name, os_type=os_type, os_version=os_version, config=cfg, endpoint=ctx.endpoint()
    )


def _run_action(
    ctx: Context,
    *,
    name: str,
    verb: str,
    action: Callable[[MaasProvisioner], object],
    cfg: MaasConfig,
    os_type: str = "ubuntu",
    os_version: str = "22.04",
) -> int:
    """Run one provisioner action while a watcher shows the machine's status changes."""
    watch_client = ctx.client(interactive=True)
    machine = find_machine(watch_client, name)
    provisioner = _make_provisioner(ctx, cfg, name, os_type, os_version)
    # JSON owns stdout, so the live display goes to stderr as plain lines.
    stream = ctx.stderr if ctx.json else ctx.stdout
    live = ctx.is_tty and not ctx.json
    started = time.monotonic()
    error: MaasError | None = None
    with Progress(stream, label=machine.hostname, live=live, colour=ctx.colour) as progress:
        progress.update(machine.status_name, machine.status_message)
        with (
            library_log_as_notes(progress),
            MachineWatcher(
                lambda: watch_client.get_machine(machine.system_id),
                progress,
                interval=max(0.05, min(cfg.poll_min_interval, 1.0)),
            ),
        ):
            try:
                action(provisioner)
            except MaasError as exc:
                error = exc
        elapsed = time.monotonic() - started
        final = _read_quietly(watch_client, machine.system_id)
        if error is None:
            progress.finish(f"{machine.hostname}: {verb} in {format_elapsed(elapsed)}")
        else:
            progress.finish(f"{machine.hostname}: {verb.split()[0]} FAILED after "
                            f"{format_elapsed(elapsed)}")
    if ctx.json:
        payload: dict[str, Any] = {
            "ok": error is None,
            "action": verb.split()[0],
            "hostname": machine.hostname,
            "system_id": machine.system_id,
            "elapsed": round(elapsed, 3),
            "status": final.status_name if final else None,
            "status_message": final.status_message if final else None,
        }
        if error is not None:
            payload.update(error_payload(error))
        ctx.emit_json(payload)
    if error is not None:
        from teuthology_maas.cli._common import exit_code_for

        if not ctx.json:
            ctx.err(f"teuthology-maas: {type(error).__name__}: {error}")
        return int(exit_code_for(error))
    return int(ExitCode.OK)


def _read_quietly(client: MaasClient, system_id: str) -> Machine | None:
    try:
        return client.get_machine(system_id)
    except MaasError:
        return None


def run_deploy(ctx: Context, args: argparse.Namespace) -> int:
    return _run_action(
        ctx,
        name=args.name,
        verb=f"deployed {args.os_type} {args.os_version}",
        action=lambda p: p.create(),
        cfg=ctx.config(),
        os_type=args.os_type,
        os_version=args.os_version,
    )


def run_release(ctx: Context, args: argparse.Namespace) -> int:
    erase = args.erase
    return _run_action(
        ctx, name=args.name, verb="released", action=lambda p: p.release(erase=erase),
        cfg=ctx.config(),
    )


def run_abort(ctx: Context, args: argparse.Namespace) -> int:
    return _run_action(
        ctx, name=args.name, verb="aborted", action=lambda p: p.abort(), cfg=ctx.config()
    )
