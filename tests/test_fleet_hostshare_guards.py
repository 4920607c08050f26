"""What host sharing refuses (fleet.hostshare, fleet._hostdir): planted files, other users,
garbage on the socket, a leader that lies, and the fork rule. Leader and follower run in this
process here (two HostShares of one name: flock locks conflict between open files even in
one process); tests/test_fleet_hostshare.py runs them as separate processes."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
import time
from pathlib import Path

import pytest

from tests.test_fleet import FakeMaas
from teuthology_maas.endpoint import Endpoint
from teuthology_maas.fleet._hostdir import (
    HostLock,
    HostShareRefused,
    check_peer,
    check_socket_path,
    runtime_dir,
)
from teuthology_maas.fleet.hostshare import HostShare
from teuthology_maas.models import DEPLOY_FAILURE, DEPLOY_TARGET, Machine, NodeStatus

NAME = "a" * 24


def share(client: FakeMaas, directory: Path) -> HostShare:
    return HostShare(client, name=NAME, directory=str(directory), min_interval=0.01,
                     max_interval=0.05)  # fmt: skip


def leader_and_follower(
    client: FakeMaas, directory: Path, made: list[HostShare]
) -> tuple[HostShare, HostShare]:
    """Two shares of one name, in that order; a kick makes each choose its role."""
    leader = share(client, directory)
    made.append(leader)
    leader.kick()
    follower = share(client, directory)
    made.append(follower)
    follower.kick()
    return leader, follower


@pytest.fixture
def shares():
    made: list[HostShare] = []
    yield made
    for each in made:
        each.close()


# -- the directory, the lock, the socket, the peer -------------------------------------------


def test_a_directory_writable_by_others_or_not_ours_is_refused(tmp_path):
    open_dir = tmp_path / "open"
    open_dir.mkdir()
    open_dir.chmod(0o777)
    with pytest.raises(HostShareRefused, match="writable by group or others"):
        runtime_dir(str(open_dir))
    with pytest.raises(HostShareRefused, match=f"belongs to uid {os.getuid()}, not to us"):
        runtime_dir(str(tmp_path / "mine"), uid=os.getuid() + 1)
    (tmp_path / "link").symlink_to(tmp_path / "mine")
    with pytest.raises(HostShareRefused, match="not a directory"):
        runtime_dir(str(tmp_path / "link"))
    made = runtime_dir(str(tmp_path / "fresh"))
    assert made.stat().st_mode & 0o777 == 0o700


def test_the_default_directory_is_per_user(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    assert runtime_dir() == tmp_path / "teuthology-maas"
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "gone"))  # left behind by sudo
    assert runtime_dir() == tmp_path / f"teuthology-maas-{os.getuid()}"
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    assert runtime_dir() == tmp_path / f"teuthology-maas-{os.getuid()}"


def test_a_planted_lock_symlink_or_socket_is_refused(tmp_path):
    directory = runtime_dir(str(tmp_path / "d"))
    (directory / "x.lock").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(HostShareRefused, match="cannot open"):
        HostLock.try_acquire(directory / "x.lock")
    (directory / "x.sock").write_text("")
    with pytest.raises(HostShareRefused, match="not a socket"):
        check_socket_path(directory / "x.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(directory / "y.sock"))
    try:
        check_socket_path(directory / "y.sock")  # ours
        with pytest.raises(HostShareRefused, match="belongs to uid"):
            check_socket_path(directory / "y.sock", uid=os.getuid() + 1)
    finally:
        server.close()


def test_the_process_at_the_other_end_must_run_as_us():
    left, right = socket.socketpair(socket.AF_UNIX)
    try:
        assert check_peer(left) == os.getpid()
        with pytest.raises(HostShareRefused, match=f"runs as uid {os.getuid()}"):
            check_peer(left, uid=os.getuid() + 1)
    finally:
        left.close()
        right.close()


def test_one_lock_holder_and_the_lock_file_goes_with_it(tmp_path):
    path = runtime_dir(str(tmp_path / "d")) / "n.lock"
    first = HostLock.try_acquire(path)
    assert first is not None
    assert HostLock.try_acquire(path) is None
    first.release()
    assert not path.exists()
    again = HostLock.try_acquire(path)
    assert again is not None
    again.release()


# -- the socket: garbage in, lies out ---------------------------------------------------------


def test_garbage_on_the_socket_is_dropped_with_a_log_line_and_the_leader_serves_on(
    tmp_path, shares, caplog
):
    client = FakeMaas()
    client.add("m1", NodeStatus.DEPLOYED)
    leader = share(client, tmp_path)
    shares.append(leader)
    leader.kick()
    assert leader.role == "leader"
    path = tmp_path / f"{NAME}.sock"
    raw = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    raw.connect(str(path))
    caplog.set_level(logging.INFO, "teuthology_maas.fleet.hostshare")
    raw.sendall(b"not json\n[1, 2]\n{\"op\": 7}\n{\"op\": \"wait\", \"id\": \"x\"}\n"
                b"{\"op\": \"wait\", \"id\": 1, \"system_id\": \"m1\", \"args\": {}}\n"
                b"{\"op\": \"explode\"}\n\xff\xfe\n")  # fmt: skip
    raw.settimeout(10)
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        raw.sendall(b"x" * (5 * 1024 * 1024))  # no newline, past the cap: the connection ends
    with contextlib.suppress(ConnectionResetError):
        assert raw.recv(100) == b""  # the leader hung up on it, without answering any of it
    raw.close()
    follower = share(client, tmp_path)
    shares.append(follower)
    machine = follower.wait("m1", targets=DEPLOY_TARGET, failures=DEPLOY_FAILURE, timeout=10)
    assert (follower.role, machine.status) == ("follower", NodeStatus.DEPLOYED)
    text = caplog.text
    assert text.count("dropped a malformed message") == 4
    assert text.count("dropped a malformed wait request") == 2
    assert "does not take: op='explode'" in text
    assert "longer than" in text


class LyingLeader:
    """Holds the lock and the socket, and answers every wait (and lookup) with the lines
    `answers(message)` yields."""

    def __init__(self, directory: Path, answers, *, name: str = NAME) -> None:
        self.lock = HostLock.try_acquire(runtime_dir(str(directory)) / f"{name}.lock")
        assert self.lock is not None
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(str(directory / f"{name}.sock"))
        self.listener.listen(8)
        self.answers = answers
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = self.listener.accept()
                threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        for line in conn.makefile("rb"):
            message = json.loads(line)
            if message["op"] in ("wait", "lookup"):
                conn.sendall(b"".join(line.rstrip(b"\n") + b"\n" for line in
                                      self.answers(message)))  # fmt: skip

    def close(self) -> None:
        self.listener.close()
        self.lock.release()


def line(op: str, ident: int, machine: dict) -> bytes:
    return json.dumps({"op": op, "id": ident, "machine": machine}).encode() + b"\n"


def machine_json(system_id: str, status: NodeStatus) -> dict:
    return {"system_id": system_id, "hostname": f"host-{system_id}", "status": int(status)}


def test_a_lying_leader_only_wakes_the_wait_which_ends_on_this_process_s_own_poll(
    tmp_path, shares, caplog
):
    client = FakeMaas()
    client.add("m1", NodeStatus.DEPLOYING, "Installing OS")

    def answers(message):
        ident = message["id"]
        if message["op"] != "wait":
            return
        yield b"\x00garbage\n"
        yield line("change", ident, machine_json("other", NodeStatus.DEPLOYED))
        yield line("change", ident, {"system_id": 5})
        # "done" at a status the wait is not waiting for: not an end
        yield line("done", ident, machine_json("m1", NodeStatus.READY))
        client.set("m1", NodeStatus.DEPLOYED)  # what MAAS really shows

    liar = LyingLeader(tmp_path, answers)
    try:
        caplog.set_level(logging.INFO, "teuthology_maas.fleet.hostshare")
        follower = share(client, tmp_path)
        shares.append(follower)
        seen = []
        machine = follower.wait("m1", targets=DEPLOY_TARGET, failures=DEPLOY_FAILURE,
                                timeout=10, on_change=seen.append)  # fmt: skip
    finally:
        liar.close()
    assert follower.role == "follower"
    assert machine.status is NodeStatus.DEPLOYED
    assert client.list_calls(), "the wait ended on this process's own poll of MAAS"
    assert all(m.system_id == "m1" for m in seen)
    assert NodeStatus.READY not in {m.status for m in seen}
    text = caplog.text
    assert "dropped a malformed message" in text
    assert "dropped an answer about another machine" in text
    assert "which it was not waiting for" in text


def test_a_leader_that_closes_its_own_share_hands_over_to_the_follower(tmp_path, shares):
    client = FakeMaas()
    client.add("m1", NodeStatus.DEPLOYING, "Installing OS")
    leader = share(client, tmp_path)
    shares.append(leader)
    leader.kick()
    follower = share(client, tmp_path)
    shares.append(follower)
    outcome: dict = {}

    def wait() -> None:
        outcome["m"] = follower.wait("m1", targets=DEPLOY_TARGET, timeout=20)

    thread = threading.Thread(target=wait)
    thread.start()
    while leader.poller.waiting == 0:
        threading.Event().wait(0.01)
    sock_path = tmp_path / f"{NAME}.sock"
    def identity(path: Path) -> tuple[int, int] | None:  # an inode may be reused, not both
        with contextlib.suppress(FileNotFoundError):
            st = path.stat()
            return st.st_ino, st.st_ctime_ns
        return None

    leaders_socket = identity(sock_path)
    leader.close()  # as at exit: the socket and lock file go, the connection closes
    # the leader's socket is gone; one there now is the follower's, leading in its place
    assert identity(sock_path) != leaders_socket
    while follower.role != "leader":
        threading.Event().wait(0.01)
    client.set("m1", NodeStatus.DEPLOYED)
    thread.join(20)
    assert outcome["m"].status is NodeStatus.DEPLOYED
    assert follower.poller.stats.requests > 0


def test_a_leader_leaving_lets_go_of_the_lock_before_its_followers_hear_of_it(tmp_path, shares):
    """A follower woken by its connection closing must find the lock free at once: a handover
    that makes every follower retry costs each wait on the host that long."""
    client = FakeMaas()
    leader = share(client, tmp_path)
    shares.append(leader)
    leader.kick()
    assert leader.role == "leader"
    server = leader._server
    assert server is not None
    lock_path = runtime_dir(str(tmp_path)) / f"{NAME}.lock"
    when_connections_close: list = []
    close_connections = server.close

    def close() -> None:  # the moment the followers' connections are about to close
        when_connections_close.append(HostLock.try_acquire(lock_path))
        close_connections()

    server.close = close  # type: ignore[method-assign]
    # and its socket file is gone before it lets go of the lock: once the lock is free a new
    # leader may bind that path, and the old one must never remove the new one's socket
    held = leader._held
    assert held is not None
    sock_path = runtime_dir(str(tmp_path)) / f"{NAME}.sock"
    socket_at_release: list[bool] = []
    release = held.release

    def release_lock() -> None:
        socket_at_release.append(sock_path.exists())
        release()

    held.release = release_lock  # type: ignore[method-assign]
    leader.close()
    assert socket_at_release == [False]
    assert len(when_connections_close) == 1
    free = when_connections_close[0]
    assert free is not None, "the followers would hear of it while the lock was still held"
    free.release()


# -- the fork rule ----------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded")
def test_a_forked_child_never_uses_its_parent_s_share(maas_sim, tmp_path):
    cfg = maas_sim.config(host_sharing_dir=str(tmp_path))
    parent = Endpoint.from_config(cfg)
    mine = parent.status_poller()
    assert isinstance(mine, HostShare)
    mine.kick()
    assert mine.role == "leader"
    sock = next(tmp_path.glob("*.sock"))
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            mine.close()  # the parent's: closing it in the child must not take the socket
            carried = parent.status_poller()
            carried.kick()
            facts = [carried is not mine, sock.exists(), getattr(carried, "role", None)]
            os.write(write_end, json.dumps(facts).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    answer = json.loads(os.read(read_end, 256))
    os.close(read_end)
    os.waitpid(pid, 0)
    assert answer == [True, True, "follower"]
    assert sock.exists() and mine.role == "leader"
    parent.close()
    assert not sock.exists()


# -- a stale shared answer never lets a clean-up touch a node ------------------------------


def test_a_stale_shared_failure_makes_the_clean_up_read_maas_and_leave_a_taken_node_alone(
    fault_lab, tmp_path
):
    """The leader (here: lying) answers our deploy wait with our machine as it was, stamped
    with our deployment, but "Failed deployment"; meanwhile another attempt took the node
    over. The clean-up reads MAAS itself, sees the other deployment, and touches nothing."""
    from teuthology_maas.endpoint import endpoint_for
    from teuthology_maas.errors import MaasError
    from teuthology_maas.node.ownership import TOKEN_KEY
    from teuthology_maas.node.provisioner import MaasProvisioner

    node = "smithi001"
    foreign = {TOKEN_KEY: "f0" * 16, "teuthology_maas_process": "4242@ctl2",
               "teuthology_owner": "scheduled_bob@ctl", "teuthology_job": "77"}  # fmt: skip
    lab = fault_lab
    lab.sim.faults.add("deploy_stuck", machine=node)
    cfg = lab.config(host_sharing_dir=str(tmp_path), deploy_timeout=30)
    taken: dict = {}

    def answers(message):
        if message["op"] == "lookup":
            machines = [lab.sim.machine(message["hostname"])]
            yield json.dumps({"op": "found", "id": message["id"], "machines": machines}).encode()
            return
        stale = dict(lab.sim.machine(node))  # ours, in flight
        lab.sim.update_machine(node, workload_annotations=dict(foreign))  # taken over
        taken["mark"] = len(lab.sim.request_log)
        stale.update(status=int(NodeStatus.FAILED_DEPLOYMENT), status_name="Failed deployment")
        yield json.dumps({"op": "done", "id": message["id"], "machine": stale}).encode()

    name = share_name_for(cfg)
    liar = LyingLeader(tmp_path, answers, name=name)
    try:
        provisioner = MaasProvisioner(node, config=cfg)
        assert isinstance(provisioner.endpoint.status_poller(cfg), HostShare)
        with pytest.raises(MaasError) as raised:
            provisioner.create()
    finally:
        liar.close()
        endpoint_for(cfg).close()
    assert provisioner.endpoint.status_poller(cfg).role != "leader"
    assert "mark" in taken, "the deploy wait went to the host's leader"
    later = list(lab.sim.request_log)[taken["mark"] :]
    assert [(r.method, r.op) for r in later if r.method != "GET"] == [], str(raised.value)
    assert "Clean-up: left alone" in str(raised.value) and "taken over" in str(raised.value)
    assert lab.sim.machine(node)["owner_data"][TOKEN_KEY] == "f0" * 16
    assert lab.status(node) == "Deploying"


def share_name_for(cfg) -> str:
    from teuthology_maas.fleet._hostdir import share_name

    return share_name(cfg.api_url, cfg.api_key.consumer_key, cfg.verify)


def test_a_leader_that_stops_answering_is_left_and_the_wait_ends_on_its_own_poll(
    tmp_path, shares, monkeypatch, caplog
):
    """A stopped or stuck leader keeps its socket open: silence after a ping is enough."""
    from teuthology_maas.fleet import hostshare

    monkeypatch.setattr(hostshare, "PING_EVERY", 0.2)
    monkeypatch.setattr(hostshare, "STALL_LIMIT", 0.6)
    client = LookupMaas()
    client.add("m1", NodeStatus.DEPLOYED)
    silent = LyingLeader(tmp_path, lambda message: iter(()))
    try:
        waiting, looking = share(client, tmp_path), share(client, tmp_path)
        shares.extend([waiting, looking])
        machine = waiting.wait("m1", targets=DEPLOY_TARGET, timeout=20)
        found = looking.lookup("host-m1")
    finally:
        silent.close()
    assert machine.status is NodeStatus.DEPLOYED and [m.system_id for m in found] == ["m1"]
    assert (waiting.role, looking.role) == ("solo", "solo")
    assert [kind for kind, _ in client.calls] == ["list", "hostname"]
    assert caplog.text.count("has not answered for") == 2


class LookupMaas(FakeMaas):
    def list_machines(self, *, id=(), hostname=()):  # type: ignore[override]
        if not hostname:
            return super().list_machines(id=id)
        with self._lock:
            self.calls.append(("hostname", tuple(hostname)))
            return [Machine.from_json(m) for m in self.machines.values()
                    if m["hostname"] in hostname]  # fmt: skip


def test_a_wait_argument_that_cannot_travel_is_waited_for_from_this_process(tmp_path, shares):
    """A newer poller argument the wire cannot carry (a callable other than the probe, which
    stays here and is asked for by the leader) costs the sharing of that wait only, never
    the wait."""

    client = FakeMaas()
    client.add("m1", NodeStatus.DEPLOYED)
    leader, follower = leader_and_follower(client, tmp_path, shares)
    assert follower.role == "follower"
    original = follower.poller.wait

    def accepting(system_id, *, on_progress=None, **kwargs):
        assert callable(on_progress)
        return original(system_id, **kwargs)

    follower.poller.wait = accepting  # type: ignore[method-assign]
    machine = follower.wait("m1", targets=DEPLOY_TARGET, timeout=10, on_progress=lambda: None)
    assert machine.status is NodeStatus.DEPLOYED and follower.role == "follower"
    assert follower.poller.stats.requests >= 1 and leader.poller.stats.requests == 0


def test_a_follower_s_probe_answer_counts_only_when_the_leader_asked_for_it(tmp_path, shares):
    """A follower's "ready" makes the leader read MAAS at once, so only an answer to a probe
    the leader asked for is taken: a follower cannot make it read faster than its schedule."""
    client = FakeMaas()
    client.add("m1", NodeStatus.DEPLOYING)
    client.add("m2", NodeStatus.DEPLOYING)
    leader = share(client, tmp_path)
    shares.append(leader)
    leader.kick()
    raw = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    raw.connect(str(tmp_path / f"{NAME}.sock"))
    raw.settimeout(10)
    args = {"targets": [int(NodeStatus.DEPLOYED)], "timeout": 30, "failure_interval": 60}
    stream = raw.makefile("rb")

    def send(**message: object) -> None:
        raw.sendall(json.dumps(message).encode() + b"\n")

    def settle() -> None:  # a ping's answer: everything sent before it was handled
        send(op="ping")
        while json.loads(stream.readline())["op"] != "pong":
            pass

    try:
        send(op="wait", id=1, system_id="m2", args=args)  # no probe: never asked for one
        send(op="probed", id=1, ready=True)
        send(op="probed", id=7, ready=True)  # no such wait
        settle()
        assert leader.poller.stats.confirms == 0
        send(op="wait", id=2, system_id="m1", args=args, probe=True)
        while (message := json.loads(stream.readline()))["op"] != "probe":
            pass
        assert message["id"] == 2
        send(op="probed", id=2, ready=True)
        send(op="probed", id=2, ready=True)  # asked once, answered twice: taken once
        settle()
        assert leader.poller.stats.confirms == 1
    finally:
        raw.close()


def test_a_forwarded_wait_counts_from_its_own_start_and_kick_in_the_leader(
    tmp_path, shares, monkeypatch
):
    """The kick and the wait reach the leader as two messages, and a wait moved after its
    leader left is registered anew: the leader's poller must still time it from the follower's
    own start (its finish window, and what it learns for the host)."""
    client = FakeMaas()
    client.add("m1", NodeStatus.DEPLOYING)
    client.add("m2", NodeStatus.DEPLOYING)
    leader, follower = leader_and_follower(client, tmp_path, shares)

    def deploys_after_a_read(system_id: str) -> None:  # seen in flight once, then done
        def run() -> None:
            before = leader.poller.stats.requests
            while leader.poller.stats.requests == before:
                time.sleep(0.005)
            client.set(system_id, NodeStatus.DEPLOYED)

        threading.Thread(target=run, daemon=True).start()

    real_route = follower._route

    def route_later():  # the wait reaches the leader a while after it began (a leader moved)
        time.sleep(0.3)
        return real_route()

    monkeypatch.setattr(follower, "_route", route_later)
    deploys_after_a_read("m1")
    follower.kick()  # the action; the wait follows at once, as the node code does
    machine = follower.wait("m1", targets=DEPLOY_TARGET, timeout=10, kind="deploy a")
    assert machine.status is NodeStatus.DEPLOYED and follower.role == "follower"
    learned = leader.poller.history.total("deploy a")
    assert learned is not None and 0.3 <= learned[0] <= learned[1] < 5.0, learned
    deploys_after_a_read("m2")
    follower.kick()
    time.sleep(0.1)  # ten fastest ticks after the kick: this wait does not time an action
    follower.wait("m2", targets=DEPLOY_TARGET, timeout=10, kind="deploy b")
    assert leader.poller.history.total("deploy b") is None


# -- what a wait keeps when its leader leaves --------------------------------------------------


def wait_until(condition, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.005)


def test_a_wait_moved_in_its_last_phase_brings_the_messages_it_was_shown(tmp_path, shares):
    """A leader leaves while a follower's node reboots: the new leader must know "Rebooting"
    appeared long ago, not at its own first read, or its finish window opens late."""
    client = FakeMaas()
    client.add("m1", NodeStatus.DEPLOYING, "Installing OS")
    leader, follower = leader_and_follower(client, tmp_path, shares)
    shown: list[str | None] = []
    outcome: dict = {}

    def wait() -> None:
        outcome["m"] = follower.wait(
            "m1", targets=DEPLOY_TARGET, failures=DEPLOY_FAILURE, timeout=20,
            on_change=lambda m: shown.append(m.status_message),
        )  # fmt: skip

    thread = threading.Thread(target=wait)
    began = time.monotonic()
    thread.start()
    wait_until(lambda: shown == ["Installing OS"])
    client.set("m1", NodeStatus.DEPLOYING, "Rebooting")
    wait_until(lambda: shown == ["Installing OS", "Rebooting"])
    rebooting_by = time.monotonic() - began
    time.sleep(0.2)
    leader.close()
    wait_until(lambda: follower.role == "leader" and follower.poller.waiting == 1)
    moved = follower.poller._waiters[0]
    bracket = moved.seen["Rebooting"]
    assert 0.0 < bracket.lo <= bracket.hi <= rebooting_by
    # Once the new leader has read it: "Rebooting" counts from when it appeared, not from now.
    wait_until(lambda: moved.last is not None)
    assert moved.timing().message_since == pytest.approx(moved.started + bracket.hi)
    assert "Installing OS" not in moved.seen  # the first state shown may predate the wait
    client.set("m1", NodeStatus.DEPLOYED)
    thread.join(20)
    assert outcome["m"].status is NodeStatus.DEPLOYED


def test_a_process_taking_the_lead_starts_from_what_the_host_learned_since_it_started(
    tmp_path, shares
):
    from teuthology_maas.fleet.estimate import Bracket, FinishEstimator

    host_store: list[tuple[float, float]] = []  # what the leaders saved, as the Endpoint's store

    def from_store(poller) -> None:
        history = FinishEstimator()
        for total in host_store:
            history.learn("deploy", Bracket(*total), {})
        poller.adopt_history(history)

    client = FakeMaas()
    client.add("m1", NodeStatus.DEPLOYING, "Installing OS")
    leader = HostShare(client, name=NAME, directory=str(tmp_path), min_interval=0.01,
                       max_interval=0.05, on_poller=from_store)  # fmt: skip
    shares.append(leader)
    leader.kick()
    follower = HostShare(client, name=NAME, directory=str(tmp_path), min_interval=0.01,
                         max_interval=0.05, on_poller=from_store)  # fmt: skip
    shares.append(follower)
    follower.kick()
    assert follower.role == "follower" and follower.poller.history.total("deploy") is None
    host_store.append((600.0, 610.0))  # the leader learned a deployment and saved it
    thread = threading.Thread(
        target=follower.wait, args=("m1",), kwargs={"targets": DEPLOY_TARGET, "timeout": 20}
    )
    thread.start()
    wait_until(lambda: leader.poller.waiting == 1)
    leader.close()
    wait_until(lambda: follower.role == "leader")
    assert follower.poller.history.total("deploy") == (600.0, 610.0)
    client.set("m1", NodeStatus.DEPLOYED)
    thread.join(20)


@pytest.mark.parametrize(
    ("seen", "why"),
    [
        ({"Rebooting": [5.0, 4.0]}, "ends before it begins"),
        ({"Rebooting": [-1.0, 4.0]}, "before the wait began"),
        ({"Rebooting": [1.0, 99.0]}, "after the wait was sent"),
        ({"Rebooting": [1.0, float("nan")]}, "not a number"),
        ({"Rebooting": [1.0, True]}, "a boolean"),
        ({"Rebooting": [1.0]}, "one number"),
        ({"Rebooting": "1-2"}, "a string"),
        ({"x" * 1001: [1.0, 2.0]}, "a message too long"),
        ({f"m{i}": [1.0, 2.0] for i in range(33)}, "too many messages"),
        (["Rebooting", 1.0, 2.0], "a list"),
    ],
)
def test_a_follower_s_malformed_message_brackets_are_dropped(seen, why):
    from teuthology_maas.fleet._hostleader import _brackets

    assert _brackets(seen, 10.0) is None, why
    assert _brackets({"Rebooting": [1.0, 2.5], "Installing OS": [0.0, 1.0]}, 10.0) == {
        "Rebooting": (1.0, 2.5), "Installing OS": (0.0, 1.0)
    }  # fmt: skip


def test_taking_new_timings_leaves_every_due_read_where_it_was_and_recomputes_windows():
    from teuthology_maas.fleet.estimate import Bracket, FinishEstimator
    from teuthology_maas.fleet.poller import StatusPoller

    client = FakeMaas()
    client.add("m1", NodeStatus.DEPLOYING, "Installing OS")
    poller = StatusPoller(client, min_interval=0.01, max_interval=0.05)
    thread = threading.Thread(target=poller.wait, args=("m1",), kwargs={
        "targets": DEPLOY_TARGET, "timeout": 20, "failure_interval": 60.0})  # fmt: skip
    thread.start()
    wait_until(lambda: poller.waiting == 1 and poller._waiters[0].last is not None)
    waiter = poller._waiters[0]
    due, version = waiter.due, poller.history.version
    learned = FinishEstimator()
    learned.learn("deploy", Bracket(600.0, 610.0), {})
    poller.adopt_history(learned)
    assert poller.history is learned and learned.version > version  # kept windows go stale
    assert waiter.due == due  # a read due at once (a confirmation) would still be
    client.set("m1", NodeStatus.DEPLOYED)
    poller.kick()
    thread.join(20)
