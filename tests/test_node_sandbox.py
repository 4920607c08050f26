"""Sandboxed loopback nodes (teuthology_maas.testing.node_command): what a teuthology job does
to a node as root lands on that node's own disk, never on the host or on another node, and a
new deployment starts from a fresh disk."""

from __future__ import annotations

import subprocess

import pytest

pytestmark = [pytest.mark.sshd]

JOB_LIKE = (
    # what teuthology's internal tasks do on a node (sudo, base, coredump)
    "sudo sed -i.orig.teuthology -e 's/^x/y/' /etc/sudoers && test -f /etc/sudoers.orig.teuthology"
    " && mkdir -p -m0755 -- /home/ubuntu/cephtest"
    " && echo kernel.core_pattern=/x | sudo tee -a /etc/sysctl.conf >/dev/null"
    " && sudo TESTDIR=/home/ubuntu/cephtest bash -c 'echo $TESTDIR'"
)


@pytest.fixture
def nodes(tmp_path, ssh_keypair, host_unchanged):
    from teuthology_maas.testing.sshd import SSHDFleet

    fleet = SSHDFleet.started(["node001", "node002"], tmp_path / "ssh-root",
                              workdir=tmp_path / "sshd", keypair=ssh_keypair, sandbox=True)
    for hostname, version in (("node001", "22.04"), ("node002", "24.04")):
        fleet.install_key(hostname)
        fleet.write_os_release(hostname, {"ID": "ubuntu", "VERSION_ID": version})
        fleet.mark_boot_finished(hostname)
    yield fleet
    fleet.stop()


def ssh(fleet, hostname: str, command: str) -> str:
    done = subprocess.run(["ssh", "-F", str(fleet.ssh_config_path), hostname, command],
                          capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, done
    return done.stdout


def test_a_jobs_commands_change_only_that_nodes_disk(nodes):
    assert ssh(nodes, "node001", JOB_LIKE) == "/home/ubuntu/cephtest\n"
    assert ssh(nodes, "node001", "ls /home/ubuntu; tail -1 /etc/sysctl.conf") == (
        "cephtest\nkernel.core_pattern=/x\n")
    # the other node has a test directory of its own (none yet) and the host's files
    assert ssh(nodes, "node002", "ls -A /home; ls /etc/sudoers*") == "/etc/sudoers\n"
    disk = nodes.machine_dir("node001") / "disk"
    assert (disk / "home" / "ubuntu" / "cephtest").is_dir()
    assert (disk / "etc" / "sudoers.orig.teuthology").exists()


def test_each_node_shows_its_own_os_and_the_container_marker(nodes):
    for hostname, version in (("node001", "22.04"), ("node002", "24.04")):
        shown = ssh(nodes, hostname, "cat /etc/os-release; test -f /run/.containerenv && echo c")
        assert shown == f'ID="ubuntu"\nVERSION_ID="{version}"\nc\n'


def test_a_new_deployment_starts_from_a_fresh_disk(nodes):
    ssh(nodes, "node001", "mkdir -p /home/ubuntu/cephtest")
    assert ssh(nodes, "node001", "ls /home/ubuntu") == "cephtest\n"
    (nodes.machine_dir("node001") / "boot-finished").write_text("redeployed\n")
    assert ssh(nodes, "node001", "ls -A /home") == ""
