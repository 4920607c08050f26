"""The fleet benchmark still runs end to end (so it cannot rot), and its lab draws are what
docs/performance.md says. Nothing here judges a figure: the benchmark prints those."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))

from _fleet_model import (  # noqa: E402
    DEPLOY_MAX,
    DEPLOY_MIN,
    REBOOT_MAX,
    REBOOT_MIN,
    Shape,
    inventory_for,
    node_timings,
)


def test_noisy_draws_a_reboot_phase_per_node_and_the_same_lab_for_the_same_seed():
    draws = [node_timings("noisy", seed, index) for seed in range(1, 4) for index in range(50)]
    assert all(DEPLOY_MIN <= d["deploying"] <= DEPLOY_MAX for d in draws)
    assert all(REBOOT_MIN <= d["rebooting"] <= REBOOT_MAX for d in draws)
    assert len({d["rebooting"] for d in draws}) > 0.9 * len(draws)  # drawn, not fixed
    assert node_timings("noisy", 2, 7) == node_timings("noisy", 2, 7)
    # fixed: the same deploy times, no reboot phase of its own
    assert node_timings("fixed", 2, 7) == {"deploying": node_timings("noisy", 2, 7)["deploying"]}
    with pytest.raises(ValueError, match="expected one of noisy, fixed"):
        node_timings("smooth", 1, 0)


def test_shapes_name_their_processes_and_nodes():
    shape = Shape.parse("25x2")
    assert (shape.processes, shape.per_process, shape.nodes) == (25, 2, 50)
    assert shape.hostnames()[1] == ["bench0002", "bench0003"]
    assert Shape.parse("N=200") == Shape(1, 200)
    with pytest.raises(ValueError, match="expected PROCESSESxNODES"):
        Shape.parse("lots")
    inventory = inventory_for(shape, "noisy", 3)
    assert len(inventory.machines) == 50 and inventory.timings.progress_jitter > 0
    assert inventory_for(shape, "fixed", 3).timings.progress_jitter == 0


@pytest.mark.slow
def test_the_smallest_shape_runs_on_both_sides_and_reports_every_target(tmp_path):
    figures = tmp_path / "figures.json"
    done = subprocess.run(
        [sys.executable, str(BENCH / "fleet_bench.py"), "--shapes", "1x1", "--lone-seeds", "1",
         "--factor", "200", "--json", str(figures)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    sides = {s["impl"]: s for s in json.loads(figures.read_text())["sides"]}
    assert set(sides) == {"ours", "upstream"}
    for side in sides.values():
        assert (side["shape"], side["nodes"], side["ok"], side["errors"]) == ("1x1", 1, 1, [])
        assert side["latency_p95"] >= 0
        assert side["rendered_per_node"] >= 1  # at least the read that saw it Deployed
        assert side["kinds_per_node"]["POST machines/<id>/ op=deploy"][0] == 1
        (run,) = side["runs"]
        assert run["rss_mb"] and run["rss_mb"][0] > 20  # teuthology's real imports
    verdicts = [line for line in out.splitlines() if line.startswith(("MET", "MISSED", "NOT "))]
    assert len(verdicts) == 15, out
    assert any("1x1 MAAS requests per node <= 1x upstream" in v for v in verdicts)
    assert "1x1 added latency p95 <= 2 s over >= 10 seeds" in out  # NOT JUDGED: one seed
    assert "Where requests go, a lone node:" in out
    notes = out.split("How it was driven:")[1]
    assert "verify_ssh reads the simulator's node files" in notes
    assert "_verify_installed_os reads os-release from the simulator's node files" in notes


def test_the_probe_cost_bench_logs_in_to_a_real_sshd_and_tells_the_three_kinds_of_node_apart():
    done = subprocess.run(
        [sys.executable, str(BENCH / "probe_cost.py"), "--probes", "2", "--concurrent", "4"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    rows = {line.split("  ")[0]: line for line in done.stdout.splitlines()}
    for kind in ("ready (finished node)", "not ready (connection kept)",
                 "not up (connection refused)"):  # fmt: skip
        assert "(2 probes, 0 answered wrongly)" in rows[kind], done.stdout
    assert "(4 probes, 4 ready)" in done.stdout
