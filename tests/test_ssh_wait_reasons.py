"""The SSH wait says why it is still waiting: every attempt is reported (teuthology_maas.waits)
with its reason, against a real loopback sshd; a name that does not resolve ends the wait after
`ssh_resolve_grace` instead of `ssh_timeout`."""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paramiko
import pytest

from teuthology_maas import waits
from teuthology_maas.config import MaasConfig
from teuthology_maas.errors import SSHNotReady
from teuthology_maas.node import ssh
from teuthology_maas.node.ssh import SSHTarget, verify_ssh
from teuthology_maas.node.ssh_reasons import reason_for, unresolvable
from teuthology_maas.waits import Reason, WaitReport

SENTINEL = "/var/lib/cloud/instance/boot-finished"


class Recorder:
    def __init__(self) -> None:
        self.reports: list[WaitReport] = []
        self.lock = threading.Lock()

    def __call__(self, report: WaitReport) -> None:
        with self.lock:
            self.reports.append(report)

    def reasons(self) -> list[str]:
        return [r.reason for r in self.reports]


@pytest.fixture
def recorder() -> Any:
    seen = Recorder()
    with waits.watching(seen):
        yield seen


@contextlib.contextmanager
def refusing_port() -> Iterator[int]:
    """A loopback port that refuses connections for as long as the block runs: bound (so no
    other process on the shared loopback can take it) but never listening."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])


def target_for(fleet: Any, **changes: Any) -> SSHTarget:
    """smithi001 of `fleet` as the library reaches it, with `changes` applied."""
    base = SSHTarget(
        name="smithi001.front.example.com",
        hostname="127.0.0.1",
        port=fleet.port_of("smithi001"),
        user=fleet.user,
        key_filenames=(str(fleet.private_key_path),),
        identities_only=True,
        connect_timeout=5,
    )
    return dataclasses.replace(base, **changes)


# ---- the reasons, one by one, against a real sshd ---------------------------------------------


def test_a_name_that_does_not_resolve_fails_after_the_grace_not_the_timeout(
    recorder: Recorder, sshd_fleet: Any, tmp_path: Path
) -> None:
    fleet = sshd_fleet(["smithi001"], tmp_path / "root")
    target = target_for(fleet, name="smithi001.invalid", hostname="smithi001.invalid", port=22)
    started = time.monotonic()
    with pytest.raises(SSHNotReady) as caught:
        ssh.wait_for_ssh(target, timeout=120, sentinel_file=SENTINEL, initial_delay=0.05,
                         max_delay=0.1, resolve_grace=0.5)
    assert time.monotonic() - started < 30  # not the 120 s timeout
    text = str(caught.value)
    assert "the name 'smithi001.invalid' does not resolve" in text
    assert "ssh_resolve_grace is 0.5s" in text and "lab_domain" in text
    reasons = recorder.reasons()
    assert reasons[0] == Reason.CONNECTING
    assert Reason.NAME_UNRESOLVED in reasons
    assert recorder.reports[-1].state == "failed"
    assert all(r.subject == "smithi001.invalid" for r in recorder.reports)


def test_connection_refused_is_reported_as_such(recorder: Recorder, sshd_fleet: Any,
                                                tmp_path: Path) -> None:
    fleet = sshd_fleet(["smithi001"], tmp_path / "root")
    with refusing_port() as port, pytest.raises(SSHNotReady):
        ssh.wait_for_ssh(target_for(fleet, port=port), timeout=1.0, initial_delay=0.05,
                         max_delay=0.1, resolve_grace=0.0)
    waiting = [r for r in recorder.reports if r.state != "waiting" or r.attempt]
    assert {r.reason for r in waiting} == {Reason.REFUSED}
    assert waiting[0].target.startswith(f"{fleet.user}@smithi001.front.example.com (127.0.0.1")


def test_an_unknown_key_is_reported_as_authentication_refused(
    recorder: Recorder, sshd_fleet: Any, tmp_path: Path
) -> None:
    fleet = sshd_fleet(["smithi001"], tmp_path / "root")  # no authorized_keys: auth fails
    with pytest.raises(SSHNotReady):
        ssh.wait_for_ssh(target_for(fleet), timeout=1.5, initial_delay=0.05, max_delay=0.1)
    assert Reason.AUTH_REFUSED in recorder.reasons()


def test_a_missing_sentinel_is_waiting_for_cloud_init_then_done(
    recorder: Recorder, sshd_fleet: Any, tmp_path: Path
) -> None:
    fleet = sshd_fleet(["smithi001"], tmp_path / "root")
    fleet.install_key("smithi001")

    def finish_boot_later() -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if any(r.reason.startswith(Reason.SENTINEL) for r in list(recorder.reports)):
                fleet.mark_boot_finished("smithi001")
                return
            time.sleep(0.02)

    helper = threading.Thread(target=finish_boot_later)
    helper.start()
    ssh.wait_for_ssh(target_for(fleet), timeout=30, sentinel_file=SENTINEL,
                     initial_delay=0.05, max_delay=0.2)
    helper.join()
    sentinel = [r for r in recorder.reports if r.reason.startswith(Reason.SENTINEL)]
    assert sentinel and SENTINEL in sentinel[0].reason
    assert recorder.reports[-1].state == "done"


def test_verify_ssh_takes_the_grace_from_the_config(
    recorder: Recorder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    cfg = MaasConfig.from_mapping(
        {"api_url": "http://127.0.0.1:5240/MAAS/", "api_key": "ck:tk:ts",
         "ssh_timeout": 300, "ssh_resolve_grace": 0, "lab_domain": "invalid"}
    )
    started = time.monotonic()
    with pytest.raises(SSHNotReady, match="does not resolve"):
        verify_ssh("smithi001", cfg)
    assert time.monotonic() - started < 30
    assert recorder.reports[-1].reason == Reason.NAME_UNRESOLVED


# ---- classification of the errors themselves --------------------------------------------------


def test_reason_for_each_kind_of_error() -> None:
    refused = paramiko.ssh_exception.NoValidConnectionsError(
        {("127.0.0.1", 22): ConnectionRefusedError(errno.ECONNREFUSED, "refused")}
    )
    unreachable = paramiko.ssh_exception.NoValidConnectionsError(
        {("10.0.0.1", 22): OSError(errno.EHOSTUNREACH, "No route to host")}
    )
    assert reason_for(refused) == Reason.REFUSED
    assert reason_for(unreachable) == Reason.UNREACHABLE
    assert reason_for(socket.gaierror(socket.EAI_NONAME, "Name or service not known")) == (
        Reason.NAME_UNRESOLVED
    )
    assert reason_for(socket.gaierror(socket.EAI_AGAIN, "Temporary failure")) == (
        Reason.DNS_TEMPORARY
    )
    assert reason_for(TimeoutError("timed out")) == Reason.TIMED_OUT
    assert reason_for(paramiko.AuthenticationException("no")) == Reason.AUTH_REFUSED
    assert reason_for(EOFError()) == Reason.RESET
    assert reason_for(paramiko.SSHException("Error reading SSH protocol banner")) == (
        Reason.HANDSHAKE
    )


def test_only_a_no_such_name_answer_counts_towards_the_grace() -> None:
    assert unresolvable(socket.gaierror(socket.EAI_NONAME, "Name or service not known"))
    # the resolver not answering is DNS trouble, not a wrong name: it gets the full timeout
    assert not unresolvable(socket.gaierror(socket.EAI_AGAIN, "Temporary failure"))
    assert not unresolvable(ConnectionRefusedError())


def test_a_temporary_dns_failure_is_not_cut_short(
    recorder: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    def failing_connect(target: SSHTarget, *, timeout: float) -> Any:
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")

    monkeypatch.setattr(ssh, "_connect", failing_connect)
    target = SSHTarget(name="smithi001.example.com", hostname="smithi001.example.com")
    started = time.monotonic()
    with pytest.raises(SSHNotReady) as caught:
        ssh.wait_for_ssh(target, timeout=0.6, initial_delay=0.05, max_delay=0.05,
                         resolve_grace=0.0)
    assert time.monotonic() - started >= 0.6
    assert "not reachable after" in str(caught.value)
    assert set(recorder.reasons()) == {Reason.CONNECTING, Reason.DNS_TEMPORARY}


def test_a_subscriber_that_raises_does_not_break_the_wait(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(report: WaitReport) -> None:
        raise RuntimeError("display broke")

    monkeypatch.setattr(ssh, "_connect", lambda target, *, timeout: (_ for _ in ()).throw(
        ConnectionRefusedError(errno.ECONNREFUSED, "refused")))
    with waits.watching(broken), pytest.raises(SSHNotReady):
        ssh.wait_for_ssh(SSHTarget(name="n", hostname="n"), timeout=0.2, initial_delay=0.05)
