"""create() end to end through real loopback sshd: the key injected through user_data is the key
that lets the provisioner in, or create() fails naming SSH and gives the node back."""

from __future__ import annotations

import pytest

from teuthology_maas.errors import DeploymentFailed, SSHNotReady
from teuthology_maas.testing.sshd import KeyPair


def authorized_keys(lab, hostname="smithi001"):
    return (lab.ssh.machine_dir(hostname) / "authorized_keys").read_text()


def test_create_succeeds_when_the_injected_key_is_the_one_we_log_in_with(lab_factory):
    lab = lab_factory()
    assert not (lab.ssh.machine_dir("smithi001") / "authorized_keys").exists()
    lab.provisioner("smithi001.front.sepia.ceph.com").create()
    # The simulator installed exactly what the rendered cloud-config carried.
    assert lab.ssh.public_key.split()[1] in authorized_keys(lab)
    state = lab.state("smithi001")
    assert (state["status_name"], state["owner"]) == ("Deployed", "teuthology")


def test_create_fails_naming_ssh_and_releases_when_the_injected_key_is_not_ours(
    lab_factory, tmp_path
):
    stranger = KeyPair.generate(tmp_path / "stranger")
    lab = lab_factory()
    config = lab.reconfigured(ssh_keys=[stranger.public_key], ssh_timeout=2.0)
    with pytest.raises(DeploymentFailed) as info:
        lab.provisioner(config=config).create()
    text = str(info.value)
    assert "SSH" in text and "smithi001" in text
    assert "Clean-up: released (Ready)" in text
    assert isinstance(info.value.__cause__, SSHNotReady)
    state = lab.state("smithi001")
    assert (state["status_name"], state["owner"], state["locked"]) == ("Ready", None, False)


def test_create_fails_when_cloud_init_never_finishes(lab_factory):
    # The sentinel file is how we know cloud-init is done; a node without it is not ready.
    lab = lab_factory(sentinel_file="/var/lib/cloud/instance/never-there", ssh_timeout=1.0)
    with pytest.raises(DeploymentFailed, match="never-there"):
        lab.provisioner().create()
    assert lab.state("smithi001")["status_name"] == "Ready"
