"""Acceptance: python-libmaas 0.6.8 (a client we did not write) drives the simulator.

One libmaas session runs the whole flow in its own virtualenv; each test checks one part of
what it saw and what the simulator recorded.
"""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from teuthology_maas.simulator import Inventory, ScaledClock, Simulator

pytestmark = pytest.mark.libmaas

USER_DATA = b"#cloud-config\nruncmd:\n  - [touch, /tmp/" + b"x" * 120 + b"]\n"

SCRIPT = r"""
import asyncio, json, sys, time, warnings
warnings.simplefilter("ignore")
asyncio.set_event_loop(asyncio.new_event_loop())
from maas.client import connect
from maas.client.viscera.machines import FailedDeployment, MachineNotFound
from maas.client.bones import CallError

url, key, user_data_path = sys.argv[1:4]
out = {}
client = connect(url, apikey=key)
out["listed"] = sorted(m.hostname for m in client.machines.list())
out["listed_by_hostname"] = [m.hostname for m in client.machines.list(hostnames=["smithi004"])]
out["whoami"] = client.users.whoami().username
out["version"] = client.version.get().version

m = client.machines.allocate(hostname="smithi002", cpus=2, memory=1024, tags=["smithi"],
                             zone="default")
out["allocated"] = [m.hostname, m.status_name, m.owner.username]
m.deploy(user_data=open(user_data_path, "rb").read(), distro_series="jammy", wait=True,
         wait_interval=0.05)
out["deployed"] = [m.status_name, m.distro_series, m.osystem]
m.release(erase=True, comment="done", wait=True, wait_interval=0.05)
out["released"] = m.status_name

m = client.machines.allocate(tags=["smithi"], not_tags=["slow"])
out["abort_machine"] = m.hostname
m.deploy(distro_series="focal")
out["deploy_response"] = m.status_name
m.abort(comment="stop")
out["abort_response"] = m.status_name
for _ in range(500):  # abort completes asynchronously; poll like a client would
    m.refresh()
    if m.status_name != "Deploying":
        break
    time.sleep(0.01)
out["after_abort_read"] = m.status_name

try:
    client.machines.allocate(hostname="nosuchnode")
    out["no_match"] = "allocated?!"
except MachineNotFound as exc:
    out["no_match"] = ["MachineNotFound", str(exc)]

m = client.machines.allocate(hostname="smithi003")
try:
    m.deploy(distro_series="jammy", wait=True, wait_interval=0.05)
    out["failed_deploy"] = "deployed?!"
except FailedDeployment as exc:
    out["failed_deploy"] = ["FailedDeployment", str(exc)]
    m.refresh()
    out["failed_status"] = [m.status_name, m.status_message]

try:
    client.machines.allocate(tags=["nosuchtag"])
    out["bad_tag"] = "allocated?!"
except CallError as exc:
    out["bad_tag"] = ["CallError", exc.status]
m = client.machines.allocate(hostname="smithi004")
m.deploy(user_data=open(user_data_path, "rb").read())
out["kept_user_data"] = m.status_name
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def libmaas_run(libmaas_python: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    work = tmp_path_factory.mktemp("libmaas")
    inventory = Inventory.from_mapping(
        {
            "machines": [
                {"hostname": f"smithi{i:03d}", "tags": ["smithi"], "pool": "smithi",
                 "cpu_count": 4 + i, "memory": 8192}
                for i in range(1, 7)
            ],
            "faults": [{"kind": "deploy_fail", "machine": "smithi003"}],
        }
    )  # fmt: skip
    sim = Simulator(inventory, clock=ScaledClock(2000))
    (work / "script.py").write_text(SCRIPT)
    (work / "user-data").write_bytes(USER_DATA)
    with sim.serve() as server:
        done = subprocess.run(
            [str(libmaas_python), str(work / "script.py"), server.url, sim.api_key("teuthology"),
             str(work / "user-data")],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
        return {"out": json.loads(done.stdout), "sim": sim}


def test_libmaas_connects_lists_and_identifies(libmaas_run):
    out = libmaas_run["out"]
    assert out["listed"] == [f"smithi{i:03d}" for i in range(1, 7)]
    assert out["listed_by_hostname"] == ["smithi004"]
    assert out["whoami"] == "teuthology"
    assert out["version"] == "3.5.4"


def test_libmaas_allocates_with_constraints_and_deploys_user_data(libmaas_run):
    out, sim = libmaas_run["out"], libmaas_run["sim"]
    assert out["allocated"] == ["smithi002", "Allocated", "teuthology"]
    assert out["deployed"] == ["Deployed", "jammy", "ubuntu"]
    # libmaas sent base64 with newlines (encodebytes); MAAS serves it decoded.
    deploy = next(r for r in sim.request_log if r.op == "deploy" and r.status == 200)
    assert deploy.method == "POST"
    events = sim.events_for("smithi002")
    assert any(e["type"] == "Deployed" for e in events)


def test_libmaas_release_with_erase_waits_through_disk_erasing(libmaas_run):
    out, sim = libmaas_run["out"], libmaas_run["sim"]
    assert out["released"] == "Ready"
    statuses = [
        e["description"] for e in sim.events_for("smithi002") if e["type"] == "Node changed status"
    ]
    assert "From 'Deployed' to 'Disk erasing'" in statuses
    assert "From 'Disk erasing' to 'Ready'" in statuses
    assert sim.machine("smithi002")["owner"] is None


def test_libmaas_abort_shows_deploying_then_allocated(libmaas_run):
    out = libmaas_run["out"]
    assert out["deploy_response"] == "Deploying"
    assert out["abort_response"] == "Deploying"
    assert out["after_abort_read"] == "Allocated"


def test_libmaas_gets_the_failures_it_expects(libmaas_run):
    out = libmaas_run["out"]
    assert out["no_match"][0] == "MachineNotFound"
    allocations = [r.status for r in libmaas_run["sim"].request_log if r.op == "allocate"]
    assert 409 in allocations
    assert out["failed_deploy"][0] == "FailedDeployment"
    assert out["failed_status"] == [
        "Failed deployment",
        "Marking node failed - Installation failed (refer to the installation log for more "
        "information).",
    ]
    assert out["bad_tag"] == ["CallError", 400]


def test_user_data_from_libmaas_is_stored_verbatim_and_served_decoded(libmaas_run):
    out, sim = libmaas_run["out"], libmaas_run["sim"]
    assert out["kept_user_data"] == "Deploying"
    # libmaas base64-encodes bytes with encodebytes(): newlines every 76 characters.
    assert sim.stored_user_data("smithi004") == base64.encodebytes(USER_DATA)
    assert b"\n" in sim.stored_user_data("smithi004").rstrip(b"\n")
    assert sim.user_data("smithi004") == USER_DATA
    # Released machines forget their user_data; a deploy without any stores none.
    assert sim.user_data("smithi002") is None
    assert sim.user_data("smithi003") is None
