"""`deploy`, `release` and `abort`: one machine at a time.

The lifecycle subcommands are thin front-ends on MaasProvisioner: every decision (what to do
from the current status, ownership, erase parameters, waiting, forensics) is the
provisioner's. This module checks what was asked for before anything is changed (the OS, the
machine, its type) and leaves showing the action to `_action`."""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from teuthology_maas import names
from teuthology_maas.cli._action import Verb, nothing_to_abort, nothing_to_release, run_action
from teuthology_maas.cli._common import Context, UsageError, add_common_options, short_hostname
from teuthology_maas.cli._free import pick_free
from teuthology_maas.cli._inventory import (
    add_machine_type_option,
    requested_types,
)
from teuthology_maas.config_values import ERASE_MODES
from teuthology_maas.errors import ImageNotAvailable, MachineNotFound
from teuthology_maas.models import Machine
from teuthology_maas.suggest import did_you_mean
from teuthology_maas.type_match import type_of

if TYPE_CHECKING:
    from teuthology_maas.config import MaasConfig
    from teuthology_maas.maas.client import MaasClient
    from teuthology_maas.node.ownership import Authority

_FORCE_HELP = "act on a machine of none of the configured machine_types (refused otherwise)"


def register(subparsers: Any) -> None:
    deploy = subparsers.add_parser(
        "deploy",
        help="deploy one machine with an OS, as teuthology's reimage would",
        description="Deploy NAME (or any free machine of -m TYPE) with the requested OS and "
        "wait until it is reachable over SSH, exactly as teuthology's reimage does (through "
        "MaasProvisioner.create). Shows each MAAS status change and every SSH attempt as it "
        "happens. Ctrl-C aborts the deployment and releases the machine (erasing its disks "
        "as configured).",
    )
    deploy.add_argument("name", metavar="NAME", nargs="?", help="hostname (short name or FQDN)")
    add_machine_type_option(deploy, help="deploy any free machine of this type instead of NAME")
    deploy.add_argument("--os-type", default="ubuntu", help="OS type (default: ubuntu)")
    deploy.add_argument("--os-version", default="22.04", help="OS version (default: 22.04)")
    deploy.add_argument(
        "--keep-on-failure",
        action="store_true",
        help="leave a failed deployment as it is for debugging (locked and marked in MAAS) "
        "instead of releasing it; `release NAME` ends the keep",
    )
    deploy.add_argument(
        "--take-over",
        action="store_true",
        help="redeploy even when NAME carries another attempt's deployment that may still be "
        "in use (a teuthology job's node); without it such a node is refused untouched",
    )
    deploy.add_argument("--force", action="store_true", help=_FORCE_HELP)
    deploy.set_defaults(handler=run_deploy)

    release = subparsers.add_parser(
        "release",
        help="release one machine back to Ready",
        description="Release NAME (aborting or unlocking first when needed) and wait until "
        "MAAS shows it Ready, as teuthology's unlock does (MaasProvisioner.release). "
        "Machines owned by another MAAS user are refused, and so is a deployment another "
        "attempt made that may still be in use (its process is alive or on another host), "
        "unless --force. A machine kept for debugging (deploy --keep-on-failure) is released "
        "too: this ends the keep.",
    )
    release.add_argument("name", metavar="NAME", help="hostname (short name or FQDN)")
    release.add_argument(
        "--erase",
        choices=ERASE_MODES,
        help="disk erase mode for this release (default: the configured `erase`)",
    )
    release.add_argument(
        "--force",
        action="store_true",
        help="release whatever deployment of our MAAS user NAME carries, even one that may "
        "still be in use by a teuthology job; also " + _FORCE_HELP,
    )
    release.set_defaults(handler=run_release)

    abort = subparsers.add_parser(
        "abort",
        help="abort a machine's deployment (or disk erase)",
        description="Abort the deployment (or disk erase) in progress on NAME and wait until "
        "MAAS has stopped it (MaasProvisioner.abort). An operator's explicit action: it "
        "aborts whichever deployment of our MAAS user is in flight; the create() that made "
        "it stops at once, says who aborted it, and releases its node.",
    )
    abort.add_argument("name", metavar="NAME", help="hostname (short name or FQDN)")
    abort.add_argument("--force", action="store_true", help=_FORCE_HELP)
    abort.set_defaults(handler=run_abort)

    for parser in (deploy, release, abort):
        add_common_options(parser, top_level=False)


def find_machine(client: MaasClient, name: str) -> Machine:
    hostname = short_hostname(name)
    found = client.list_machines(hostname=hostname)
    if len(found) != 1:
        hint = ""
        if not found:
            hint = did_you_mean(hostname, [m.hostname for m in client.list_machines()])
        what = "no machine" if not found else f"{len(found)} machines"
        raise MachineNotFound(
            f"{what} named {hostname!r} visible to this API key "
            "(machines owned by another MAAS user are invisible to a non-admin key)"
            + (f"; {hint}" if hint else ""),
            machine=hostname,
        )
    return found[0]


def check_machine_type(cfg: MaasConfig, machine: Machine, *, force: bool) -> None:
    """Refuse a machine that belongs to none of the configured machine types: teuthology
    would never touch it through MAAS, so it is probably a typo or another lab's machine."""
    if force or type_of(machine, cfg.machine_types, cfg.type_match) is not None:
        return
    configured = ", ".join(cfg.machine_types) or "none"
    raise UsageError(
        f"{machine.hostname} belongs to none of the configured machine types ({configured}): "
        "teuthology does not provision it through MAAS; pass --force to act on it anyway"
    )


def _provisioner(
    ctx: Context, cfg: MaasConfig, name: str, os_type: str, os_version: str,
    *, take_over: bool = False,
) -> Any:  # fmt: skip
    from teuthology_maas.node.provisioner import MaasProvisioner

    return MaasProvisioner(
        name, os_type=os_type, os_version=os_version, config=cfg, endpoint=ctx.endpoint(cfg),
        take_over=take_over,
    )  # fmt: skip


def node_config(cfg: MaasConfig, name: str | None, kinds: list[str]) -> MaasConfig:
    """The config of the MAAS installation (`maas: regions:`) that NAME, or a machine of
    type -m TYPE, belongs to; `cfg` itself in the flat form."""
    from teuthology_maas.node.region import node_region

    if kinds:
        return cfg.for_type(kinds[0]) or cfg
    assert name is not None
    return node_region(cfg, short_hostname(name))


def operator(forced: bool) -> Authority | None:
    """An operator's explicit authority (any deployment of our MAAS user), or None for the
    provisioner's default (never another attempt's deployment that may be in use)."""
    from teuthology_maas.node.ownership import Authority

    return Authority(operator=True) if forced else None


def run_deploy(ctx: Context, args: argparse.Namespace) -> int:
    from teuthology_maas.node import images

    cfg = ctx.config()
    # Checked before the first request: the name and OS go to MAAS, cloud-init and SSH.
    if args.name is not None:
        names.parse_node_name(args.name)
    names.check_os(args.os_type, args.os_version)
    kinds = requested_types(args.machine_type)
    if (args.name is None) == (not kinds):
        raise UsageError("name one machine (NAME) or a machine type (-m TYPE), not both")
    cfg = node_config(cfg, args.name, kinds)
    if args.keep_on_failure:
        cfg = dataclasses.replace(cfg, keep_on_failure=True)
    try:
        images.resolve(args.os_type, args.os_version, cfg.image_map)
    except ImageNotAvailable as exc:
        raise UsageError(str(exc)) from None
    watch_client = ctx.client(interactive=True, config=cfg)
    if kinds:
        if len(kinds) > 1:
            raise UsageError("-m takes one machine type for deploy")
        machine = pick_free(ctx, cfg, watch_client, kinds[0])
    else:
        machine = find_machine(watch_client, args.name)
        check_machine_type(cfg, machine, force=args.force)
    os_name = f"{args.os_type} {args.os_version}"
    return run_action(
        ctx,
        machine=machine,
        watch_client=watch_client,
        provisioner=_provisioner(ctx, cfg, args.name or machine.hostname, args.os_type,
                                 args.os_version, take_over=args.take_over),
        cfg=cfg,
        verb=Verb("deploy", f"deploying {os_name}", f"deployed {os_name}"),
        action=lambda p: p.create(),
    )


def _on_one_machine(
    ctx: Context, args: argparse.Namespace, verb: Verb, action: Callable[[Any], object]
) -> int:
    """`release` and `abort`: the named machine (of a configured type, or --force)."""
    names.parse_node_name(args.name)  # checked before the first request
    cfg = node_config(ctx.config(), args.name, [])
    watch_client = ctx.client(interactive=True, config=cfg)
    machine = find_machine(watch_client, args.name)
    check_machine_type(cfg, machine, force=args.force)
    return run_action(
        ctx,
        machine=machine,
        watch_client=watch_client,
        provisioner=_provisioner(ctx, cfg, args.name, "ubuntu", "22.04"),
        cfg=cfg,
        verb=verb,
        action=action,
    )


def run_release(ctx: Context, args: argparse.Namespace) -> int:
    erase, authority = args.erase, operator(args.force)
    return _on_one_machine(
        ctx, args, Verb("release", "releasing", "released", nothing_to_release),
        lambda p: p.release(erase=erase, authority=authority, release_kept=True),
    )  # fmt: skip


def run_abort(ctx: Context, args: argparse.Namespace) -> int:
    # An operator's abort is an explicit action on whichever deployment is in flight.
    authority = operator(True)
    return _on_one_machine(
        ctx, args, Verb("abort", "aborting", "aborted", nothing_to_abort),
        lambda p: p.abort(authority=authority),
    )
