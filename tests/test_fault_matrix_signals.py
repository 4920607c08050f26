"""Fault matrix, part 6: signals while create() runs in worker threads.

Python delivers a signal to the main thread only; create()s running in worker threads never see
it. Under a host (`teuthology_maas.teuthology.lifetime.hosting()`: the teuthology adapter, the
CLI, or an application that uses it), SIGTERM, SIGHUP and SIGINT stop every create() in every
thread; each aborts and releases its node, and the process exits with the signal's status once
all have. Without a host the process dies on the spot (SIGTERM's default): the nodes stay as the
dead process left them, stamped with its pid, and `teuthology-maas reconcile --apply` releases
the ones paddles no longer holds, while a later create() on this host takes over the others.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.fixtures_reliability import field_of, posts
from tests.test_fault_matrix_process import _child_section
from teuthology_maas.cli import run as cli_run
from teuthology_maas.node.ownership import TOKEN_KEY, Stamp
from teuthology_maas.testing.lockserver import LockServer

REPO = Path(__file__).resolve().parent.parent
NODES = ["smithi001", "smithi002", "smithi003"]

THREADED = """
import json, sys
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from teuthology_maas.config import MaasConfig
from teuthology_maas.node.provisioner import MaasProvisioner
from teuthology_maas.teuthology import lifetime

config = MaasConfig.from_mapping(json.loads(sys.argv[1]))
hosted = sys.argv[2] == "hosted"
names = sys.argv[3:]

def create(name):
    MaasProvisioner(name, "ubuntu", "22.04", config=config).create()

print("started", flush=True)
with lifetime.hosting() if hosted else nullcontext():
    with ThreadPoolExecutor(len(names)) as pool:
        for future in [pool.submit(create, name) for name in names]:
            future.result()
print("finished", flush=True)
"""


def _start(lab, mode: str) -> subprocess.Popen[str]:
    for name in NODES:
        lab.sim.faults.add("deploy_stuck", machine=name)
    section = json.dumps(_child_section(lab))
    child = subprocess.Popen(
        [sys.executable, "-c", THREADED, section, mode, *NODES],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert child.stdout is not None and child.stdout.readline().strip() == "started"
    lab.wait_for(lambda: all(lab.status(n) == "Deploying" for n in NODES), timeout=30)
    time.sleep(0.2)  # well inside the waits for Deployed
    return child


def _finish(child: subprocess.Popen[str], signum: int) -> tuple[int, str, float]:
    try:
        child.send_signal(signum)
        output, _ = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    return child.returncode, output, time.time()


EXIT = {signal.SIGTERM: (143,), signal.SIGHUP: (129,), signal.SIGINT: (-signal.SIGINT, 130)}


@pytest.mark.parametrize(
    "signum", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT], ids=["SIGTERM", "SIGHUP", "SIGINT"]
)
def test_a_signal_stops_creates_in_worker_threads_with_their_clean_up(fault_lab, matrix, signum):
    lab = fault_lab
    before = lab.snapshot()
    child = _start(lab, "hosted")
    code, output, exited = _finish(child, signum)

    assert code in EXIT[signum], output
    for name in NODES:
        sid = lab.sim.system_id(name)
        aborts, releases = posts(lab.sim, "abort", system_id=sid), posts(lab.sim, "release",
                                                                          system_id=sid)
        assert aborts and all(field_of(r, "time") <= exited for r in aborts), (name, output)
        assert releases and all(field_of(r, "time") <= exited for r in releases), (name, output)
    lab.sim.faults.clear()
    lab.wait_for(lambda: all(lab.status(n) == "Ready" for n in NODES), timeout=20)
    result = lab.audit(before)
    matrix.note(result, f"exit {code}; 3 worker threads each aborted and released first")
    result.assert_clean()


def test_without_a_host_the_process_dies_and_reconcile_or_the_next_create_recovers(
    fault_lab, matrix, tmp_path
):
    """No host: SIGTERM ends the process at once, mid-deploy, in every worker thread. The nodes
    say whose they were (the dead process's token, pid and host). reconcile --apply releases
    those paddles no longer holds; a create() of a node a job still holds (paddles locked it
    for the next job) takes the dead process's deployment over."""
    lab = fault_lab
    before = lab.snapshot()
    child = _start(lab, "bare")
    code, output, _ = _finish(child, signal.SIGTERM)
    assert code == -signal.SIGTERM, output
    left = {name: Stamp.from_owner_data(lab.sim.machine(name)["owner_data"]) for name in NODES}
    assert all(lab.status(n) == "Deploying" for n in NODES)
    assert all(s is not None and s.pid == child.pid for s in left.values()), left
    lab.sim.faults.clear()  # the next deployments go through

    domain = "lab.test"
    paddles = LockServer([{"name": f"{n}.{domain}", "machine_type": "smithi"} for n in NODES])
    paddles.add_node(f"smithi003.{domain}", "smithi", locked=True, locked_by="next@job",
                     description="/archive/run/2")  # fmt: skip
    with paddles.serve() as served:
        config = tmp_path / "teuthology.yaml"
        section = {**_child_section(lab), "machine_types": ["smithi"], "lab_domain": domain,
                   "erase": "none"}  # fmt: skip
        config.write_text(json.dumps({"lock_server": served.url, "maas": section}))
        out, err = io.StringIO(), io.StringIO()
        status = cli_run(["--config", str(config), "reconcile", "--apply"], out, err)
    report = out.getvalue()
    # 4: smithi003 may be reported STUCK (Deploying, no event for MAAS's whole timeout)
    assert status in (0, 4), report + err.getvalue()
    for name in ("smithi001", "smithi002"):
        assert f"LEAK   {name}" in report and left[name].describe() in report, report
        assert "-> released" in report, report
    assert "LEAK   smithi003" not in report  # a job holds it in paddles: not a leak
    lab.wait_for(lambda: lab.status("smithi001") == lab.status("smithi002") == "Ready")

    provisioner = lab.provisioner("smithi003")
    provisioner.create()  # takes over: made by a process of this host that has ended
    machine = lab.sim.machine("smithi003")
    assert machine["status_name"] == "Deployed"
    assert machine["owner_data"][TOKEN_KEY] == provisioner.deployment.token
    provisioner.release()
    result = lab.audit(before)
    matrix.note(result, "killed: reconcile released 2 leaks; the next create took over the 3rd")
    result.assert_clean()


def test_the_cli_entry_point_is_a_host(fault_lab, matrix, tmp_path):
    """`teuthology-maas deploy` owns its process: SIGTERM mid-deploy aborts and releases the
    node, then the command exits 143."""
    lab = fault_lab
    before = lab.snapshot()
    lab.sim.faults.add("deploy_stuck", machine="smithi001")
    config = tmp_path / "teuthology.yaml"
    config.write_text(json.dumps({"maas": {**_child_section(lab), "machine_types": ["smithi"]}}))
    command = Path(sys.executable).parent / "teuthology-maas"
    child = subprocess.Popen(
        [str(command), "--config", str(config), "deploy", "smithi001"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lab.wait_for(lambda: lab.status("smithi001") == "Deploying", timeout=30)
    time.sleep(0.2)
    code, output, exited = _finish(child, signal.SIGTERM)
    assert code == 143, output
    sid = lab.sim.system_id("smithi001")
    for op in ("abort", "release"):
        sent = posts(lab.sim, op, system_id=sid)
        assert sent and all(field_of(r, "time") <= exited for r in sent), (op, output)
    lab.sim.faults.clear()
    lab.wait_for(lambda: lab.status("smithi001") == "Ready", timeout=20)
    result = lab.audit(before)
    matrix.note(result, "exit 143 after abort and release")
    result.assert_clean()
