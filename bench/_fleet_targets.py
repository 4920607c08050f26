"""Issue 14's targets, one MET / MISSED line each, with the figure it is judged by.

Request and rendered figures are pooled over the seeds of a shape (all requests of all seeds
over all nodes of all seeds), on both sides; latency p95 is over every node of every seed.
A shape or side that was not run, or a lone node run with fewer seeds than the target asks
for, is NOT JUDGED. A side where any create() failed is MISSED whatever its figures.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from _fleet_stats import Side, fmt, ratio

P95_LIMIT = 2.0
LONE_SEEDS = 10


def _line(verdict: bool | None, text: str, figure: str) -> str:
    word = {True: "MET", False: "MISSED", None: "NOT JUDGED"}[verdict]
    return f"{word:<11}{text}: {figure}"


def targets(sides: Sequence[Side]) -> str:
    by_key = {(s.shape, s.impl): s for s in sides}
    lines: list[str] = []

    def pair(shape: str) -> tuple[Side | None, Side | None]:
        return by_key.get((shape, "ours")), by_key.get((shape, "upstream"))

    def failed(*chosen: Side) -> str:
        bad = [f"{s.impl}: {s.nodes - s.ok} of {s.nodes} nodes failed" for s in chosen
               if s.ok < s.nodes]  # fmt: skip
        return f" ({'; '.join(bad)})" if bad else ""

    def versus(shape: str, what: str, limit: float, figure: Callable[[Side], float]) -> None:
        text = f"{shape} {what} <= {limit:g}x upstream"
        ours, theirs = pair(shape)
        if ours is None or theirs is None:
            lines.append(_line(None, text, "not run on both sides"))
            return
        mine, base = figure(ours), figure(theirs)
        value = ratio(mine, base)
        broken = failed(ours, theirs)
        figure_text = f"{fmt(mine, 1)} vs {fmt(base, 1)} per node ({fmt(value)}x){broken}"
        lines.append(_line(value <= limit and not broken, text, figure_text))

    def p95(shape: str, seeds: int = 1) -> None:
        text = f"{shape} added latency p95 <= {P95_LIMIT:g} s"
        if seeds > 1:
            text += f" over >= {seeds} seeds"
        ours = by_key.get((shape, "ours"))
        if ours is None:
            lines.append(_line(None, text, "not run"))
            return
        value, broken = ours.pooled_p(0.95), failed(ours)
        figure = f"{fmt(value)} s over {ours.ok} nodes, {len(ours.runs)} seed(s){broken}"
        if len(ours.runs) < seeds:
            lines.append(_line(None, text, figure + f"; needs {seeds} seeds"))
            return
        lines.append(_line(value <= P95_LIMIT and not broken, text, figure))

    versus("25x2", "MAAS requests per node", 0.5, lambda s: s.requests_per_node)
    versus("25x2", "machines rendered per node", 1.0, lambda s: s.rendered_per_node)
    p95("25x2")
    versus("1x1", "MAAS requests per node", 1.0, lambda s: s.requests_per_node)
    p95("1x1", LONE_SEEDS)
    for shape in ("1x50", "1x200"):
        versus(shape, "MAAS requests per node", 0.35, lambda s: s.requests_per_node)
        versus(shape, "machines rendered per node", 1.0, lambda s: s.rendered_per_node)
        p95(shape)
    p95("1x1000")
    big = by_key.get(("1x1000", "ours"))
    if big is None:
        lines.append(_line(None, "1x1000 peak RSS < 250 MB", "not run"))
        lines.append(_line(None, "1x1000 CPU < 10 % of a core", "not run"))
    else:
        rss, cpu = big.rss[2], big.per_seed("cpu")[2]
        lines.append(_line(rss < 250 and not failed(big), "1x1000 peak RSS < 250 MB",
                           f"{fmt(rss, 0)} MB (largest over {len(big.runs)} run(s))"))  # fmt: skip
        lines.append(_line(cpu < 10 and not failed(big), "1x1000 CPU < 10 % of a core",
                           f"{fmt(cpu)} % of one core over the unscaled provisioning time "
                           f"(largest over {len(big.runs)} run(s))"))  # fmt: skip
    lines.append(_supervisor_rss(by_key))
    return "\n".join(lines)


def _supervisor_rss(by_key: dict[tuple[str, str], Side]) -> str:
    """Peak RSS of one supervisor-shaped process (real teuthology imports, 1-2 nodes):
    the median over the processes of the production shape, else of the lone node."""
    text = "supervisor process peak RSS <= 1.1x upstream"
    for shape in ("25x2", "1x1"):
        ours, theirs = by_key.get((shape, "ours")), by_key.get((shape, "upstream"))
        if ours is not None and theirs is not None:
            mine, base = ours.rss[1], theirs.rss[1]
            value = ratio(mine, base)
            return _line(value <= 1.1, text,
                         f"{fmt(mine, 1)} vs {fmt(base, 1)} MB, median over the {shape} "
                         f"processes ({fmt(value)}x)")  # fmt: skip
    return _line(None, text, "neither 25x2 nor 1x1 run on both sides")
