"""Soak run: many lock/unlock cycles against a simulated MAAS with faults on.

A cycle is what teuthology does with a node for one job: lock it (MaasProvisioner.create(): a
fresh deployment), then unlock it (MaasProvisioner.release()). When create() fails teuthology
still unlocks the node, and when the unlock fails it tries again later; the soak does the same
(up to --release-attempts). Each node is used by one worker at a time, as paddles guarantees.

Faults (all probabilistic, seeded): from the simulator, 503 with Retry-After, 409 with
Retry-After, 504 on deploy, a release whose answer is dropped after MAAS applied it, failed /
reverted / stuck deployments, failed releases and disk erasing; from the fault proxy in front
of it, connection resets before and after POSTs reach MAAS and gateway 504s after MAAS applied
a POST. Retry waits run on virtual time (scaled down, counted in full for the retry budget).
SSH readiness is checked against the simulator's per-node files (no sshd per node).

At the end: nodes leaked (held by our MAAS user, or not Ready), failures by cause, the slowest
operations, and request counts.

Usage: python bench/soak.py [--cycles 1000] [--nodes 50] [--workers 50] [--seed 1]
                            [--fault-scale 1.0] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from teuthology_maas.config import MaasConfig
from teuthology_maas.endpoint import endpoint_for, forget_endpoints
from teuthology_maas.errors import MaasError
from teuthology_maas.maas.client import MaasClient
from teuthology_maas.maas.retry import RetryPolicy
from teuthology_maas.node import provisioner as provisioner_module
from teuthology_maas.node.provisioner import MaasProvisioner
from teuthology_maas.simulator import Inventory, ScaledClock, Simulator
from teuthology_maas.testing.fast_timings import FAST_SCALE, FAST_TIMINGS
from teuthology_maas.testing.faultproxy import FaultProxy, ProxyFault
from teuthology_maas.testing.simulated_ssh import probe_from_files, verify_ssh_from_files
from teuthology_maas.testing.virtual_time import VirtualTime

PUBLIC_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHNvYWtzb2Frc29ha3NvYWtzb2Frc29ha3NvYWtz soak"


def simulator_faults(scale: float) -> list[dict[str, Any]]:
    def p(value: float) -> float:
        return min(1.0, value * scale)

    return [
        {"kind": "error", "status": 503, "retry_after": 10, "probability": p(0.02)},
        {
            "kind": "error",
            "status": 409,
            "retry_after": 5,
            "method": "POST",
            "probability": p(0.02),
        },
        {"kind": "error", "status": 504, "op": "deploy", "probability": p(0.03)},
        {"kind": "drop", "op": "release", "when": "after", "probability": p(0.02)},
        {"kind": "deploy_fail", "probability": p(0.03), "reason": "soak: curtin failed"},
        {"kind": "deploy_revert", "probability": p(0.01)},
        {"kind": "deploy_stuck", "probability": p(0.005)},
        {"kind": "release_fail", "probability": p(0.01)},
        {"kind": "erase_fail", "probability": p(0.01)},
    ]


def proxy_faults(proxy: FaultProxy, scale: float) -> list[ProxyFault]:
    return [
        proxy.add(action, method="POST", times=None, probability=min(1.0, 0.01 * scale))
        for action in ("reset_before", "reset_after", "gateway_after")
    ]


@dataclass
class Operation:
    op: str
    node: str
    cycle: int
    seconds: float
    outcome: str


def cause_of(exc: BaseException) -> str:
    """A short, stable classification of a failure: the exception type and what MAAS said."""
    text = str(exc)
    for pattern in (
        r"Failed deployment",
        r"reverted the deployment to Allocated",
        r"did not reach [A-Za-z, ]+ within",
        r"Releasing failed",
        r"Failed disk erasing",
        r"HTTP \d{3}",
        r"unreachable",
        r"outcome unknown",
    ):
        found = re.search(pattern, text)
        if found:
            return f"{type(exc).__name__}: {found.group(0)}"
    return f"{type(exc).__name__}: {text[:60]}"


class Soak:
    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.args = args
        self.ssh_root = workdir / "ssh"
        self.ssh_root.mkdir()
        machines = [
            {"hostname": f"soak{i:03d}", "tags": ["soak"], "pool": "soak"}
            for i in range(args.nodes)
        ]
        inventory = Inventory.from_mapping(
            {
                "machines": machines,
                "timings": dict(FAST_TIMINGS),
                "seed": args.seed,
                "faults": simulator_faults(args.fault_scale),
            }
        )
        self.sim = Simulator(inventory, clock=ScaledClock(FAST_SCALE), ssh_root=self.ssh_root)
        self.server = self.sim.serve()
        self.proxy = FaultProxy.for_url(self.server.url, seed=args.seed).start()
        self.proxy_rules = proxy_faults(self.proxy, args.fault_scale)
        self.config = MaasConfig.from_mapping(
            {
                "api_url": self.proxy.url_for(self.server.url),
                "api_key": self.sim.api_key("teuthology"),
                "machine_types": ["soak"],
                "ssh_keys": [PUBLIC_KEY],
                "erase": "quick",
                "deploy_timeout": 15,
                "release_timeout": 15,
                "abort_timeout": 10,
                "ssh_timeout": 5,
                "poll_interval": 0.1,
                "poll_min_interval": 0.02,
                "http_timeout": 5,
                "lookup_retries": 2,
            }
        )
        self.sleep = VirtualTime()
        self.client = MaasClient(
            self.config.api_url,
            self.config.api_key,
            timeout=self.config.http_timeout,
            retry=RetryPolicy(max_attempts=8, max_total=180.0),
            sleep=self.sleep.sleep,
            clock=self.sleep.now,
        )
        # Its own client (virtual retry waits), shared by every node as the library shares one.
        self.endpoint = endpoint_for(self.config, client=self.client)
        self.operations: list[Operation] = []
        self.failures: Counter[str] = Counter()
        self.examples: dict[str, str] = {}
        self.lock = threading.Lock()

    def _timed(self, op: str, node: str, cycle: int, action: Any) -> BaseException | None:
        started = time.monotonic()
        error: BaseException | None = None
        try:
            action()
        except MaasError as exc:
            error = exc
        elapsed = time.monotonic() - started
        outcome = "ok" if error is None else cause_of(error)
        with self.lock:
            self.operations.append(Operation(op, node, cycle, elapsed, outcome))
            if error is not None:
                key = f"{op}: {outcome}"
                self.failures[key] += 1
                self.examples.setdefault(key, str(error)[:300])
        return error

    def worker(self, node: str, cycles: int) -> None:
        for cycle in range(cycles):
            node_provisioner = MaasProvisioner(
                node, "ubuntu", "22.04", config=self.config, endpoint=self.endpoint
            )
            self._timed("create", node, cycle, node_provisioner.create)
            for _ in range(self.args.release_attempts):
                if self._timed("release", node, cycle, node_provisioner.release) is None:
                    break

    def run(self) -> dict[str, Any]:
        nodes = [f"soak{i:03d}" for i in range(self.args.nodes)]
        per_node = [self.args.cycles // len(nodes)] * len(nodes)
        for i in range(self.args.cycles % len(nodes)):
            per_node[i] += 1
        started = time.monotonic()
        with ThreadPoolExecutor(self.args.workers) as pool:
            list(pool.map(self.worker, nodes, per_node))
        elapsed = time.monotonic() - started
        return self.report(elapsed)

    def report(self, elapsed: float) -> dict[str, Any]:
        machines = self.sim.machines()
        leaked = [
            f"{m['hostname']} ({m['status_name']}, owner {m.get('owner') or '-'})"
            for m in machines
            if m.get("owner") or m["status_name"] != "Ready"
        ]
        creates = [o for o in self.operations if o.op == "create"]
        releases = [o for o in self.operations if o.op == "release"]
        log = list(self.sim.request_log)
        requests_by_op = Counter(f"{r.method} {r.op or r.path.split('/')[4]}" for r in log)
        statuses = Counter(str(r.status) if r.status is not None else "dropped" for r in log)
        injected: Counter[str] = Counter()
        for fault in self.sim.faults.active():
            detail = f" {fault.status}" if fault.status else ""
            detail += f" {fault.op}" if fault.op and fault.kind in ("error", "drop") else ""
            injected[f"simulator {fault.kind}{detail}"] += fault.fired
        for rule in self.proxy_rules:
            injected[f"proxy {rule.action} POST"] += rule.hits

        def quantiles(ops: list[Operation]) -> dict[str, float]:
            values = sorted(o.seconds for o in ops)
            if len(values) < 2:
                return {}
            cuts = statistics.quantiles(values, n=100)
            return {"p50": cuts[49], "p95": cuts[94], "p99": cuts[98], "max": values[-1]}

        return {
            "cycles": self.args.cycles,
            "nodes": self.args.nodes,
            "workers": self.args.workers,
            "seed": self.args.seed,
            "fault_scale": self.args.fault_scale,
            "elapsed_seconds": round(elapsed, 1),
            "creates": len(creates),
            "creates_ok": sum(o.outcome == "ok" for o in creates),
            "releases": len(releases),
            "releases_ok": sum(o.outcome == "ok" for o in releases),
            "leaked": leaked,
            "failures_by_cause": dict(self.failures.most_common()),
            "failure_examples": self.examples,
            "create_seconds": quantiles(creates),
            "release_seconds": quantiles(releases),
            "slowest": [asdict(o) for o in sorted(self.operations, key=lambda o: -o.seconds)[:10]],
            "maas_requests": len(log),
            "requests_by_op": dict(requests_by_op.most_common()),
            "responses_by_status": dict(statuses.most_common()),
            "faults_injected": dict(injected.most_common()),
            "virtual_retry_wait_seconds": round(self.sleep.total, 1),
        }

    def close(self) -> None:
        self.client.close()
        self.proxy.stop()
        self.server.stop()
        forget_endpoints()


def print_report(result: dict[str, Any]) -> None:
    print(
        f"soak: {result['cycles']} lock/unlock cycles on {result['nodes']} nodes "
        f"({result['workers']} workers, seed {result['seed']}, fault scale "
        f"{result['fault_scale']}) in {result['elapsed_seconds']} s"
    )
    print(
        f"  create: {result['creates_ok']}/{result['creates']} ok   "
        f"release: {result['releases_ok']}/{result['releases']} ok   "
        f"MAAS requests: {result['maas_requests']}"
    )
    print(f"  nodes leaked: {len(result['leaked'])}")
    for line in result["leaked"]:
        print(f"    {line}")
    print("  failures by cause:")
    for cause, count in result["failures_by_cause"].items():
        print(f"    {count:5d}  {cause}")
    print("  faults injected:")
    for fault, count in result["faults_injected"].items():
        print(f"    {count:5d}  {fault}")
    for op in ("create", "release"):
        q = result[f"{op}_seconds"]
        if q:
            print(
                f"  {op} seconds: p50 {q['p50']:.2f}  p95 {q['p95']:.2f}  p99 {q['p99']:.2f}  "
                f"max {q['max']:.2f}"
            )
    print("  slowest operations:")
    for o in result["slowest"]:
        where = f"{o['op']:<7} {o['node']} cycle {o['cycle']}"
        print(f"    {o['seconds']:6.2f} s  {where}: {o['outcome']}")
    print(f"  retry waits (virtual): {result['virtual_retry_wait_seconds']} s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cycles", type=int, default=1000)
    parser.add_argument("--nodes", type=int, default=50)
    parser.add_argument("--workers", type=int, default=50)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--fault-scale", type=float, default=1.0)
    parser.add_argument("--release-attempts", type=int, default=3)
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    parser.add_argument("--log-file", metavar="FILE", help="the library's log (default: none)")
    args = parser.parse_args(argv)
    logging.basicConfig(
        filename=args.log_file or os.devnull,
        level=logging.INFO,
        format="%(asctime)s %(threadName)s %(name)s %(levelname)s %(message)s",
    )
    if args.nodes < 1 or args.cycles < 1 or args.workers < 1:
        parser.error("--cycles, --nodes and --workers must be >= 1")
    # The soak measures the MAAS side; SSH readiness is read from the simulator's files.
    with tempfile.TemporaryDirectory(prefix="teuthology-maas-soak-") as workdir:
        soak = Soak(args, Path(workdir))
        provisioner_module.verify_ssh = verify_ssh_from_files(soak.ssh_root)  # type: ignore[assignment]
        provisioner_module.probe_ready = probe_from_files(soak.ssh_root)
        try:
            result = soak.run()
        finally:
            soak.close()
    print_report(result)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 1 if result["leaked"] else 0


if __name__ == "__main__":
    sys.exit(main())
