"""create() and release() with deploy options, against the simulator over HTTP with machines
backed by real loopback sshd servers: each setting reaches MAAS as MAAS needs it, a bad
setting fails before anything changes in MAAS (no state-changing request at all), and a bond
made for a job is undone after the release."""

from __future__ import annotations

import dataclasses

import pytest

from teuthology_maas.errors import ConfigError, DeploymentFailed, DeploySettingError
from teuthology_maas.maas.client import MaasClient

OSD = {
    "hostname": "smithi001",
    "tags": ["smithi"],
    "disks": [{"name": "sda", "size_gb": 480}, {"name": "sdb", "size_gb": 4000},
              {"name": "sdc", "size_gb": 4000}],
    "interfaces": ["eno1", "eno2"],
}  # fmt: skip
BOND = {"name": "bond0", "interfaces": ["eno1", "eno2"], "mode": "802.3ad",
        "options": {"lacp_rate": "fast", "xmit_hash_policy": "layer3+4"}}  # fmt: skip


def configured(lab, *, user="teuthology", **maas):
    """Point the lab's provisioners at a config with these maas: keys, as `user`."""
    lab.config = lab.reconfigured(
        api_key=lab.handle.key_for(user), deploy_timeout=20.0, release_timeout=20.0,
        abort_timeout=10.0, ssh_timeout=10.0, ssh_keys=list(lab.config.ssh_keys), **maas,
    )  # fmt: skip
    lab.client = MaasClient.from_config(lab.config)
    lab.clients.append(lab.client)
    return lab


def changes(lab, since):
    """Every state-changing request since `since`: (method, op, path below the API root)."""
    return [
        (r.method, r.op, r.path.split("/api/2.0/", 1)[1])
        for r in list(lab.sim.request_log)[since:]
        if r.method in ("POST", "PUT", "DELETE")
    ]


def sent(lab, op, since=0):
    (record,) = [r for r in list(lab.sim.request_log)[since:] if r.op == op]
    return record


def nics(lab, host="smithi001"):
    return {n["name"]: n for n in lab.state(host)["interface_set"]}


def assert_untouched(lab, since, host="smithi001"):
    assert changes(lab, since) == []
    state = lab.state(host)
    assert (state["status_name"], state["owner"]) == ("Ready", None)


# -- kernel ------------------------------------------------------------------------------------


def test_the_type_s_kernel_is_deployed(lab_factory):
    lab = configured(lab_factory([OSD]), deploy={"machine_types": {"smithi": {
        "hwe_kernel": "hwe-22.04"}}})  # fmt: skip
    since = lab.mark()
    lab.provisioner().create()
    state = lab.state("smithi001")
    assert (state["status_name"], state["hwe_kernel"]) == ("Deployed", "hwe-22.04")
    assert sent(lab, "deploy", since).param("hwe_kernel") == "hwe-22.04"
    assert sent(lab, "deploy", since).param("ephemeral_deploy") is None


def test_a_kernel_maas_does_not_offer_fails_before_anything_changes(lab_factory):
    lab = configured(lab_factory([OSD], ssh=False), deploy={"hwe_kernel": "ga-99.99"})
    since = lab.mark()
    with pytest.raises(DeploySettingError) as info:
        lab.provisioner().create()
    error = info.value
    assert error.key == "deploy.hwe_kernel"
    assert error.available == ["ga-22.04", "hwe-22.04"]
    assert "ga-99.99 is not available for ubuntu/jammy on amd64/generic." in str(error)
    assert "Kernels MAAS offers for ubuntu/jammy on amd64: ga-22.04, hwe-22.04" in str(error)
    assert "Nothing was changed in MAAS." in str(error)
    assert_untouched(lab, since)


def test_per_os_settings_follow_the_requested_os(lab_factory):
    lab = configured(lab_factory([OSD]), deploy={"os": {"ubuntu 24.04": {
        "hwe_kernel": "hwe-24.04"}}})  # fmt: skip
    since = lab.mark()
    lab.provisioner().create()  # 22.04: no per-OS setting, MAAS picks the kernel
    assert sent(lab, "deploy", since).param("hwe_kernel") is None
    lab.provisioner().release()
    since = lab.mark()
    lab.provisioner(os_version="24.04").create()
    assert sent(lab, "deploy", since).param("hwe_kernel") == "hwe-24.04"
    assert lab.state("smithi001")["hwe_kernel"] == "hwe-24.04"


def test_per_job_options_win_and_are_validated_at_construction(lab_factory):
    lab = configured(lab_factory([OSD]), deploy={"hwe_kernel": "ga-22.04"})
    since = lab.mark()
    lab.provisioner(deploy_options={"hwe_kernel": "hwe-22.04"}).create()
    assert sent(lab, "deploy", since).param("hwe_kernel") == "hwe-22.04"
    with pytest.raises(ConfigError, match=r"per-job deploy options.hwe_kernel: got 'latest'"):
        lab.provisioner(deploy_options={"hwe_kernel": "latest"})


# -- deploy to memory --------------------------------------------------------------------------


def test_memory_deploys_reach_maas_and_show_on_the_machine(lab_factory):
    lab = configured(lab_factory([OSD]), deploy={"ephemeral": True,
                                                 "storage": {"layout": "lvm"}})  # fmt: skip
    since = lab.mark()
    lab.provisioner().create()
    state = lab.state("smithi001")
    assert (state["status_name"], state["ephemeral_deploy"]) == ("Deployed", True)
    assert sent(lab, "deploy", since).param("ephemeral_deploy") == "true"
    # MAAS applies no storage layout to a deployment in memory: none was set
    assert "set_storage_layout" not in [op for _, op, _ in changes(lab, since)]


def test_memory_deploys_need_maas_3_5(lab_factory):
    lab = lab_factory([OSD], ssh=False)
    lab.sim.inventory = dataclasses.replace(lab.sim.inventory, maas_version="3.4.2")
    configured(lab, deploy={"machine_types": {"smithi": {"ephemeral": True}}})
    since = lab.mark()
    with pytest.raises(DeploySettingError) as info:
        lab.provisioner().create()
    assert info.value.key == "deploy.machine_types.smithi.ephemeral"
    assert "MAAS 3.4.2 cannot deploy to memory; that needs MAAS 3.5 or later" in str(info.value)
    assert_untouched(lab, since)


# -- storage layout ----------------------------------------------------------------------------


STORAGE = {"layout": "flat", "root_device": "sda", "root_size": "100G"}


def test_the_storage_layout_is_set_on_the_ready_machine_before_allocation(lab_factory):
    lab = configured(lab_factory([OSD]), user="admin", deploy={"storage": STORAGE})
    since = lab.mark()
    lab.provisioner().create()
    ops = [op for _, op, _ in changes(lab, since)]
    assert ops.index("set_storage_layout") < ops.index("allocate") < ops.index("deploy")
    layout = sent(lab, "set_storage_layout", since)
    disks = {d["name"]: d for d in lab.state("smithi001")["physicalblockdevice_set"]}
    assert (layout.param("storage_layout"), layout.param("root_device"),
            layout.param("root_size")) == ("flat", str(disks["sda"]["id"]), "100G")  # fmt: skip
    root = disks["sda"]["partitions"][-1]
    assert (root["size"], root["filesystem"]["mount_point"]) == (100 * 10**9, "/")
    # the data disks stay raw for the OSDs
    assert disks["sdb"]["partitions"] == [] and disks["sdc"]["partitions"] == []
    assert lab.state("smithi001")["status_name"] == "Deployed"


def test_a_machine_already_allocated_to_us_is_released_for_its_layout(lab_factory):
    lab = lab_factory([{**OSD, "status": "allocated", "owner": "admin"}])
    configured(lab, user="admin", deploy={"storage": STORAGE})
    since = lab.mark()
    lab.provisioner().create()
    ops = [op for _, op, _ in changes(lab, since)]
    # claimed (our token stamped) before anything else; stamped again after the re-allocation
    assert ops == ["set_owner_data", "release", "set_storage_layout", "allocate",
                   "set_owner_data", "deploy", "lock"]
    state = lab.state("smithi001")
    assert state["status_name"] == "Deployed"
    assert state["owner_data"]["agent"] == "teuthology-maas"  # stamped after the re-allocation


def test_storage_needs_an_admin_key_and_says_so_before_anything_changes(lab_factory):
    lab = configured(lab_factory([OSD], ssh=False), deploy={"storage": STORAGE})
    since = lab.mark()
    with pytest.raises(DeploySettingError) as info:
        lab.provisioner().create()
    assert info.value.key == "deploy.storage"
    assert "needs a MAAS administrator's API key; MAAS user 'teuthology' is not one" in str(
        info.value
    )
    assert_untouched(lab, since)


def test_a_disk_the_machine_lacks_fails_before_anything_changes(lab_factory):
    lab = configured(lab_factory([OSD], ssh=False), user="admin",
                     deploy={"storage": {**STORAGE, "root_device": "nvme0n1"}})  # fmt: skip
    since = lab.mark()
    with pytest.raises(DeploySettingError) as info:
        lab.provisioner().create()
    assert info.value.key == "deploy.storage.root_device"
    assert info.value.available == ["sda", "sdb", "sdc"]
    assert "has no disk 'nvme0n1'; its disks: sda, sdb, sdc" in str(info.value)
    assert_untouched(lab, since)


def test_a_layout_maas_refuses_keeps_maas_s_words(lab_factory):
    lab = configured(lab_factory([OSD], ssh=False), user="admin",
                     deploy={"storage": {**STORAGE, "root_size": "1G"}})  # fmt: skip
    with pytest.raises(DeploymentFailed, match=r"Size is too small\. Minimum size is 3221225472\."):
        lab.provisioner().create()
    assert (lab.state("smithi001")["status_name"], lab.state("smithi001")["owner"]) == (
        "Ready", None
    )  # fmt: skip


# -- bonds -------------------------------------------------------------------------------------


def test_a_bond_is_made_before_deploy_and_undone_after_release(lab_factory):
    lab = configured(lab_factory([OSD]), user="admin",
                     deploy={"machine_types": {"smithi": {"bonds": [BOND]}}})  # fmt: skip
    before = nics(lab)
    since = lab.mark()
    lab.provisioner().create()
    ops = [op for _, op, _ in changes(lab, since)]
    assert ops.index("allocate") < ops.index("create_bond") < ops.index("link_subnet") < (
        ops.index("deploy")
    )  # fmt: skip
    bond = nics(lab)["bond0"]
    assert bond["parents"] == ["eno1", "eno2"]
    assert bond["params"]["bond_mode"] == "802.3ad"
    assert bond["params"]["bond_lacp_rate"] == "fast"
    assert [(x["mode"], x["subnet"]["id"]) for x in bond["links"]] == [("auto", 1)]
    assert "teuthology-maas" in bond["tags"]
    assert lab.state("smithi001")["status_name"] == "Deployed"

    lab.provisioner().release()
    after = nics(lab)
    assert list(after) == ["eno1", "eno2"]
    for name in ("eno1", "eno2"):
        assert [(x["mode"], x["subnet"]["id"]) for x in after[name]["links"]] == [
            (x["mode"], x["subnet"]["id"]) for x in before[name]["links"]
        ]
    state = lab.state("smithi001")
    assert (state["status_name"], state["owner"]) == ("Ready", None)


@pytest.mark.parametrize(
    ("bond", "machine", "expected"),
    [
        ({**BOND, "interfaces": ["eno1", "eno9"]}, OSD, "has no interface 'eno9'; its "
         "interfaces: eno1, eno2"),
        (BOND, {**OSD, "interfaces": ["eno1", {"name": "eno2", "vid": 7}]},
         "bond0: eno1, eno2 are on different VLANs"),
    ],
)  # fmt: skip
def test_a_bond_the_machine_cannot_have_fails_before_anything_changes(
    lab_factory, bond, machine, expected
):
    lab = configured(lab_factory([machine], ssh=False), user="admin", deploy={"bonds": [bond]})
    since = lab.mark()
    with pytest.raises(DeploySettingError, match=expected) as info:
        lab.provisioner().create()
    assert info.value.key == "deploy.bonds"
    assert_untouched(lab, since)


def test_a_failed_deployment_undoes_its_bond(lab_factory):
    lab = configured(lab_factory([OSD], ssh=False), user="admin", deploy={"bonds": [BOND]})
    lab.sim.faults.add("deploy_fail", machine="smithi001")
    with pytest.raises(DeploymentFailed, match="Bonds undone: bond0"):
        lab.provisioner().create()
    assert list(nics(lab)) == ["eno1", "eno2"]
    assert [x["mode"] for x in nics(lab)["eno1"]["links"]] == ["auto"]
    assert lab.state("smithi001")["status_name"] == "Ready"


def test_a_leftover_bond_is_undone_when_the_type_no_longer_wants_it(lab_factory):
    lab = configured(lab_factory([OSD]), user="admin", deploy={"bonds": [BOND]})
    lab.provisioner().create()
    lab.provisioner().release(wait=False)  # no wait: no chance to undo the bond
    assert "bond0" in nics(lab)
    configured(lab, user="admin")
    lab.provisioner().create()
    assert list(nics(lab)) == ["eno1", "eno2"]
    assert lab.state("smithi001")["status_name"] == "Deployed"


def test_the_machine_type_comes_from_maas_or_from_the_caller(lab_factory):
    lab = configured(
        lab_factory([{"hostname": "node7", "pool": "mira"}]),
        machine_types=["smithi", "mira"],
        deploy={"machine_types": {"mira": {"hwe_kernel": "hwe-22.04"},
                                  "smithi": {"hwe_kernel": "ga-22.04"}}},
    )  # fmt: skip
    since = lab.mark()
    lab.provisioner("node7").create()  # the pool says mira
    assert sent(lab, "deploy", since).param("hwe_kernel") == "hwe-22.04"
    lab.provisioner("node7").release()
    since = lab.mark()
    lab.provisioner("node7", machine_type="smithi").create()
    assert sent(lab, "deploy", since).param("hwe_kernel") == "ga-22.04"
