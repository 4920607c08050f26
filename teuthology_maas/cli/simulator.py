"""`teuthology-maas simulator`: serve the MAAS 2.0 API simulator until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import dataclasses
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
        "with --machines/--machine-type. The URL and each user's API key are printed first. "
        "With --with-nodes the machines are also nodes that answer over SSH by name, and a "
        "teuthology config for them is written and printed.",
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
    parser.add_argument(
        "--with-nodes",
        action="store_true",
        help="also run a loopback sshd per machine, reachable by name through an ssh_config, "
        "and the paddles lock server double, and write a teuthology config for them: deploy, "
        "release and reconcile then work from the command line (needs openssh-server)",
    )
    parser.add_argument(
        "--workdir",
        metavar="DIR",
        help="with --with-nodes: where to write teuthology.yaml, ssh_config and the nodes' "
        "files (default: a new temporary directory, removed when the simulator stops)",
    )
    add_common_options(parser, top_level=False)
    parser.set_defaults(handler=run)


def run(ctx: Context, args: argparse.Namespace) -> int:
    from teuthology_maas.simulator import Inventory, InventoryError, ScaledClock, Simulator
    from teuthology_maas.testing.nodes_lab import NodesLab, NodesUnavailable, machine_types_of

    if args.workdir and not args.with_nodes:
        ctx.err("teuthology-maas simulator: --workdir goes with --with-nodes")
        return 2
    if args.with_nodes and args.ssh_root:
        ctx.err("teuthology-maas simulator: --with-nodes chooses its own --ssh-root")
        return 2
    nodes: NodesLab | None = None
    try:
        inventory = (
            Inventory.from_yaml(args.inventory) if args.inventory else Inventory.from_mapping({})
        )
        if args.machines:
            generated = Inventory.generated(args.machines, args.machine_type)
            inventory = inventory.with_machines(*generated.machines)
        ssh_root = args.ssh_root
        if args.with_nodes:
            nodes = NodesLab.start([m.hostname for m in inventory.machines], args.workdir)
            # MAAS shows each machine at 127.0.0.1 with its sshd's port
            ports = {m.hostname: nodes.port_of(m.hostname) for m in inventory.machines}
            inventory = dataclasses.replace(inventory, machines=tuple(
                dataclasses.replace(m, ssh_port=ports[m.hostname]) for m in inventory.machines
            ))  # fmt: skip
            ssh_root = nodes.ssh_root
        sim = Simulator(inventory, clock=ScaledClock(args.time_factor), ssh_root=ssh_root)
        server = sim.serve(args.host, args.port)
        if nodes is not None:
            nodes.write_config(
                api_url=server.url,
                api_key=sim.api_key("teuthology"),
                machine_types=machine_types_of(inventory.machines),
                lock_server=nodes.serve_paddles(inventory.machines),
            )
    except (InventoryError, NodesUnavailable, ValueError, OSError, RuntimeError) as exc:
        if nodes is not None:
            nodes.stop()
        ctx.err(f"teuthology-maas simulator: {exc}")
        return 2
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        keys = {name: user.api_key for name, user in sim.users.items()}
        if ctx.json:
            info: dict[str, Any] = {
                "url": server.url,
                "api_url": server.api_url,
                "api_keys": keys,
                "machines": len(sim.state.machines),
            }
            if nodes is not None:
                info.update(nodes.describe())
            ctx.stdout.write(json.dumps(info) + "\n")
        else:
            ctx.stdout.write(
                f"MAAS simulator: {server.url} ({len(sim.state.machines)} machines, "
                f"time x{args.time_factor:g})\n"
            )
            for name, key in keys.items():
                role = "admin" if sim.users[name].is_superuser else "user"
                ctx.stdout.write(f"  api_key {name} ({role}): {key}\n")
            if nodes is not None:
                ctx.stdout.write(_nodes_text(nodes))
            ctx.stdout.write("Stop with Ctrl-C.\n")
        ctx.stdout.flush()
        while not stop.wait(0.5):
            pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        server.stop()
        if nodes is not None:
            nodes.stop()
    return 0


def _nodes_text(nodes: Any) -> str:
    info = nodes.describe()
    first = next(iter(info["nodes"]), "smithi001")
    ports = ", ".join(f"{host} :{port}" for host, port in info["nodes"].items())
    removed = " (removed at exit)" if nodes.owned else ""
    return (
        f"Nodes: a loopback sshd per machine ({ports}), reachable by name (<host> or "
        f"<host>.{info['lab_domain']}) through\n"
        f"  ssh_config: {info['ssh_config']}    e.g. ssh -F {info['ssh_config']} {first}\n"
        f"Lock server (paddles double): {info['lock_server']}\n"
        f"Teuthology config: {info['config']}{removed}\n"
        f"  export TEUTHOLOGY_CONFIG={info['config']}\n"
        f"  then: teuthology-maas deploy {first}; teuthology-maas release {first}\n"
    )
