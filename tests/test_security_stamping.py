"""Our nodes can be told apart from everyone else's in MAAS: the deployment carries our
agent_name and owner data naming the teuthology owner, run and job; other users' (and other
labs') nodes do not, so a clean-up that selects by them never touches someone else's node.
"""

from __future__ import annotations

import pytest

from teuthology_maas.errors import DeploymentFailed
from teuthology_maas.node.provisioner import MaasProvisioner


def test_a_deployment_is_stamped_with_agent_and_teuthology_owner(fault_lab):
    config = fault_lab.config(agent_name="teuthology-maas-sepia")
    provisioner = MaasProvisioner(
        "smithi001",
        "ubuntu",
        "22.04",
        config=config,
        client=fault_lab.client(config),
        owner="scheduler@teuthology.front",
        run_name="teuthology-2026-11-21_05:00:00-rados-main",
        job_id="7712",
    )
    provisioner.create()

    machine = fault_lab.sim.machine("smithi001")
    data = machine["owner_data"]
    # MAAS does not show agent_name in the machine, but filters by it.
    admin = fault_lab.client(fault_lab.config(user="admin"))
    by_agent = admin.list_machines(agent_name="teuthology-maas-sepia")
    assert [m.hostname for m in by_agent] == ["smithi001"]
    assert data["agent"] == "teuthology-maas-sepia"
    assert data["teuthology_owner"] == "scheduler@teuthology.front"
    assert data["teuthology_run"] == "teuthology-2026-11-21_05:00:00-rados-main"
    assert data["teuthology_job"] == "7712"
    assert data["teuthology_os"] == "ubuntu 22.04"
    provisioner.release()
    assert not fault_lab.sim.machine("smithi001")["owner_data"]
    assert admin.list_machines(agent_name="teuthology-maas-sepia") == []


def test_our_nodes_are_selected_by_agent_name_and_nobody_elses(fault_lab):
    ours = fault_lab.config(agent_name="lab-a")
    other_lab = fault_lab.config(agent_name="lab-b")  # same MAAS user, another lab's config
    fault_lab.provisioner("smithi001", config=ours).create()
    fault_lab.provisioner("smithi002", config=other_lab).create()
    alice = fault_lab.client(fault_lab.config(user="alice"))
    mine = alice.allocate(system_id=fault_lab.sim.system_id("smithi003"))
    alice.deploy(mine.system_id, distro_series="ubuntu/jammy")

    admin = fault_lab.client(fault_lab.config(user="admin"))
    selected = {m.hostname for m in admin.list_machines(agent_name="lab-a")}
    assert selected == {"smithi001"}
    stamped = {
        m["hostname"]
        for m in fault_lab.sim.machines()
        if (m.get("owner_data") or {}).get("agent") == "lab-a"
    }
    assert stamped == {"smithi001"}
    assert not fault_lab.sim.machine("smithi003")["owner_data"]


def test_the_stamp_is_on_the_node_before_the_deployment_starts(fault_lab):
    """A process killed mid-deploy still leaves a node that says whose it is."""
    fault_lab.sim.faults.add("deploy_stuck", machine="smithi001")
    config = fault_lab.config(deploy_timeout=0.5)
    provisioner = MaasProvisioner(
        "smithi001", config=config, client=fault_lab.client(config), owner="who@where"
    )
    with pytest.raises(DeploymentFailed):
        provisioner.create()
    ops = [r.op for r in fault_lab.sim.request_log if r.method == "POST"]
    assert ops.index("set_owner_data") < ops.index("deploy")
    deploys = [r for r in fault_lab.sim.request_log if r.op == "deploy"]
    assert deploys and all(r.user == "teuthology" for r in deploys)
