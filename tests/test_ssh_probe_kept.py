"""The probe keeps its connection to a node that let it in before finishing (node.ssh_kept),
against real loopback sshd servers; and the keeping rules (one user at a time, idle expiry,
a limit, fork) on their own."""

from __future__ import annotations

import os

import pytest

from teuthology_maas.config import MaasConfig
from teuthology_maas.node import ssh, ssh_kept
from teuthology_maas.node.ssh_kept import KeptConnections


@pytest.fixture
def kept(monkeypatch):
    pool = KeptConnections()
    monkeypatch.setattr(ssh, "probe_connections", pool)
    yield pool
    pool.close()


@pytest.fixture
def fleet(sshd_fleet, tmp_path):
    fleet = sshd_fleet(["smithi001", "smithi002"], tmp_path / "ssh-root")
    for hostname in fleet.hostnames:
        fleet.install_key(hostname)
    return fleet


@pytest.fixture
def cfg(fleet, tmp_path) -> MaasConfig:
    return MaasConfig.from_mapping(
        {"api_url": "http://127.0.0.1:5240/MAAS/", "api_key": "ck:tk:ts",
         "ssh_config": str(fleet.ssh_config_path)}, base_dir=tmp_path,
    )  # fmt: skip


@pytest.fixture
def logins(monkeypatch):
    made: list[str] = []
    real_connect = ssh._connect

    def counting_connect(target, *, timeout):
        made.append(f"{target.hostname}:{target.port}")
        return real_connect(target, timeout=timeout)

    monkeypatch.setattr(ssh, "_connect", counting_connect)
    return made


def test_a_node_not_finished_is_asked_again_over_the_same_connection(fleet, cfg, kept, logins):
    assert [ssh.probe_ready("smithi001", cfg) for _ in range(5)] == [False] * 5
    assert len(logins) == 1 and len(kept) == 1
    fleet.mark_boot_finished("smithi001")
    assert ssh.probe_ready("smithi001", cfg) is True
    assert len(logins) == 1  # the kept connection saw the sentinel
    assert len(kept) == 0  # and was closed: verify_ssh logs in afresh
    assert ssh.probe_ready("smithi001", cfg) is True
    assert len(logins) == 2


def test_each_node_has_its_own_connection(fleet, cfg, kept, logins):
    fleet.mark_boot_finished("smithi002")
    assert ssh.probe_ready("smithi001", cfg) is False
    assert ssh.probe_ready("smithi002", cfg) is True  # not smithi001's connection
    assert ssh.probe_ready("smithi001", cfg) is False
    assert len(logins) == 2 and len(kept) == 1


def test_a_node_that_drops_the_connection_is_logged_in_to_again_or_found_not_up(
    fleet, cfg, kept, logins
):
    assert ssh.probe_ready("smithi001", cfg) is False
    server = fleet.servers["smithi001"]
    server.stop()  # the node reboots: its sshd and our session go
    assert ssh.probe_ready("smithi001", cfg) is False  # never raises
    assert len(kept) == 0
    server.start()
    fleet.write_ssh_config()  # a restarted sshd may listen on another port
    assert ssh.probe_ready("smithi001", cfg) is False
    assert len(kept) == 1
    fleet.mark_boot_finished("smithi001")
    assert ssh.probe_ready("smithi001", cfg) is True


class FakeClient:
    def __init__(self, active: bool = True) -> None:
        self.active, self.closed = active, False

    def get_transport(self):
        return self if not self.closed else None

    def is_active(self) -> bool:
        return self.active

    def close(self) -> None:
        self.closed = True


def test_a_connection_is_lent_to_one_caller_at_a_time_and_a_dead_one_is_never_lent():
    pool = KeptConnections()
    client = FakeClient()
    pool.keep("a", client)
    assert pool.take("a") is client
    assert pool.take("a") is None  # in use by the first caller
    dead = FakeClient(active=False)
    pool.keep("b", dead)
    assert pool.take("b") is None and dead.closed


def test_connections_unused_for_a_while_are_closed_and_at_most_the_limit_are_kept():
    now = [0.0]
    pool = KeptConnections(idle=60.0, limit=3, clock=lambda: now[0])
    clients = {name: FakeClient() for name in "abcde"}
    for offset, name in enumerate("ab"):
        now[0] = offset
        pool.keep(name, clients[name])
    now[0] = 60.5  # a is older than a minute, b is not
    assert pool.take("b") is clients["b"]
    assert clients["a"].closed and len(pool) == 0
    for name in "bcde":
        pool.keep(name, clients[name])
    assert len(pool) == 3 and clients["b"].closed  # the oldest goes first
    assert not any(clients[name].closed for name in "cde")
    pool.close()
    assert all(client.closed for client in clients.values())


# The child only reads two values and writes them to a pipe before os._exit: no lock that
# another thread could hold at the fork is taken there (the at-fork handler makes a new one).
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_a_forked_child_forgets_its_parent_s_connections_without_closing_them():
    pool = ssh_kept.probe_connections
    client = FakeClient()
    pool.keep(("fork-test",), client)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report what it sees, never return into pytest
        try:
            os.write(write, f"{len(pool)} {client.closed}".encode())
        finally:
            os._exit(0)
    os.close(write)
    seen = os.read(read, 100).decode()
    os.waitpid(pid, 0)
    os.close(read)
    assert seen == "0 False"  # forgotten, not closed: the socket is the parent's
    assert pool.take(("fork-test",)) is client



def test_the_connection_to_a_node_goes_when_its_wait_is_over(fleet, cfg, kept, logins):
    assert ssh.probe_ready("smithi001", cfg) is False
    assert ssh.probe_ready("smithi002", cfg) is False
    ssh.end_probes("smithi001")
    assert len(kept) == 1  # smithi002's is still waiting
    assert ssh.probe_ready("smithi001", cfg) is False
    assert len(logins) == 3  # smithi001 logged in to afresh


def test_a_probe_command_ends_at_its_deadline_whatever_the_node_sends(fleet, cfg):
    import time

    from teuthology_maas.node.ssh_target import SSHTarget

    client = ssh._connect(SSHTarget.resolve("smithi001", cfg), timeout=5)
    try:
        assert ssh.exit_status_within(client, "exit 3", 5.0) == 3
        began = time.monotonic()
        with pytest.raises(TimeoutError, match="no exit status within 1 s"):
            # A byte every 0.2 s would keep every read of a 5 s read timeout alive for ever.
            ssh.exit_status_within(client, "while :; do echo x; sleep 0.2; done", 1.0)
        assert time.monotonic() - began < 3.0
    finally:
        client.close()
