"""`maas: regions:` over real HTTP: two separate MAAS installations (two simulators, each with
its own machines and API key); a node is provisioned by the installation of its type, and one
installation down or refusing its key fails only that installation's types."""

from __future__ import annotations

import pytest

from teuthology_maas.errors import MaasAuthError, MachineNotFound
from teuthology_maas.node.ownership import TOKEN_KEY
from teuthology_maas.node.provisioner import MaasProvisioner
from teuthology_maas.node.region import node_region


def _hostnames_asked(lab) -> set[str]:
    """Every hostname filter the installation was asked about."""
    return {h for record in lab.sim.requests() for h in record.param_list("hostname")}


def test_each_node_is_deployed_by_its_own_installation(two_installations):
    two = two_installations
    config = two.config()
    assert config.machine_types == ("smithi", "mira")
    smithi = MaasProvisioner("smithi001", config=config)
    mira = MaasProvisioner("mira001", config=config)
    assert (smithi.config.region, mira.config.region) == ("sepia", "octo")
    assert smithi.endpoint is not mira.endpoint
    smithi.create()
    mira.create()
    for lab, node, provisioner in ((two.sepia, "smithi001", smithi), (two.octo, "mira001", mira)):
        machine = lab.state(node)
        assert (machine["status_name"], machine["locked"]) == ("Deployed", True)
        assert machine["owner_data"][TOKEN_KEY] == provisioner.deployment.token
    # each installation was asked only about its own machines
    assert _hostnames_asked(two.sepia) == {"smithi001"}
    assert _hostnames_asked(two.octo) == {"mira001"}
    assert len(two.sepia.sim.requests(op="deploy")) == 1
    assert len(two.octo.sim.requests(op="deploy")) == 1
    mira.release()
    assert two.octo.state("mira001")["status_name"] == "Ready"
    assert two.sepia.state("smithi001")["status_name"] == "Deployed"


def test_a_wrong_key_for_one_installation_fails_only_its_types(two_installations):
    two = two_installations
    two.keys["octo"] = two.sepia.handle.api_key  # a key of the other installation
    config = two.config()
    MaasProvisioner("smithi001", config=config).create()
    assert two.sepia.state("smithi001")["status_name"] == "Deployed"
    with pytest.raises(MaasAuthError) as caught:
        MaasProvisioner("mira001", config=config).create()
    assert two.octo.handle.url in str(caught.value)
    assert "region 'octo'" in str(caught.value)
    assert config.for_type("mira").api_key.token_secret not in str(caught.value)
    assert two.octo.state("mira001")["status_name"] == "Ready"


def test_a_node_named_unlike_its_type_is_found_by_asking_each_installation(two_installations):
    two = two_installations
    config = two.config()
    assert config.for_node("qa-box") is None  # its name does not say
    assert node_region(config, "qa-box").region == "octo"
    provisioner = MaasProvisioner("qa-box", config=config)
    assert provisioner.config.region == "octo"
    provisioner.create()
    assert two.octo.state("qa-box")["status_name"] == "Deployed"
    with pytest.raises(MachineNotFound) as caught:
        node_region(config, "nosuch")
    assert "'sepia'" in str(caught.value) and "'octo'" in str(caught.value)


def test_an_installation_that_cannot_be_asked_matters_only_when_no_other_has_the_node(
    two_installations,
):
    two = two_installations
    two.keys["sepia"] = two.octo.handle.api_key
    config = two.config()
    assert node_region(config, "qa-box").region == "octo"  # octo answered: sepia's key moot
    with pytest.raises(MaasAuthError) as caught:
        node_region(config, "nosuch")
    assert "region 'sepia'" in str(caught.value), caught.value
