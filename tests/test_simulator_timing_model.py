"""The noisy deployment timeline (`rebooting`, `progress_jitter`) and the count of machine
objects each answer rendered (`RequestRecord.shown`): what the fleet benchmark measures with."""

from __future__ import annotations

import random

import pytest

from teuthology_maas.simulator import ManualClock
from teuthology_maas.simulator._deploy_flow import deploy_timeline
from teuthology_maas.simulator.inventory import Inventory, InventoryError, Timings

MESSAGES = [
    "Performing PXE boot",
    "Loading ephemeral",
    "Configuring storage",
    "Installing OS",
    "Configuring OS",
    "Rebooting",
]


def places(timings: Timings, seed: int = 1) -> list[float]:
    return [at for _, at, _ in deploy_timeline(timings, random.Random(seed))]


def test_fixed_timeline_is_the_fixed_fractions_of_deploying():
    timeline = deploy_timeline(Timings(deploying=600), random.Random(1))
    assert [event[0] for _, _, event in timeline] == MESSAGES
    assert [at for _, at, _ in timeline] == pytest.approx([60, 120, 210, 270, 480, 540])


def test_rebooting_sets_the_last_phase_and_the_install_keeps_its_proportions():
    at = places(Timings(deploying=700, rebooting=160))
    assert at[-1] == pytest.approx(540)  # Rebooting 160 s before the end
    assert at[:-1] == pytest.approx([540 * f / 0.9 for f in (0.10, 0.20, 0.35, 0.45, 0.80)])


def test_jitter_moves_messages_off_the_fractions_but_keeps_them_in_order():
    timings = Timings(deploying=700, rebooting=200, progress_jitter=1.0)
    fixed = places(Timings(deploying=700, rebooting=200))
    for seed in range(200):
        at = places(timings, seed)
        assert at == sorted(at) and at[0] > 0 and at[-2] < at[-1] == pytest.approx(500)
        assert at[-1] == fixed[-1]  # the reboot phase is not jittered: it is its own draw
    draws = [places(timings, seed)[3] for seed in range(200)]
    assert len(set(draws)) == 200  # not at an exact fraction
    assert min(draws) < fixed[3] < max(draws)
    assert places(timings, 7) == places(timings, 7)  # the same draw for the same seed


def test_rebooting_and_jitter_are_checked_inventory_timings():
    inventory = Inventory.from_mapping(
        {"timings": {"rebooting": 120, "progress_jitter": 0.5},
         "machines": [{"hostname": "m1", "timings": {"rebooting": None}}]}
    )  # fmt: skip
    assert (inventory.timings.rebooting, inventory.timings.progress_jitter) == (120.0, 0.5)
    with pytest.raises(InventoryError, match="progress_jitter: must be between 0 and 1"):
        Inventory.from_mapping({"timings": {"progress_jitter": 1.5}})
    with pytest.raises(InventoryError, match="rebooting: expected a number of seconds"):
        Inventory.from_mapping({"timings": {"rebooting": "soon"}})


def noisy_inventory(seed: int) -> dict:
    return {
        "seed": seed,
        "timings": {"deploying": 600, "rebooting": 150, "progress_jitter": 0.8},
        "machines": [{"hostname": f"n{i}"} for i in range(3)],
    }


def deploy_and_finish(handle, hosts, order):
    http = handle.http("teuthology")
    for host in order:
        answer = http.post(f"machines/{handle.sim.system_id(host)}/", "deploy", [])
        assert answer.status_code == 200, answer.text
    handle.sim.clock.advance(600)
    timelines = {}
    for host in hosts:  # the event log's exact simulated times (the API shows whole seconds)
        events = handle.sim.state.events.for_node(handle.sim.system_id(host))
        start = min(e.created for e in events)
        timelines[host] = [(e.type, round(e.created - start, 6)) for e in events]
    return timelines


def test_a_machine_gets_the_same_draws_whatever_order_deployments_arrive_in(maas_sim_factory):
    hosts = ["n0", "n1", "n2"]
    first = deploy_and_finish(maas_sim_factory(noisy_inventory(3), clock=ManualClock()), hosts,
                              hosts)  # fmt: skip
    again = deploy_and_finish(maas_sim_factory(noisy_inventory(3), clock=ManualClock()), hosts,
                              list(reversed(hosts)))  # fmt: skip
    other = deploy_and_finish(maas_sim_factory(noisy_inventory(4), clock=ManualClock()), hosts,
                              hosts)  # fmt: skip
    assert first == again
    assert first != other
    assert [t for t, _ in first["n0"]] == [t for t, _ in first["n1"]]
    assert first["n0"] != first["n1"]  # drawn per machine


def test_every_answer_records_the_machines_it_rendered(maas_sim):
    http = maas_sim.http("teuthology")
    sim = maas_sim.sim
    first, second = sim.system_id("smithi001"), sim.system_id("smithi002")
    http.get("machines/")
    http.get("machines/", params=[("id", first), ("id", second)])
    http.get(f"machines/{first}/")
    http.get("users/", params={"op": "whoami"})
    http.post(f"machines/{first}/", "deploy", [])
    log = list(sim.request_log)
    assert [r.rendered for r in log] == [6, 2, 1, 0, 1]
    assert log[1].shown == ((first, "Ready"), (second, "Ready"))
    assert log[4].shown == ((first, "Deploying"),)
