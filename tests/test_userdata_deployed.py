"""The shipped templates, deployed through the simulator onto sshd-backed machines: the key they
inject is the key that logs in, for Ubuntu (default user) and for the images where the template
has to create the login user itself. Also ensure_available against the simulator's images."""

from __future__ import annotations

import time

import pytest

from teuthology_maas.errors import ImageNotAvailable, SSHNotReady
from teuthology_maas.maas.client import MaasClient
from teuthology_maas.models import NodeStatus
from teuthology_maas.node import images, ssh, userdata
from teuthology_maas.testing.sshd import KeyPair

SENTINEL = "/var/lib/cloud/instance/boot-finished"
REQUESTS = {
    "smithi001": ("ubuntu", "22.04"),
    "smithi002": ("centos", "9.stream"),
    "smithi003": ("rocky", "9"),
    "smithi004": ("rhel", "9"),
}


@pytest.fixture
def deployed_lab(maas_sim_factory, sshd_fleet, tmp_path):
    ssh_root = tmp_path / "ssh-root"
    hostnames = [*REQUESTS, "smithi005"]
    fleet = sshd_fleet(hostnames, ssh_root)
    inventory = {
        "machines": [
            {"hostname": name, "architecture": "amd64/generic", "ssh_port": fleet.port_of(name)}
            for name in hostnames
        ]
    }
    handle = maas_sim_factory(inventory, ssh_root=ssh_root)
    config = handle.config(
        ssh_config=str(fleet.ssh_config_path),
        ssh_keys=[fleet.public_key],
        lab_domain="front.sepia.ceph.com",
    )
    client = MaasClient.from_config(config)
    yield handle, fleet, config, client
    client.close()


def deploy(client: MaasClient, hostname: str, distro_series: str, user_data: str) -> None:
    (machine,) = client.list_machines(hostname=[hostname])
    client.allocate(system_id=machine.system_id)
    client.deploy(machine.system_id, distro_series=distro_series, user_data=user_data)


def wait_deployed(client: MaasClient, hostname: str) -> None:
    deadline = time.monotonic() + 30  # a bound, not an assertion: deploys take < 1 s here
    while time.monotonic() < deadline:
        (machine,) = client.list_machines(hostname=[hostname])
        if machine.status is NodeStatus.DEPLOYED:
            return
        assert machine.status is NodeStatus.DEPLOYING, machine.status_name
        time.sleep(0.05)
    raise AssertionError(f"{hostname} still {machine.status_name}")


def test_shipped_templates_inject_a_working_key(deployed_lab) -> None:
    _handle, _fleet, config, client = deployed_lab
    for hostname, (os_type, os_version) in REQUESTS.items():
        spec = images.resolve(os_type, os_version, config.image_map)
        (machine,) = client.list_machines(hostname=[hostname])
        images.ensure_available(client, spec, machine)
        text = userdata.render_user_data(
            config,
            hostname=hostname,
            fqdn=f"{hostname}.front.sepia.ceph.com",
            os_type=os_type,
            os_version=os_version,
        )
        deploy(client, hostname, spec.distro_series, text)
    for hostname, (os_type, os_version) in REQUESTS.items():
        wait_deployed(client, hostname)
        target = ssh.SSHTarget.resolve(hostname, config)
        assert target.name == f"{hostname}.front.sepia.ceph.com"
        ssh.wait_for_ssh(target, timeout=20, sentinel_file=SENTINEL, initial_delay=0.05)
        os_release = ssh.read_os_release(target)
        assert images.os_matches(os_release, os_type, os_version), (hostname, os_release)


def test_a_template_with_the_wrong_key_never_lets_us_in(deployed_lab, tmp_path) -> None:
    _handle, _fleet, config, client = deployed_lab
    stranger = KeyPair.generate(tmp_path / "stranger")
    wrong = config.__class__.from_mapping(
        {
            "api_url": config.api_url,
            "api_key": "a:b:c",
            "ssh_keys": [stranger.public_key],
        }
    )
    text = userdata.render_user_data(
        wrong, hostname="smithi005", fqdn="smithi005.lab", os_type="rocky", os_version="9"
    )
    assert stranger.public_key in text
    deploy(client, "smithi005", "rocky/9", text)
    wait_deployed(client, "smithi005")
    target = ssh.SSHTarget.resolve("smithi005", config)
    with pytest.raises(SSHNotReady) as caught:
        ssh.wait_for_ssh(target, timeout=0.5, initial_delay=0.05)
    assert "authentication" in str(caught.value)


def test_ensure_available_against_the_simulator_images(deployed_lab) -> None:
    _handle, _fleet, _config, client = deployed_lab
    (machine,) = client.list_machines(hostname=["smithi001"])
    with pytest.raises(ImageNotAvailable) as caught:
        images.ensure_available(client, images.resolve("ubuntu", "18.04"), machine)
    # The simulator's default images for amd64/generic, as CONTRACTS.md lists them.
    assert caught.value.available == [
        "centos/centos9-stream",
        "rhel/9",
        "rocky/9",
        "ubuntu/focal",
        "ubuntu/jammy",
        "ubuntu/noble",
    ]
