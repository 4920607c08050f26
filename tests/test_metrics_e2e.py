"""Metrics end to end: the real `teuthology-lock` (teuthology 1.3.0, our activation hook)
against the MAAS simulator, the paddles double and real sshds, in multiprocess mode as a
teuthology worker runs; then the directory is collected the way teuthology's exporter does
(`MultiProcessCollector` + `generate_latest`) and the exposition text is read back."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests._metrics_read import scrape, value
from tests.fixtures_dispatcher import OWNER as DISPATCHED
from tests.fixtures_e2e import LAB_DOMAIN, MACHINE_TYPE, OWNER
from teuthology_maas import metrics
from teuthology_maas.testing.dispatcher_lab import job_config

pytestmark = [pytest.mark.e2e, pytest.mark.sshd, pytest.mark.slow]

REASON = "curtin: Installation failed with exception: Unexpected error while running command"


def exporter_dir(lab) -> Path:
    """Where teuthology points PROMETHEUS_MULTIPROC_DIR (teuthology/exporter.py sets it when
    imported, to ~/.cache/teuthology-exporter, and creates it when its exporter runs).
    `lab`: the lab's TeuthologyLab."""
    directory = Path(lab.env["HOME"]) / ".cache" / "teuthology-exporter"
    directory.mkdir(parents=True)
    lab.env["PROMETHEUS_MULTIPROC_DIR"] = str(directory)
    return directory


def sent(lab, op: str, method: str = "POST") -> int:
    """How many such requests the simulator received (from anyone)."""
    return sum(1 for r in lab.sim.request_log if r.op == op and r.method == method)


def test_lock_many_then_unlock_is_measured_across_processes(e2e_lab):
    lab = e2e_lab("activation", machines=3)
    directory = exporter_dir(lab.lab)
    done = lab.run("teuthology-lock", "--lock-many", "2", "-m", MACHINE_TYPE, "--os-type",
                   "ubuntu", "--os-version", "22.04", "--owner", OWNER)
    assert done.returncode == 0, done
    targets = sorted(yaml.safe_load(done.stdout)["targets"])
    unlocked = lab.run("teuthology-lock", "--unlock", targets[0], "--owner", OWNER)
    assert unlocked.returncode == 0, unlocked
    assert len(list(directory.glob("counter_*.db"))) == 2  # two processes, one file each

    found = scrape(directory)
    where = {"machine_type": MACHINE_TYPE, "region": metrics.region_of(lab.maas.api_url)}
    ops = "teuthology_maas_operations_total"
    assert value(found, ops, operation="create", outcome="success", reason="none", **where) == 2
    assert value(found, ops, operation="create", outcome="failure") == 0
    assert value(found, ops, operation="release", outcome="success", **where) == 1
    phases = "teuthology_maas_phase_duration_seconds_count"
    for phase in ("allocate", "deploy_wait", "ssh_wait", "lock"):
        assert value(found, phases, phase=phase, outcome="success", **where) == 2, phase
    assert value(found, phases, phase="lookup", **where) == 3  # the unlock's own lookup
    assert value(found, phases, phase="erase", outcome="success", **where) == 1  # erase: quick
    assert value(found, phases, phase="release") == 0
    # the deploy wait is the long one, and its sum is seconds really waited
    assert value(found, "teuthology_maas_phase_duration_seconds_sum", phase="deploy_wait") > 0
    assert value(found, "teuthology_maas_phase_in_progress") == 0
    # requests: as many as the simulator saw, by kind and status, from both processes
    requests = "teuthology_maas_maas_requests_total"
    for op in ("allocate", "deploy", "lock", "release"):
        kind = "machines/?op=allocate" if op == "allocate" else f"machines/{{id}}/?op={op}"
        assert value(found, requests, kind=kind, method="POST", status="200") == sent(lab, op)
    assert sent(lab, "deploy") == 2 and sent(lab, "release") == 1
    assert value(found, requests, kind="machines/", method="GET", status="200") >= 2
    assert value(found, "teuthology_maas_node_failures_total") == 0
    assert not any("system_id" in dict(labels) or LAB_DOMAIN in str(labels)
                   for _, labels in found)  # no unbounded label anywhere


def test_a_failed_deployment_counts_its_reason_and_node(e2e_lab):
    lab = e2e_lab("activation", machines=3)
    directory = exporter_dir(lab.lab)
    lab.sim.faults.add("deploy_fail", machine="smithi002", reason=REASON)
    done = lab.run("teuthology-lock", "--lock-many", "3", "-m", MACHINE_TYPE, "--os-type",
                   "ubuntu", "--os-version", "22.04", "--owner", OWNER)
    assert done.returncode == 1, done

    found = scrape(directory)
    ops = "teuthology_maas_operations_total"
    assert value(found, ops, operation="create", outcome="failure", reason="deploy_failed",
                 machine_type=MACHINE_TYPE) == 1
    failures = "teuthology_maas_node_failures_total"
    assert value(found, failures, node="smithi002", reason="deploy_failed") == 1
    assert value(found, failures) == value(found, ops, outcome="failure")
    assert value(found, "teuthology_maas_phase_duration_seconds_count", phase="deploy_wait",
                 outcome="failure") >= 1
    assert value(found, "teuthology_maas_phase_in_progress") == 0


def test_supervisors_of_the_dispatcher_add_up(dispatch_lab):
    """teuthology's production path: the dispatcher starts one teuthology-supervisor process
    per job; each reimages its job's nodes and releases them at the end. Their values add up
    in the directory teuthology-exporter collects."""
    lab = dispatch_lab("activation", machines=3)
    machine_type = lab.lab.machine_type
    directory = exporter_dir(lab.lab.lab)
    run = f"metrics-{machine_type}"
    ids = lab.lab.schedule([job_config("ubuntu", "22.04", nodes=2),
                            job_config("ubuntu", "24.04", nodes=1)], name=run, owner=DISPATCHED)
    lab.lab.start_dispatcher()
    assert lab.lab.wait_for_run(run, ids, timeout=300) == dict.fromkeys(ids, "pass")
    lab.wait_for(lambda: set(lab.statuses().values()) == {"Ready"}, "every node Ready")
    supervisors = {int(p.stem.split("_")[-1]) for p in directory.glob("counter_*.db")}
    assert set(lab.lab.supervisor_pids()) <= supervisors  # each supervisor wrote its own

    found = scrape(directory)
    where = {"machine_type": machine_type, "region": metrics.region_of(lab.maas.api_url)}
    ops = "teuthology_maas_operations_total"
    assert value(found, ops, operation="create", outcome="success", **where) == 3
    assert value(found, ops, operation="release", outcome="success", **where) == 3
    assert value(found, ops, outcome="failure") == 0
    phases = "teuthology_maas_phase_duration_seconds_count"
    assert value(found, phases, phase="deploy_wait", outcome="success", **where) == 3
    assert value(found, phases, phase="erase", outcome="success", **where) == 3
    assert value(found, "teuthology_maas_phase_in_progress") == 0
    requests = "teuthology_maas_maas_requests_total"
    assert value(found, requests, kind="machines/{id}/?op=deploy", status="200") == sent(
        lab, "deploy") == 3
