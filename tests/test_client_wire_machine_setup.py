"""MaasClient's machine-configuration calls and deploy options, pinned with `responses`:
set_storage_layout, the interfaces API (list, create_bond, link_subnet, DELETE) and
deploy's ephemeral_deploy field; op in the query, multipart form fields, ids on the wire."""

from __future__ import annotations

import pytest
import responses
from _maas_wire import API_KEY, ROOT, form, query

from teuthology_maas.errors import MaasBadRequest, MaasError, MaasPermissionDenied
from teuthology_maas.maas.client import MaasClient

MACHINE = {"system_id": "abc123", "hostname": "osd1", "status": 4, "status_name": "Ready"}
BOND = {"id": 7, "name": "bond0", "type": "bond", "parents": ["eno1", "eno2"],
        "links": [{"id": 3, "mode": "link_up"}], "vlan": {"id": 5001},
        "params": {"bond_mode": "802.3ad"}, "tags": ["teuthology-maas"]}  # fmt: skip


@pytest.fixture
def maas():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


@pytest.fixture
def client():
    with MaasClient("http://maas.test:5240/MAAS/", API_KEY, timeout=7) as c:
        yield c


def only_request(maas):
    assert len(maas.calls) == 1, [c.request.url for c in maas.calls]
    return maas.calls[0].request


def test_set_storage_layout_sends_the_layout_and_its_fields(maas, client):
    maas.add("POST", ROOT + "machines/abc123/", json=MACHINE)
    machine = client.set_storage_layout(
        "abc123", "lvm", params={"root_device": 1002, "root_size": "100G", "vg_name": None,
                                 "lv_size": "90%"},
    )  # fmt: skip
    assert machine.system_id == "abc123"
    request = only_request(maas)
    assert query(request.url) == [("op", "set_storage_layout")]
    assert form(request) == [("storage_layout", "lvm"), ("root_device", "1002"),
                             ("root_size", "100G"), ("lv_size", "90%")]  # fmt: skip


def test_set_storage_layout_refusals_keep_maas_s_words(maas, client):
    body = '{"root_size": ["Size is too small. Minimum size is 3221225472."]}'
    maas.add("POST", ROOT + "machines/abc123/", body=body, status=400,
             content_type="application/json; charset=utf-8")  # fmt: skip
    with pytest.raises(MaasBadRequest) as info:
        client.set_storage_layout("abc123", "flat", params={"root_size": "1G"})
    assert "Size is too small. Minimum size is 3221225472." in str(info.value)
    maas.replace("POST", ROOT + "machines/abc123/", body="", status=403)
    with pytest.raises(MaasPermissionDenied):
        client.set_storage_layout("abc123", "flat")


def test_set_storage_layout_needs_a_machine_object_back(maas, client):
    maas.add("POST", ROOT + "machines/abc123/", json=["not", "a", "machine"])
    with pytest.raises(MaasError, match="instead of a machine object"):
        client.set_storage_layout("abc123", "flat")


def test_interfaces_are_read_and_parsed(maas, client):
    maas.add("GET", ROOT + "nodes/abc123/interfaces/", json=[
        {"id": 1, "name": "eno1", "type": "physical", "mac_address": "52:54:00:00:00:01",
         "vlan": {"id": 5001}, "children": ["bond0"], "links": []},
        BOND,
    ])  # fmt: skip
    eno1, bond = client.interfaces("abc123")
    assert (eno1.name, eno1.children, eno1.vlan_id) == ("eno1", ("bond0",), 5001)
    assert (bond.type, bond.parents, bond.links[0].mode) == ("bond", ("eno1", "eno2"), "link_up")
    request = only_request(maas)
    assert request.method == "GET" and query(request.url) == []


def test_interfaces_must_be_a_list(maas, client):
    maas.add("GET", ROOT + "nodes/abc123/interfaces/", json={"id": 1})
    with pytest.raises(MaasError, match="not a list"):
        client.interfaces("abc123")


def test_create_bond_sends_repeated_parents_and_prefixed_options(maas, client):
    maas.add("POST", ROOT + "nodes/abc123/interfaces/", json=BOND)
    bond = client.create_bond(
        "abc123", name="bond0", parents=[1, 2], mode="802.3ad",
        options={"lacp_rate": "fast", "miimon": 100, "xmit_hash_policy": "layer3+4"},
        mtu=9000, tags=["teuthology-maas", "teuthology-maas-was:eno1=auto:1"],
    )  # fmt: skip
    assert (bond.id, bond.name) == (7, "bond0")
    request = only_request(maas)
    assert query(request.url) == [("op", "create_bond")]
    assert form(request) == [
        ("name", "bond0"), ("parents", "1"), ("parents", "2"), ("bond_mode", "802.3ad"),
        ("bond_lacp_rate", "fast"), ("bond_miimon", "100"),
        ("bond_xmit_hash_policy", "layer3+4"), ("mtu", "9000"),
        ("tags", "teuthology-maas,teuthology-maas-was:eno1=auto:1"),
    ]  # fmt: skip


def test_link_subnet_and_delete_address_the_interface_by_id(maas, client):
    maas.add("POST", ROOT + "nodes/abc123/interfaces/7/", json=BOND)
    maas.add("DELETE", ROOT + "nodes/abc123/interfaces/7/", status=204)
    client.link_subnet("abc123", 7, mode="auto", subnet=1)
    client.link_subnet("abc123", 7, mode="link_up", force=True)
    client.delete_interface("abc123", 7)
    auto, up, delete = (c.request for c in maas.calls)
    assert query(auto.url) == [("op", "link_subnet")]
    assert form(auto) == [("mode", "auto"), ("subnet", "1")]
    assert form(up) == [("mode", "link_up"), ("force", "true")]
    assert (delete.method, query(delete.url), delete.body) == ("DELETE", [], None)


def test_a_malformed_interface_answer_is_an_error_not_a_crash(maas, client):
    maas.add("POST", ROOT + "nodes/abc123/interfaces/", json={"name": "bond0"})
    with pytest.raises(MaasError, match="no usable interface object"):
        client.create_bond("abc123", name="bond0", parents=[1], mode="active-backup")


@pytest.mark.parametrize(("value", "sent"), [(True, "true"), (False, "false"), (None, None)])
def test_deploy_sends_ephemeral_deploy_only_when_asked(maas, client, value, sent):
    maas.add("POST", ROOT + "machines/abc123/", json={**MACHINE, "status": 9})
    client.deploy("abc123", distro_series="ubuntu/jammy", hwe_kernel="hwe-22.04",
                  ephemeral_deploy=value)  # fmt: skip
    fields = dict(form(only_request(maas)))
    assert fields.get("ephemeral_deploy") == sent
    assert fields["hwe_kernel"] == "hwe-22.04"
