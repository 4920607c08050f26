"""Machines that start mid-transition (Deploying, Releasing, Disk erasing) carry on from the
simulator's start, as they would on a region that was already running them."""

from __future__ import annotations

from teuthology_maas.simulator import ManualClock

MACHINES = [
    {
        "hostname": "deploying1",
        "status": "deploying",
        "owner": "teuthology",
        "osystem": "ubuntu",
        "distro_series": "noble",
    },
    {"hostname": "deploying2", "status": "Deploying", "owner": "teuthology"},
    {"hostname": "releasing1", "status": "releasing", "owner": "teuthology", "power_state": "on"},
    {"hostname": "erasing1", "status": "disk_erasing", "owner": "teuthology"},
    {"hostname": "ready1"},
]


def statuses(sim) -> dict[str, str]:
    return {m["hostname"]: m["status_name"] for m in sim.machines()}


def test_machines_starting_mid_transition_finish_it_on_the_clock(maas_sim_factory):
    sim = maas_sim_factory({"machines": MACHINES}, clock=ManualClock()).sim
    assert statuses(sim) == {
        "deploying1": "Deploying",
        "deploying2": "Deploying",
        "releasing1": "Releasing",
        "erasing1": "Disk erasing",
        "ready1": "Ready",
    }
    sim.clock.advance(60)  # releasing
    assert statuses(sim)["releasing1"] == "Ready"
    assert sim.machine("releasing1")["power_state"] == "off"
    assert sim.machine("releasing1")["owner"] is None
    sim.clock.advance(540)  # deploying: 600 in all
    assert statuses(sim)["deploying1"] == "Deployed"
    assert statuses(sim)["deploying2"] == "Deployed"
    # an OS named in the inventory is kept; none named: the region's default
    assert (sim.machine("deploying1")["osystem"], sim.machine("deploying1")["distro_series"]) == (
        "ubuntu",
        "noble",
    )
    assert sim.machine("deploying2")["distro_series"] == "jammy"
    assert statuses(sim)["erasing1"] == "Disk erasing"
    sim.clock.advance(300)  # a full erase: 900
    assert statuses(sim)["erasing1"] == "Ready"
    assert statuses(sim)["ready1"] == "Ready"
    events = [e["type"] for e in sim.events_for("deploying1")]
    assert "Deployed" in events and "Installing OS" in events
    assert sim.machine("deploying1")["status_message"] == "Deployed"


def test_inventory_faults_strike_the_resumed_transitions(maas_sim_factory):
    inventory = {
        "machines": MACHINES,
        "faults": [
            {"kind": "deploy_fail", "machine": "deploying1", "times": 1},
            {"kind": "release_stuck", "machine": "releasing1"},
            {"kind": "erase_fail", "machine": "erasing1"},
        ],
    }
    sim = maas_sim_factory(inventory, clock=ManualClock()).sim
    sim.clock.advance(3600)
    assert statuses(sim) == {
        "deploying1": "Failed deployment",
        "deploying2": "Deployed",
        "releasing1": "Releasing",
        "erasing1": "Failed disk erasing",
        "ready1": "Ready",
    }


def test_a_machine_added_at_run_time_mid_transition_carries_on_too(maas_sim_factory):
    sim = maas_sim_factory({"machines": []}, clock=ManualClock()).sim
    assert sim.add_machine("late", status="deploying", owner="alice")["status_name"] == "Deploying"
    sim.clock.advance(600)
    assert sim.machine("late")["status_name"] == "Deployed"


def test_a_forced_status_stays_put(maas_sim_factory):
    """update_machine forces a state without running anything (how tests make a machine that
    is stuck Deploying or Releasing)."""
    sim = maas_sim_factory({"machines": [{"hostname": "n1"}, {"hostname": "n2"}]},
                           clock=ManualClock()).sim  # fmt: skip
    sim.update_machine("n1", status="deploying", owner="teuthology")
    sim.update_machine("n2", status="releasing", owner="teuthology")
    sim.clock.advance(7200)
    assert statuses(sim) == {"n1": "Deploying", "n2": "Releasing"}
