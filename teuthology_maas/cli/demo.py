"""`teuthology-maas demo`: the real teuthology-lock provisioning through MAAS, on one machine.

Starts the MAAS simulator (a handful of machines of one type, deployments that take MAAS-like
time divided by --time-factor), the paddles lock server double and one loopback sshd per
machine; then runs the stock `teuthology-lock --lock-many 3 -m TYPE --os-type ubuntu
--os-version 22.04`, showing MAAS's view of every machine while they deploy, prints the locked
targets, runs `teuthology-lock --unlock` on them and shows the machines Ready again. Every
process it started is stopped before it returns. See teuthology_maas.testing.teuthology_lab
for what is real in this set-up and what stands in for a lab's network. `--suite` runs the
dispatcher path instead (teuthology_maas.cli._demo_suite).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from teuthology_maas.cli._common import Context, ExitCode
from teuthology_maas.cli._demo_show import LAB_DOMAIN, REPO, MaasWatcher, Printer, maas_table
from teuthology_maas.errors import MissingExtra

# Shown in full; everything else teuthology-lock prints is in the log file (or --verbose).
_INTERESTING = re.compile(
    r"teuthology_maas|ERROR|WARNING|Traceback|Error|unlocked:|Locked|locked |Reimag|"
    r"ssh_keyscan|Updating \S+ on lock server|^targets:|^  \S+: ssh-"
)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="run the real teuthology-lock against the embedded MAAS simulator",
        description="Lock, reimage and unlock nodes with the real teuthology-lock, through "
        "this library, against the MAAS simulator, the paddles lock server double and "
        "loopback sshd 'nodes'. Everything runs on this machine and is stopped at the end.",
    )
    parser.add_argument("--machines", type=int, default=5, help="machines in MAAS (default 5)")
    parser.add_argument("--count", type=int, default=3, help="nodes to lock (default 3)")
    parser.add_argument("-m", "--machine-type", default="smithi", help="default smithi")
    parser.add_argument("--os-type", default="ubuntu", help="default ubuntu")
    parser.add_argument("--os-version", default="22.04", help="default 22.04")
    parser.add_argument(
        "--time-factor", type=float, default=60.0,
        help="simulated MAAS seconds per real second (default 60: a 10-minute deployment "
        "takes 10 s)",
    )
    parser.add_argument(
        "--suite", action="store_true",
        help="instead: schedule a two-job suite with the real teuthology-suite and run it "
        "through beanstalkd, teuthology-dispatcher and its supervisors (needs root)",
    )
    parser.add_argument("--run-timeout", type=float, default=600.0,
                        help="--suite: give up on the run after this many seconds (default 600)")
    parser.add_argument("--verbose", action="store_true", help="show all of teuthology's output")
    parser.add_argument("--keep", action="store_true", help="keep the working directory")
    parser.set_defaults(handler=run)



def _require_parts() -> None:
    """MissingExtra, saying how to get it, when the simulator or teuthology is missing."""
    import teuthology_maas.simulator  # noqa: F401 - raises MissingExtra without Werkzeug

    lock = Path(sys.executable).parent / "teuthology-lock"
    if importlib.util.find_spec("teuthology") is None or not lock.exists():
        raise MissingExtra(
            f"the demo runs the real teuthology-lock ({lock}), and teuthology is not installed "
            "beside teuthology-maas; install: pip install 'teuthology-maas[simulator,teuthology]'"
        )


def _ensure_sshd(ctx: Context) -> bool:
    from teuthology_maas.testing.sshd import SSHD_PATH

    if os.access(SSHD_PATH, os.X_OK):
        return True
    installer = REPO / "scripts" / "ensure-system-packages"
    if os.geteuid() == 0 and installer.exists():
        ctx.out(f"{SSHD_PATH} is missing: installing openssh-server ({installer})")
        subprocess.run([str(installer)], check=False)
    if os.access(SSHD_PATH, os.X_OK):
        return True
    how = (f"as root: {installer}" if installer.exists()
           else "e.g. as root: apt-get install openssh-server")
    ctx.err(f"teuthology-maas demo: {SSHD_PATH} not found; install openssh-server ({how}) "
            "and run it again")
    return False


def _run_teuthology(lab: Any, argv: list[str], say: Printer, log: Path, verbose: bool) -> int:
    say("$ " + " ".join([Path(argv[0]).name, *argv[1:]]))
    with log.open("a", encoding="utf-8") as log_file:
        process = lab.popen(argv)
        say(f"      (pid {process.pid}; full output in {log})")
        assert process.stdout is not None
        try:
            for line in process.stdout:
                log_file.write(line)
                line = line.rstrip()
                if verbose or _INTERESTING.search(line):
                    say("      " + re.sub(r"^\S+ \S+ ", "", line)[:160])
            code: int = process.wait()
        except BaseException:  # Ctrl-C or a broken pipe: never leave teuthology-lock behind
            process.kill()
            process.wait()
            raise
    say(f"      exit {code}")
    return code



def run(ctx: Context, args: argparse.Namespace) -> int:
    from teuthology_maas.cli import _demo_suite

    if args.suite and args.machines < _demo_suite.NODES_NEEDED:
        ctx.err(f"teuthology-maas demo --suite: need --machines >= {_demo_suite.NODES_NEEDED}")
        return int(ExitCode.USAGE)
    if not args.suite and (args.count < 1 or args.machines < args.count):
        ctx.err("teuthology-maas demo: need 1 <= --count <= --machines")
        return int(ExitCode.USAGE)
    _require_parts()
    if not _ensure_sshd(ctx) or (args.suite and not _demo_suite.check_prerequisites(ctx)):
        return int(ExitCode.USAGE)
    workdir = Path(tempfile.mkdtemp(prefix="teuthology-maas-demo-"))
    try:
        if args.suite:
            return _demo_suite.run_suite(ctx, args, workdir)
        return _demo(ctx, args, workdir)
    finally:
        if args.keep:
            ctx.out(f"kept {workdir} (teuthology.log, the lab's config and the nodes' files)")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
            ctx.out(f"removed {workdir}, teuthology.log with it; run with --keep to keep it "
                    "(make demo DEMO_ARGS=--keep)")


def _demo(ctx: Context, args: argparse.Namespace, workdir: Path) -> int:
    from teuthology_maas.simulator import Inventory, ScaledClock, Simulator
    from teuthology_maas.testing.lockserver import LockServer
    from teuthology_maas.testing.processes import alive
    from teuthology_maas.testing.sshd import SSHDFleet
    from teuthology_maas.testing.teuthology_lab import Support, TeuthologyLab

    say = Printer(ctx)
    mtype = args.machine_type
    hostnames = [f"{mtype}{i:03d}" for i in range(1, args.machines + 1)]
    ssh_root = workdir / "ssh-root"
    started_pids: list[int] = []
    fleet = SSHDFleet(hostnames, ssh_root, workdir=workdir / "sshd")
    server = handle = None
    try:
        fleet.start()
        started_pids += [s.pid for s in fleet.servers.values() if s.pid]
        say(f"started {len(hostnames)} loopback sshd 'nodes' (pids "
            f"{' '.join(map(str, started_pids))})")
        inventory = Inventory.from_mapping({"machines": [
            {"hostname": h, "tags": [mtype], "pool": mtype, "ssh_port": fleet.port_of(h)}
            for h in hostnames
        ]})
        sim = Simulator(inventory, clock=ScaledClock(args.time_factor), ssh_root=ssh_root)
        server = sim.serve()
        deploy_s = inventory.timings.deploying / args.time_factor
        say(f"MAAS simulator at {server.api_url}: {len(hostnames)} {mtype} machines, Ready; "
            f"a deployment takes {inventory.timings.deploying:.0f} s of MAAS time "
            f"(x{args.time_factor:g}: {deploy_s:.0f} s here)")
        paddles = LockServer(
            {"name": f"{h}.{LAB_DOMAIN}", "machine_type": mtype} for h in hostnames
        )
        handle = paddles.serve()
        say(f"paddles lock server double at {handle.url}")
        lab = TeuthologyLab.create(
            workdir / "lab", Support.write(workdir / "support"), lab_domain=LAB_DOMAIN,
            lock_server=handle.url, ssh_key=fleet.private_key_path,
            ssh_config=fleet.ssh_config_path,
            maas={
                "api_url": server.api_url, "api_key": sim.api_key("teuthology"),
                "machine_types": [mtype], "ssh_keys": [fleet.public_key], "erase": "quick",
                "poll_interval": 1.0, "poll_min_interval": 0.2, "ssh_timeout": 60,
            },
        )
        say(f"teuthology config: {lab.config_path} (TEUTHOLOGY_CONFIG)")
        log = workdir / "teuthology.log"
        owner = "demo@teuthology-maas"
        with MaasWatcher(sim, say):
            code = _run_teuthology(lab, lab.argv(
                "teuthology-lock", "--lock-many", str(args.count), "-m", mtype,
                "--os-type", args.os_type, "--os-version", args.os_version, "--owner", owner,
                "--desc", "teuthology-maas demo",
            ), say, log, args.verbose)
        locked = [n["name"] for n in paddles.nodes() if n["locked"]]
        if code != 0 or len(locked) != args.count:
            say(f"teuthology-lock --lock-many failed (exit {code}); see {log}")
            ctx.out(log.read_text(encoding="utf-8")[-4000:])
            return int(ExitCode.FAILURE)
        ctx.out(f"\nteuthology-lock locked {', '.join(sorted(locked))} (targets above)")
        ctx.out("MAAS after --lock-many:")
        ctx.out("\n".join(maas_table(sim, hostnames)) + "\n")
        with MaasWatcher(sim, say):
            code = _run_teuthology(lab, lab.argv(
                "teuthology-lock", "--unlock", "--owner", owner, *sorted(locked)
            ), say, log, args.verbose)
        ready = all(sim.machine(h)["status_name"] == "Ready" for h in hostnames)
        ctx.out("\nMAAS after --unlock:")
        ctx.out("\n".join(maas_table(sim, hostnames)) + "\n")
        still_locked = [n["name"] for n in paddles.nodes() if n["locked"]]
        if code != 0 or not ready or still_locked:
            say(f"teuthology-lock --unlock failed (exit {code}, locked: {still_locked}); "
                f"see {log}")
            return int(ExitCode.FAILURE)
        nodes = "1 node" if args.count == 1 else f"{args.count} nodes"
        say(f"done: {nodes} locked, reimaged with {args.os_type} "
            f"{args.os_version}, unlocked and Ready again in MAAS")
        return int(ExitCode.OK)
    finally:
        fleet.stop()
        if server is not None:
            server.stop()
        if handle is not None:
            handle.stop()
        running = [pid for pid in started_pids if alive(pid)]
        say(f"stopped the simulator, the lock server and {len(started_pids)} sshd processes"
            + (f"; STILL RUNNING: {running}" if running else ""))
        sys.stdout.flush()

