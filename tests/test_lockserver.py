"""The paddles lock server double, over real HTTP: it answers as real paddles (ceph/paddles on
PostgreSQL) does on every call teuthology and this project make (see the rules in
teuthology_maas/testing/_paddles_state.py)."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest
import requests

from teuthology_maas.testing.lockserver import LockServer

OWNER = "tester@control"
LOCK_ANSWER_KEYS = {"name", "locked", "locked_by", "machine_type", "is_vm"}


class Paddles:
    """The double plus a tiny client that sends JSON without a Content-Type, as teuthology."""

    def __init__(self, state: LockServer, url: str) -> None:
        self.state = state
        self.url = url

    def call(self, method: str, path: str, body: Any = None) -> requests.Response:
        data = None if body is None else json.dumps(body)
        return requests.request(method, self.url + path, data=data, timeout=5)

    def lock(self, name: str, **body: Any) -> requests.Response:
        return self.call("PUT", f"/nodes/{name}/lock/", {"locked": True, **body})

    def unlock(self, name: str, **body: Any) -> requests.Response:
        return self.call("PUT", f"/nodes/{name}/lock/", {"locked": False, **body})

    def lock_many(self, **body: Any) -> requests.Response:
        return self.call("POST", "/nodes/lock_many/", body)


@pytest.fixture
def paddles():
    state = LockServer()
    for i in range(1, 5):
        state.add_node(f"smithi00{i}.lab.test", "smithi")
    state.add_node("mira001.lab.test", "mira")
    state.add_node("smithi009.lab.test", "smithi", up=False)
    with state.serve() as handle:
        yield Paddles(state, handle.url)


def names(response: requests.Response) -> set[str]:
    return {node["name"] for node in response.json()}


# ---- lock_many ------------------------------------------------------------------------------


def test_lock_many_locks_free_up_nodes_of_any_listed_type(paddles):
    paddles.call("POST", "/nodes/", {"name": "smithi010.lab.test", "machine_type": "smithi"})
    done = paddles.lock_many(locked_by=OWNER, count=5, machine_type="smithi|mira",
                             description="run/1")
    assert done.status_code == 200
    locked = names(done)
    # smithi009 is down and smithi010 was only registered (up is NULL): neither is taken
    assert locked == {"smithi001.lab.test", "smithi002.lab.test", "smithi003.lab.test",
                      "smithi004.lab.test", "mira001.lab.test"}
    assert all(paddles.state.node(n)["description"] == "run/1" for n in locked)


def test_lock_many_without_enough_nodes_is_503_with_paddles_message(paddles):
    done = paddles.lock_many(locked_by=OWNER, count=5, machine_type="smithi", description=None)
    assert done.status_code == 503
    assert done.json() == {"message": "only 4 nodes available"}


def test_lock_many_needs_the_description_key_and_a_positive_count(paddles):
    no_description = paddles.lock_many(locked_by=OWNER, count=1, machine_type="smithi")
    assert no_description.status_code == 400
    assert "description" in no_description.json()["message"]
    zero = paddles.lock_many(locked_by=OWNER, count=0, machine_type="smithi", description="d")
    assert zero.status_code == 400 and "less than 1" in zero.json()["message"]


def test_lock_many_takes_nodes_in_no_defined_order():
    picked = set()
    for seed in range(12):
        state = LockServer([{"name": f"n{i}.lab.test", "machine_type": "t"} for i in range(6)],
                           seed=seed)
        with state.serve() as handle:
            done = Paddles(state, handle.url).lock_many(locked_by=OWNER, count=1,
                                                        machine_type="t", description="d")
        picked |= names(done)
    assert len(picked) > 1  # a caller that assumes "the first free node" is wrong


def test_concurrent_lock_many_loser_gets_403_as_a_serializable_transaction_does(paddles):
    paddles.state.lock_many_window = 0.3  # both choose their nodes before either locks
    answers: list[requests.Response] = []

    def lock(owner: str) -> None:
        answers.append(paddles.lock_many(locked_by=owner, count=3, machine_type="smithi",
                                         description=f"{owner}/1"))

    threads = [threading.Thread(target=lock, args=(who,)) for who in ("alice@x", "bob@x")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert sorted(a.status_code for a in answers) == [200, 403]
    loser = next(a for a in answers if a.status_code == 403)
    assert loser.json() == {"message": "Cannot lock an already-locked node"}
    winner = next(a for a in answers if a.status_code == 200).json()[0]["locked_by"]
    holders = [n["locked_by"] for n in paddles.state.nodes() if n["locked"]]
    assert holders == [winner] * 3  # the loser locked nothing
    late = paddles.lock_many(locked_by="carol@x", count=3, machine_type="smithi",
                             description="carol@x/1")
    assert late.status_code == 503


# ---- lock and unlock of one node ------------------------------------------------------------


def test_relock_by_the_holder_needs_the_same_non_null_description(paddles):
    node = "smithi001.lab.test"
    first = paddles.lock(node, locked_by=OWNER, description="run/1")
    assert first.status_code == 200 and set(first.json()) == LOCK_ANSWER_KEYS
    assert paddles.lock(node, locked_by=OWNER, description="run/1").status_code == 200
    for refused in ({"locked_by": OWNER, "description": "run/2"},
                    {"locked_by": "eve@x", "description": "run/1"}):
        again = paddles.lock(node, **refused)
        assert again.status_code == 403
        assert again.json() == {"message": "Cannot lock an already-locked node"}
    # a lock without a description cannot be re-locked at all, not even by its holder
    other = "smithi002.lab.test"
    assert paddles.lock(other, locked_by=OWNER, description=None).status_code == 200
    assert paddles.lock(other, locked_by=OWNER, description=None).status_code == 403


def test_unlock_needs_the_holder_and_a_matching_description_and_keeps_it(paddles):
    node = "smithi001.lab.test"
    paddles.lock(node, locked_by=OWNER, description="run/1")
    eve = paddles.unlock(node, locked_by="eve@x", description="run/1")
    assert eve.status_code == 403 and "locked_by values must match" in eve.json()["message"]
    wrong = paddles.unlock(node, locked_by=OWNER, description="run/2")
    assert wrong.status_code == 403 and "description values must match" in wrong.json()["message"]
    nobody = paddles.unlock(node, description="run/1")
    assert nobody.status_code == 400 and "locked_by" in nobody.json()["message"]
    done = paddles.unlock(node, locked_by=OWNER, description="run/1")
    assert done.status_code == 200
    assert done.json() == {"name": node, "locked": False, "locked_by": None,
                           "machine_type": "smithi", "is_vm": False}
    after = paddles.state.node(node)
    assert (after["locked_since"], after["description"]) == (None, "run/1")
    twice = paddles.unlock(node, locked_by=OWNER, description="run/1")
    assert twice.status_code == 403
    assert twice.json() == {"message": "Cannot unlock an already-unlocked node"}


def test_unlock_many_is_not_atomic_and_takes_only_names_and_locked_by(paddles):
    state = paddles.state
    for name, owner in (("a.lab.test", OWNER), ("b.lab.test", "eve@x"), ("c.lab.test", OWNER)):
        state.add_node(name, "smithi", locked=True, locked_by=owner, description="run/7")
    body = {"locked_by": OWNER, "names": ["a.lab.test", "b.lab.test", "c.lab.test"]}
    refused = paddles.call("POST", "/nodes/unlock_many/", body)
    assert refused.status_code == 403
    # a was unlocked before paddles reached eve's b; c was never reached
    assert [state.node(n)["locked"] for n in body["names"]] == [False, True, True]
    assert state.node("a.lab.test")["description"] == "run/7"
    extra = paddles.call("POST", "/nodes/unlock_many/",
                         {"locked_by": OWNER, "names": ["c.lab.test"], "description": "run/7"})
    assert extra.status_code == 400
    again = paddles.call("POST", "/nodes/unlock_many/",
                         {"locked_by": OWNER, "names": ["a.lab.test"]})
    assert again.status_code == 403 and "already-unlocked" in again.json()["message"]
    unknown = paddles.call("POST", "/nodes/unlock_many/",
                           {"locked_by": OWNER, "names": ["nope.lab.test"]})
    assert unknown.status_code == 400


# ---- registration, updates, listing ---------------------------------------------------------


def test_post_and_put_answer_empty_objects_and_keep_paddles_columns(paddles):
    created = paddles.call("POST", "/nodes/", {"name": "new001.lab.test", "machine_type": "x"})
    assert created.status_code == 200 and created.json() == {}
    node = paddles.state.node("new001.lab.test")
    assert (node["up"], node["arch"], node["locked"], node["is_vm"]) == (None, None, False, False)
    dup = paddles.call("POST", "/nodes/", {"name": "new001.lab.test"})
    assert dup.status_code == 400 and "already exists" in dup.json()["message"]
    # teuthology's inventory update: unknown keys (user) are ignored, numbers become text
    put = paddles.call("PUT", "/nodes/new001.lab.test/", {
        "name": "new001.lab.test", "user": "ubuntu", "arch": "x86_64", "os_type": "centos",
        "os_version": 9, "up": True, "bogus": 1})
    assert put.status_code == 200 and put.json() == {}
    node = paddles.state.node("new001.lab.test")
    assert (node["os_version"], node["up"], node["arch"]) == ("9", True, "x86_64")
    assert "user" not in node and "bogus" not in node
    missing = paddles.call("PUT", "/nodes/nope.lab.test/", {"up": True})
    assert missing.status_code == 404 and missing.json()["message"].endswith("non-existent node")


def test_list_applies_paddles_filters_only(paddles):
    state = paddles.state
    state.add_node("smithi012.lab.test", "smithi", locked=True, locked_by=OWNER,
                   os_type="centos", os_version="9", is_vm=True)
    locked = paddles.call("GET", "/nodes/?machine_type=smithi&locked=1&up=true")
    assert names(locked) == {"smithi012.lab.test"}
    # arch, is_vm, description and unknown filters are ignored, as paddles ignores them
    ignored = paddles.call("GET", "/nodes/?machine_type=smithi&arch=s390x&is_vm=0"
                                  "&description=zzz&colour=red")
    assert len(ignored.json()) == 6
    assert names(paddles.call("GET", "/nodes/?os_version=9")) == {"smithi012.lab.test"}
    free = paddles.call("GET", "/nodes/?machine_type=smithi|mira&locked=false&count=2")
    assert len(free.json()) == 2 and not any(n["locked"] for n in free.json())
    down = paddles.call("GET", "/nodes/?up=0")
    assert names(down) == {"smithi009.lab.test"}
    assert paddles.call("GET", "/nodes/?locked=maybe").status_code == 400
    assert paddles.call("GET", "/nodes/?count=two").status_code == 400
    assert set(paddles.call("GET", "/nodes/smithi001.lab.test/").json()) == {
        "name", "description", "up", "machine_type", "is_vm", "vm_host", "os_type",
        "os_version", "arch", "locked", "locked_since", "locked_by", "mac_address",
        "ssh_pub_key"}
    missing = paddles.call("GET", "/nodes/nope.lab.test/")
    assert missing.status_code == 404 and missing.json() == {"message": "node not found"}


def test_a_double_slash_is_a_404_page_as_behind_gunicorn(paddles):
    results_server = paddles.url + "/"  # the trailing slash docs used to recommend
    paddles.state.add_job("run1", "3", status="running")
    stale_check = requests.get(f"{results_server}/runs/run1/jobs/3/", timeout=5)
    assert stale_check.status_code == 404
    assert stale_check.headers["Content-Type"].startswith("text/html")
    assert requests.get(f"{paddles.url}/runs/run1/jobs/3/", timeout=5).status_code == 200


# ---- jobs -----------------------------------------------------------------------------------


def test_jobs_as_the_scheduler_supervisor_and_results_use_them(paddles):
    job = {"job_id": 7, "name": "run1", "status": "queued", "machine_type": "smithi",
           "targets": {"ubuntu@smithi003.lab.test": "k"}, "archive": "not a paddles column"}
    posted = paddles.call("POST", "/runs/run1/jobs/", job)
    assert posted.status_code == 200 and posted.json() == {"job_id": "7"}
    dup = paddles.call("POST", "/runs/run1/jobs/", job)
    assert dup.status_code == 400 and dup.json()["message"].endswith("already exists")
    assert paddles.call("PUT", "/runs/run1/jobs/7/", {"status": "running"}).json() == {}
    got = paddles.call("GET", "/runs/run1/jobs/7/").json()
    assert got["log_href"].endswith("/run1/7/teuthology.log")
    assert got["status"] == "running" and got["started"] and got["posted"]
    assert "archive" not in got and got["failure_reason"] is None
    on_node = paddles.call("GET", "/nodes/smithi003.lab.test/jobs/?count=10").json()
    assert [j["job_id"] for j in on_node] == ["7"]
    sliced = paddles.call("GET", "/runs/run1/jobs/?fields=job_id,status,log_href").json()
    assert sliced == [{"job_id": "7", "status": "running", "log_href": got["log_href"]}]
    assert paddles.call("GET", "/runs/run1/jobs/?fields=nope").status_code == 400
    assert paddles.call("GET", "/runs/run1/jobs/?status=dead").json() == []
    assert paddles.call("PUT", "/runs/run1/jobs/8/", {"status": "dead"}).status_code == 404


def test_a_final_dead_never_overwrites_pass_or_fail(paddles):
    paddles.state.add_job("run1", "1", status="running")
    paddles.state.add_job("run1", "2", status="running")
    paddles.state.add_job("run1", "3", status="running")
    # teuthology's report_outcome, then the supervisor's watchdog "dead" at the end
    paddles.call("PUT", "/runs/run1/jobs/1/", {"success": True, "status": "pass"})
    paddles.call("PUT", "/runs/run1/jobs/2/", {"success": False})
    for job_id in ("1", "2", "3"):
        paddles.call("PUT", f"/runs/run1/jobs/{job_id}/", {"status": "dead"})
    statuses = [paddles.state.job("run1", j)["status"] for j in ("1", "2", "3")]
    assert statuses == ["pass", "fail", "dead"]
    assert paddles.state.job("run1", "1")["success"] is True


def test_a_missing_job_or_run_is_an_html_404(paddles):
    for path in ("/runs/run1/jobs/9/", "/runs/run1/", "/nodes/nope.lab.test/jobs/"):
        missing = paddles.call("GET", path)
        assert missing.status_code == 404, path
        assert missing.headers["Content-Type"].startswith("text/html"), path
        assert "404 Not Found" in missing.text


def test_serves_loopback_only():
    with pytest.raises(ValueError, match="loopback"):
        LockServer().serve(host="0.0.0.0")
