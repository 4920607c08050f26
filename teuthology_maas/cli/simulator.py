"""`teuthology-maas simulator`: serve the MAAS 2.0 API simulator until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import json
import signal
import threading
from types import FrameType
from typing import Any

from teuthology_maas.cli._common import Context, add_common_options


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "simulator",
        help="serve a simulated MAAS region API (for tests, demos and benchmarks)",
        description="Serve the MAAS 2.0 API simulator on a loopback address until interrupted. "
        "The machines come from --inventory (YAML, see docs/simulator.md) or are generated "
        "with --machines/--machine-type. The URL and each user's API key are printed first.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="loopback address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=5240, help="TCP port (default 5240; 0 = any)")
    parser.add_argument("--inventory", metavar="FILE", help="inventory YAML file")
    parser.add_argument(
        "--machines",
        type=int,
        metavar="N",
        help="generate N Ready machines named <machine-type>001... (added to the inventory's)",
    )
    parser.add_argument(
        "--machine-type",
        default="smithi",
        metavar="T",
        help="name, tag and pool of generated machines (default smithi)",
    )
    parser.add_argument(
        "--time-factor",
        type=float,
        default=1.0,
        metavar="F",
        help="simulated seconds per real second (default 1: real MAAS timings)",
    )
    parser.add_argument(
        "--ssh-root",
        metavar="DIR",
        help="write authorized_keys/os-release/boot-finished of deployed machines under DIR",
    )
    add_common_options(parser, top_level=False)
    parser.set_defaults(handler=run)


def run(ctx: Context, args: argparse.Namespace) -> int:
    from teuthology_maas.simulator import Inventory, InventoryError, ScaledClock, Simulator

    try:
        inventory = (
            Inventory.from_yaml(args.inventory) if args.inventory else Inventory.from_mapping({})
        )
        if args.machines:
            generated = Inventory.generated(args.machines, args.machine_type)
            inventory = inventory.with_machines(*generated.machines)
        sim = Simulator(inventory, clock=ScaledClock(args.time_factor), ssh_root=args.ssh_root)
        server = sim.serve(args.host, args.port)
    except (InventoryError, ValueError, OSError) as exc:
        ctx.err(f"teuthology-maas simulator: {exc}")
        return 2
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        keys = {name: user.api_key for name, user in sim.users.items()}
        if ctx.json:
            info = {
                "url": server.url,
                "api_url": server.api_url,
                "api_keys": keys,
                "machines": len(sim.state.machines),
            }
            ctx.stdout.write(json.dumps(info) + "\n")
        else:
            ctx.stdout.write(
                f"MAAS simulator: {server.url} ({len(sim.state.machines)} machines, "
                f"time x{args.time_factor:g})\n"
            )
            for name, key in keys.items():
                role = "admin" if sim.users[name].is_superuser else "user"
                ctx.stdout.write(f"  api_key {name} ({role}): {key}\n")
            ctx.stdout.write("Stop with Ctrl-C.\n")
        ctx.stdout.flush()
        while not stop.wait(0.5):
            pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        server.stop()
    return 0
