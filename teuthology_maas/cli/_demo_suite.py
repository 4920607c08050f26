"""`teuthology-maas demo --suite`: teuthology's production path on one machine.

The real `teuthology-suite` schedules a two-job suite into beanstalkd; the real
`teuthology-dispatcher` locks each job's nodes in the paddles double and starts one
`teuthology-supervisor` per job, which reimages the job's nodes through this library against
the MAAS simulator, runs the job over SSH on sandboxed loopback sshd "nodes" and unlocks them,
releasing them in MAAS. The demo shows MAAS's view and each job's status while it runs, then
each job's result and how long each node's reimage took. Everything it started is stopped,
by PID, before it returns. teuthology_maas.testing.dispatcher_lab says what it takes.
"""

from __future__ import annotations

import argparse
import os
import subprocess
from pathlib import Path
from typing import Any

from teuthology_maas.cli._common import Context, ExitCode
from teuthology_maas.cli._demo_show import LAB_DOMAIN, REPO, MaasWatcher, Printer, maas_table

SUITE = "maas-demo"
OWNER = "scheduled_demo@teuthology-maas"
# (fragment, OS version, nodes): two jobs, different OS versions, reimaging at the same time
JOBS = (("jammy.yaml", "22.04", 2), ("noble.yaml", "24.04", 1))
NODES_NEEDED = sum(nodes for _, _, nodes in JOBS)


def check_prerequisites(ctx: Context) -> bool:
    """Root (sandboxed nodes need mount namespaces) and beanstalkd (installed when root)."""
    from teuthology_maas.testing.dispatcher_lab import BEANSTALKD_PATH

    if os.geteuid() != 0:
        ctx.err("teuthology-maas demo --suite: needs root: each job runs real commands on its "
                "nodes, and the loopback nodes run them in mount namespaces of their own so "
                "that the host is never changed (the demo without --suite needs no root)")
        return False
    installer = REPO / "scripts" / "ensure-system-packages"
    if not os.access(BEANSTALKD_PATH, os.X_OK) and installer.exists():
        ctx.out(f"{BEANSTALKD_PATH} is missing: installing beanstalkd ({installer})")
        subprocess.run([str(installer)], check=False)
    if not os.access(BEANSTALKD_PATH, os.X_OK):
        ctx.err(f"teuthology-maas demo --suite: {BEANSTALKD_PATH} not found; install "
                "beanstalkd (as root: scripts/ensure-system-packages) and run it again")
        return False
    return True


def run_suite(ctx: Context, args: argparse.Namespace, workdir: Path) -> int:
    from teuthology_maas.simulator import Inventory, ScaledClock, Simulator
    from teuthology_maas.testing.dispatcher_lab import Beanstalkd, DispatcherLab, job_config
    from teuthology_maas.testing.lockserver import LockServer
    from teuthology_maas.testing.processes import alive
    from teuthology_maas.testing.sshd import SSHDFleet
    from teuthology_maas.testing.teuthology_lab import Support

    say = Printer(ctx)
    # the tube is the machine type, and a dispatcher refuses a tube another one watches
    mtype = f"{args.machine_type}-demo{os.getpid()}"
    hostnames = [f"{args.machine_type}{i:03d}" for i in range(1, args.machines + 1)]
    ssh_root = workdir / "ssh-root"
    fleet = SSHDFleet(hostnames, ssh_root, workdir=workdir / "sshd", sandbox=True)
    queue = Beanstalkd(workdir / "beanstalkd")
    server = handle = lab = None
    sshd_pids: list[int] = []
    try:
        fleet.start()
        sshd_pids = [s.pid for s in fleet.servers.values() if s.pid]
        say(f"started {len(hostnames)} loopback sshd 'nodes', each job command sandboxed "
            f"(pids {' '.join(map(str, sshd_pids))})")
        inventory = Inventory.from_mapping({"machines": [
            {"hostname": h, "tags": [mtype], "pool": mtype, "ssh_port": fleet.port_of(h)}
            for h in hostnames]})
        sim = Simulator(inventory, clock=ScaledClock(args.time_factor), ssh_root=ssh_root)
        server = sim.serve()
        say(f"MAAS simulator at {server.api_url}: {len(hostnames)} machines of type {mtype}; "
            f"a deployment takes {inventory.timings.deploying / args.time_factor:.0f} s here")
        paddles = LockServer({"name": f"{h}.{LAB_DOMAIN}", "machine_type": mtype}
                             for h in hostnames)
        handle = paddles.serve()
        say(f"paddles lock server double at {handle.url}")
        queue.start()
        say(f"beanstalkd at {queue.host}:{queue.port} (pid {queue.pid})")
        suites = {SUITE: {name: job_config("ubuntu", version, nodes)
                          for name, version, nodes in JOBS}}
        lab = DispatcherLab.create(
            workdir / "lab", Support.write(workdir / "support"), queue=queue,
            machine_type=mtype, suites=suites, lab_domain=LAB_DOMAIN, lock_server=handle.url,
            ssh_key=fleet.private_key_path, ssh_config=fleet.ssh_config_path,
            maas={"api_url": server.api_url, "api_key": sim.api_key("teuthology"),
                  "machine_types": [mtype], "ssh_keys": [fleet.public_key], "erase": "quick",
                  "poll_interval": 1.0, "poll_min_interval": 0.2, "ssh_timeout": 120})
        say(f"teuthology config: {lab.lab.config_path}")
        say(f"$ teuthology-suite --suite {SUITE} --machine-type {mtype} --suite-repo "
            f"file://{lab.lab.root / 'ceph-qa-suite'} ...")
        run = lab.suite(SUITE, owner=OWNER, args=["--timeout", "0"])
        say(f"      scheduled run {run.name}: beanstalk jobs {' '.join(run.job_ids)} "
            "(the first and last are the suite's bookkeeping jobs)")
        dispatcher = lab.start_dispatcher()
        say(f"$ teuthology-dispatcher -v --tube {mtype} ... (pid {dispatcher.pid}; "
            f"logs in {lab.log_dir})")
        with MaasWatcher(sim, say):
            lab.wait_for_run(run.name, run.job_ids, timeout=args.run_timeout,
                             progress=lambda text: say("paddles " + text))
        return _report(ctx, lab, run.name, sim, hostnames, paddles)
    except (RuntimeError, TimeoutError) as exc:
        say(f"the run failed: {exc}")
        return int(ExitCode.FAILURE)
    finally:
        ended = lab.stop() if lab is not None else []
        queue.stop()
        fleet.stop()
        if server is not None:
            server.stop()
        if handle is not None:
            handle.stop()
        left = [pid for pid in [*ended, *sshd_pids, queue.pid or 0] if pid and alive(pid)]
        say(f"stopped {len(ended)} teuthology process(es) (pids {' '.join(map(str, ended))}: the "
            f"dispatcher and whatever of the run still ran), beanstalkd, the simulator, the "
            f"lock server and {len(sshd_pids)} sshd processes"
            + (f"; STILL RUNNING: {left}" if left else ""))


def _report(ctx: Context, lab: Any, run: str, sim: Any, hostnames: list[str],
            paddles: Any) -> int:
    from teuthology_maas.testing.dispatcher_lab import reimages

    jobs = sorted(lab.paddles_jobs(run), key=lambda job: int(job["job_id"]))
    ctx.out(f"\nrun {run}:")
    for job in jobs:
        ctx.out(f"  job {job['job_id']}  {job['description']}  {job['status'].upper()}"
                + (f": {job['failure_reason']}" if job.get("failure_reason") else ""))
        for reimage in reimages(lab.supervisor_log(run, job["job_id"])):
            took = ("did not finish" if reimage.seconds is None
                    else f"failed after {reimage.seconds:.1f} s: {reimage.error}"
                    if reimage.error else f"reimaged in {reimage.seconds:.1f} s")
            ctx.out(f"      {reimage.node}: {reimage.os}, {took}")
    ctx.out("\nMAAS after the run:")
    ctx.out("\n".join(maas_table(sim, hostnames)) + "\n")
    passed = bool(jobs) and all(job["status"] == "pass" for job in jobs)
    ready = all(sim.machine(h)["status_name"] == "Ready" for h in hostnames)
    locked = [node["name"] for node in paddles.nodes() if node["locked"]]
    if passed and ready and not locked:
        ctx.out(f"done: {len(jobs)} jobs passed; every node was reimaged through MAAS, "
                "released and unlocked")
        return int(ExitCode.OK)
    ctx.out(f"FAILED: jobs {[(j['job_id'], j['status']) for j in jobs]}, all Ready in MAAS: "
            f"{ready}, still locked in paddles: {locked}; logs under {lab.archive}")
    return int(ExitCode.FAILURE)
