"""Name handling and the hostname lookup (a scripted client stands in for MAAS's answers)."""

from __future__ import annotations

import pytest

from teuthology_maas.config import MaasConfig
from teuthology_maas.errors import MachineNotFound
from teuthology_maas.models import Machine
from teuthology_maas.node.provisioner import MaasProvisioner, split_name

CONFIG = MaasConfig.from_mapping(
    {
        "api_url": "http://127.0.0.1:1/MAAS/",
        "api_key": "ck:tk:ts",
        "lookup_retries": 2,
        "poll_min_interval": 0.01,
    },
    top={"lab_domain": "front.sepia.ceph.com"},
)


def machine(system_id: str) -> Machine:
    return Machine.from_json({"system_id": system_id, "hostname": "smithi001", "status": 4})


class ScriptedClient:
    """Answers list_machines from a script and records the filters asked for."""

    username = "teuthology"
    base_url = CONFIG.api_url
    api_key = CONFIG.api_key

    def __init__(self, *answers: list[Machine]) -> None:
        self.answers = list(answers)
        self.asked: list[dict] = []

    def list_machines(self, **filters):
        self.asked.append(filters)
        return self.answers.pop(0) if self.answers else []


@pytest.mark.parametrize(
    ("name", "short", "fqdn"),
    [
        ("smithi001", "smithi001", None),
        ("smithi001.front.sepia.ceph.com", "smithi001", "smithi001.front.sepia.ceph.com"),
        ("ubuntu@smithi001.front.sepia.ceph.com", "smithi001", "smithi001.front.sepia.ceph.com"),
        (" ubuntu@smithi001.example. ", "smithi001", "smithi001.example"),
    ],
)
def test_split_name(name, short, fqdn):
    assert split_name(name) == (short, fqdn)


def test_empty_name_is_rejected():
    with pytest.raises(MachineNotFound):
        split_name("ubuntu@")


def test_short_names_are_qualified_with_lab_domain_for_ssh():
    p = MaasProvisioner("ubuntu@smithi001", config=CONFIG, client=ScriptedClient())
    assert (p.shortname, p.fqdn) == ("smithi001", "smithi001.front.sepia.ceph.com")


def test_lookup_uses_the_short_hostname_and_retries_a_spurious_empty_answer():
    client = ScriptedClient([], [], [machine("abc123")])
    p = MaasProvisioner("ubuntu@smithi001.front.sepia.ceph.com", config=CONFIG, client=client)
    assert p.machine().system_id == "abc123"
    assert client.asked == [{"hostname": ["smithi001"]}] * 3


def test_lookup_gives_up_after_lookup_retries_naming_the_host():
    client = ScriptedClient()
    with pytest.raises(MachineNotFound, match=r"'smithi001'.*after 3 lookups"):
        MaasProvisioner("smithi001", config=CONFIG, client=client).machine()
    assert len(client.asked) == 3


def test_two_machines_with_the_name_is_an_error_listing_both():
    client = ScriptedClient([machine("abc123"), machine("def456")])
    with pytest.raises(MachineNotFound, match=r"abc123.*def456.*exactly one"):
        MaasProvisioner("smithi001", config=CONFIG, client=client).machine()
    assert len(client.asked) == 1
