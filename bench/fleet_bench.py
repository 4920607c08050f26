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
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _fleet_model import DEPLOY_MAX, TIMINGS, Shape, describe
from _fleet_run import Run, run
from _fleet_stats import Side, fmt, percentile, ratios, table, where_requests_go
from _fleet_targets import targets

FULL_SHAPES = "1x1,25x2,50,200,1000"
QUICK_SHAPES = "1x1,25x2,50,200"
LONE_NODE, PRODUCTION = "1x1", "25x2"
BIG = 1000


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
                        help="warm: all runs of a side share one host home (host store, "
                        "sockets), as on a lab host that has run jobs before (default); "
                        "fresh: every run on a host of its own")
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
        shape_factor = args.big_factor if big else factor
        count = lone_seeds if shape.lone else args.big_seeds if big else seeds
        for seed in range(1, count + 1):
            for impl in impls:
                if impl == "upstream" and shape.nodes > args.upstream_max_nodes:
                    continue
                runs.append((shape, impl, seed, shape_factor))
    return runs


def planned_seconds(runs: list[tuple[Shape, str, int, float]], parallel: int) -> float:
    """A rough wall time on an idle 2-core machine: the longest deployment (plus upstream's
    last 60 s sleep) over the factor, plus start-up (about 0.7 s of teuthology imports per
    process on 2 cores) and the simulator's work for large N; lone-node runs overlap."""

    def seconds(shape: Shape, factor: float) -> float:
        return (DEPLOY_MAX + 60) / factor + 3 + 0.7 * shape.processes + 0.03 * shape.nodes

    lone = sum(seconds(s, f) for s, _, _, f in runs if s.lone) / max(1, parallel)
    return lone + sum(seconds(s, f) for s, _, _, f in runs if not s.lone)


def one(shape: Shape, impl: str, seed: int, factor: float, args: argparse.Namespace) -> Run:
    started = time.monotonic()
    host = args.hosts / impl if args.host_state == "warm" else None
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
        # Lone nodes barely load the machine; several at once, each with its own simulator.
        with ThreadPoolExecutor(max_workers=max(1, args.parallel)) as pool:
            done += list(pool.map(lambda r: one(r[0], r[1], r[2], r[3], args), lone))
    for shape, impl, seed, factor in (r for r in runs if not r[0].lone):
        done.append(one(shape, impl, seed, factor, args))
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
        "warm (the runs of a side share one host home: host store, sockets), in the order run: "
        "lone-node runs first, then the others" if args.host_state == "warm"
        else "fresh (every run on a host of its own)"))  # fmt: skip
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
    print(f"fleet benchmark: {len(runs)} runs; shapes {shapes}; time factor {factors}; "
          f"timing {args.timing}; about {planned_seconds(runs, args.parallel) / 60:.0f} min on "
          "an idle 2-core machine", flush=True)  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="fleet-hosts-") as hosts:
        args.hosts = Path(hosts)
        done = execute(runs, args)
    sides = report(done, args, began)
    if args.json:
        figures = {"timing": args.timing, "sides": [s.as_dict() for s in sides]}
        args.json.write_text(json.dumps(figures, indent=2))
        print(f"figures written to {args.json}")
    return 1 if any(r.ok < r.nodes for r in done) else 0


if __name__ == "__main__":
    sys.exit(main())
