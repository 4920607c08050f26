"""Numbers for fleet_bench.py: the runs of one shape and side pooled over seeds, their spread,
and the printed tables."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from _fleet_run import Run

NAN = float("nan")


def percentile(values: Sequence[float], fraction: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    if not values:
        return NAN
    ordered = sorted(values)
    position = (len(ordered) - 1) * fraction
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def spread(values: Sequence[float]) -> tuple[float, float, float]:
    """(min, median, max); NaN when there is nothing."""
    clean = [v for v in values if v == v]
    if not clean:
        return NAN, NAN, NAN
    return min(clean), statistics.median(clean), max(clean)


def fmt(value: float, digits: int = 2) -> str:
    return "-" if value != value else f"{value:.{digits}f}"


def fmt_spread(values: tuple[float, float, float], digits: int = 1) -> str:
    low, mid, high = values
    if low != low:
        return "-"
    if low == high:
        return fmt(mid, digits)
    return f"{fmt(low, digits)}/{fmt(mid, digits)}/{fmt(high, digits)}"


@dataclass
class Side:
    """Every run of one shape and implementation (one per seed)."""

    shape: str
    impl: str
    runs: list[Run]

    @property
    def nodes(self) -> int:
        return sum(r.nodes for r in self.runs)

    @property
    def ok(self) -> int:
        return sum(r.ok for r in self.runs)

    @property
    def errors(self) -> list[str]:
        return [e for r in self.runs for e in r.errors]

    @property
    def latencies(self) -> list[float]:
        return [x for r in self.runs for x in r.latencies]

    def pooled_p(self, fraction: float) -> float:
        """Over every node of every seed."""
        return percentile(self.latencies, fraction)

    @property
    def requests_per_node(self) -> float:
        return sum(r.requests for r in self.runs) / self.nodes if self.nodes else NAN

    @property
    def rendered_per_node(self) -> float:
        return sum(r.rendered for r in self.runs) / self.nodes if self.nodes else NAN

    def per_seed(self, what: str) -> tuple[float, float, float]:
        figures = {
            "requests": [r.requests / r.nodes for r in self.runs],
            "rendered": [r.rendered / r.nodes for r in self.runs],
            "p95": [percentile(r.latencies, 0.95) for r in self.runs],
            "cpu": [r.cpu_percent for r in self.runs],
        }
        return spread(figures[what])

    @property
    def rss(self) -> tuple[float, float, float]:
        """Peak RSS of each process of each run."""
        return spread([m for r in self.runs for m in r.rss_mb])

    def kinds_per_node(self) -> dict[str, tuple[float, float]]:
        """Per request kind: (requests, machines rendered) per node, pooled over seeds."""
        totals: dict[str, list[int]] = {}
        for run in self.runs:
            for kind, (count, rendered) in run.kinds.items():
                total = totals.setdefault(kind, [0, 0])
                total[0] += count
                total[1] += rendered
        return {k: (c / self.nodes, r / self.nodes) for k, (c, r) in totals.items()}

    def as_dict(self) -> dict[str, Any]:
        return {
            "shape": self.shape, "impl": self.impl, "seeds": [r.seed for r in self.runs],
            "nodes": self.nodes, "ok": self.ok, "errors": self.errors[:5],
            "requests_per_node": self.requests_per_node,
            "rendered_per_node": self.rendered_per_node,
            "requests_per_node_spread": self.per_seed("requests"),
            "rendered_per_node_spread": self.per_seed("rendered"),
            "latency_p50": self.pooled_p(0.5), "latency_p95": self.pooled_p(0.95),
            "latency_p95_spread": self.per_seed("p95"),
            "rss_mb_spread": self.rss, "cpu_percent_spread": self.per_seed("cpu"),
            "kinds_per_node": self.kinds_per_node(),
            "runs": [r.as_dict() for r in self.runs],
        }  # fmt: skip


def ratio(ours: float, theirs: float) -> float:
    return ours / theirs if theirs and theirs == theirs and ours == ours else NAN


def table(sides: Sequence[Side]) -> str:
    """One line per shape and side. Spreads are min/median/max over the seeds."""
    header = (
        f"{'shape':<7} {'impl':<9} {'seeds':>5} {'ok':>9} {'req/node':>16} {'rendered/node':>17} "
        f"{'lat p50':>7} {'lat p95':>7} {'p95 per seed':>16} {'RSS MB/process':>15} "
        f"{'CPU %':>14}"
    )
    lines = [header, "-" * len(header)]
    for s in sides:
        lines.append(
            f"{s.shape:<7} {s.impl:<9} {len(s.runs):>5} {f'{s.ok}/{s.nodes}':>9} "
            f"{fmt_spread(s.per_seed('requests')):>16} {fmt_spread(s.per_seed('rendered')):>17} "
            f"{fmt(s.pooled_p(0.5)):>7} {fmt(s.pooled_p(0.95)):>7} "
            f"{fmt_spread(s.per_seed('p95'), 2):>16} {fmt_spread(s.rss, 0):>15} "
            f"{fmt_spread(s.per_seed('cpu'), 2):>14}"
        )
    return "\n".join(lines)


def ratios(sides: Sequence[Side]) -> str:
    """ours / upstream per shape, pooled over seeds, with the per-seed spread of the request
    ratio (the same seed is the same lab on both sides)."""
    by_key = {(s.shape, s.impl): s for s in sides}
    header = (
        f"{'shape':<7} {'req/node':>8} {'per seed':>16} {'rendered':>8} {'lat p95':>8} "
        f"{'RSS med':>8}   (ours / upstream)"
    )
    lines = [header, "-" * len(header)]
    for shape in dict.fromkeys(s.shape for s in sides):
        ours, theirs = by_key.get((shape, "ours")), by_key.get((shape, "upstream"))
        if ours is None or theirs is None:
            continue
        theirs_by_seed = {r.seed: r for r in theirs.runs}
        seeded = [
            ratio(r.requests / r.nodes, theirs_by_seed[r.seed].requests / r.nodes)
            for r in ours.runs
            if r.seed in theirs_by_seed
        ]
        lines.append(
            f"{shape:<7} {fmt(ratio(ours.requests_per_node, theirs.requests_per_node)):>8} "
            f"{fmt_spread(spread(seeded), 2):>16} "
            f"{fmt(ratio(ours.rendered_per_node, theirs.rendered_per_node)):>8} "
            f"{fmt(ratio(ours.pooled_p(0.95), theirs.pooled_p(0.95)), 3):>8} "
            f"{fmt(ratio(ours.rss[1], theirs.rss[1])):>8}"
        )
    return "\n".join(lines)


def where_requests_go(sides: Sequence[Side], shape: str) -> str:
    """Requests and machines rendered per node, by kind, ours next to upstream."""
    chosen = [s for s in sides if s.shape == shape]
    per_side = [s.kinds_per_node() for s in chosen]
    kinds = sorted({k for kinds in per_side for k in kinds})
    if not kinds:
        return ""
    width = max(len(k) for k in [*kinds, f"per node, shape {shape}"])
    header = f"{f'per node, shape {shape}':<{width}} " + " ".join(
        f"{s.impl + ' req':>13} {'rendered':>9}" for s in chosen
    )
    lines = [header, "-" * len(header)]
    for kind in [*kinds, "all"]:
        cells = []
        for kinds_of in per_side:
            if kind == "all":
                count = sum(c for c, _ in kinds_of.values())
                rendered = sum(r for _, r in kinds_of.values())
            else:
                count, rendered = kinds_of.get(kind, (0.0, 0.0))
            cells.append(f"{count:>13.2f} {rendered:>9.2f}")
        lines.append(f"{kind:<{width}} " + " ".join(cells))
    return "\n".join(lines)
