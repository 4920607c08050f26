"""`teuthology-maas events`: MAAS's event log for one machine, optionally followed live."""

from __future__ import annotations

import argparse
import dataclasses
import time
from typing import Any

from teuthology_maas import names
from teuthology_maas.cli._common import Context, ExitCode, add_common_options
from teuthology_maas.cli.nodes import find_machine
from teuthology_maas.models import Event, NodeStatus

EVENT_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL", "AUDIT")


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "events",
        help="show (or follow) MAAS's event log for one machine",
        description="Show MAAS's events for NAME, oldest first (the newest N events). With "
        "--follow, keep printing new events as MAAS records them, until Ctrl-C, --timeout, or "
        "the machine reaches an --until status.",
    )
    add_common_options(parser, top_level=False)
    parser.add_argument("name", metavar="NAME", help="hostname (short name or FQDN)")
    parser.add_argument(
        "-n", "--limit", type=_positive_int, default=20, help="how many events (default: 20)"
    )
    parser.add_argument(
        "--level",
        choices=EVENT_LEVELS,
        default="INFO",
        help="minimum level (default: INFO; DEBUG includes user actions)",
    )
    parser.add_argument("-f", "--follow", action="store_true", help="keep printing new events")
    parser.add_argument(
        "--until",
        action="append",
        metavar="STATUS",
        type=_status,
        help="with --follow: stop once the machine is in this status (repeatable), e.g. "
        "deployed",
    )
    parser.add_argument(
        "--timeout", type=float, metavar="SECONDS", help="with --follow: stop after this long"
    )
    parser.add_argument(
        "--interval",
        type=float,
        default=2.0,
        metavar="SECONDS",
        help="with --follow: how often to ask MAAS (default: 2)",
    )
    parser.set_defaults(handler=run)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if not 1 <= value <= 1000:
        raise argparse.ArgumentTypeError(f"expected 1..1000 (MAAS's limit), got {value}")
    return value


def _status(text: str) -> NodeStatus:
    try:
        return NodeStatus.from_label(text.replace("-", "_"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"unknown MAAS status {text!r}; expected a keyword such as deployed or ready"
        ) from None


def run(ctx: Context, args: argparse.Namespace) -> int:
    if (args.until or args.timeout is not None) and not args.follow:
        ctx.err("teuthology-maas events: --until and --timeout need --follow")
        return int(ExitCode.USAGE)
    node = names.parse_node_name(args.name)  # before anything is asked of MAAS
    client = ctx.client(interactive=True)
    machine = find_machine(client, node.short)
    events = sorted(
        client.events(id=machine.system_id, level=args.level, limit=args.limit),
        key=lambda e: e.id,  # MAAS answers newest first
    )
    if ctx.json and not args.follow:
        ctx.emit_json(
            {
                "hostname": machine.hostname,
                "system_id": machine.system_id,
                "events": [dataclasses.asdict(e) for e in events],
            }
        )
        return int(ExitCode.OK)
    if not events and not args.follow:
        ctx.out(f"{machine.hostname}: no events at level {args.level} or above")
    for event in events:
        _show(ctx, event)
    if not args.follow:
        return int(ExitCode.OK)

    last_id = events[-1].id if events else 0
    deadline = None if args.timeout is None else time.monotonic() + args.timeout
    until = set(args.until or ())
    while True:
        if until and client.get_machine(machine.system_id).status in until:
            # the events that led there may have landed since the last read
            for event in _newer(client, machine.system_id, args.level, last_id):
                _show(ctx, event)
            return int(ExitCode.OK)
        if deadline is not None and time.monotonic() >= deadline:
            if not until:
                return int(ExitCode.OK)  # following for a while was all that was asked
            now = client.get_machine(machine.system_id)
            if now.status in until:  # got there just as time ran out
                for event in _newer(client, machine.system_id, args.level, last_id):
                    _show(ctx, event)
                return int(ExitCode.OK)
            wanted = " or ".join(sorted(s.label for s in until))
            ctx.err(
                f"teuthology-maas events: {machine.hostname} did not reach {wanted} within "
                f"{args.timeout:g} s (MAAS shows {now.status_name})"
            )
            return int(ExitCode.FAILURE)
        time.sleep(max(0.01, args.interval))
        for event in _newer(client, machine.system_id, args.level, last_id):
            _show(ctx, event)
            last_id = max(last_id, event.id)


def _newer(client: Any, system_id: str, level: str, after: int) -> list[Event]:
    found: list[Event] = client.events(id=system_id, level=level, after=after, limit=1000)
    return sorted((e for e in found if e.id > after), key=lambda e: e.id)


def _show(ctx: Context, event: Event) -> None:
    if ctx.json:  # with --follow: one JSON object per line
        import json

        ctx.out(json.dumps(dataclasses.asdict(event), sort_keys=True))
    else:
        ctx.out(event.line())
