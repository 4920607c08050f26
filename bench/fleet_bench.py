"""Fleet benchmark: our MaasProvisioner against upstream teuthology's MAAS, N nodes at once.

For N = 1, 10, 50, 200 nodes and each implementation, one child process reimages N simulated
machines concurrently (one thread/greenlet per node calling create(), under gevent as inside
teuthology) against a fresh simulator whose clock runs `--factor` times faster than real time.
Every machine gets a deploy time drawn from 8-15 simulated minutes (same draws for both
implementations). Measured:

(a) added latency per node = the moment create() returned minus the moment MAAS reached
    Deployed (the simulator's "Deployed" event time), in unscaled seconds: the part spent
    waiting for the status read that saw Deployed is sleeping, which the benchmark scaled
    down, so it is multiplied back by the factor; the rest (that read, the lock call, the
    return) is real work and counted as measured. The naive figure (everything x factor) is in
    the JSON output as `naive_p95`.
(b) MAAS requests per node, from the simulator's request log;
(c) peak RSS and CPU seconds of the child process (os.wait4 resource usage); CPU % is CPU
    seconds over the run's unscaled duration.

Usage: python bench/fleet_bench.py [--quick] [--sizes 1,10,50,200] [--factor 20] [--json out]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _fleet_stats import Variant, ratios, request_breakdown, table, targets

from teuthology_maas.simulator import Inventory, ScaledClock, Simulator

CHILD = Path(__file__).resolve().parent / "_fleet_child.py"
DEPLOY_MIN, DEPLOY_MAX = 8 * 60.0, 15 * 60.0
LAB_DOMAIN = "bench.test"
# Any syntactically valid key: nothing logs in (SSH verification is stubbed in both).
PUBLIC_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJbenchmarkbenchmarkbenchmarkbenchmark00 bench"


def deploy_times(n: int, seed: int) -> list[float]:
    rng = random.Random(seed * 1000 + n)
    return [rng.uniform(DEPLOY_MIN, DEPLOY_MAX) for _ in range(n)]


def inventory_for(durations: list[float]) -> Inventory:
    machines = [
        {
            "hostname": f"bench{i:03d}",
            "tags": ["bench"],
            "pool": "bench",
            "timings": {"deploying": round(seconds, 3)},
        }
        for i, seconds in enumerate(durations)
    ]
    return Inventory.from_mapping({"machines": machines, "seed": 1})


def _request_kind(record: Any) -> str:
    method = str(getattr(record, "method", "?"))
    path = str(getattr(record, "path", ""))
    op = getattr(record, "op", None)
    system_id = getattr(record, "system_id", None)
    if "machines/" in path and not system_id and not op and method == "GET":
        param_list = getattr(record, "param_list", None)
        if callable(param_list) and param_list("hostname"):
            return "GET machines/?hostname= (lookup)"
        return "GET machines/ (list)"
    if system_id and not op and method == "GET":
        return "GET machines/<id>/"
    resource = path.rstrip("/").split("/")[-1] if not system_id else "machines/<id>"
    return f"{method} {resource}" + (f" op={op}" if op else "")


def deployed_times(sim: Simulator, real0: float, sim0: float, factor: float) -> dict[str, float]:
    """When each machine reached Deployed, in this process's monotonic seconds. The event log
    keeps the exact simulated time of each step (the API's `created` has whole seconds)."""
    deployed: dict[str, float] = {}
    with sim.state.lock:
        for record in sim.state.machines.values():
            for event in sim.state.events.for_node(record.system_id):
                if event.type == "Deployed":
                    deployed[record.hostname] = real0 + (event.created - sim0) / factor
    return deployed


def run_variant(impl: str, durations: list[float], factor: float, mode: str) -> Variant:
    n = len(durations)
    variant = Variant(impl=impl, nodes=n, factor=factor)
    clock = ScaledClock(factor)
    # The same instant on both clocks, to turn simulated event times into monotonic seconds.
    real0, sim0 = time.monotonic(), clock.now()
    # What an SSH login would find on each node (written when it reaches Deployed): our
    # side's probe near the end of a deployment reads it instead of logging in.
    ssh_root = tempfile.TemporaryDirectory(prefix="bench-ssh-")
    sim = Simulator(inventory_for(durations), clock=clock, ssh_root=ssh_root.name)
    with ssh_root, sim.serve() as server, tempfile.TemporaryFile() as stderr:
        job = {
            "impl": impl,
            "mode": mode,
            "factor": factor,
            "api_url": server.api_url,
            "api_key": sim.api_key("teuthology"),
            "lab_domain": LAB_DOMAIN,
            "ssh_public_key": PUBLIC_KEY,
            "hostnames": [f"bench{i:03d}" for i in range(n)],
            "ssh_root": ssh_root.name,
            # A host store of its own: each variant runs as the first process of a host.
            "host_store": os.path.join(ssh_root.name, "host-store.json"),
        }
        spawned = time.monotonic()
        # Upstream must run teuthology's own MAAS code, not our activation hook's dispatchers.
        env = dict(os.environ, TEUTHOLOGY_MAAS_ACTIVATE="0" if impl == "upstream" else "1")
        child = subprocess.Popen(
            [sys.executable, str(CHILD)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=stderr, env=env,
        )  # fmt: skip
        assert child.stdin is not None and child.stdout is not None
        try:
            child.stdin.write(json.dumps(job).encode())
            child.stdin.close()
            output = child.stdout.read()
            # wait4 gives this child's own resource usage (RUSAGE_CHILDREN would mix variants).
            _, status, usage = os.wait4(child.pid, 0)
        except BaseException:
            # Interrupted (Ctrl-C): the child must not outlive the simulator it talks to.
            child.kill()
            child.wait()
            raise
        child.returncode = os.waitstatus_to_exitcode(status)
        exited = time.monotonic()
        if child.returncode != 0:
            stderr.seek(0)
            raise SystemExit(
                f"{impl} N={n}: the provisioning process failed ({child.returncode}):\n"
                + stderr.read().decode(errors="replace")[-4000:]
            )
        result = json.loads(output.decode().strip().splitlines()[-1])
        log = list(sim.request_log)
        deployed = deployed_times(sim, real0, sim0, factor)
    variant.requests = len(log)
    for record in log:
        kind = _request_kind(record)
        variant.request_kinds[kind] = variant.request_kinds.get(kind, 0) + 1
    variant.notes = result.get("notes", [])
    variant.poller = result.get("poller", {})
    for node in result["nodes"]:
        if node.get("error"):
            variant.errors.append(f"{node['hostname']}: {node['error']}")
            continue
        done = deployed.get(node["hostname"])
        noticed = node.get("noticed")
        if done is None or noticed is None:
            variant.errors.append(f"{node['hostname']}: no Deployed event / status read")
            continue
        variant.ok += 1
        wait = max(0.0, noticed - done) * factor
        work = node["returned"] - max(noticed, done)
        variant.waits.append(wait)
        variant.works.append(work)
        variant.latencies.append(wait + work)
        variant.naive.append((node["returned"] - done) * factor)
    variant.cpu_seconds = usage.ru_utime + usage.ru_stime
    variant.peak_rss_mb = usage.ru_maxrss / 1024.0  # KiB on Linux
    began, ended = result["began"], result["ended"]
    variant.wall_real = exited - spawned
    variant.wall_unscaled = (began - spawned) + (ended - began) * factor + (exited - ended)
    return variant


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="N = 1, 10, 50 at factor 60 (about 2 minutes)")
    parser.add_argument("--sizes", help="comma-separated node counts (default 1,10,50,200)")
    parser.add_argument("--factor", type=float,
                        help="simulated seconds per real second (default 20; --quick 60)")
    parser.add_argument("--impl", default="ours,upstream", help="ours, upstream or both")
    parser.add_argument("--mode", choices=("gevent", "threads"), default="gevent",
                        help="gevent: import teuthology first, as in production (default); "
                        "threads: our side on native threads (upstream always needs gevent)")
    parser.add_argument("--seed", type=int, default=6)
    parser.add_argument("--json", type=Path, help="write every figure to this file")
    args = parser.parse_args(argv)  # fmt: skip

    default_sizes = "1,10,50" if args.quick else "1,10,50,200"
    sizes = [int(s) for s in (args.sizes or default_sizes).split(",")]
    factor = args.factor or (60.0 if args.quick else 20.0)
    impls = [i.strip() for i in args.impl.split(",") if i.strip()]
    print(
        f"fleet benchmark: N={sizes}, time factor {factor:g} (deploys of "
        f"{DEPLOY_MIN / 60:.0f}-{DEPLOY_MAX / 60:.0f} simulated min = "
        f"{DEPLOY_MIN / factor:.0f}-{DEPLOY_MAX / factor:.0f} s real), mode {args.mode}",
        flush=True,
    )
    variants: list[Variant] = []
    for n in sizes:
        durations = deploy_times(n, args.seed)
        for impl in impls:
            started = time.monotonic()
            variant = run_variant(impl, durations, factor, args.mode)
            variants.append(variant)
            print(
                f"  {impl:<9} N={n:<4} done in {time.monotonic() - started:5.1f} s: "
                f"{variant.ok}/{n} deployed, {variant.requests_per_node:.1f} requests/node",
                flush=True,
            )
            for error in variant.errors[:3]:
                print(f"    error: {error}", flush=True)
    print()
    print(table(variants))
    print()
    print(ratios(variants))
    print()
    print(targets(variants))
    print()
    breakdown_at = 50 if 50 in sizes else max(sizes)
    print(request_breakdown(variants, breakdown_at))
    print()
    print("How it was driven:")
    for note in dict.fromkeys(n for v in variants for n in v.notes):
        print(f"  - {note}")
    print(
        "  - latency = (status read that saw Deployed - MAAS Deployed) x factor + (create() "
        "return - that read) unscaled; see docs/performance.md"
    )
    if args.json:
        args.json.write_text(json.dumps([v.as_dict() for v in variants], indent=2))
        print(f"figures written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
