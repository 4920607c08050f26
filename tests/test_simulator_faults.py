"""Fault injection over real HTTP: every request fault and every behaviour fault."""

from __future__ import annotations

import socket
from urllib.parse import urlsplit

import pytest
import requests

from tests._waiting import wait_until
from teuthology_maas.simulator import InventoryError, ManualClock


@pytest.fixture
def lab(manual_sim):
    return manual_sim


def op(handle, host, name, fields=(), user="teuthology"):
    return handle.http(user).post(f"machines/{handle.sim.system_id(host)}/", name, list(fields))


def status(handle, host):
    return handle.sim.machine(host)["status_name"]


# -- request faults ----------------------------------------------------------------------------


def test_503_with_retry_after_then_success(lab):
    fault = lab.sim.faults.add("error", status=503, retry_after=10, op="deploy",
                               machine="smithi001", times=1)  # fmt: skip
    refused = op(lab, "smithi001", "deploy")
    assert refused.status_code == 503
    assert refused.headers["Retry-After"] == "10"
    assert "rack controller" in refused.text
    assert status(lab, "smithi001") == "Ready"  # nothing was applied
    assert op(lab, "smithi001", "deploy").status_code == 200
    assert (fault.fired, fault.exhausted) == (1, True)
    assert lab.sim.faults.active() == []


def test_409_with_and_without_retry_after(lab):
    lab.sim.faults.add("error", status=409, retry_after=5, op="allocate", times=1)
    lab.sim.faults.add("error", status=409, op="allocate", times=1)
    http = lab.http()
    conflict = http.post("machines/", "allocate")
    assert (conflict.status_code, conflict.headers["Retry-After"]) == (409, "5")
    assert conflict.headers["Content-Type"].startswith("text/html")
    state = http.post("machines/", "allocate")
    assert state.status_code == 409 and "Retry-After" not in state.headers
    assert state.headers["Content-Type"].startswith("text/plain")
    assert http.post("machines/", "allocate").status_code == 200
    assert [m["owner"] for m in lab.sim.machines()].count("teuthology") == 1


@pytest.mark.parametrize("code", [500, 504, 502])
def test_server_errors_on_a_path(lab, code):
    lab.sim.faults.add("error", status=code, method="GET", path="machines/", times=1)
    http = lab.http()
    assert http.get("machines/").status_code == code
    assert http.get("machines/").status_code == 200
    assert http.get("users/", params={"op": "whoami"}).status_code == 200


def test_path_globs_user_and_custom_body(lab):
    lab.sim.faults.add("error", status=503, path="machines/*/", user="alice", body="busy")
    alice = lab.http("alice").get(f"machines/{lab.sim.system_id('smithi001')}/")
    assert (alice.status_code, alice.text) == (503, "busy")
    assert lab.http().get(f"machines/{lab.sim.system_id('smithi001')}/").status_code == 200
    assert lab.http("alice").get("machines/").status_code == 200


def test_skip_and_times(lab):
    lab.sim.faults.add("error", status=500, op="whoami", skip=1, times=2)
    http = lab.http()
    codes = [http.get("users/", params={"op": "whoami"}).status_code for _ in range(4)]
    assert codes == [200, 500, 500, 200]


def test_probability_is_reproducible_with_a_seed(maas_sim_factory):
    def run() -> list[int]:
        handle = maas_sim_factory(
            {"seed": 7, "faults": [{"kind": "error", "status": 503, "op": "whoami",
                                    "probability": 0.5}]},
            clock=ManualClock(),
        )  # fmt: skip
        http = handle.http()
        return [http.get("users/", params={"op": "whoami"}).status_code for _ in range(30)]

    first, second = run(), run()
    assert first == second
    assert 0 < first.count(503) < 30


def test_slow_answers(lab):
    lab.sim.faults.add("slow", delay=1.0, op="whoami", times=1)
    http = lab.http()
    with pytest.raises(requests.exceptions.ReadTimeout):
        http.session.get(http.api_url + "users/", params={"op": "whoami"},
                         headers={"Authorization": http.auth_header()}, timeout=0.2)  # fmt: skip
    assert http.get("users/", params={"op": "whoami"}).status_code == 200
    wait_until(
        lambda: len(lab.sim.requests(op="whoami")) >= 2,
        timeout=10,
        failure="the timed-out whoami never reached the request log",
    )
    slow = [r for r in lab.sim.requests(op="whoami") if r.fault == "slow"]
    assert len(slow) == 1 and slow[0].status == 200


def raw_post(handle, path: str) -> bytes:
    """POST with a bare socket; returns whatever came back before the server closed."""
    http = handle.http()
    url = urlsplit(handle.api_url + path)
    request = (
        f"POST {url.path}?{url.query} HTTP/1.1\r\nHost: {url.netloc}\r\n"
        f"Authorization: {http.auth_header()}\r\nContent-Length: 0\r\n\r\n"
    ).encode()
    received = b""
    with socket.create_connection((url.hostname, url.port), timeout=5) as conn:
        conn.sendall(request)
        try:
            while chunk := conn.recv(65536):
                received += chunk
        except ConnectionResetError:
            pass
    return received


def test_dropped_before_the_state_change(lab):
    lab.sim.faults.add("drop", when="before", op="deploy", times=1)
    system_id = lab.sim.system_id("smithi001")
    assert raw_post(lab, f"machines/{system_id}/?op=deploy") == b""
    assert status(lab, "smithi001") == "Ready"
    dropped = lab.sim.requests(op="deploy")
    assert [(r.status, r.fault, r.system_id) for r in dropped] == [(None, "drop", system_id)]
    assert raw_post(lab, f"machines/{system_id}/?op=deploy").startswith(b"HTTP/1.1 200")


def test_dropped_after_the_state_change(lab):
    lab.sim.faults.add("drop", when="after", op="deploy", machine="smithi002", times=1)
    system_id = lab.sim.system_id("smithi002")
    with pytest.raises(requests.exceptions.ConnectionError):
        op(lab, "smithi002", "deploy")
    assert status(lab, "smithi002") == "Deploying"
    again = op(lab, "smithi002", "deploy")
    assert (again.status_code, again.text) == (
        409,
        "Can't deploy a machine that is in the 'Deploying' state",
    )
    assert lab.sim.requests(op="deploy")[0].system_id == system_id


def test_faults_from_the_inventory_and_their_validation(maas_sim_factory):
    handle = maas_sim_factory(
        {"machines": [{"hostname": "n1"}],
         "faults": [{"kind": "error", "status": 503, "op": "allocate", "times": 1}]},
        clock=ManualClock(),
    )  # fmt: skip
    http = handle.http()
    assert http.post("machines/", "allocate").status_code == 503
    assert http.post("machines/", "allocate").status_code == 200
    for bad, message in (
        ({"kind": "explode"}, "unknown fault kind"),
        ({"kind": "error"}, "needs 'status'"),
        ({"kind": "drop", "when": "during"}, "'before' or 'after'"),
        ({"kind": "slow"}, "needs 'delay'"),
        ({"kind": "error", "status": 500, "probability": 2}, "probability"),
        ({"kind": "error", "status": 500, "colour": "red"}, "unknown key"),
    ):
        with pytest.raises(InventoryError, match=message):
            maas_sim_factory({"faults": [bad]})


def test_clearing_faults_at_run_time(lab):
    lab.sim.faults.add("error", status=500, op="whoami")
    http = lab.http()
    assert http.get("users/", params={"op": "whoami"}).status_code == 500
    lab.sim.faults.clear()
    assert http.get("users/", params={"op": "whoami"}).status_code == 200


# -- behaviour faults --------------------------------------------------------------------------


def test_failed_deployment(lab):
    lab.sim.faults.add("deploy_fail", machine="smithi001")
    assert op(lab, "smithi001", "deploy").json()["status_name"] == "Deploying"
    lab.sim.clock.advance(449)
    assert status(lab, "smithi001") == "Deploying"
    lab.sim.clock.advance(1)
    machine = lab.sim.machine("smithi001")
    reason = "Installation failed (refer to the installation log for more information)."
    assert (machine["status"], machine["status_name"]) == (11, "Failed deployment")
    assert machine["status_message"] == f"Marking node failed - {reason}"
    assert machine["error_description"] == reason
    errors = lab.http().get("events/", params={"op": "query", "hostname": "smithi001",
                                               "level": "ERROR"}).json()["events"]  # fmt: skip
    assert [e["type"] for e in errors] == ["Marking node failed", "Node installation failure"]
    results = (
        lab.http()
        .get(
            f"nodes/{machine['system_id']}/results/current-installation/",
            params={"include_output": "1"},
        )
        .json()
    )
    assert results["status_name"] == "Failed"
    import base64

    assert b"Installation failed" in base64.b64decode(results["results"][0]["output"])
    lab.sim.clock.advance(1000)
    assert status(lab, "smithi001") == "Failed deployment"
    assert op(lab, "smithi001", "release").json()["status_name"] == "Releasing"


def test_failed_deployment_with_a_custom_reason_for_one_deploy_only(lab):
    lab.sim.faults.add("deploy_fail", reason="Failed to power on node.", times=1)
    op(lab, "smithi001", "deploy")
    op(lab, "smithi002", "deploy")
    lab.sim.clock.advance(600)
    assert lab.sim.machine("smithi001")["error_description"] == "Failed to power on node."
    assert status(lab, "smithi002") == "Deployed"


def test_stuck_in_deploying(lab):
    lab.sim.faults.add("deploy_stuck", machine="smithi001")
    op(lab, "smithi001", "deploy")
    # stuck after "Installing OS" (270 s in); MAAS's 30-minute timer runs from there
    lab.sim.clock.advance(2000)
    machine = lab.sim.machine("smithi001")
    assert (machine["status_name"], machine["status_message"]) == ("Deploying", "Installing OS")
    op(lab, "smithi001", "abort")
    lab.sim.clock.advance(10)
    assert status(lab, "smithi001") == "Allocated"


def test_stuck_deployment_times_out_with_node_timeout(maas_sim_factory):
    handle = maas_sim_factory(
        {"machines": [{"hostname": "n1"}], "timings": {"node_timeout": 1800},
         "faults": [{"kind": "deploy_stuck"}]},
        clock=ManualClock(),
    )  # fmt: skip
    op(handle, "n1", "deploy")
    # the installer's last milestone ("Installing OS", 270 s in) re-armed the 1800 s timer
    handle.sim.clock.advance(2069)
    assert status(handle, "n1") == "Deploying"
    handle.sim.clock.advance(1)
    assert handle.sim.machine("n1")["status_message"] == (
        "Marking node failed - Node operation 'Deploying' timed out after 30 minutes."
    )
    assert status(handle, "n1") == "Failed deployment"


def test_deploy_reverts_to_allocated_on_bmc_failure(lab):
    lab.sim.faults.add("deploy_revert", machine="smithi001")
    op(lab, "smithi001", "deploy")
    lab.sim.clock.advance(60)
    machine = lab.sim.machine("smithi001")
    assert (machine["status_name"], machine["owner"]) == ("Allocated", "teuthology")
    assert machine["status_message"].startswith("Failed to query node's BMC - ")
    assert "Aborting DEPLOYING and reverting to ALLOCATED." in machine["status_message"]
    warnings = lab.http().get("events/", params={"op": "query", "hostname": "smithi001",
                                                 "level": "WARNING"}).json()["events"]  # fmt: skip
    assert [e["level"] for e in warnings] == ["WARNING"]


def test_missing_image(lab):
    lab.sim.faults.add("missing_image", image="ubuntu/noble")
    refused = op(lab, "smithi001", "deploy", [("distro_series", "noble")])
    assert (refused.status_code, refused.text) == (
        400,
        "Deployment operating system ubuntu/noble is unavailable for amd64/generic.",
    )
    machine = lab.sim.machine("smithi001")
    assert (machine["status_name"], machine["owner"]) == ("Ready", None)
    assert op(lab, "smithi001", "deploy", [("distro_series", "jammy")]).status_code == 200


def deployed(handle, host):
    op(handle, host, "deploy")
    handle.sim.clock.advance(600)
    assert status(handle, host) == "Deployed"


def test_stuck_in_releasing_and_disk_erasing(lab):
    lab.sim.faults.add("release_stuck", machine="smithi001", times=2)
    deployed(lab, "smithi001")
    op(lab, "smithi001", "release")
    lab.sim.clock.advance(100_000)
    assert status(lab, "smithi001") == "Releasing"
    lab.sim.update_machine("smithi001", status="deployed", power_state="on")
    op(lab, "smithi001", "release", [("erase", "true")])
    lab.sim.clock.advance(100_000)
    assert status(lab, "smithi001") == "Disk erasing"


def test_failed_disk_erasing(lab):
    lab.sim.faults.add("erase_fail", machine="smithi001")
    deployed(lab, "smithi001")
    op(lab, "smithi001", "release", [("quick_erase", "true")])
    lab.sim.clock.advance(120)
    machine = lab.sim.machine("smithi001")
    assert (machine["status"], machine["status_name"]) == (15, "Failed disk erasing")
    assert machine["status_message"] == "Marking node failed - Failed to erase disks."
    assert machine["owner"] == "teuthology"


def test_erase_fail_does_not_touch_releases_without_erase(lab):
    fault = lab.sim.faults.add("erase_fail", machine="smithi001")
    deployed(lab, "smithi001")
    op(lab, "smithi001", "release")
    lab.sim.clock.advance(60)
    assert status(lab, "smithi001") == "Ready"
    assert fault.fired == 0


def test_failed_releasing(lab):
    lab.sim.faults.add("release_fail", machine="smithi001")
    deployed(lab, "smithi001")
    op(lab, "smithi001", "release")
    lab.sim.clock.advance(60)
    machine = lab.sim.machine("smithi001")
    assert (machine["status"], machine["status_name"]) == (13, "Releasing failed")
    assert machine["status_message"] == "Marking node failed - Failed to release machine."
