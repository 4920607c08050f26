"""The paddles lock server double, over real HTTP: the endpoints and error shapes teuthology's
lock paths rely on (docs: /work/shared/teuthology-integration.md section 6)."""

from __future__ import annotations

import json

import pytest
import requests

from teuthology_maas.testing.lockserver import LockServer

OWNER = "tester@control"


@pytest.fixture
def paddles():
    state = LockServer()
    for i in range(1, 5):
        state.add_node(f"smithi00{i}.lab.test", "smithi")
    state.add_node("mira001.lab.test", "mira")
    state.add_node("smithi009.lab.test", "smithi", up=False)
    with state.serve() as handle:
        yield state, handle.url.rstrip("/")


def test_lock_many_locks_free_up_nodes_of_any_listed_type(paddles):
    state, url = paddles
    body = {"locked_by": OWNER, "count": 5, "machine_type": "smithi|mira", "description": "d"}
    response = requests.post(f"{url}/nodes/lock_many/", data=json.dumps(body), timeout=5)
    assert response.status_code == 200
    names = sorted(node["name"] for node in response.json())
    assert "smithi009.lab.test" not in names  # down
    assert len(names) == 5 and "mira001.lab.test" in names
    assert all(state.node(n)["locked_by"] == OWNER for n in names)


def test_lock_many_without_enough_nodes_is_503_with_paddles_message(paddles):
    _, url = paddles
    body = {"locked_by": OWNER, "count": 5, "machine_type": "smithi"}
    response = requests.post(f"{url}/nodes/lock_many/", data=json.dumps(body), timeout=5)
    assert response.status_code == 503
    assert response.json() == {"message": "only 4 nodes available"}


def test_lock_rules_relock_same_owner_ok_other_owner_403(paddles):
    state, url = paddles
    lock = f"{url}/nodes/smithi001.lab.test/lock/"
    mine = {"locked": True, "locked_by": OWNER, "description": "job/1"}
    assert requests.put(lock, data=json.dumps(mine), timeout=5).status_code == 200
    again = requests.put(lock, data=json.dumps(mine), timeout=5)
    assert again.status_code == 200 and again.json()["machine_type"] == "smithi"
    other = requests.put(lock, data=json.dumps({**mine, "locked_by": "eve@x"}), timeout=5)
    assert other.status_code == 403 and "already locked by" in other.json()["message"]
    wrong = requests.put(lock, data=json.dumps({"locked": False, "locked_by": "eve@x"}),
                         timeout=5)
    assert wrong.status_code == 403 and OWNER in wrong.json()["message"]
    ok = requests.put(lock, data=json.dumps({"locked": False, "locked_by": OWNER}), timeout=5)
    assert ok.status_code == 200 and state.node("smithi001.lab.test")["locked"] is False
    twice = requests.put(lock, data=json.dumps({"locked": False, "locked_by": OWNER}), timeout=5)
    assert twice.status_code == 403 and "not locked" in twice.json()["message"]


def test_unlock_many_refuses_other_owners_nodes_without_changing_any(paddles):
    state, url = paddles
    state.add_node("smithi010.lab.test", "smithi", locked=True, locked_by=OWNER)
    state.add_node("smithi011.lab.test", "smithi", locked=True, locked_by="eve@x")
    body = {"locked_by": OWNER, "names": ["smithi010.lab.test", "smithi011.lab.test"]}
    refused = requests.post(f"{url}/nodes/unlock_many/", data=json.dumps(body), timeout=5)
    assert refused.status_code == 403
    assert state.node("smithi010.lab.test")["locked"] is True
    body["names"] = ["smithi010.lab.test"]
    assert requests.post(f"{url}/nodes/unlock_many/", data=json.dumps(body),
                         timeout=5).status_code == 200
    assert state.node("smithi010.lab.test")["locked"] is False


def test_list_filters_take_paddles_booleans_and_double_slashes(paddles):
    state, url = paddles
    state.add_node("smithi012.lab.test", "smithi", locked=True, locked_by=OWNER)
    found = requests.get(f"{url}//nodes/?machine_type=smithi&locked=1&up=1", timeout=5).json()
    assert [n["name"] for n in found] == ["smithi012.lab.test"]
    free = requests.get(f"{url}/nodes/?machine_type=smithi|mira&locked=false&count=2",
                        timeout=5).json()
    assert len(free) == 2 and not any(n["locked"] for n in free)
    bad = requests.get(f"{url}/nodes/?locked=maybe", timeout=5)
    assert bad.status_code == 400 and "locked" in bad.json()["message"]


def test_node_get_put_post_and_404_shape(paddles):
    state, url = paddles
    missing = requests.get(f"{url}/nodes/nope.lab.test/", timeout=5)
    assert missing.status_code == 404 and "nope.lab.test" in missing.json()["message"]
    # teuthology's update_lock sends JSON with no Content-Type header
    update = requests.put(f"{url}/nodes/smithi002.lab.test/",
                          data=json.dumps({"ssh_pub_key": "ssh-ed25519 AAAA", "up": 0}),
                          timeout=5)
    assert update.status_code == 200
    assert state.node("smithi002.lab.test")["ssh_pub_key"] == "ssh-ed25519 AAAA"
    assert state.node("smithi002.lab.test")["up"] is False
    assert requests.put(f"{url}/nodes/smithi002.lab.test/", data=json.dumps({"bogus": 1}),
                        timeout=5).status_code == 400
    created = requests.post(f"{url}/nodes/", data=json.dumps(
        {"name": "new001.lab.test", "machine_type": "smithi", "up": True}), timeout=5)
    assert created.status_code == 200 and state.node("new001.lab.test")["locked"] is False
    dup = requests.post(f"{url}/nodes/", data=json.dumps({"name": "new001.lab.test"}), timeout=5)
    assert dup.status_code == 400


def test_jobs_endpoints_as_the_reporter_and_stale_lock_check_use_them(paddles):
    state, url = paddles
    job = {"job_id": "7", "status": "running", "targets": {"ubuntu@smithi003.lab.test": "k"}}
    assert requests.post(f"{url}/runs/run1/jobs/", data=json.dumps(job), timeout=5).ok
    dup = requests.post(f"{url}/runs/run1/jobs/", data=json.dumps(job), timeout=5)
    assert dup.status_code == 400 and dup.json()["message"].endswith("already exists")
    put = requests.put(f"{url}/runs/run1/jobs/7/",
                       data=json.dumps({"status": "dead", "failure_reason": "x"}), timeout=5)
    assert put.status_code == 200
    got = requests.get(f"{url}/runs/run1/jobs/7/", timeout=5).json()
    assert got["status"] == "dead" and got["updated"]
    on_node = requests.get(f"{url}/nodes/smithi003.lab.test/jobs/?count=10", timeout=5).json()
    assert [j["job_id"] for j in on_node] == ["7"]
    assert requests.get(f"{url}/runs/run1/jobs/8/", timeout=5).status_code == 404
    assert len(state.requests_to("PUT", r"/runs/run1/jobs/7/")) == 1


def test_serves_loopback_only():
    with pytest.raises(ValueError, match="loopback"):
        LockServer().serve(host="0.0.0.0")
