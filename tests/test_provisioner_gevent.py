"""create() in a gevent-patched process, the way teuthology runs it: one greenlet per node.

Monkey-patching must come before anything imports threading, so the teuthology-like side runs
in a fresh interpreter; the simulator and the sshd nodes stay in this process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

CHILD = """
import logging
logging.basicConfig(level=logging.INFO)
from gevent import monkey
monkey.patch_all()

import json, sys
import gevent
from teuthology_maas.config import MaasConfig
from teuthology_maas.errors import MaasError
from teuthology_maas.node.provisioner import MaasProvisioner
from teuthology_maas.teuthology import lifetime

config = MaasConfig.from_mapping(json.loads(sys.argv[1]))
outcomes = {}

def reimage(name):
    try:
        # The host owns the process's lifetime, as the teuthology adapter does.
        with lifetime.hosting():
            MaasProvisioner(name, "ubuntu", "22.04", config=config).create()
        outcomes[name] = "deployed"
    except MaasError as exc:
        outcomes[name] = f"failed: {exc}"

print("started", flush=True)
greenlets = [gevent.spawn(reimage, name) for name in sys.argv[2:]]
gevent.joinall(greenlets)
print(json.dumps(outcomes), flush=True)
"""


def section(lab) -> dict:
    config = lab.config
    return {
        "api_url": config.api_url,
        "api_key": lab.handle.api_key,
        "ssh_keys": list(config.ssh_keys),
        "ssh_config": config.ssh_config,
        "ssh_private_key": config.ssh_private_key,
        "deploy_timeout": 30,
        "release_timeout": 30,
        "abort_timeout": 10,
        "ssh_timeout": 15,
        "poll_interval": 0.1,
        "poll_min_interval": 0.02,
    }


def spawn(lab, hostnames):
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, json.dumps(section(lab)), *hostnames],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )


def test_greenlets_reimage_in_parallel_and_one_failure_stays_with_its_node(lab_factory):
    hostnames = ["smithi001", "smithi002", "smithi003"]
    lab = lab_factory([{"hostname": h} for h in hostnames])
    lab.sim.faults.add("deploy_fail", machine="smithi003", reason="curtin: disk on fire")
    child = spawn(lab, hostnames)
    out, err = child.communicate(timeout=90)
    assert child.returncode == 0, err[-3000:]
    outcomes = json.loads(out.strip().splitlines()[-1])
    assert outcomes["smithi001"] == outcomes["smithi002"] == "deployed"
    assert outcomes["smithi003"].startswith("failed:")
    assert "curtin: disk on fire" in outcomes["smithi003"]
    for hostname in ("smithi001", "smithi002"):
        state = lab.state(hostname)
        assert (state["status_name"], state["owner"], state["locked"]) == (
            "Deployed",
            "teuthology",
            True,
        )
    assert lab.state("smithi003")["status_name"] == "Ready"


def test_sigterm_under_gevent_cleans_up_every_node_before_exit(lab_factory):
    hostnames = ["smithi001", "smithi002"]
    lab = lab_factory([{"hostname": h} for h in hostnames], ssh=False)
    for hostname in hostnames:
        lab.sim.faults.add("deploy_stuck", machine=hostname)
    child = spawn(lab, hostnames)
    try:
        assert child.stdout.readline().strip() == "started"
        deadline = time.monotonic() + 30
        while any(lab.state(h)["status_name"] != "Deploying" for h in hostnames):
            assert time.monotonic() < deadline, "the deployments never started"
            time.sleep(0.02)
        child.send_signal(signal.SIGTERM)
        _, err = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == 128 + signal.SIGTERM, err[-3000:]
    for hostname in hostnames:
        state = lab.state(hostname)
        assert state["status_name"] in ("Releasing", "Disk erasing", "Ready"), err[-3000:]
        assert state["locked"] is False
