"""The simulator's basic flow over real HTTP: list, allocate, deploy, wait, release."""

from __future__ import annotations

from tests._waiting import wait_until


def wait_status(sim, system_id: str, name: str, timeout: float = 10.0) -> dict:
    def reached() -> dict | None:
        machine = sim.machine(system_id)
        return machine if machine["status_name"] == name else None

    return wait_until(
        reached,
        timeout=timeout,
        failure=lambda: f"{system_id} stayed {sim.machine(system_id)['status_name']}",
    )


def test_allocate_deploy_release_cycle(maas_sim):
    http = maas_sim.http("teuthology")
    listed = http.get("machines/")
    assert listed.status_code == 200
    assert [m["hostname"] for m in listed.json()] == [f"smithi{i:03d}" for i in range(1, 7)]

    allocated = http.post("machines/", "allocate", [("tags", "smithi")])
    assert allocated.status_code == 200, allocated.text
    machine = allocated.json()
    assert (machine["status"], machine["owner"]) == (10, "teuthology")

    deploying = http.post(
        f"machines/{machine['system_id']}/", "deploy", [("distro_series", "jammy")]
    )
    assert deploying.status_code == 200, deploying.text
    assert deploying.json()["status_name"] == "Deploying"
    deployed = wait_status(maas_sim.sim, machine["system_id"], "Deployed")
    assert (deployed["osystem"], deployed["distro_series"]) == ("ubuntu", "jammy")

    releasing = http.post(f"machines/{machine['system_id']}/", "release")
    assert releasing.json()["status_name"] == "Releasing"
    ready = wait_status(maas_sim.sim, machine["system_id"], "Ready")
    assert ready["owner"] is None


def test_fixture_config_points_at_the_simulator(maas_sim):
    config = maas_sim.config(erase="none")
    assert config.api_url == maas_sim.api_url
    assert config.erase == "none"
