"""The simulator's machine configuration before a deployment, pinned to MAAS 3.7.3's code:
`set_storage_layout` (admin, Ready only, the layout forms' checks) and the interfaces API
(create_bond, link_subnet, DELETE), with what the machine's JSON shows afterwards."""

from __future__ import annotations

import pytest

from teuthology_maas.simulator import ManualClock

DISKS = [
    {"name": "sda", "size_gb": 500},
    {"name": "sdb", "size_gb": 4000},
    {"name": "nvme0n1", "size_gb": 800, "tags": ["ssd"]},
]
MACHINES = [
    {
        "hostname": "osd1",
        "disks": DISKS,
        "interfaces": ["eno1", "eno2", {"name": "eno3", "vid": 7}],
    },
    {"hostname": "plain"},
]


class Lab:
    def __init__(self, handle):
        self.sim = handle.sim
        self.http = {u: handle.http(u) for u in ("teuthology", "admin")}

    def op(self, host, name, fields=(), user="admin"):
        return self.http[user].post(f"machines/{self.sim.system_id(host)}/", name, list(fields))

    def nics(self, host="osd1", user="admin"):
        answer = self.http[user].get(f"nodes/{self.sim.system_id(host)}/interfaces/")
        assert answer.status_code == 200, answer.text
        return {nic["name"]: nic for nic in answer.json()}

    def nic_op(self, name, fields=(), nic=None, user="admin", host="osd1"):
        path = f"nodes/{self.sim.system_id(host)}/interfaces/"
        if nic is not None:
            path += f"{self.nics(host)[nic]['id']}/"
        return self.http[user].post(path, name, list(fields))

    def disks(self, host="osd1"):
        return {d["name"]: d for d in self.sim.machine(host)["physicalblockdevice_set"]}


@pytest.fixture
def lab(maas_sim_factory):
    return Lab(maas_sim_factory({"machines": MACHINES}, clock=ManualClock()))


def form_error(answer):
    assert answer.status_code == 400, answer.text
    assert answer.headers["Content-Type"] == "application/json; charset=utf-8"
    return answer.json()


# -- storage -----------------------------------------------------------------------------------


def test_commissioning_leaves_a_flat_boot_disk_and_raw_data_disks(lab):
    disks = lab.disks()
    assert [d["size"] for d in disks.values()] == [500 * 10**9, 4000 * 10**9, 800 * 10**9]
    mounts = [p["filesystem"]["mount_point"] for p in disks["sda"]["partitions"]]
    assert mounts == ["/boot/efi", "/"]
    assert (disks["sdb"]["partitions"], disks["sdb"]["used_for"]) == ([], "Unused")
    machine = lab.sim.machine("osd1")
    assert machine["storage"] == 5_300_000.0 and machine["boot_disk"]["name"] == "sda"


def test_set_storage_layout_is_for_admins_on_ready_machines(lab):
    assert (lab.op("osd1", "set_storage_layout", [("storage_layout", "flat")],
                   user="teuthology").status_code, ) == (403,)  # fmt: skip
    lab.op("osd1", "deploy")
    answer = lab.op("osd1", "set_storage_layout", [("storage_layout", "flat")])
    assert (answer.status_code, answer.text) == (
        409, "Cannot change the storage layout on a machine that is not Ready."
    )  # fmt: skip


def test_the_layout_is_required_and_must_be_one_of_maas_s(lab):
    assert form_error(lab.op("osd1", "set_storage_layout")) == {
        "storage_layout": ["This field is required."]
    }
    assert form_error(lab.op("osd1", "set_storage_layout", [("storage_layout", "zfs")])) == {
        "storage_layout": ["'zfs' is not a valid storage_layout.  It should be one of: 'bcache', "
                           "'blank', 'custom', 'flat', 'lvm', 'vmfs6', 'vmfs7'."]
    }  # fmt: skip


def test_flat_on_a_chosen_root_device_with_a_size_leaves_the_other_disks_raw(lab):
    sdb = lab.disks()["sdb"]["id"]
    answer = lab.op(
        "osd1",
        "set_storage_layout",
        [("storage_layout", "flat"), ("root_device", str(sdb)), ("root_size", "100G")],
    )
    assert answer.status_code == 200, answer.text
    disks = lab.disks()
    assert [p["filesystem"]["mount_point"] for p in disks["sda"]["partitions"]] == ["/boot/efi"]
    (root,) = disks["sdb"]["partitions"]
    assert (root["size"], root["filesystem"]["fstype"], root["filesystem"]["mount_point"]) == (
        100 * 10**9, "ext4", "/"
    )  # fmt: skip
    assert disks["nvme0n1"]["partitions"] == []


@pytest.mark.parametrize(
    ("fields", "errors"),
    [
        ([("root_size", "1G")], {"root_size": ["Size is too small. Minimum size is 3221225472."]}),
        ([("root_size", "lots")], {"root_size": ["Enter a valid value."]}),
        ([("boot_size", "1M")], {"boot_size": ["Size is too small. Minimum size is 536870912."]}),
        ([("root_device", "sdb")],
         {"root_device": ["'sdb' is not a valid root_device.  It should be one of: '1001', "
                          "'1002', '1003'."]}),
        ([("root_size", "400G"), ("boot_size", "100G")],
         {"__all__": ["Size of the boot partition and root partition are larger than the "
                      "available space on the boot disk."]}),
    ],
)  # fmt: skip
def test_layout_parameters_are_checked_like_maas_s_forms(lab, fields, errors):
    answer = lab.op("osd1", "set_storage_layout", [("storage_layout", "flat"), *fields])
    assert form_error(answer) == errors
    assert [p["filesystem"]["mount_point"] for p in lab.disks()["sda"]["partitions"]] == [
        "/boot/efi", "/"
    ]  # fmt: skip


def test_lvm_puts_root_on_a_logical_volume(lab):
    answer = lab.op(
        "osd1",
        "set_storage_layout",
        [("storage_layout", "lvm"), ("vg_name", "vgceph"), ("lv_size", "50G")],
    )
    machine = answer.json()
    assert len(machine["volume_groups"]) == 1
    (lv,) = machine["virtualblockdevice_set"]
    assert (lv["name"], lv["size"], lv["filesystem"]["mount_point"]) == (
        "vgceph-lvroot", 50 * 10**9, "/"
    )  # fmt: skip
    too_big = lab.op("osd1", "set_storage_layout", [("storage_layout", "lvm"),
                                                     ("lv_size", "600G")])  # fmt: skip
    assert list(form_error(too_big)) == ["lv_size"]


def test_bcache_needs_a_cache_device(lab):
    plain = lab.op("plain", "set_storage_layout", [("storage_layout", "bcache")])
    assert (plain.status_code, plain.text) == (
        400,
        "Failed to configure storage layout 'bcache': Node doesn't have an available cache "
        "device to setup bcache.",
    )
    answer = lab.op("osd1", "set_storage_layout", [("storage_layout", "bcache"),
                                                    ("cache_size", "100G")])  # fmt: skip
    machine = answer.json()
    assert (len(machine["bcaches"]), len(machine["cache_sets"])) == (1, 1)
    cache = lab.disks()["nvme0n1"]["partitions"]
    assert [(p["size"], p["filesystem"]["fstype"]) for p in cache] == [(10**11, "bcache-cache")]


def test_custom_needs_commissioning_data_the_simulator_never_has(lab):
    answer = lab.op("osd1", "set_storage_layout", [("storage_layout", "custom")])
    assert (answer.status_code, answer.text) == (
        400,
        "Failed to configure storage layout 'custom': No custom storage layout configuration found",
    )


def test_a_blank_layout_cannot_deploy_ubuntu_to_disk_but_can_to_memory(lab):
    assert lab.op("osd1", "set_storage_layout", [("storage_layout", "blank")]).status_code == 200
    assert all(d["partitions"] == [] for d in lab.disks().values())
    refused = lab.op("osd1", "deploy", user="teuthology")
    assert form_error(refused) == {
        "storage": ["Mount the root '/' filesystem to be able to deploy this node."]
    }
    assert lab.sim.machine("osd1")["status_name"] == "Ready"
    memory = lab.op("osd1", "deploy", [("ephemeral_deploy", "true")], user="teuthology")
    assert memory.status_code == 200, memory.text


# -- interfaces --------------------------------------------------------------------------------


def test_interfaces_are_listed_with_their_links(lab):
    nics = lab.nics(user="teuthology")
    assert list(nics) == ["eno1", "eno2", "eno3"]
    assert [(n["type"], n["links"][0]["mode"], n["links"][0]["subnet"]["cidr"])
            for n in nics.values()] == [("physical", "auto", "10.0.0.0/16"),
                                        ("physical", "auto", "10.0.0.0/16"),
                                        ("physical", "auto", "10.7.0.0/16")]  # fmt: skip
    machine = lab.sim.machine("osd1")
    assert [n["name"] for n in machine["interface_set"]] == ["eno1", "eno2", "eno3"]
    assert machine["boot_interface"]["name"] == "eno1"


def bond(lab, *extra):
    nics = lab.nics()
    return lab.nic_op("create_bond", [("name", "bond0"), ("parents", str(nics["eno1"]["id"])),
                                      ("parents", str(nics["eno2"]["id"])), *extra])  # fmt: skip


def test_a_bond_takes_its_parents_and_leaves_them_without_links(lab):
    answer = bond(
        lab,
        ("bond_mode", "802.3ad"),
        ("bond_lacp_rate", "slow"),
        ("bond_xmit_hash_policy", "layer3+4"),
        ("tags", "teuthology-maas, ceph"),
    )
    assert answer.status_code == 200, answer.text
    made = answer.json()
    assert (made["type"], made["parents"], made["tags"]) == (
        "bond", ["eno1", "eno2"], ["teuthology-maas", "ceph"]
    )  # fmt: skip
    assert made["params"] == {
        "bond_mode": "802.3ad", "bond_lacp_rate": "slow", "bond_xmit_hash_policy": "layer3+4",
        "bond_miimon": 100, "bond_downdelay": 0, "bond_updelay": 0, "bond_num_grat_arp": 1,
    }  # fmt: skip
    assert [link["mode"] for link in made["links"]] == ["link_up"]
    nics = lab.nics()
    assert made["mac_address"] == nics["eno1"]["mac_address"]
    assert (nics["eno1"]["links"], nics["eno1"]["children"]) == ([], ["bond0"])


def test_a_bond_without_a_mode_gets_maas_s_first_choice(lab):
    assert bond(lab).json()["params"]["bond_mode"] == "balance-rr"


@pytest.mark.parametrize(
    ("fields", "errors"),
    [
        ([], {"name": ["This field is required."],
              "parents": ["A bond interface must have one or more parents."]}),
        ([("name", "bond0"), ("parents", "999")],
         {"parents": ["Select a valid choice. 999 is not one of the available choices."]}),
        ([("name", "eno2"), ("parents", "{eno1}")],
         {"name": ["Node {id} (osd1) already has an interface named 'eno2'."]}),
        ([("name", "bond0"), ("parents", "{eno1}"), ("parents", "{eno3}")],
         {"parents": ["All parents must belong to the same VLAN."]}),
        ([("name", "bond0"), ("parents", "{eno1}"), ("bond_mode", "lacp")],
         {"bond_mode": ["'lacp' is not a valid bond_mode.  It should be one of: 'balance-rr', "
                        "'active-backup', 'balance-xor', 'broadcast', '802.3ad', 'balance-tlb', "
                        "'balance-alb'."]}),
        ([("name", "bond0"), ("parents", "{eno1}"), ("bond_miimon", "-1")],
         {"bond_miimon": ["Ensure this value is greater than or equal to 0."]}),
    ],
)  # fmt: skip
def test_create_bond_answers_maas_s_field_errors(lab, fields, errors):
    nics = lab.nics()
    system_id = lab.sim.system_id("osd1")

    def filled(text):
        return text.format(id=system_id, **{k: v["id"] for k, v in nics.items()})

    answer = lab.nic_op("create_bond", [(k, filled(v)) for k, v in fields])
    assert form_error(answer) == {k: [filled(m) for m in v] for k, v in errors.items()}
    assert list(lab.nics()) == ["eno1", "eno2", "eno3"]


def test_interfaces_in_use_and_state_and_permission_rules(lab):
    assert bond(lab).status_code == 200
    again = lab.nic_op("create_bond", [("name", "bond1"),
                                       ("parents", str(lab.nics()["eno2"]["id"]))])  # fmt: skip
    assert form_error(again) == {"parents": ["Interfaces already in-use: eno2."]}
    assert bond(lab).status_code == 400
    assert lab.nic_op("create_bond", [("name", "b")], user="teuthology").status_code == 403
    lab.op("plain", "deploy", user="teuthology")
    lab.sim.clock.advance(600)
    deployed = lab.nic_op("create_bond", [("name", "b")], host="plain")
    assert (deployed.status_code, deployed.text) == (
        409, "Cannot create bond interface because the machine is not New, Ready, Allocated, "
        "or Broken."
    )  # fmt: skip


def test_a_bond_needs_a_subnet_link_before_the_machine_deploys(lab):
    assert bond(lab).status_code == 200
    # eno3 (VLAN 7) would still give the machine an address: take it away
    lab.nic_op("link_subnet", [("mode", "link_up"), ("force", "true")], nic="eno3")
    blocked = lab.op("osd1", "deploy", user="teuthology")
    assert form_error(blocked) == {
        "network": ["Node has no address family in common with the server"]
    }
    assert lab.sim.machine("osd1")["status_name"] == "Ready"
    in_bond = lab.nic_op("link_subnet", [("mode", "auto"), ("subnet", "1")], nic="eno1")
    assert form_error(in_bond) == {
        "bond": ["Cannot link interface(eno1) when interface is in a bond(bond0)."]
    }
    assert form_error(lab.nic_op("link_subnet", [("mode", "auto")], nic="bond0")) == {
        "subnet": ["This field is required."]
    }
    other_vlan = lab.nic_op("link_subnet", [("mode", "auto"), ("subnet", "8")], nic="bond0")
    assert form_error(other_vlan) == {
        "subnet": ["Select a valid choice. That choice is not one of the available choices."]
    }
    assert form_error(lab.nic_op("link_subnet", [("mode", "AUTOMATIC")], nic="bond0")) == {
        "mode": ["'automatic' is not a valid mode.  It should be one of: 'auto', 'dhcp', "
                 "'static', 'link_up'."]
    }  # fmt: skip
    linked = lab.nic_op("link_subnet", [("mode", "AUTO"), ("subnet", "1")], nic="bond0")
    assert [(x["mode"], x["subnet"]["id"]) for x in linked.json()["links"]] == [("auto", 1)]
    assert lab.op("osd1", "deploy", user="teuthology").status_code == 200


def test_deleting_a_bond_does_not_give_the_parents_their_links_back(lab):
    made = bond(lab).json()
    path = f"nodes/{lab.sim.system_id('osd1')}/interfaces/{made['id']}/"
    assert lab.http["teuthology"].request("DELETE", path).status_code == 403
    assert lab.http["admin"].request("DELETE", path).status_code == 204
    nics = lab.nics()
    assert list(nics) == ["eno1", "eno2", "eno3"]
    assert (nics["eno1"]["links"], nics["eno1"]["children"]) == ([], [])
    missing = lab.http["admin"].get(path)
    assert (missing.status_code, missing.text) == (404, "No Interface matches the given query.")
