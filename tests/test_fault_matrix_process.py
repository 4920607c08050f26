"""Fault matrix, part 4: processes. A teuthology process interrupted (SIGINT, SIGTERM) in the
middle of a deployment; two processes racing for one node; a fleet of 200 nodes with 10% of
deployments failing at random.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.fixtures_reliability import TEST_PUBLIC_KEY, field_of, posts
from teuthology_maas.errors import MaasError
from teuthology_maas.node.provisioner import MaasProvisioner
from teuthology_maas.testing.fast_timings import FAST_TIMINGS

NODE = "smithi001"
REPO = Path(__file__).resolve().parent.parent

# The child is a teuthology-like process: it builds the provisioner from a config and reimages,
# as the host of its own lifetime (what the teuthology adapter and the CLI do).
CHILD = """
import json, sys
from teuthology_maas.config import MaasConfig
from teuthology_maas.node.provisioner import MaasProvisioner
from teuthology_maas.teuthology import lifetime

config = MaasConfig.from_mapping(json.loads(sys.argv[1]))
provisioner = MaasProvisioner(sys.argv[2], "ubuntu", "22.04", config=config)
print("started", flush=True)
try:
    with lifetime.hosting():
        provisioner.create()
    print("created", flush=True)
except BaseException as exc:
    print(f"raised {type(exc).__name__}: {exc}", flush=True)
    raise
"""


def _child_section(lab, **overrides) -> dict:
    return {
        "api_url": lab.url,
        "api_key": lab.key_for("teuthology"),
        "ssh_keys": [TEST_PUBLIC_KEY],
        "deploy_timeout": 60,
        "release_timeout": 30,
        "abort_timeout": 30,
        "poll_interval": 0.05,
        "poll_min_interval": 0.01,
        "http_timeout": 5,
        **overrides,
    }


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_interrupted_mid_deploy_the_node_is_aborted_and_released_before_exit(
    fault_lab, matrix, signum
):
    lab = fault_lab
    before = lab.snapshot()
    lab.sim.faults.add("deploy_stuck", machine=NODE)  # stays Deploying until interrupted
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, json.dumps(_child_section(lab)), NODE],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        lab.wait_for(lambda: lab.status(NODE) == "Deploying", timeout=30)
        time.sleep(0.2)  # well inside the wait for Deployed
        child.send_signal(signum)
        output, _ = child.communicate(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    exited = time.time()

    sid = lab.sim.system_id(NODE)
    aborts = posts(lab.sim, "abort", system_id=sid)
    releases = posts(lab.sim, "release", system_id=sid)
    lab.sim.faults.clear()
    lab.wait_for(lambda: lab.status(NODE) in ("Ready", "Deploying", "Allocated"), timeout=10)
    final = lab.status(NODE)
    result = lab.audit(before)
    matrix.note(
        result,
        f"exit {child.returncode}; abort sent: {len(aborts)}, release sent: {len(releases)}; "
        f"ended {final}",
    )
    assert child.returncode != 0, output
    assert aborts and all(field_of(r, "time") <= exited for r in aborts), (
        f"the deployment was not aborted before the process exited:\n{output}"
    )
    assert releases and all(field_of(r, "time") <= exited for r in releases), (
        f"the node was not released before the process exited:\n{output}"
    )
    lab.wait_for(lambda: lab.status(NODE) == "Ready", timeout=10)
    lab.audit(before).assert_clean()


def _cause(outcome: str) -> str:
    """The part of an error that says why (MAAS's words), for the summary table."""
    found = re.search(r"HTTP \d{3} [^:]*: [^.]*", outcome)
    return found.group(0) if found else outcome[:60]


def _create(provisioner) -> str:
    try:
        provisioner.create()
    except MaasError as exc:
        return f"failed: {exc}"
    return "deployed"


RACER = """
import json, sys, time
from pathlib import Path
import teuthology_maas.node.provisioner as provisioner_module
from teuthology_maas.config import MaasConfig
from teuthology_maas.errors import MaasError
from teuthology_maas.node.provisioner import MaasProvisioner
from teuthology_maas.testing.simulated_ssh import verify_ssh_from_files

provisioner_module.verify_ssh = verify_ssh_from_files(Path(sys.argv[3]))
config = MaasConfig.from_mapping(json.loads(sys.argv[1]))
provisioner = MaasProvisioner(sys.argv[2], "ubuntu", "22.04", config=config)
go = Path(sys.argv[4])
print("ready", flush=True)
while not go.exists():
    time.sleep(0.001)
try:
    provisioner.create()
    print("deployed", flush=True)
except MaasError as exc:
    print(f"failed: {exc}", flush=True)
"""


def test_two_processes_of_the_same_lab_racing_for_one_node(fault_lab, matrix, tmp_path):
    """Two teuthology processes (same MAAS user) reimage the same node at the same moment, as
    happens when paddles and MAAS disagree. At most one may win, the loser must say why, and
    the node must end deployed once (by the winner) or free."""
    lab = fault_lab
    before = lab.snapshot()
    go = tmp_path / "go"
    section = json.dumps(_child_section(lab, deploy_timeout=20))
    racers = [
        subprocess.Popen(
            [sys.executable, "-c", RACER, section, NODE, str(lab.ssh_root), str(go)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
        for _ in range(2)
    ]
    try:
        for racer in racers:
            assert racer.stdout is not None and racer.stdout.readline().strip() == "ready"
        go.touch()
        outputs = [racer.communicate(timeout=60)[0] for racer in racers]
    finally:
        for racer in racers:
            if racer.poll() is None:
                racer.kill()
                racer.wait()
    outcomes = [
        next((line for line in out.splitlines() if line.startswith(("deployed", "failed"))), out)
        for out in outputs
    ]

    winners = outcomes.count("deployed")
    final = lab.status(NODE)
    losers = [_cause(o) for o in outcomes if o != "deployed"]
    assert winners <= 1, f"both processes believe they deployed {NODE}: {outcomes}"
    for outcome in outcomes:
        if outcome != "deployed":
            assert outcome.startswith("failed:") and NODE in outcome, outcome
    if winners:
        assert final == "Deployed"
        lab.provisioner(NODE).release()
    lab.wait_for(lambda: lab.status(NODE) == "Ready", timeout=10)
    result = lab.audit(before)
    matrix.note(result, f"{winners} winner(s), ended {final}; loser: {'; '.join(losers)}")
    result.assert_clean()


def test_two_labs_racing_for_one_ready_node_never_touch_each_others(fault_lab, matrix):
    """teuthology (our key) and alice's tooling both want the same Ready node."""
    lab = fault_lab
    before = lab.snapshot()
    ours = lab.provisioner(NODE)
    theirs = lab.provisioner(NODE, config=lab.config(user="alice"))
    start = threading.Barrier(2)

    def race(provisioner) -> str:
        start.wait()
        return _create(provisioner)

    with ThreadPoolExecutor(2) as pool:
        outcomes = list(pool.map(race, [ours, theirs]))

    owner = lab.sim.machine(NODE)["owner"]
    assert outcomes.count("deployed") == 1, outcomes
    assert owner == ("teuthology" if outcomes[0] == "deployed" else "alice")
    loser = outcomes[1] if outcomes[0] == "deployed" else outcomes[0]
    assert NODE in loser
    foreign_actor = "alice" if owner == "alice" else "teuthology"
    for user in ("teuthology", "alice"):
        # Whoever lost sent nothing that changed the winner's node after it won.
        other = "alice" if user == "teuthology" else "teuthology"
        if owner == other:
            late = [
                r
                for r in posts(lab.sim, "abort") + posts(lab.sim, "release")
                if field_of(r, "user") == user
            ]
            assert late == [], f"{user} acted on {other}'s node: {late}"
    winner = ours if owner == "teuthology" else theirs
    winner.release()
    result = lab.audit(before, foreign_actors=(foreign_actor,))
    matrix.note(result, f"winner {owner}; loser: {_cause(loser)}")
    result.assert_clean()


def test_a_fleet_of_200_nodes_with_10_percent_failing_leaks_nothing(fault_lab_factory, matrix):
    count = 200
    machines = [{"hostname": f"node{i:03d}", "tags": ["smithi"]} for i in range(count)]
    lab = fault_lab_factory(
        {
            "machines": machines,
            "timings": dict(FAST_TIMINGS),
            "seed": 8,
            "faults": [
                {"kind": "deploy_fail", "probability": 0.1, "reason": "injected fleet failure"}
            ],
        }
    )
    before = lab.snapshot()
    config = lab.config(deploy_timeout=60, release_timeout=60, abort_timeout=30)
    client = lab.client(config)
    provisioners = [
        MaasProvisioner(m["hostname"], "ubuntu", "22.04", config=config, client=client)
        for m in machines
    ]
    with ThreadPoolExecutor(40) as pool:
        outcomes = list(pool.map(_create, provisioners))
    failed = [o for o in outcomes if o != "deployed"]
    deployed = [p for p, o in zip(provisioners, outcomes, strict=True) if o == "deployed"]
    with ThreadPoolExecutor(40) as pool:
        list(pool.map(lambda p: p.release(), deployed))

    statuses = {m["status_name"] for m in lab.sim.machines()}
    result = lab.audit(before)
    matrix.note(result, f"{len(deployed)} deployed, {len(failed)} failed (all explained)")
    assert 5 <= len(failed) <= 40, f"{len(failed)} failures; the 10% fault did not act"
    assert all("injected fleet failure" in f for f in failed), failed[:3]
    assert statuses == {"Ready"}, statuses
    result.assert_clean()
