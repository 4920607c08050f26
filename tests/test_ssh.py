"""ssh against real loopback sshd servers (teuthology_maas.testing.sshd), plus the pure parts:
ssh_config resolution, os-release parsing and OS matching."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest

from teuthology_maas.config import MaasConfig
from teuthology_maas.errors import ConfigError, SSHNotReady
from teuthology_maas.node import ssh
from teuthology_maas.node.images import os_matches
from teuthology_maas.node.ssh import SSHTarget, parse_os_release
from teuthology_maas.testing.sshd import KeyPair, free_port

SENTINEL = "/var/lib/cloud/instance/boot-finished"


def make_config(tmp_path: Path, **maas) -> MaasConfig:
    section = {"api_url": "http://127.0.0.1:5240/MAAS/", "api_key": "ck:tk:ts", **maas}
    return MaasConfig.from_mapping(section, base_dir=tmp_path)


@pytest.fixture
def fleet(sshd_fleet, tmp_path):
    fleet = sshd_fleet(["smithi001", "smithi002"], tmp_path / "ssh-root")
    fleet.write_os_release("smithi001", {"ID": "ubuntu", "VERSION_ID": "22.04", "NAME": "Ubuntu"})
    fleet.write_os_release("smithi002", {"ID": "rocky", "VERSION_ID": "9.7", "NAME": "Rocky Linux"})
    return fleet


@pytest.fixture
def cfg(fleet, tmp_path) -> MaasConfig:
    return make_config(tmp_path, ssh_config=str(fleet.ssh_config_path))


def connect_hook(monkeypatch, before_attempt):
    """Run before_attempt(n) ahead of the n-th connection attempt (1-based); returns the count."""
    real_connect = ssh._connect
    attempts = []

    def counting_connect(target, *, timeout):
        attempts.append(timeout)
        before_attempt(len(attempts))
        return real_connect(target, timeout=timeout)

    monkeypatch.setattr(ssh, "_connect", counting_connect)
    return attempts


# ---- against a real sshd -------------------------------------------------------------------


def test_login_with_the_installed_key_works(fleet, cfg) -> None:
    fleet.install_key("smithi001")
    target = SSHTarget.resolve("smithi001.front.sepia.ceph.com", cfg)
    ssh.wait_for_ssh(target, timeout=10)
    result = ssh.run(target, "echo hello; echo oops >&2; exit 3")
    assert (result.exit_status, result.stdout, result.stderr) == (3, "hello\n", "oops\n")
    assert not result.ok


def test_os_release_is_each_machines_own_through_the_wrapper(fleet, cfg) -> None:
    fleet.install_key("smithi001")
    fleet.install_key("smithi002")
    first = ssh.read_os_release(SSHTarget.resolve("smithi001", cfg))
    second = ssh.read_os_release(SSHTarget.resolve("smithi002.front.sepia.ceph.com", cfg))
    assert first == {"ID": "ubuntu", "VERSION_ID": "22.04", "NAME": "Ubuntu"}
    assert second["ID"] == "rocky" and second["VERSION_ID"] == "9.7"
    assert os_matches(first, "ubuntu", "jammy")
    assert os_matches(second, "rocky", "9")
    assert not os_matches(second, "centos", "9.stream")


def test_wrong_key_gives_ssh_not_ready_at_the_deadline(fleet, cfg, tmp_path) -> None:
    stranger = KeyPair.generate(tmp_path / "stranger")
    fleet.install_key("smithi001", stranger.public_key)
    target = SSHTarget.resolve("smithi001", cfg)
    with pytest.raises(SSHNotReady) as caught:
        ssh.wait_for_ssh(target, timeout=1.0, initial_delay=0.1, max_delay=0.2)
    message = str(caught.value)
    assert f"{fleet.user}@smithi001" in message
    assert f"127.0.0.1 port {fleet.port_of('smithi001')}" in message
    assert "authentication" in message
    assert str(fleet.private_key_path) in message
    assert caught.value.machine == "smithi001"


def test_authentication_failures_are_retried_until_the_key_arrives(
    fleet, cfg, monkeypatch, caplog
) -> None:
    def key_arrives(attempt: int) -> None:
        if attempt == 3:
            fleet.install_key("smithi001")

    attempts = connect_hook(monkeypatch, key_arrives)
    caplog.set_level(logging.INFO, logger="teuthology_maas.node.ssh")
    ssh.wait_for_ssh(SSHTarget.resolve("smithi001", cfg), timeout=30, initial_delay=0.05)
    assert len(attempts) == 3
    assert "after 3 attempt(s)" in caplog.text


def test_refused_connections_are_retried_then_reported(tmp_path) -> None:
    port = free_port()
    target = SSHTarget(name="ghost", hostname="127.0.0.1", port=port, user="ubuntu")
    with pytest.raises(SSHNotReady) as caught:
        ssh.wait_for_ssh(target, timeout=0.5, initial_delay=0.05, max_delay=0.1)
    message = str(caught.value)
    assert f"ubuntu@ghost (127.0.0.1 port {port})" in message
    assert "refused" in message


def test_sentinel_file_is_waited_for(fleet, cfg, monkeypatch) -> None:
    fleet.install_key("smithi002")

    def cloud_init_finishes(attempt: int) -> None:
        if attempt == 2:
            fleet.mark_boot_finished("smithi002")

    attempts = connect_hook(monkeypatch, cloud_init_finishes)
    target = SSHTarget.resolve("smithi002", cfg)
    ssh.wait_for_ssh(target, timeout=30, sentinel_file=SENTINEL, initial_delay=0.05)
    assert len(attempts) == 2


def test_missing_sentinel_is_reported_by_name(fleet, cfg) -> None:
    fleet.install_key("smithi002")
    target = SSHTarget.resolve("smithi002", cfg)
    # Long enough for a login to finish on a loaded machine: the sentinel is then named as
    # missing, not the login as timed out.
    with pytest.raises(SSHNotReady) as caught:
        ssh.wait_for_file(target, SENTINEL, timeout=10.0, initial_delay=0.05)
    assert f"{SENTINEL} not present yet" in str(caught.value)


def test_os_release_gone_is_an_error(fleet, cfg) -> None:
    fleet.install_key("smithi001")
    (fleet.machine_dir("smithi001") / "os-release").unlink()
    with pytest.raises(SSHNotReady) as caught:
        ssh.read_os_release(SSHTarget.resolve("smithi001", cfg))
    assert "/etc/os-release" in str(caught.value)


def test_run_without_access_raises_ssh_not_ready(fleet, cfg) -> None:
    target = SSHTarget.resolve("smithi002", cfg)  # no authorized_keys yet
    with pytest.raises(SSHNotReady) as caught:
        ssh.run(target, "true", timeout=5)
    assert "could not run 'true'" in str(caught.value)


def test_openssh_client_uses_the_fleet_ssh_config(fleet) -> None:
    # teuthology itself shells out to ssh/ssh-keyscan: the written config must work for them.
    fleet.install_key("smithi002")
    result = subprocess.run(
        [
            shutil.which("ssh") or "ssh",
            "-F",
            str(fleet.ssh_config_path),
            "-o",
            "BatchMode=yes",
            "smithi002.front.sepia.ceph.com",
            "cat /etc/os-release",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert parse_os_release(result.stdout)["ID"] == "rocky"


def test_stopped_fleet_refuses_connections(sshd_fleet, tmp_path) -> None:
    fleet = sshd_fleet(["lonely001"], tmp_path / "root")
    server = fleet.servers["lonely001"]
    assert server.running
    pid = server.pid
    assert pid is not None
    fleet.stop()
    fleet.stop()  # idempotent
    assert not server.running
    # sshd and every login session it spawned are gone (its process group is empty). Checked
    # by pid, not by connecting: a freed loopback port may already serve another process.
    with pytest.raises(ProcessLookupError):
        os.killpg(pid, 0)


def test_port_of_unknown_host_names_the_known_ones(fleet) -> None:
    with pytest.raises(KeyError) as caught:
        fleet.port_of("smithi999")
    assert "smithi001" in str(caught.value)


# ---- SSHTarget.resolve ----------------------------------------------------------------------


def test_resolve_maps_short_and_long_names_through_ssh_config(fleet, cfg) -> None:
    short = SSHTarget.resolve("smithi001", cfg)
    long = SSHTarget.resolve("smithi001.front.sepia.ceph.com", cfg)
    for target in (short, long):
        assert (target.hostname, target.port, target.user) == (
            "127.0.0.1",
            fleet.port_of("smithi001"),
            fleet.user,
        )
        assert target.key_filenames == (str(fleet.private_key_path),)
        assert target.identities_only
    assert long.name == "smithi001.front.sepia.ceph.com"


def test_resolve_qualifies_a_short_name_with_the_lab_domain(fleet, tmp_path) -> None:
    cfg = make_config(tmp_path, ssh_config=str(fleet.ssh_config_path), lab_domain="front.lab")
    target = SSHTarget.resolve("smithi002", cfg)
    assert target.name == "smithi002.front.lab"
    assert target.port == fleet.port_of("smithi002")
    assert SSHTarget.resolve("smithi002.other.lab", cfg).name == "smithi002.other.lab"


def test_resolve_without_ssh_config_uses_the_maas_settings(tmp_path) -> None:
    key = KeyPair.generate(tmp_path / "keys")
    cfg = make_config(tmp_path, ssh_user="teuth", ssh_private_key=str(key.private_key_path))
    target = SSHTarget.resolve("node1.lab", cfg)
    assert (target.name, target.hostname, target.port, target.user) == (
        "node1.lab",
        "node1.lab",
        22,
        "teuth",
    )
    assert target.key_filenames == (str(key.private_key_path),)
    assert not target.identities_only


def test_resolve_reads_every_supported_ssh_config_option(tmp_path) -> None:
    key = KeyPair.generate(tmp_path / "keys")
    extra = KeyPair.generate(tmp_path / "keys", "extra")
    config = tmp_path / "ssh_config"
    config.write_text(
        "Host node*\n"
        "    HostName 127.0.0.5\n"
        "    Port 2222\n"
        f"    IdentityFile {key.private_key_path}\n"
        f"    IdentityFile {tmp_path / 'missing_key'}\n"
        "    ProxyCommand nc %h %p\n"
        "    ConnectTimeout 7\n"
    )
    cfg = make_config(tmp_path, ssh_config=str(config), ssh_private_key=str(extra.private_key_path))
    target = SSHTarget.resolve("node7", cfg)
    assert (target.hostname, target.port, target.user) == ("127.0.0.5", 2222, "ubuntu")
    # The maas key first, then the ssh_config ones that exist.
    assert target.key_filenames == (str(extra.private_key_path), str(key.private_key_path))
    assert target.proxy_command == "nc 127.0.0.5 2222"
    assert target.connect_timeout == 7.0
    other = SSHTarget.resolve("elsewhere", cfg)
    assert (other.hostname, other.port) == ("elsewhere", 22)


def test_resolve_with_a_broken_ssh_config_is_a_config_error(tmp_path) -> None:
    config = tmp_path / "ssh_config"
    config.write_text("Host x\n    Port notanumber\n")
    stand_in = SimpleNamespace(ssh_user="ubuntu", ssh_private_key=None, ssh_config=str(config))
    with pytest.raises(ConfigError) as caught:
        SSHTarget.resolve("x", stand_in)
    assert caught.value.key == "ssh_config"
    gone = SimpleNamespace(ssh_user="ubuntu", ssh_private_key=None, ssh_config=str(tmp_path / "no"))
    with pytest.raises(ConfigError):
        SSHTarget.resolve("x", gone)


# ---- os-release parsing and matching --------------------------------------------------------


def test_parse_os_release_handles_quotes_escapes_and_comments() -> None:
    text = (
        "# comment\n"
        'NAME="Rocky Linux"\n'
        "ID=rocky\n"
        "ID_LIKE='rhel centos fedora'\n"
        'VERSION_ID="9.4"\n'
        'PRETTY_NAME="Say \\"hi\\""\n'
        "\n"
        "garbage line\n"
        'BROKEN="unterminated\n'
    )
    assert parse_os_release(text) == {
        "NAME": "Rocky Linux",
        "ID": "rocky",
        "ID_LIKE": "rhel centos fedora",
        "VERSION_ID": "9.4",
        "PRETTY_NAME": 'Say "hi"',
        "BROKEN": "unterminated",
    }


UBUNTU_2204 = {"ID": "ubuntu", "VERSION_ID": "22.04", "VERSION_CODENAME": "jammy"}
CENTOS_9 = {"ID": "centos", "VERSION_ID": "9"}
ROCKY_97 = {"ID": "rocky", "VERSION_ID": "9.7", "ID_LIKE": "rhel centos fedora"}
RHEL_94 = {"ID": "rhel", "VERSION_ID": "9.4"}


@pytest.mark.parametrize(
    ("os_release", "os_type", "os_version", "expected"),
    [
        (UBUNTU_2204, "ubuntu", "22.04", True),
        (UBUNTU_2204, "Ubuntu", "jammy", True),
        (UBUNTU_2204, "ubuntu", "22", True),
        (UBUNTU_2204, "ubuntu", "20.04", False),
        (UBUNTU_2204, "ubuntu", "noble", False),
        (UBUNTU_2204, "centos", "22.04", False),
        (CENTOS_9, "centos", "9.stream", True),
        (CENTOS_9, "centos", "9", True),
        (CENTOS_9, "centos", "8.stream", False),
        (ROCKY_97, "rocky", "9", True),
        (ROCKY_97, "rocky", "9.7", True),
        (ROCKY_97, "rocky", "9.4", False),
        (ROCKY_97, "rhel", "9", False),  # ID_LIKE does not make rocky a rhel
        (RHEL_94, "rhel", "9", True),
        (RHEL_94, "rhel", "9.4", True),
        (RHEL_94, "rhel", "8", False),
        ({"ID": "opensuse-leap", "VERSION_ID": "15.5"}, "opensuse", "15", True),
        ({"VERSION_ID": "9"}, "centos", "9", False),
        (CENTOS_9, "centos", "9.4", False),
    ],
)
def test_os_matches(os_release, os_type, os_version, expected) -> None:
    assert os_matches(os_release, os_type, os_version) is expected
