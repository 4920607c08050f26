"""Fleet benchmark: our provisioner against upstream teuthology 1.3.0's MAAS code, in the shapes
a lab runs, through the real entry point.

A shape is K processes x k nodes started together: 25x2 is the dispatcher's (one supervisor
per job, a few nodes each), 1x1 a lone job, 1xN teuthology-lock --lock-many. Each process
(bench/_fleet_child.py) imports teuthology as teuthology-supervisor does and calls
teuthology.provision.maas.MAAS(fqdn, "ubuntu", "22.04").create() for its nodes at once; with
our activation hook on that is our adapter, with TEUTHOLOGY_MAAS_ACTIVATE=0 upstream's class.
Every run has a fresh simulator whose clock runs `--factor` times faster than real time, and
both sides sleep scaled by the same factor. Each shape runs for several seeds; a seed fixes
the lab (every node's deploy timings), the same for both sides. Measured per run
(bench/_fleet_run.py): added latency per node, MAAS requests and machines rendered per node,
peak RSS per process, CPU while provisioning. Printed: a table per shape and side with the
spread over seeds, ours/upstream ratios, one MET/MISSED line per target of issue 14, and where
the requests go for the lone node and the production shape. docs/performance.md: the method.

Usage: python bench/fleet_bench.py [--quick] [--shapes 1x1,25x2,50,200,1000] [--seeds 3]
         [--lone-seeds 10] [--factor 40] [--timing noisy|fixed] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _fleet_model import DEPLOY_MAX, TIMINGS, Shape, describe
from _fleet_run import Host, Run, run
from _fleet_stats import Side, fmt, percentile, ratios, table, where_requests_go
from _fleet_targets import targets

from teuthology_maas.simulator.inventory import generate_api_key

FULL_SHAPES = "1x1,25x2,50,200,1000"
QUICK_SHAPES = "1x1,25x2,50"
LONE_NODE, PRODUCTION = "1x1", "25x2"
BIG = 1000
# Nodes x factor one process may be given: its work (probes, reads) per real second grows with
# both, and a process short of CPU makes every real delay count factor times in the latency.
LOAD = 4000.0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help=f"shapes {QUICK_SHAPES}, 1 seed (lone node 3) at factor 60: "
                        "about 3 minutes, to check the bench works, not to judge targets")
    parser.add_argument("--shapes", help=f"PROCESSESxNODES or a node count for one process, "
                        f"comma-separated (default {FULL_SHAPES})")
    parser.add_argument("--seeds", type=int, help="seeds per shape (default 3; --quick 1)")
    parser.add_argument("--lone-seeds", type=int,
                        help="seeds for the lone node, 1x1 (default 10; --quick 3)")
    parser.add_argument("--factor", type=float,
                        help="simulated seconds per real second (default 40; --quick 60)")
    parser.add_argument("--big-factor", type=float, default=60.0,
                        help=f"factor for shapes of {BIG} nodes or more (default 60)")
    parser.add_argument("--load", type=float, default=LOAD,
                        help="at most this many nodes x factor per process: a shape's factor is "
                        f"lowered to LOAD / its nodes per process (default {LOAD:g}: N=200 at 20, "
                        "N=1000 at 4), so that the process under test is not short of CPU")
    parser.add_argument("--big-seeds", type=int, default=1,
                        help=f"seeds for shapes of {BIG} nodes or more (default 1: a thousand "
                        "latency samples, ours only; more seeds cost about a minute each)")
    parser.add_argument("--timing", choices=TIMINGS, default="noisy",
                        help="noisy: per-node reboot of 90-240 s, jittered progress (default); "
                        "fixed: progress at fixed fractions of the deploy")
    parser.add_argument("--impl", default="ours,upstream", help="ours, upstream or both")
    parser.add_argument("--upstream-max-nodes", type=int, default=200,
                        help="upstream is not run for larger shapes: each of its nodes reads "
                        "MAAS on its own every 60 s, at N=1000 and factor 60 about 1000 reads "
                        "per real second, more than one simulator process serves (default 200)")
    parser.add_argument("--host-state", choices=("warm", "fresh"), default="warm",
                        help="warm: runs go to lab hosts that keep their home (host store, "
                        "sockets), MAAS endpoint and key, each having reimaged a node before "
                        "(default); fresh: every run on a new host")
    parser.add_argument("--parallel", type=int, default=5,
                        help="lone-node runs at once, each with its own simulator (default 5)")
    parser.add_argument("--json", type=Path, help="write every figure to this file")
    return parser.parse_args(argv)  # fmt: skip


def plan(args: argparse.Namespace) -> list[tuple[Shape, str, int, float]]:
    shapes = [Shape.parse(s) for s in (args.shapes or (
        QUICK_SHAPES if args.quick else FULL_SHAPES)).split(",") if s.strip()]  # fmt: skip
    seeds = args.seeds or (1 if args.quick else 3)
    lone_seeds = args.lone_seeds or (3 if args.quick else 10)
    factor = args.factor or (60.0 if args.quick else 40.0)
    impls = [i.strip() for i in args.impl.split(",") if i.strip()]
    unknown = set(impls) - {"ours", "upstream"}
    if unknown:
        raise SystemExit(f"--impl: unknown {sorted(unknown)}; expected ours and/or upstream")
    runs = []
    for shape in shapes:
        big = shape.nodes >= BIG
        shape_factor = min(args.big_factor if big else factor, args.load / shape.per_process)
        count = lone_seeds if shape.lone else args.big_seeds if big else seeds
        for seed in range(1, count + 1):
            for impl in impls:
                if impl == "upstream" and shape.nodes > args.upstream_max_nodes:
                    continue
                runs.append((shape, impl, seed, shape_factor))
    return runs


def planned_seconds(
    runs: list[tuple[Shape, str, int, float]], parallel: int, warm: bool
) -> float:
    """A rough wall time on an idle 2-core machine: the longest deployment (plus upstream's
    last 60 s sleep) over the factor, plus start-up (about 0.7 s of teuthology imports per
    process on 2 cores) and the simulator's work for large N; lone-node runs overlap; the
    warm-up runs of the hosts overlap too."""

    def seconds(shape: Shape, factor: float) -> float:
        return (DEPLOY_MAX + 60) / factor + 3 + 0.7 * shape.processes + 0.03 * shape.nodes

    lone = sum(seconds(s, f) for s, _, _, f in runs if s.lone) / max(1, parallel)
    warmups = max((seconds(Shape(1, 1), f) for _, i, _, f in runs if i == "ours" and warm),
                  default=0.0)  # fmt: skip
    return warmups + lone + sum(seconds(s, f) for s, _, _, f in runs if not s.lone)


class Hosts:
    """The lab hosts runs go to. warm: one per side and lane (a lane runs its runs one after
    another), each keeping its home, MAAS endpoint and key for the whole invocation; on our
    side each host first reimages one node, unmeasured, as a host that has run jobs before
    has (upstream keeps nothing between processes). fresh: none, every run on a new host."""

    def __init__(self, root: Path, warm: bool) -> None:
        self.root, self.warm = root, warm
        self._hosts: dict[tuple[str, int], Host] = {}
        self._lock = threading.Lock()

    def get(self, impl: str, lane: int) -> tuple[Host | None, bool]:
        """(the host, whether it still needs its warm-up run)."""
        if not self.warm:
            return None, False
        with self._lock:
            key = (impl, lane)
            fresh = key not in self._hosts
            if fresh:
                self._hosts[key] = Host(self.root / f"{impl}{lane}", generate_api_key())
            return self._hosts[key], fresh and impl == "ours"


def one(spec: tuple[Shape, str, int, float], args: argparse.Namespace, lane: int = 0) -> Run:
    shape, impl, seed, factor = spec
    host, cold = args.hosts.get(impl, lane)
    if cold:
        warmup = run(Shape(1, 1), impl, 0, factor, args.timing, host)
        print(f"  {impl:<9} warm-up of host {lane}: {warmup.ok}/1 ok", flush=True)
    started = time.monotonic()
    try:
        result = run(shape, impl, seed, factor, args.timing, host)
    except Exception as exc:  # one broken run must not lose the figures of the others
        result = Run(shape.name, impl, seed, factor, shape.nodes, shape.processes)
        result.errors.append(f"{type(exc).__name__}: {exc}")
    print(
        f"  {impl:<9} {shape.name:<7} seed {seed:<3} {time.monotonic() - started:6.1f} s: "
        f"{result.ok}/{shape.nodes} ok, {result.requests / shape.nodes:6.1f} req/node, "
        f"{result.rendered / shape.nodes:6.1f} rendered/node, "
        f"p95 {fmt(percentile(result.latencies, 0.95))} s",
        flush=True,
    )
    for error in result.errors[:3]:
        print(f"    error: {error[:1500]}", flush=True)
    return result


def execute(runs: list[tuple[Shape, str, int, float]], args: argparse.Namespace) -> list[Run]:
    done: list[Run] = []
    lone = [r for r in runs if r[0].lone]
    if lone:
        # Lone nodes barely load the machine: several lanes at once, each with its own
        # simulator per run, each lane's runs one after another.
        count = max(1, min(args.parallel, len(lone)))
        lanes = [lone[i::count] for i in range(count)]
        with ThreadPoolExecutor(max_workers=count) as pool:
            for results in pool.map(lambda i: [one(r, args, i) for r in lanes[i]], range(count)):
                done += results
    for spec in (r for r in runs if not r[0].lone):
        done.append(one(spec, args))
    return done


def report(done: list[Run], args: argparse.Namespace, began: float) -> list[Side]:
    sides: dict[tuple[str, str], Side] = {}
    for result in done:
        sides.setdefault((result.shape, result.impl), Side(result.shape, result.impl, []))
        sides[(result.shape, result.impl)].runs.append(result)
    ordered = list(sides.values())
    print()
    print("Per shape and side: spreads are min/median/max over the seeds; latencies are in "
          "unscaled seconds, p50/p95 over every node of every seed; CPU % of one core over "
          "the unscaled provisioning time, all processes of a run together.")  # fmt: skip
    print(table(ordered))
    print()
    print(ratios(ordered))
    print()
    print("Targets (issue 14):")
    print(targets(ordered))
    for shape, title in ((LONE_NODE, "a lone node"), (PRODUCTION, "the production shape")):
        breakdown = where_requests_go(ordered, shape)
        if breakdown:
            print()
            print(f"Where requests go, {title}:")
            print(breakdown)
    print()
    print("How it was driven:")
    print(f"  - timing model {describe(args.timing)}")
    print("  - host state: " + (
        f"warm (each host keeps its home, MAAS endpoint and key across its runs; our side's "
        f"hosts each reimaged one node first, unmeasured; {args.parallel} lone-node lanes, the "
        "other shapes on lane 0's hosts)" if args.host_state == "warm"
        else "fresh (every run on a new host, endpoint and key)"))  # fmt: skip
    for note in dict.fromkeys(n for r in done for n in r.notes):
        print(f"  - {note}")
    if any(r.nodes > args.upstream_max_nodes for r in done):
        print(f"  - upstream not run above {args.upstream_max_nodes} nodes (--upstream-max-nodes)")
    print(f"  - total {time.monotonic() - began:.0f} s; see docs/performance.md for the method")
    return ordered


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    runs = plan(args)
    began = time.monotonic()
    shapes = ", ".join(dict.fromkeys(f"{s.name} ({s.label()})" for s, *_ in runs))
    factors = ", ".join(f"{f:g}" for f in sorted({f for *_, f in runs}))
    planned = planned_seconds(runs, args.parallel, args.host_state == "warm")
    print(f"fleet benchmark: {len(runs)} runs; shapes {shapes}; time factor {factors}; "
          f"timing {args.timing}; about {planned / 60:.0f} min on an idle 2-core machine",
          flush=True)  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="fleet-hosts-") as hosts:
        args.hosts = Hosts(Path(hosts), warm=args.host_state == "warm")
        done = execute(runs, args)
    sides = report(done, args, began)
    if args.json:
        figures = {"timing": args.timing, "sides": [s.as_dict() for s in sides]}
        args.json.write_text(json.dumps(figures, indent=2))
        print(f"figures written to {args.json}")
    return 1 if any(r.ok < r.nodes for r in done) else 0


if __name__ == "__main__":
    sys.exit(main())
