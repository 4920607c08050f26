"""Numbers for fleet_bench.py: percentiles, per-variant figures and the printed tables."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any


def percentile(values: Sequence[float], fraction: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    position = (len(ordered) - 1) * fraction
    low = math.floor(position)
    high = math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


@dataclass
class Variant:
    impl: str
    nodes: int
    factor: float
    ok: int = 0
    errors: list[str] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)  # unscaled seconds
    waits: list[float] = field(default_factory=list)  # unscaled seconds, the scaled part
    works: list[float] = field(default_factory=list)  # real seconds, counted 1:1
    naive: list[float] = field(default_factory=list)  # everything x factor
    requests: int = 0
    request_kinds: dict[str, int] = field(default_factory=dict)
    peak_rss_mb: float = 0.0
    cpu_seconds: float = 0.0
    wall_real: float = 0.0
    wall_unscaled: float = 0.0
    notes: list[str] = field(default_factory=list)
    poller: dict[str, Any] = field(default_factory=dict)

    @property
    def requests_per_node(self) -> float:
        return self.requests / self.nodes

    @property
    def cpu_percent(self) -> float:
        """CPU seconds over the run's unscaled duration, as % of one core."""
        return 100.0 * self.cpu_seconds / self.wall_unscaled if self.wall_unscaled else math.nan

    def polls_per_minute(self) -> list[int]:
        """Shared-poller requests per simulated minute since the first one (where they go)."""
        sent = self.poller.get("sent") or []
        if not sent:
            return []
        first = min(sent)
        counts: dict[int, int] = {}
        for moment in sent:
            minute = int((moment - first) * self.factor // 60)
            counts[minute] = counts.get(minute, 0) + 1
        return [counts.get(m, 0) for m in range(max(counts) + 1)]

    def p(self, values: Sequence[float], fraction: float) -> float:
        return percentile(values, fraction)

    def as_dict(self) -> dict[str, Any]:
        return {
            "impl": self.impl,
            "nodes": self.nodes,
            "factor": self.factor,
            "ok": self.ok,
            "errors": self.errors[:5],
            "latency_p50": self.p(self.latencies, 0.5),
            "latency_p95": self.p(self.latencies, 0.95),
            "latency_max": max(self.latencies, default=math.nan),
            "wait_p95": self.p(self.waits, 0.95),
            "waits_sorted": [round(w, 2) for w in sorted(self.waits)],
            "work_p95": self.p(self.works, 0.95),
            "naive_p95": self.p(self.naive, 0.95),
            "requests": self.requests,
            "requests_per_node": self.requests_per_node,
            "request_kinds": self.request_kinds,
            "peak_rss_mb": self.peak_rss_mb,
            "cpu_seconds": self.cpu_seconds,
            "cpu_percent_unscaled": self.cpu_percent,
            "wall_real": self.wall_real,
            "wall_unscaled": self.wall_unscaled,
            "poller": {k: v for k, v in self.poller.items() if k != "sent"},
            "polls_per_minute": self.polls_per_minute(),
            "notes": self.notes,
        }


def _fmt(value: float, digits: int = 2) -> str:
    return "-" if value != value else f"{value:.{digits}f}"


def table(variants: Sequence[Variant]) -> str:
    header = (
        f"{'N':>4} {'impl':<9} {'ok':>7} {'lat p50':>8} {'lat p95':>8} {'(wait':>7} "
        f"{'+work)':>7} {'req/node':>9} {'RSS MB':>7} {'CPU s':>7} {'CPU %':>6} {'wall s':>7}"
    )
    lines = [header, "-" * len(header)]
    for v in variants:
        lines.append(
            f"{v.nodes:>4} {v.impl:<9} {f'{v.ok}/{v.nodes}':>7} "
            f"{_fmt(v.p(v.latencies, 0.5)):>8} {_fmt(v.p(v.latencies, 0.95)):>8} "
            f"{_fmt(v.p(v.waits, 0.95)):>7} {_fmt(v.p(v.works, 0.95), 3):>7} "
            f"{_fmt(v.requests_per_node, 1):>9} {_fmt(v.peak_rss_mb, 0):>7} "
            f"{_fmt(v.cpu_seconds, 1):>7} {_fmt(v.cpu_percent, 2):>6} {_fmt(v.wall_real, 0):>7}"
        )
    return "\n".join(lines)


def _ratio(ours: float, theirs: float) -> str:
    if theirs != theirs or ours != ours or theirs == 0:
        return "-"
    return f"{ours / theirs:.2f}"


def ratios(variants: Sequence[Variant]) -> str:
    by_key = {(v.impl, v.nodes): v for v in variants}
    sizes = sorted({v.nodes for v in variants})
    header = (
        f"{'N':>4} {'lat p50':>8} {'lat p95':>8} {'req/node':>9} {'RSS':>6} {'CPU s':>6}"
        "   (ours / upstream)"
    )
    lines = [header, "-" * len(header)]
    for n in sizes:
        ours, theirs = by_key.get(("ours", n)), by_key.get(("upstream", n))
        if ours is None or theirs is None:
            continue
        lines.append(
            f"{n:>4} "
            f"{_ratio(ours.p(ours.latencies, 0.5), theirs.p(theirs.latencies, 0.5)):>8} "
            f"{_ratio(ours.p(ours.latencies, 0.95), theirs.p(theirs.latencies, 0.95)):>8} "
            f"{_ratio(ours.requests_per_node, theirs.requests_per_node):>9} "
            f"{_ratio(ours.peak_rss_mb, theirs.peak_rss_mb):>6} "
            f"{_ratio(ours.cpu_seconds, theirs.cpu_seconds):>6}"
        )
    return "\n".join(lines)


def targets(variants: Sequence[Variant]) -> str:
    """The issue's targets, each with the figure it is judged by."""
    by_key = {(v.impl, v.nodes): v for v in variants}
    lines = []

    def verdict(ok: bool) -> str:
        return "MET    " if ok else "MISSED "

    for v in variants:
        if v.impl == "ours":
            p95 = v.p(v.latencies, 0.95)
            lines.append(
                f"{verdict(p95 <= 2.0)} added latency p95 <= 2 s at N={v.nodes}: {_fmt(p95)} s"
            )
    ours50, up50 = by_key.get(("ours", 50)), by_key.get(("upstream", 50))
    if ours50 and up50:
        ratio = ours50.requests_per_node / up50.requests_per_node
        lines.append(
            f"{verdict(ratio <= 0.5)} requests/node at N=50 <= 1/2 of upstream: "
            f"{ours50.requests_per_node:.1f} vs {up50.requests_per_node:.1f} ({ratio:.2f}x)"
        )
    ours200 = by_key.get(("ours", 200))
    if ours200:
        lines.append(
            f"{verdict(ours200.peak_rss_mb < 200)} N=200 peak RSS < 200 MB: "
            f"{ours200.peak_rss_mb:.0f} MB"
        )
        lines.append(
            f"{verdict(ours200.cpu_percent < 10)} N=200 CPU < 10 % of one core over the run: "
            f"{ours200.cpu_percent:.2f} % ({ours200.cpu_seconds:.1f} CPU s over "
            f"{ours200.wall_unscaled:.0f} unscaled s)"
        )
    return "\n".join(lines)


def request_breakdown(variants: Sequence[Variant], nodes: int) -> str:
    """MAAS requests per node by kind at one N, ours next to upstream."""
    chosen = [v for v in variants if v.nodes == nodes]
    kinds = sorted({k for v in chosen for k in v.request_kinds})
    if not chosen or not kinds:
        return ""
    width = max(len(k) for k in kinds)
    header = f"{'requests per node at N=' + str(nodes):<{width}} " + " ".join(
        f"{v.impl:>9}" for v in chosen
    )
    lines = [header, "-" * len(header)]
    for kind in kinds:
        counts = " ".join(f"{v.request_kinds.get(kind, 0) / v.nodes:>9.2f}" for v in chosen)
        lines.append(f"{kind:<{width}} {counts}")
    return "\n".join(lines)
