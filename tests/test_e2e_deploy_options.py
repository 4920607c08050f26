"""End to end: stock teuthology 1.3.0's `teuthology-lock --lock-many` reimages through this
library with per-machine-type deploy settings (kernel, storage layout, bond), and its
`--unlock` gives the nodes back with the bonds undone. Real teuthology processes, real HTTP to
the MAAS simulator, real sshd per node (see tests/fixtures_e2e.py); both wiring modes."""

from __future__ import annotations

import pytest
import yaml

from tests.fixtures_e2e import LAB_DOMAIN, MACHINE_TYPE, MODES, OWNER

pytestmark = [pytest.mark.e2e, pytest.mark.sshd, pytest.mark.slow,
              pytest.mark.parametrize("mode", MODES)]  # fmt: skip

HARDWARE = {
    "disks": [{"name": "sda", "size_gb": 4000}, {"name": "sdb", "size_gb": 480, "tags": ["ssd"]},
              {"name": "sdc", "size_gb": 4000}],
    "interfaces": ["eno1", "eno2"],
}  # fmt: skip
DEPLOY = {
    "machine_types": {
        MACHINE_TYPE: {
            "storage": {"layout": "flat", "root_device": "sdb", "root_size": "100G"},
            "bonds": [{"name": "bond0", "interfaces": ["eno1", "eno2"], "mode": "802.3ad",
                       "options": {"lacp_rate": "fast"}}],
            "os": {"ubuntu 22.04": {"hwe_kernel": "hwe-22.04"}},
        }
    }
}  # fmt: skip


def test_lock_many_deploys_with_the_type_s_settings_and_unlock_undoes_the_bonds(mode, e2e_lab):
    lab = e2e_lab(mode, machines=3, maas_user="admin", deploy=DEPLOY,
                  machine_fields={f"smithi00{i}": HARDWARE for i in range(1, 4)})  # fmt: skip
    done = lab.run("teuthology-lock", "--lock-many", "2", "-m", MACHINE_TYPE, "--os-type",
                   "ubuntu", "--os-version", "22.04", "--owner", OWNER)  # fmt: skip
    assert done.returncode == 0, done
    targets = yaml.safe_load(done.stdout)["targets"]
    locked = sorted(fqdn.removesuffix("." + LAB_DOMAIN) for fqdn in targets)
    assert len(locked) == 2, done
    for hostname in locked:
        machine = lab.machine(hostname)
        assert (machine["status_name"], machine["owner"], machine["hwe_kernel"]) == (
            "Deployed", "admin", "hwe-22.04"
        )  # fmt: skip
        bond = next(n for n in machine["interface_set"] if n["name"] == "bond0")
        assert (bond["parents"], bond["params"]["bond_mode"]) == (["eno1", "eno2"], "802.3ad")
        disks = {d["name"]: d for d in machine["physicalblockdevice_set"]}
        root = disks["sdb"]["partitions"][0]
        assert (root["size"], root["filesystem"]["mount_point"]) == (100 * 10**9, "/")
        assert disks["sdc"]["partitions"] == []  # raw for the OSDs
    (free,) = set(lab.hostnames) - set(locked)
    assert [n["name"] for n in lab.machine(free)["interface_set"]] == ["eno1", "eno2"]

    done = lab.run("teuthology-lock", "--unlock", "--owner", OWNER,
                   *(lab.fqdn(h) for h in locked))  # fmt: skip
    assert done.returncode == 0, done
    lab.wait_for(lambda: {lab.status(h) for h in locked} == {"Ready"}, "the nodes Ready")
    for hostname in locked:
        machine = lab.machine(hostname)
        assert machine["owner"] is None
        interfaces = {n["name"]: n for n in machine["interface_set"]}
        assert list(interfaces) == ["eno1", "eno2"]  # the bond was undone ...
        assert [link["mode"] for link in interfaces["eno1"]["links"]] == ["auto"]  # ... relinked
    assert not any(n["locked"] for n in lab.paddles.nodes())
