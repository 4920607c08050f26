"""Inventory parsing, defaults, the example file, and the `simulator` CLI subcommand."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from teuthology_maas.models import NodeStatus
from teuthology_maas.simulator import Inventory, InventoryError, Simulator

REPO = Path(__file__).resolve().parent.parent


def test_defaults_when_the_inventory_names_nothing():
    inventory = Inventory.from_mapping({})
    users = {u.username: u for u in inventory.users}
    assert set(users) == {"teuthology", "admin", "alice"}
    assert users["admin"].is_superuser and not users["teuthology"].is_superuser
    assert len({u.api_key for u in inventory.users}) == 3
    assert all(len(u.api_key.split(":")) == 3 for u in inventory.users)
    assert sorted({(i.name, i.architecture) for i in inventory.images}) == [
        ("centos/centos9-stream", "amd64/generic"),
        ("rhel/9", "amd64/generic"),
        ("rocky/9", "amd64/generic"),
        ("ubuntu/focal", "amd64/generic"),
        ("ubuntu/jammy", "amd64/generic"),
        ("ubuntu/jammy", "arm64/generic"),
        ("ubuntu/noble", "amd64/generic"),
    ]
    assert inventory.machines == ()


def test_generated_machines():
    inventory = Inventory.generated(3, "mira")
    assert [(m.hostname, m.tags, m.pool, m.status) for m in inventory.machines] == [
        (f"mira00{i}", ("mira",), "mira", NodeStatus.READY) for i in (1, 2, 3)
    ]


def test_the_example_inventory_loads_and_serves(tmp_path):
    inventory = Inventory.from_yaml(REPO / "docs" / "simulator-inventory.yaml")
    sim = Simulator(inventory)
    assert sim.api_key("teuthology").startswith("teuthologyConsumr:")
    assert sim.machine("smithi004")["owner"] == "alice"
    assert sim.machine("mira002")["status_name"] == "Broken"
    assert sim.machine("arm001")["architecture"] == "arm64/generic"
    assert len(sim.faults.active()) == 2
    assert inventory.release_scripts == ("wipe-disks", "wipe-ceph-bluestore")


def test_machine_fields_from_the_inventory():
    sim = Simulator(
        Inventory.from_mapping(
            {"machines": [{"hostname": "n1", "system_id": "abc123", "architecture": "arm64",
                           "tags": "a, b", "status": 10, "owner": "alice", "power_type": "virsh",
                           "cpu_count": 2, "memory": 4096, "storage_gb": 250, "locked": True,
                           "description": "spare", "mac_address": "52:54:00:aa:bb:cc"}]}
        )
    )  # fmt: skip
    machine = sim.machine("abc123")
    assert (machine["hostname"], machine["architecture"], machine["tag_names"]) == (
        "n1",
        "arm64/generic",
        ["a", "b"],
    )
    assert (machine["status_name"], machine["owner"], machine["locked"]) == (
        "Allocated",
        "alice",
        True,
    )
    assert (machine["cpu_count"], machine["memory"], machine["storage"]) == (2, 4096, 250000.0)
    assert machine["boot_interface"]["mac_address"] == "52:54:00:aa:bb:cc"
    assert machine["power_type"] == "virsh" and machine["description"] == "spare"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"machine": []}, "unknown key"),
        ({"machines": [{"name": "x"}]}, "unknown key"),
        ({"machines": [{}]}, "'hostname' is required"),
        ({"machines": [{"hostname": "a"}, {"hostname": "a"}]}, "appears twice"),
        ({"machines": [{"hostname": "a", "status": "sleeping"}]}, "unknown MAAS status"),
        ({"machines": [{"hostname": "a", "owner": "bob"}]}, "unknown user 'bob'"),
        ({"machines": [{"hostname": "a", "cpu_count": "many"}]}, "expected an integer"),
        ({"timings": {"deploying": "soon"}}, "expected a number"),
        ({"timings": {"coffee": 5}}, "unknown timing"),
        ({"users": [{"username": "x", "api_key": "only:two"}]}, "three fields"),
        ({"images": [{"architecture": "amd64"}]}, "'name'"),
    ],
)
def test_inventory_errors_name_the_problem(data, message):
    with pytest.raises(InventoryError, match=message):
        Inventory.from_mapping(data)


def test_from_yaml_errors(tmp_path):
    with pytest.raises(InventoryError, match="cannot read inventory"):
        Inventory.from_yaml(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("machines: [\n")
    with pytest.raises(InventoryError, match="not valid YAML"):
        Inventory.from_yaml(bad)


def test_only_loopback_addresses(tmp_path):
    with pytest.raises(ValueError, match="loopback"):
        Simulator().serve("0.0.0.0")


def test_runtime_additions():
    sim = Simulator(Inventory.from_mapping({}))
    key = sim.add_user("bob", is_superuser=True)
    assert sim.api_key("bob") == key
    machine = sim.add_machine("extra", tags=["x"], owner="bob", status="allocated")
    assert (machine["owner"], machine["tag_names"]) == ("bob", ["x"])
    with pytest.raises(ValueError, match="already exists"):
        sim.add_machine("extra")
    with pytest.raises(KeyError, match="known users"):
        sim.api_key("nobody")


def test_cli_serves_until_sigterm(tmp_path):
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text("machines: [{hostname: extra1, tags: [special]}]\n")
    process = subprocess.Popen(
        [sys.executable, "-m", "teuthology_maas.cli", "simulator", "--port", "0", "--json",
         "--inventory", str(inventory), "--machines", "2", "--machine-type", "mira",
         "--time-factor", "100", "--ssh-root", str(tmp_path / "ssh")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    try:
        assert process.stdout is not None
        info = json.loads(process.stdout.readline())
        assert info["machines"] == 3
        from tests.fixtures_simulator import MaasHttp

        http = MaasHttp(info["api_url"], info["api_keys"]["teuthology"])
        listed = http.get("machines/").json()
        assert [m["hostname"] for m in listed] == ["extra1", "mira001", "mira002"]
        assert requests.get(info["url"] + "api/version/", timeout=5).text == "2.0"
        http.close()
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0


def test_cli_reports_a_bad_inventory(tmp_path):
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text("machines: [{hostname: a, status: sleeping}]\n")
    done = subprocess.run(
        [sys.executable, "-m", "teuthology_maas.cli", "simulator", "--port", "0",
         "--inventory", str(inventory)],
        capture_output=True, text=True, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=30,
    )  # fmt: skip
    assert done.returncode == 2
    assert "unknown MAAS status 'sleeping'" in done.stderr
