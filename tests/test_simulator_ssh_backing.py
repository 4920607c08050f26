"""The SSH backing: files a loopback sshd serves for deployed machines."""

from __future__ import annotations

import base64

import pytest

from tests._waiting import wait_until
from teuthology_maas.simulator import ManualClock

KEY_A = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA a@test"
KEY_B = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB b@test"
CLOUD_CONFIG = f"""#cloud-config
ssh_authorized_keys:
  - {KEY_A}
users:
  - default
  - name: ubuntu
    ssh_authorized_keys: [{KEY_B}]
"""


@pytest.fixture
def lab(maas_sim_factory, tmp_path):
    inventory = {
        "machines": [
            {"hostname": "node1", "ssh_port": 2201},
            {"hostname": "node2", "ssh_port": 2202},
            {"hostname": "plain"},
            {"hostname": "old", "status": "deployed", "owner": "teuthology",
             "osystem": "ubuntu", "distro_series": "focal", "ssh_port": 2203},
        ],
        "images": [
            "ubuntu/focal",
            "ubuntu/jammy",
            {"name": "rocky/9"},
            {"name": "rhel/9", "os_release": {"ID": "rhel", "VERSION_ID": "9.6"}},
        ],
    }  # fmt: skip
    handle = maas_sim_factory(inventory, clock=ManualClock(), ssh_root=tmp_path / "ssh")
    handle.root = tmp_path / "ssh"
    return handle


def deploy(handle, host, **fields):
    system_id = handle.sim.system_id(host)
    answer = handle.http().post(f"machines/{system_id}/", "deploy", list(fields.items()))
    assert answer.status_code == 200, answer.text


def os_release(path) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if line)
    return {k: v.strip('"') for k, v in pairs}


def test_files_appear_on_deployed_and_go_on_release(lab):
    user_data = base64.b64encode(CLOUD_CONFIG.encode()).decode()
    deploy(lab, "node1", user_data=user_data, distro_series="jammy")
    directory = lab.root / "node1"
    lab.sim.clock.advance(599)
    assert not (directory / "authorized_keys").exists()
    lab.sim.clock.advance(1)
    assert (directory / "authorized_keys").read_text().splitlines() == [KEY_A, KEY_B]
    assert (directory / "authorized_keys").stat().st_mode & 0o077 == 0
    release = os_release(directory / "os-release")
    assert (release["ID"], release["VERSION_ID"], release["VERSION_CODENAME"]) == (
        "ubuntu",
        "22.04",
        "jammy",
    )
    assert (directory / "boot-finished").read_text().strip()
    system_id = lab.sim.system_id("node1")
    lab.http().post(f"machines/{system_id}/", "release")
    lab.sim.clock.advance(1)
    assert sorted(p.name for p in directory.iterdir()) == []


@pytest.mark.parametrize(
    ("series", "expected"),
    [("rocky/9", ("rocky", "9.7")), ("rhel/9", ("rhel", "9.6")), ("focal", ("ubuntu", "20.04"))],
)
def test_os_release_follows_the_image(lab, series, expected):
    deploy(lab, "node2", distro_series=series)
    lab.sim.clock.advance(600)
    release = os_release(lab.root / "node2" / "os-release")
    assert (release["ID"], release["VERSION_ID"]) == expected
    assert (lab.root / "node2" / "authorized_keys").read_text() == ""


def test_plain_text_user_data_and_failures_leave_no_keys(lab):
    lab.sim.faults.add("deploy_fail", machine="node1")
    deploy(lab, "node1", user_data=CLOUD_CONFIG)
    lab.sim.clock.advance(600)
    assert not (lab.root / "node1" / "authorized_keys").exists()
    lab.sim.faults.clear()
    lab.sim.update_machine("node1", status="allocated")
    deploy(lab, "node1", user_data=CLOUD_CONFIG)  # plain text cloud-config works too
    lab.sim.clock.advance(600)
    assert KEY_B in (lab.root / "node1" / "authorized_keys").read_text()


def test_machines_deployed_in_the_inventory_and_loopback_addresses(lab):
    assert os_release(lab.root / "old" / "os-release")["VERSION_ID"] == "20.04"
    assert lab.sim.machine("node1")["ip_addresses"] == ["127.0.0.1"]
    assert lab.sim.machine("plain")["ip_addresses"] != ["127.0.0.1"]
    deploy(lab, "plain")
    lab.sim.clock.advance(600)
    assert (lab.root / "plain" / "boot-finished").exists()


def test_mark_broken_clears_the_files(lab):
    deploy(lab, "node1")
    lab.sim.clock.advance(600)
    system_id = lab.sim.system_id("node1")
    lab.http().post(f"machines/{system_id}/", "mark_broken", [("comment", "dead")])
    assert not (lab.root / "node1" / "os-release").exists()


def test_scaled_clock_moves_machines_without_anyone_polling(maas_sim_factory, tmp_path):
    from teuthology_maas.simulator import ScaledClock

    handle = maas_sim_factory(
        {"machines": [{"hostname": "n1", "ssh_port": 2222}]},
        clock=ScaledClock(2000),
        ssh_root=tmp_path / "ssh",
    )
    deploy(handle, "n1")
    wait_until(
        (tmp_path / "ssh" / "n1" / "boot-finished").exists,
        timeout=20,
        failure="the deployment never finished on its own",
        interval=0.01,
    )
    assert [r.op for r in handle.sim.request_log] == ["deploy"]


def test_the_clock_ticker_wakes_when_the_next_transition_is_due(maas_sim_factory, tmp_path):
    from teuthology_maas.simulator import ScaledClock

    handle = maas_sim_factory(
        {"machines": [{"hostname": "n1", "ssh_port": 2222}]},
        clock=ScaledClock(100),
        ssh_root=tmp_path / "ssh",
    )
    sim = handle.sim
    assert sim.real_seconds_to_next(0.02) == 0.02  # nothing scheduled: the longest pause
    deploy(handle, "n1")
    due = sim.state.next_due()
    assert due is not None
    # not a fixed tick: the pause ends when the next step is due on the scaled clock
    at_most = (due - sim.clock.now()) / 100  # the clock only moves on: the pause can only shrink
    pause = sim.real_seconds_to_next(1000.0)
    assert 0.0 <= pause <= at_most
    assert sim.real_seconds_to_next(1e-9) <= 1e-9  # and never more than the longest


def test_a_manual_clock_is_never_waited_for(lab):
    deploy(lab, "node1")
    assert lab.sim.state.next_due() is not None
    assert lab.sim.real_seconds_to_next(0.02) == 0.02  # it moves only when told, by advance()
