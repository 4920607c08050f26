"""One poller per host and MAAS endpoint (fleet.hostshare), between separate OS processes over
real HTTP: the simulator on a manual clock (nothing moves until the test says so), and one
process per waiting node (tests/_hostshare_child.py), as teuthology-dispatcher runs one
supervisor per job."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from teuthology_maas.maas.client import MaasClient

ROOT = Path(__file__).resolve().parent.parent
CHILD = Path(__file__).resolve().parent / "_hostshare_child.py"


class Child:
    """A waiting process and the JSON lines it printed."""

    def __init__(self, job: dict[str, Any]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(CHILD), json.dumps(job)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
        )  # fmt: skip
        self.lines: list[dict[str, Any]] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(json.loads(line))

    def field(self, name: str, timeout: float = 30.0) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.lines:
                if name in line:
                    return line[name]
            if self.process.poll() is not None and not self._reader.is_alive():
                break
            time.sleep(0.02)
        raise AssertionError(f"no {name!r} from the child: {self.lines} {self.stderr()}")

    def result(self, timeout: float = 60.0) -> dict[str, Any]:
        self.process.wait(timeout)
        self._reader.join(5)
        return self.lines[-1]

    def stderr(self) -> str:
        if self.process.poll() is None:
            return ""
        assert self.process.stderr is not None
        return self.process.stderr.read()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(10)


@pytest.fixture
def lab(manual_sim, tmp_path):
    """The simulator, N deploying machines, and a way to start waiting processes."""
    children: list[Child] = []
    client = MaasClient(manual_sim.api_url, manual_sim.api_key)
    share_dir = tmp_path / "share"

    class Lab:
        sim = manual_sim.sim
        dir = str(share_dir)
        config = manual_sim.config()

        def deploying(self, hostnames: list[str]) -> list[str]:
            ids = []
            for hostname in hostnames:
                machine = client.allocate(name=hostname)
                client.deploy(machine.system_id, distro_series="jammy")
                ids.append(machine.system_id)
            return ids

        def allocated(self, hostname: str) -> str:
            return client.allocate(name=hostname).system_id

        def start(self, system_id: str, **job: Any) -> Child:
            child = Child({
                "url": manual_sim.url, "key": manual_sim.api_key, "dir": self.dir,
                "system_id": system_id, "timeout": 60, **job,
            })  # fmt: skip
            children.append(child)
            return child

        def polls(self) -> list[Any]:
            return [r for r in self.sim.requests(method="GET") if r.param_list("id")]

        def deploy_all(self) -> None:
            self.sim.clock.advance(3600)

    try:
        yield Lab()
    finally:
        for child in children:
            child.stop()
        client.close()


def wait_until(condition, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting for the condition"
        time.sleep(0.05)


@pytest.mark.parametrize("patched", [False, True], ids=["threads", "gevent"])
def test_processes_of_a_host_share_one_poll_stream(lab, patched):
    ids = lab.deploying([f"smithi00{i}" for i in range(1, 6)])
    children = [lab.start(sid, gevent=patched) for sid in ids]
    roles = sorted(child.field("role") for child in children)
    assert roles == ["follower"] * 4 + ["leader"]
    # once every process waits, every poll asks about every machine: one stream for the host
    wait_until(lambda: any(set(r.param_list("id")) == set(ids) for r in lab.polls()))
    start = len(lab.polls())
    wait_until(lambda: len(lab.polls()) >= start + 4)
    later = lab.polls()[start:]
    assert all(sorted(r.param_list("id")) == sorted(ids) for r in later), [
        r.param_list("id") for r in later
    ]
    lab.deploy_all()
    results = [child.result() for child in children]
    assert [r.get("status") for r in results] == ["Deployed"] * 5, results
    # each leader removed its socket and lock file on its way out
    assert sorted(p.name for p in Path(lab.dir).iterdir()) == []


@pytest.mark.parametrize("patched", [False, True], ids=["threads", "gevent"])
def test_a_followers_deploy_wait_is_served_by_the_leader_and_its_probe_reads_maas_at_once(
    lab, tmp_path, patched
):
    """A deployment's wait carries a probe (the node's SSH check, a callable that cannot go
    over the socket): the wait still goes to the leader, which asks the follower to run the
    probe when it is due; a "ready" makes the leader read MAAS at once, and only MAAS's
    Deployed ends the wait. The follower itself never asks MAAS."""
    long_job = {"gevent": patched, "poll": (0.2, 120), "failure_interval": 120,
                "wait_kind": "deploy smithi ubuntu/jammy", "timeout": 90}  # fmt: skip
    idle = lab.allocated("smithi001")  # the leader's own wait: a machine that stays put
    lab.sim.update_machine(idle, status="Deploying")  # (forced: no deployment moves it)
    leader = lab.start(idle, **long_job)
    assert leader.field("role") == "leader"
    (deploying,) = lab.deploying(["smithi002"])
    ready = tmp_path / "ready"
    probes = Path(f"{ready}.log")
    follower = lab.start(deploying, probe=str(ready), **long_job)
    assert follower.field("role") == "follower"
    # the leader asks for the follower's probe; it runs in the follower's own process
    wait_until(lambda: probes.exists() and len(probes.read_text().split()) >= 2)
    assert set(probes.read_text().split()) == {str(follower.process.pid)}

    def reads_of_it() -> int:
        return sum(deploying in r.param_list("id") for r in lab.polls())

    # a long job's reads spread out (about 0.6, 1.8, 5.4, 16 s after the start here): after
    # the third, none is due for about ten seconds
    wait_until(lambda: reads_of_it() >= 3)
    lab.deploy_all()  # MAAS now shows Deployed
    time.sleep(1.0)
    assert follower.process.poll() is None, follower.lines  # "not yet": no read
    reads = reads_of_it()
    ready.touch()
    result = follower.result(timeout=30)
    assert result.get("status") == "Deployed", (result, follower.stderr())
    assert reads_of_it() == reads + 1  # the read the ready probe asked for, and no other
    assert result["stats"]["requests"] == 0  # the follower never polled MAAS itself
    lab.sim.update_machine(idle, status="Deployed")
    ended = leader.result(timeout=30)
    assert ended.get("status") == "Deployed", ended
    assert ended["stats"]["confirms"] >= 1 and ended["stats"]["probes"] >= 2, ended


def test_without_sharing_each_process_polls_alone(lab):
    ids = lab.deploying(["smithi001", "smithi002"])
    children = [lab.start(sid, sharing=False) for sid in ids]
    assert [child.field("role") for child in children] == ["in-process"] * 2
    wait_until(lambda: {tuple(r.param_list("id")) for r in lab.polls()} == {(i,) for i in ids})
    lab.deploy_all()
    assert [child.result().get("status") for child in children] == ["Deployed"] * 2
    assert all(len(r.param_list("id")) == 1 for r in lab.polls())
    assert not any(Path(lab.dir).glob("*.sock")) if Path(lab.dir).exists() else True


def test_lookups_of_followers_go_through_the_leader(lab):
    ids = lab.deploying(["smithi001", "smithi002"])
    leader = lab.start(ids[0])
    assert leader.field("role") == "leader"
    follower = lab.start(ids[1], lookup="smithi002")
    assert follower.field("role") == "follower"
    assert follower.field("looked") == [ids[1]]
    lab.deploy_all()
    assert leader.result().get("status") == follower.result().get("status") == "Deployed"


@pytest.mark.parametrize("patched", [False, True], ids=["threads", "gevent"])
def test_leader_killed_mid_wait_loses_no_wait_and_keeps_each_deadline(lab, patched):
    ids = lab.deploying(["smithi001", "smithi002", "smithi003", "smithi004"])
    leader = lab.start(ids[0], gevent=patched)
    assert leader.field("role") == "leader"
    followers = [lab.start(sid, gevent=patched) for sid in ids[1:3]]
    assert [f.field("role") for f in followers] == ["follower"] * 2
    # a wait that never ends: its deadline (8 s from its start) must not move at the takeover,
    # which comes at least 3.5 s into it (a deadline counted again from there: 11.5 s or more)
    never = lab.start(ids[3], timeout=8, gevent=patched)
    assert never.field("role") == "follower"
    began = time.monotonic()
    wait_until(lambda: any(set(r.param_list("id")) == set(ids) for r in lab.polls()))
    time.sleep(max(0.0, began + 3.5 - time.monotonic()))
    os.kill(leader.process.pid, signal.SIGKILL)
    assert leader.process.wait(10) == -signal.SIGKILL
    # a follower leads now, and polls for the survivors
    survivors = set(ids[1:])
    wait_until(lambda: any(set(r.param_list("id")) == survivors for r in lab.polls()))
    # deploy only the followers' machines: the `never` machine stays Deploying
    _force_deployed(lab.sim, ids[1:3])
    assert [f.result().get("status") for f in followers] == ["Deployed"] * 2
    outcome = never.result()
    assert outcome.get("kind") == "MaasTimeout", outcome
    assert "within 8 s" in outcome["error"]
    # the deadline counted from the start of the wait, not from the takeover
    assert 8.0 <= outcome["elapsed"] < 10.5, outcome


def test_a_forked_child_of_the_leader_does_not_hold_the_host_after_the_leader_dies(lab):
    """The child inherits the lock and every connection; it lets go of them at once, so the
    leader's death is seen (connection closed, lock free) and not 30 s later as silence."""
    ids = lab.deploying(["smithi001", "smithi002"])
    leader = lab.start(ids[0], fork=True)
    forked = leader.field("forked")
    try:
        assert leader.field("role") == "leader"
        follower = lab.start(ids[1])
        assert follower.field("role") == "follower"
        wait_until(lambda: any(set(r.param_list("id")) == set(ids) for r in lab.polls()))
        os.kill(leader.process.pid, signal.SIGKILL)
        leader.process.wait(10)
        killed = len(lab.polls())
        # the follower leads now: its own machine alone, well before the 30 s of silence
        wait_until(lambda: any(r.param_list("id") == ids[1:] for r in lab.polls()[killed:]),
                   timeout=10)  # fmt: skip
        lab.deploy_all()
        assert follower.result().get("status") == "Deployed"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(forked, signal.SIGKILL)


def _force_deployed(sim: Any, system_ids: list[str]) -> None:
    from teuthology_maas.models import NodeStatus

    with sim.state.lock:
        for sid in system_ids:
            record = sim.state.find(sid)
            sim.state.set_status(record, NodeStatus.DEPLOYED, sim.clock.now())


def test_a_socket_planted_in_the_share_directory_is_refused(lab, tmp_path, caplog):
    """Another process holds the lock, and the socket path holds something not ours: the
    waiting process refuses it, says so, and polls MAAS itself."""
    ids = lab.deploying(["smithi001"])
    share = Path(lab.dir)
    share.mkdir(mode=0o700)
    from teuthology_maas.fleet._hostdir import HostLock, share_name

    name = share_name(lab.config.api_url, lab.config.api_key.consumer_key, True)
    held = HostLock.try_acquire(share / f"{name}.lock")
    assert held is not None
    planted = share / f"{name}.sock"
    if os.geteuid() == 0:
        # a real socket, as another user would leave it
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(str(planted))
        server.listen(1)
        os.chown(planted, 65534, 65534)
        expected = "belongs to uid 65534"
    else:
        server = None
        planted.write_text("not a socket\n")
        expected = "is not a socket"
    try:
        child = lab.start(ids[0])
        assert child.field("role") == "solo"
        wait_until(lambda: any(r.param_list("id") == ids for r in lab.polls()))
        lab.deploy_all()
        assert child.result().get("status") == "Deployed"
        assert expected in child.stderr()
    finally:
        held.release()
        if server is not None:
            server.close()
