"""What fleet_bench.py runs: the shapes (processes x nodes), and the simulated lab each run
meets (the machines and how long each one's deployment takes).

Timing models (`--timing`):
- noisy (default): each node's deployment takes 8-15 simulated minutes in all, of which the
  reboot at the end ("Rebooting" to Deployed) is 90-240 s, both drawn per node; the simulator
  moves each earlier progress message off its fixed place (`progress_jitter`), drawn per
  machine from the seed. Real nodes differ in firmware, POST and disks; a model that learns
  from fixed fractions would fit a fixed model exactly.
- fixed: 8-15 minutes per node, progress messages at fixed fractions, Rebooting at 90 %.

The draws depend only on the seed and the node's index, so both sides meet the same lab.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from teuthology_maas.simulator import Inventory

DEPLOY_MIN, DEPLOY_MAX = 8 * 60.0, 15 * 60.0
REBOOT_MIN, REBOOT_MAX = 90.0, 240.0
PROGRESS_JITTER = 0.6
MACHINE_TYPE = "bench"
TIMINGS = ("noisy", "fixed")


@dataclass(frozen=True)
class Shape:
    """K supervisor-like processes, k nodes each, all started together."""

    processes: int
    per_process: int

    @property
    def name(self) -> str:
        return f"{self.processes}x{self.per_process}"

    @property
    def nodes(self) -> int:
        return self.processes * self.per_process

    @property
    def lone(self) -> bool:
        return self.nodes == 1

    @classmethod
    def parse(cls, text: str) -> Shape:
        """'25x2' (25 processes x 2 nodes) or 'N=50' / '50' (one process, 50 nodes)."""
        raw = text.strip().lower().removeprefix("n=")
        try:
            if "x" in raw:
                processes, per_process = (int(part) for part in raw.split("x", 1))
            else:
                processes, per_process = 1, int(raw)
        except ValueError:
            raise ValueError(
                f"shape {text!r}: expected PROCESSESxNODES (like 25x2) or a node count"
            ) from None
        if processes < 1 or per_process < 1:
            raise ValueError(f"shape {text!r}: processes and nodes must be >= 1")
        return cls(processes, per_process)

    def label(self) -> str:
        if self.processes == 1 and self.per_process > 1:
            return f"N={self.per_process} in one process"
        return f"{self.processes} process(es) x {self.per_process} node(s)"

    def hostnames(self) -> list[list[str]]:
        """The hostnames each process reimages."""
        return [
            [f"bench{p * self.per_process + j:04d}" for j in range(self.per_process)]
            for p in range(self.processes)
        ]


def node_timings(model: str, seed: int, index: int) -> dict[str, float]:
    """The simulator timings of node `index` for `seed` (simulated seconds)."""
    if model not in TIMINGS:
        raise ValueError(f"timing model {model!r}: expected one of {', '.join(TIMINGS)}")
    draw = random.Random(f"fleet-bench:{seed}:{index}")
    timings = {"deploying": round(draw.uniform(DEPLOY_MIN, DEPLOY_MAX), 3)}
    reboot = round(draw.uniform(REBOOT_MIN, REBOOT_MAX), 3)
    if model == "noisy":
        timings["rebooting"] = reboot
    return timings


def inventory_for(shape: Shape, model: str, seed: int, api_key: str | None = None) -> Inventory:
    """The run's lab; `api_key`: the `teuthology` user's key (one key for every run on a host,
    as in a lab), or a fresh one."""
    machines: list[dict[str, Any]] = [
        {
            "hostname": hostname,
            "tags": [MACHINE_TYPE],
            "pool": MACHINE_TYPE,
            "timings": node_timings(model, seed, index),
        }
        for index, hostname in enumerate(h for group in shape.hostnames() for h in group)
    ]
    data: dict[str, Any] = {"machines": machines, "seed": seed}
    if api_key is not None:
        data["users"] = [{"username": "teuthology", "api_key": api_key}]
    if model == "noisy":
        data["timings"] = {"progress_jitter": PROGRESS_JITTER}
    return Inventory.from_mapping(data)


def describe(model: str) -> str:
    if model == "noisy":
        return (
            f"noisy: deploys of {DEPLOY_MIN / 60:.0f}-{DEPLOY_MAX / 60:.0f} simulated min per "
            f"node, ending with a reboot of {REBOOT_MIN:.0f}-{REBOOT_MAX:.0f} s drawn per node; "
            f"earlier progress messages jittered ({PROGRESS_JITTER:g} of half the gap)"
        )
    return (
        f"fixed: deploys of {DEPLOY_MIN / 60:.0f}-{DEPLOY_MAX / 60:.0f} simulated min per node, "
        "progress messages at fixed fractions (Rebooting at 90 %)"
    )
